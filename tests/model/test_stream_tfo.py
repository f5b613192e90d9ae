"""TCP Fast Open, client side (issue 4 item 2): ``sendto(data, MSG_FASTOPEN, addr)`` as an
implicit connect(), on the model and the kernel (``any_ns``).  Outcomes first seen on Linux
6.18 in a private namespace (``net.ipv4.tcp_fastopen`` = 1, the default)."""
from __future__ import annotations

import pytest

from portspace.diff import failures, run_script

LISTENER = """
        L = tcp4
        L bind 127.0.0.1 5200 -> OK
        L listen -> OK
"""

SCENARIOS = {
    "blocking: connects (autobind), then the data follows the handshake": LISTENER + """
        c = tcp4
        c sendto hello fastopen 127.0.0.1 5200 -> 5
        c name -> 127.0.0.1:eph
        c peer -> 127.0.0.1:5200
        a = L accept
        a recv 10 -> b'hello'
        c sendto x fastopen 127.0.0.1 5200 -> EISCONN
        c sendto x fastopen 127.0.0.1 5201 -> EISCONN
        c send x fastopen -> EISCONN
        c sendto more 127.0.0.1 9 -> 4
        a recv 10 -> b'more'
    """,
    "no listener: ECONNREFUSED, the port stays shown, a second try is refused again": """
        c = tcp4
        c sendto hello fastopen 127.0.0.1 5201 -> ECONNREFUSED
        c name -> 0.0.0.0:eph
        c error -> 0
        c sendto hello fastopen 127.0.0.1 5201 -> ECONNREFUSED
    """,
    "non-blocking: EINPROGRESS with nothing sent (no cookie); the next send carries data": LISTENER + """
        c = tcp4 nonblock
        c sendto early fastopen 127.0.0.1 5200 -> EINPROGRESS
        c select -> -w-
        c peer -> 127.0.0.1:5200
        c send more -> 4
        a = L accept
        a recv 10 -> b'more'
        d = tcp4 nonblock
        d sendto one fastopen 127.0.0.1 5200 -> EINPROGRESS
        d sendto two fastopen 127.0.0.1 5200 -> 3
        b = L accept
        b timeout 0
        b recv 10 -> b'two'
    """,
    "with a timeout the descriptor is non-blocking: EINPROGRESS too": LISTENER + """
        c = tcp4
        c timeout 1
        c sendto t fastopen 127.0.0.1 5200 -> EINPROGRESS
    """,
    "non-blocking without a listener: EINPROGRESS, the error is pending, then ECONNABORTED": """
        c = tcp4 nonblock
        c sendto x fastopen 127.0.0.1 5202 -> EINPROGRESS
        c select -> rw-
        c error -> 111
        c connect 127.0.0.1 5202 -> ECONNABORTED
    """,
    "connect's own refusals and answers": LISTENER + """
        f = tcp4
        f send x fastopen -> EINVAL
        g = tcp4
        g sendto x fastopen 255.255.255.255 5200 -> ENETUNREACH
        h = tcp4
        h sendto x fastopen 10.1.1.1 5200 -> ENETUNREACH
        i = tcp4
        i sendto '' fastopen 127.0.0.1 5200 -> 0
        j = tcp4
        j sendto x fastopen 0.0.0.0 5200 -> 1
        L sendto x fastopen 127.0.0.1 5200 -> EISCONN
        L send x fastopen -> EISCONN
        b = tcp4
        b bind 127.0.0.1 5210 -> OK
        b sendto x fastopen 127.0.0.1 5200 -> 1
        b name -> 127.0.0.1:5210
    """,
    "IPv6": """
        L = tcp6
        L bind [::1] 5203 -> OK
        L listen -> OK
        c = tcp6
        c sendto six fastopen [::1] 5203 -> 3
        a = L accept
        a recv 10 -> b'six'
    """,
    "tcp_fastopen without the client bit: EOPNOTSUPP (shown as ENOTSUP) before anything else, nothing bound": LISTENER + """
        ns sysctl net.ipv4.tcp_fastopen 0 -> OK
        c = tcp4
        c sendto x fastopen 127.0.0.1 5200 -> ENOTSUP
        c name -> 0.0.0.0:0
        d = tcp4
        d sendto x fastopen 127.0.0.1 5201 -> ENOTSUP
        e = tcp4
        e send x fastopen -> ENOTSUP
        f = tcp4
        f connect 127.0.0.1 5200 -> OK
        f sendto x fastopen 127.0.0.1 5200 -> ENOTSUP
        ns sysctl net.ipv4.tcp_fastopen 2 -> OK
        g = tcp4
        g sendto x fastopen 127.0.0.1 5200 -> ENOTSUP
        ns sysctl net.ipv4.tcp_fastopen 3 -> OK
        h = tcp4
        h sendto x fastopen 127.0.0.1 5200 -> 1
    """,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_fastopen_scenario(any_ns, name):
    results = run_script(any_ns, SCENARIOS[name])
    assert not failures(results), "\n".join(failures(results))


def test_fastopen_without_cookie_mode_is_out_of_scope(model_ns):
    results = run_script(model_ns, LISTENER + """
        ns sysctl net.ipv4.tcp_fastopen 5 -> OK
        c = tcp4
        c sendto x fastopen 127.0.0.1 5200
    """)
    assert results[-1].outcome.startswith("OutOfScope: TCP Fast Open without a cookie"), results[-1].outcome
