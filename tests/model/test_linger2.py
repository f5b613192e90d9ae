"""TCP_LINGER2 (``setsockopt(IPPROTO_TCP, TCP_LINGER2)``): the lifetime of an orphaned FIN_WAIT2,
per socket, on the model (virtual clock) and on the kernel (real time, a few seconds).

Kernel facts (observed on Linux 6.18 in a private namespace, 2026-12-02, with the probe scripts
summarised in model/_netns.py ``_fin_time``): a negative value reads back as -1 and resets the
connection at FIN_WAIT2 (no remnant; the peer in CLOSE_WAIT gets SO_ERROR EPIPE); 0 reads back as
the current ``tcp_fin_timeout``; values above TCP_FIN_TIMEOUT_MAX (120) read back as 120; a
lifetime above 60 s is ``2 * (tmo - 60)`` in all (61 -> 2 s, 62 -> 4 s); ``tcp_fin_timeout`` 0 or
below gives the 3.5-RTO floor (~0.7 s).  Every table here runs on both sides, so these are
checked again on every run, not just remembered.
"""
from __future__ import annotations

import pytest

from portspace.diff import failures, run_script

# one connection per line of the table, each from its own one-port range, to one listener;
# the client closes first (active close -> orphaned FIN_WAIT2)
LISTENER = """
    L = tcp4
    L bind 127.0.0.1 {port} -> OK
    L listen 16 -> OK
"""
CONN = """
    c{i} = tcp4 range={cport}-{cport} {copts}
    c{i} connect 127.0.0.1 {port} -> OK
    a{i} = L accept
"""


def conns(port: int, rows: list[tuple[int, str]]) -> str:
    """A listener on ``port`` and one accepted connection per ``(client port, client options)``."""
    return LISTENER.format(port=port) + "".join(
        CONN.format(i=i, cport=cport, copts=copts, port=port) for i, (cport, copts) in enumerate(rows))


def held(cport: int, want: str, tag: str) -> str:
    """A fresh socket binds the client's port: EADDRINUSE while a remnant holds it."""
    return f"p{tag} = tcp4\np{tag} bind 127.0.0.1 {cport} -> {want}\np{tag} close\n"


VALUES = """
    s = tcp4
    s get linger2 -> '60'
    s set linger2 5 -> OK
    s get linger2 -> '5'
    s set linger2 0 -> OK
    s get linger2 -> '60'
    ns sysctl net.ipv4.tcp_fin_timeout 7 -> OK
    s get linger2 -> '7'
    ns sysctl net.ipv4.tcp_fin_timeout 60 -> OK
    s set linger2 -5 -> OK
    s get linger2 -> '-1'
    s set linger2 120 -> OK
    s get linger2 -> '120'
    s set linger2 121 -> OK
    s get linger2 -> '120'
    s set linger2 2147483647 -> OK
    s get linger2 -> '120'
    u = udp4
    u set linger2 5 -> ENOPROTOOPT
    u get linger2 -> ENOTSUP
    u6 = udp6
    u6 set linger2 5 -> ENOPROTOOPT
    u6 get linger2 -> ENOPROTOOPT
    t6 = tcp6
    t6 set linger2 3 -> OK
    t6 get linger2 -> '3'
"""


def test_linger2_value_rules(any_ns):
    results = run_script(any_ns, VALUES)
    assert not failures(results), "\n".join(failures(results))


def test_linger2_short_buffers(any_ns):
    """optlen below sizeof(int) is EINVAL, also with a NULL buffer; a NULL buffer of 4 bytes
    faults; getsockopt copies min(buflen, 4) bytes."""
    s = any_ns.socket()
    try:
        for args in ((b"\x01\x00",), (None, 2), (None, 0), (None, 4)):
            with pytest.raises(OSError) as e:
                s.setsockopt(6, 8, *args)
            assert e.value.errno == (14 if args == (None, 4) else 22), args
        s.setsockopt(6, 8, (7).to_bytes(8, "little"))
        assert s.getsockopt(6, 8, 1) == b"\x07"
        assert s.getsockopt(6, 8, 8) == b"\x07\x00\x00\x00"
    finally:
        s.close()


