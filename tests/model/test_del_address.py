"""``ns.del_address`` (``ip addr del``) as step tables run on the model and on the kernel
(``any_ns``; the standard setup has 127.0.0.2/8 and 192.168.1.100/32 on lo and a device d0).
What the kernel does was probed on Linux 6.18 in a private namespace: deleting an address
removes its local (and prefix/broadcast) routes, a missing address is EADDRNOTAVAIL
("ipv4: Address not found"), sockets already bound to it keep their address and port
(getsockname of a bound, a listening and a connected socket), bind() to it then fails
EADDRNOTAVAIL and connect()/sendto() to it ENETUNREACH (no route is left on a lo-only
namespace).  The failover table is the claim of seed 004 (a wildcard and a specific listener)."""
from __future__ import annotations

import pytest

import portspace
from portspace.diff import failures, run_script

CASES = {
    "bind after deletion, missing/wrong prefix/wrong device": """
        a = tcp4
        u = udp4
        ns deladdr 192.168.1.100/24 -> EADDRNOTAVAIL
        ns deladdr 192.168.1.100/32 d0 -> EADDRNOTAVAIL
        ns deladdr 192.168.1.100/32 -> OK
        ns deladdr 192.168.1.100/32 -> EADDRNOTAVAIL
        ns deladdr 192.168.1.100 -> EADDRNOTAVAIL
        a bind 192.168.1.100 21001 -> EADDRNOTAVAIL
        u bind 192.168.1.100 21001 -> EADDRNOTAVAIL
        a bind 127.0.0.1 21001 -> OK
        ns addr 192.168.1.100/32 -> OK
        u bind 192.168.1.100 21001 -> OK
        a close -> OK
        u close -> OK
    """,
    "no such device": """
        ns deladdr 10.0.0.1/32 nosuch -> ENODEV
    """,
    "bound, listening and connected sockets keep their address and port": """
        b = tcp4
        u = udp4
        L = tcp4
        c = tcp4
        b bind 192.168.1.100 21002 -> OK
        u bind 192.168.1.100 21002 -> OK
        L bind 192.168.1.100 21003 -> OK
        L listen -> OK
        c connect 192.168.1.100 21003 -> OK
        x = L accept -> 192.168.1.100:eph
        ns deladdr 192.168.1.100/32 -> OK
        b name -> 192.168.1.100:21002
        u name -> 192.168.1.100:21002
        L name -> 192.168.1.100:21003
        c name -> 192.168.1.100:eph
        c peer -> 192.168.1.100:21003
        x name -> 192.168.1.100:21003
        n = tcp4
        n bind 0.0.0.0 21003 -> EADDRINUSE
        ns addr 192.168.1.100/32 -> OK
        k = tcp4
        k bind 192.168.1.100 21002 -> EADDRINUSE
        for_name = udp4
        for_name bind 192.168.1.100 21002 -> EADDRINUSE
        x close -> OK
        c close -> OK
        L close -> OK
        b close -> OK
        u close -> OK
        n close -> OK
        k close -> OK
        for_name close -> OK
    """,
    "connect and sendto to a removed address": """
        L = tcp4
        L bind 0.0.0.0 21004 -> OK
        L listen -> OK
        ns deladdr 192.168.1.100/32 -> OK
        c = tcp4
        c connect 192.168.1.100 21004 -> ENETUNREACH
        u = udp4
        u sendto 192.168.1.100 21004 -> ENETUNREACH
        v = udp4
        v connect 192.168.1.100 21004 -> ENETUNREACH
        d = tcp4
        d connect 127.0.0.1 21004 -> OK
        y = L accept -> 127.0.0.1:eph
        y close -> OK
        d close -> OK
        c close -> OK
        u close -> OK
        v close -> OK
        L close -> OK
    """,
    "a secondary goes, the primary's prefix route stays": """
        a = tcp4
        ns deladdr 127.0.0.2/8 -> OK
        ns deladdr 127.0.0.2/8 -> EADDRNOTAVAIL
        a bind 127.0.0.2 21005 -> OK
        a close -> OK
    """,
    "an address with a prefix on a device: routes go with it": """
        a = tcp4
        b = tcp4
        ns addr 10.1.0.1/24 d0 -> OK
        a bind 10.1.0.1 21006 -> OK
        ns deladdr 10.1.0.1/24 -> EADDRNOTAVAIL
        ns deladdr 10.1.0.1/24 d0 -> OK
        b bind 10.1.0.1 21006 -> EADDRNOTAVAIL
        c = tcp4
        c connect 10.1.0.5 21006 -> ENETUNREACH
        b bind 10.1.0.255 21006 -> EADDRNOTAVAIL
        a name -> 10.1.0.1:21006
        a close -> OK
        b close -> OK
        c close -> OK
    """,
    "IPv6": """
        a = tcp6
        ns addr fd00::1/128 -> OK
        ns deladdr fd00::1/64 -> EADDRNOTAVAIL
        ns deladdr fd00::1/128 -> OK
        ns deladdr fd00::1 -> EADDRNOTAVAIL
        a bind [fd00::1] 21007 -> EADDRNOTAVAIL
        c = tcp6
        c connect [fd00::1] 21007 -> ENETUNREACH
        a close -> OK
        c close -> OK
    """,
    "failover: wildcard and specific listener (seed 004)": """
        wild = tcp4 reuseport nonblock
        spec = tcp4 reuseport nonblock
        wild bind 0.0.0.0 21010 -> OK
        wild listen -> OK
        spec bind 192.168.1.100 21010 -> OK
        spec listen -> OK
        c1 = tcp4
        c1 connect 192.168.1.100 21010 -> OK
        s1 = spec accept -> 192.168.1.100:eph
        w1 = wild accept -> EAGAIN
        ns deladdr 192.168.1.100/32 -> OK
        c2 = tcp4
        c2 connect 192.168.1.100 21010 -> ENETUNREACH
        spec close -> OK
        c3 = tcp4
        c3 connect 192.168.1.100 21010 -> ENETUNREACH
        ns addr 192.168.1.100/32 -> OK
        c4 = tcp4
        c4 connect 192.168.1.100 21010 -> OK
        w4 = wild accept -> 192.168.1.100:eph
        w4 name -> 192.168.1.100:21010
        w4 close -> OK
        s1 close -> OK
        c1 close -> OK
        c2 close -> OK
        c3 close -> OK
        c4 close -> OK
        wild close -> OK
    """,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_del_address(any_ns, name):
    bad = failures(run_script(any_ns, CASES[name]))
    assert not bad, "\n".join(bad)


def test_primary_with_secondaries_is_out_of_scope():
    ns = portspace.Namespace(seed=1)
    ns.add_address("127.0.0.2/8")   # a secondary of 127.0.0.1/8
    with pytest.raises(portspace.OutOfScope, match="promote_secondaries"):
        ns.del_address("127.0.0.1/8")
    ns.del_address("127.0.0.2/8")
    ns.del_address("127.0.0.1/8")   # no secondary left: the whole 127/8 goes
    with pytest.raises(OSError) as info, ns.socket() as s:
        s.bind(("127.0.0.1", 0))
    assert info.value.errno == 99


@pytest.mark.parametrize("arg, exc", [(5, TypeError), ("nonsense", ValueError), ("10.0.0.1/33", ValueError),
                                      ("fd00::1/129", ValueError), ("10.0.0.1/x", ValueError)])
def test_bad_input(arg, exc):
    ns = portspace.Namespace(seed=1)
    with pytest.raises(exc):
        ns.del_address(arg)


def test_send_over_a_deleted_address_is_refused_not_guessed():
    """On 6.18 a connection over a deleted address accepts send() and never delivers the data;
    the model says so (OutOfScope) instead of delivering it.  Model only: the kernel side would
    be a recv that waits forever."""
    import socket

    import portspace
    ns = portspace.Namespace(seed=1)
    ns.add_address("192.168.1.100/32")
    lst = ns.socket()
    lst.bind(("192.168.1.100", 7000))
    lst.listen()
    c = ns.socket()
    c.connect(("192.168.1.100", 7000))
    a, _ = lst.accept()
    assert c.send(b"before") == 6 and a.recv(10) == b"before"
    ns.del_address("192.168.1.100/32")
    for s in (c, a):
        with pytest.raises(portspace.OutOfScope, match="address was deleted"):
            s.send(b"after")
    u = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 7001))
    assert u.sendto(b"x", ("127.0.0.1", 7001)) == 1  # sockets on other addresses are unaffected
    for s in (c, a, lst, u):
        s.close()
