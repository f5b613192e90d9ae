"""shutdown() on the model and the kernel: unconnected sockets, listeners, and half-closed
connections whose TIME_WAIT lands on the side that sent the first FIN."""
from __future__ import annotations

import pytest

from portspace.diff import failures, run_script

SCENARIOS = {
    "unconnected sockets: ENOTCONN": """
        t = tcp4
        t shutdown wr -> ENOTCONN
        u = udp4
        u shutdown rdwr -> ENOTCONN
        v = udp4
        v connect 127.0.0.1 9 -> OK
        v shutdown rd -> OK
    """,
    "listener SHUT_RD stops listening but keeps an explicit port": """
        L = tcp4
        L bind 127.0.0.1 5020 -> OK
        L listen -> OK
        L shutdown rd -> OK
        c = tcp4
        c connect 127.0.0.1 5020 -> ECONNREFUSED
        n = tcp4
        n bind 127.0.0.1 5020 -> EADDRINUSE
        L listen -> OK
        d = tcp4
        d connect 127.0.0.1 5020 -> OK
    """,
    "a stopped listener never connects: EINVAL after routing (probed on 6.18)": """
        L = tcp4
        L bind 0.0.0.0 5022 -> OK
        L listen 0 -> OK
        L connect 127.0.0.1 5022 -> EISCONN
        L shutdown rd -> OK
        L connect 127.0.0.1 5022 -> EINVAL
        L connect 10.9.9.9 80 -> ENETUNREACH
        L connect 127.0.0.1 0 -> EINVAL
        L listen -> OK
        L shutdown rdwr -> OK
        L connect 127.0.0.1 5022 -> EINVAL
        L name -> 0.0.0.0:5022
        A = tcp4
        A listen -> OK
        A disconnect -> OK
        A connect 127.0.0.1 5022 -> EINVAL
    """,
    "a socket whose listen() failed still connects": """
        a = tcp4 reuseaddr
        a bind 127.0.0.1 5023 -> OK
        b = tcp4 reuseaddr
        b bind 127.0.0.1 5023 -> OK
        a listen -> OK
        b listen -> EADDRINUSE
        b connect 127.0.0.1 5024 -> ECONNREFUSED
        x = tcp4
        x bind 127.0.0.1 5024 -> OK
        x listen -> OK
        b connect 127.0.0.1 5024 -> OK
    """,
    "socket-layer state after a refused connect(): listen() EINVAL, shutdown() makes it DISCONNECTING": """
        c = tcp4
        c timeout 0.3
        c connect 127.0.0.1 5025 -> ECONNREFUSED
        c listen -> EINVAL
        c connect 127.0.0.1 5025 -> ECONNABORTED
        c listen -> EINVAL
        n = tcp4 nonblock
        n connect 127.0.0.1 5025 -> EINPROGRESS
        n listen -> EINVAL
        n shutdown rd -> ENOTCONN
        n connect 127.0.0.1 5025 -> EINVAL
        n listen -> EINVAL
        b = tcp4
        b connect 127.0.0.1 5025 -> ECONNREFUSED
        b listen -> EINVAL
    """,
    "a socket that has sent a SYN never listens; failures before the SYN do not count (probed on 6.18)": """
        L = tcp4
        L bind 127.0.0.1 5027 -> OK
        L listen -> OK
        u = tcp4
        u connect 10.9.9.9 80 -> ENETUNREACH
        u listen -> OK
        a = tcp4 reuseaddr
        a bind 127.0.0.1 7000 -> OK
        a connect 127.0.0.1 5027 -> OK
        b = tcp4 reuseaddr
        b bind 127.0.0.1 7000 -> OK
        b connect 127.0.0.1 5027 -> EADDRNOTAVAIL
        b listen -> OK
        s = tcp4
        s bind 127.0.0.1 7001 -> OK
        s connect 127.0.0.1 7001 -> OK
        s listen -> EINVAL
        p = tcp4
        p connect 127.0.0.1 0 -> ECONNREFUSED
        p listen -> EINVAL
        p name -> 0.0.0.0:eph
        p bind 127.0.0.1 5029 -> EINVAL
        q = tcp4
        q bind 127.0.0.1 5030 -> OK
        q connect 127.0.0.1 5999 -> ECONNREFUSED
        q listen -> EINVAL
        q name -> 127.0.0.1:5030
        r = tcp4
        r bind 127.0.0.1 5030 -> EADDRINUSE
        e = tcp4
        e connect 127.0.0.1 5027 -> OK
        e disconnect -> OK
        e listen -> EINVAL
        e connect 127.0.0.1 5027 -> OK
        ns sysctl net.ipv4.ip_local_port_range "40000 40000"
        g = tcp4
        g connect 127.0.0.1 5027 -> OK
        f = tcp4
        f connect 127.0.0.1 5027 -> EADDRNOTAVAIL
        f listen -> EADDRINUSE
    """,
    "a connection reset by its peer can neither listen nor connect again": """
        L = tcp4
        L bind 127.0.0.1 5026 -> OK
        L listen -> OK
        c = tcp4
        c connect 127.0.0.1 5026 -> OK
        a = L accept
        a linger 1 0 -> OK
        a close -> OK
        c error -> 104
        c listen -> EINVAL
        c connect 127.0.0.1 5026 -> EISCONN
    """,
    "a queued connection reset by its listener's shutdown: the next connect() reports ECONNRESET": """
        L = tcp4
        L bind 0.0.0.0 5028 -> OK
        L listen 0 -> OK
        c = tcp4
        c timeout 0.3
        c connect 127.0.0.1 5028 -> OK
        L shutdown rd -> OK
        c connect 127.0.0.1 5028 -> ECONNRESET
        c connect 127.0.0.1 5028 -> ECONNREFUSED
        d = tcp4
        d timeout 0.3
        L listen -> OK
        d connect 127.0.0.1 5028 -> OK
        L shutdown rd -> OK
        d error -> 104
        d connect 127.0.0.1 5028 -> ECONNABORTED
    """,
    "listener SHUT_WR changes nothing": """
        L = tcp4
        L bind 127.0.0.1 5021 -> OK
        L listen -> OK
        L shutdown wr -> OK
        c = tcp4
        c connect 127.0.0.1 5021 -> OK
    """,
    "autobound listener SHUT_RDWR releases its port": """
        L = tcp4
        L listen -> OK
        L shutdown rdwr -> OK
        L name -> 0.0.0.0:eph
    """,
    "client SHUT_WR, then the server closes: the client holds TIME_WAIT": """
        L = tcp4
        L bind 127.0.0.1 5022 -> OK
        L listen -> OK
        c = tcp4 range=40005-40005
        c connect 127.0.0.1 5022 -> OK
        a = L accept
        c shutdown wr -> OK
        a close -> OK
        x = tcp4
        x bind 127.0.0.1 40005 -> EADDRINUSE
        c close -> OK
        y = tcp4
        y bind 127.0.0.1 40005 -> EADDRINUSE
        L close -> OK
        z = tcp4
        z bind 127.0.0.1 5022 -> OK
    """,
    "server SHUT_WR first, then the client closes: TIME_WAIT on the server's port": """
        L = tcp4
        L bind 127.0.0.1 5023 -> OK
        L listen -> OK
        c = tcp4
        c connect 127.0.0.1 5023 -> OK
        a = L accept
        a shutdown wr -> OK
        c close -> OK
        a close -> OK
        L close -> OK
        z = tcp4
        z bind 127.0.0.1 5023 -> EADDRINUSE
        r = tcp4 reuseaddr
        r bind 127.0.0.1 5023 -> EADDRINUSE
    """,
    "explicitly bound client: after SHUT_WR and the peer's close the port is held twice": """
        L = tcp4
        L bind 127.0.0.1 5024 -> OK
        L listen -> OK
        c = tcp4 reuseaddr
        c bind 127.0.0.1 22060 -> OK
        c connect 127.0.0.1 5024 -> OK
        a = L accept
        c shutdown wr -> OK
        a close -> OK
        c name -> 127.0.0.1:22060
        c close -> OK
        r = tcp4 reuseaddr
        r bind 127.0.0.1 22060 -> OK
    """,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_shutdown_scenario(any_ns, name):
    results = run_script(any_ns, SCENARIOS[name])
    assert not failures(results), "\n".join(failures(results))


def test_shutdown_bad_how(any_ns):
    s = any_ns.socket()
    with pytest.raises(OSError) as ei:
        s.shutdown(7)
    assert ei.value.errno == 22
    s.close()