# All lifetimes of one table run at once on one clock, so the kernel waits 2.6 s for the lot.
# The first look is 0.2 s after the close: on the kernel the FIN's ACK comes back as a delayed
# ACK (~40 ms), and until then the closed socket is a FIN_WAIT1 orphan that holds its port even
# with TCP_LINGER2 -1; the model acknowledges at once (its close is instantaneous).
LIFETIMES = conns(20300, [
    (40300, "linger2=2"),    # 2 s
    (40301, "linger2=61"),   # 2 * (61 - 60) = 2 s, not 61 s
    (40302, "linger2=-1"),   # reset at FIN_WAIT2: no remnant
    (40303, ""),             # tcp_fin_timeout (60 s)
    (40304, "linger2=5"),    # 5 s
    (40305, "linger2=2"),    # shut down first, closed later: orphaned in FIN_WAIT2 then
    (40306, "linger2=2"),    # the peer closes too: TIME_WAIT for 60 s [V tw_extra:F]
]) + """
    c5 shutdown wr -> OK
    c0 close -> OK
    c1 close -> OK
    c2 close -> OK
    c3 close -> OK
    c4 close -> OK
    c5 close -> OK
    c6 close -> OK
    a6 close -> OK
    ns sleep 0.2
    a2 error -> '32'
    a0 error -> '0'
""" + "".join(held(40300 + i, w, f"0_{i}") for i, w in enumerate(
    ["EADDRINUSE", "EADDRINUSE", "OK", "EADDRINUSE", "EADDRINUSE", "EADDRINUSE", "EADDRINUSE"])) + """
    ns sleep 1.4
""" + "".join(held(40300 + i, w, f"1_{i}") for i, w in enumerate(
    ["EADDRINUSE", "EADDRINUSE", "OK", "EADDRINUSE", "EADDRINUSE", "EADDRINUSE", "EADDRINUSE"])) + """
    ns sleep 1.0
""" + "".join(held(40300 + i, w, f"2_{i}") for i, w in enumerate(
    ["OK", "OK", "OK", "EADDRINUSE", "EADDRINUSE", "OK", "EADDRINUSE"]))

FIN_TIMEOUT_FLOOR = """
    ns sysctl net.ipv4.tcp_fin_timeout 0 -> OK
""" + conns(20310, [(40310, ""), (40311, "linger2=2")]) + """
    c0 close -> OK
    c1 close -> OK
""" + held(40310, "EADDRINUSE", "0a") + held(40311, "EADDRINUSE", "0b") + """
    ns sleep 0.4
""" + held(40310, "EADDRINUSE", "1a") + held(40311, "EADDRINUSE", "1b") + """
    ns sleep 0.8
""" + held(40310, "OK", "2a") + held(40311, "EADDRINUSE", "2b") + """
    ns sysctl net.ipv4.tcp_fin_timeout 60 -> OK
"""

FIN_TIMEOUT_SYSCTL = """
    ns sysctl net.ipv4.tcp_fin_timeout 2 -> OK
""" + conns(20320, [(40320, ""), (40321, "linger2=4"), (40322, "linger2=0")]) + """
    c0 close -> OK
    c1 close -> OK
    c2 close -> OK
    ns sleep 1.6
""" + held(40320, "EADDRINUSE", "1a") + held(40321, "EADDRINUSE", "1b") + held(40322, "EADDRINUSE", "1c") + """
    ns sleep 1.0
""" + held(40320, "OK", "2a") + held(40321, "EADDRINUSE", "2b") + held(40322, "OK", "2c") + """
    ns sysctl net.ipv4.tcp_fin_timeout 60 -> OK
"""

SCENARIOS = {
    "linger2: each orphan holds its port for its own lifetime (2 s, 61 -> 2 s, -1 -> reset, "
    "default 60 s, 5 s, after shutdown, peer FIN -> TIME_WAIT)": LIFETIMES,
    "linger2: tcp_fin_timeout 0 gives the 3.5-RTO floor (~0.7 s), not 60 s; linger2 2 s still applies": FIN_TIMEOUT_FLOOR,
    "linger2: 0 means tcp_fin_timeout (2 s), a set value overrides it (4 s)": FIN_TIMEOUT_SYSCTL,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_linger2_lifetime(any_ns, name):
    results = run_script(any_ns, SCENARIOS[name])
    assert not failures(results), "\n".join(failures(results))


def test_linger2_lifetime_exact_on_the_virtual_clock():
    """The model alone, to the millisecond: the remnant dies at its lifetime, not before."""
    import portspace
    for opts, life in (("linger2=2", 2.0), ("linger2=61", 2.0), ("linger2=62", 4.0), ("linger2=120", 120.0),
                       ("linger2=59", 59.0), ("", 60.0)):
        ns = portspace.Namespace()
        results = run_script(ns, conns(20330, [(40330, opts)]) + f"""
            c0 close
            ns sleep {life - 0.001}
        """ + held(40330, "EADDRINUSE", "a") + """
            ns sleep 0.001
        """ + held(40330, "OK", "b"))
        assert not failures(results), (opts, failures(results))
        ns.check_invariants()
