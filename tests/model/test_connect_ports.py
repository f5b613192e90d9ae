"""Automatic ports of TCP connect() (spec §5.3, §5.4, §5.6), compared by properties on the
model and the kernel: the kernel's per-destination offset comes from a secret key, so the
tests check range, parity, sharing between destinations and the count at which a small
range runs out.  Facts: ../shared/linux-port-experiments/results/scenarios_eph.txt and
scenarios_oddrange.txt (kernel 6.18.44)."""
from __future__ import annotations

import errno
import socket
import struct

import pytest


def listen(ns, port, host="127.0.0.1"):
    s = ns.socket()
    s.bind((host, port))
    s.listen(128)
    return s


def connect_all(ns, n, dst, opts=()):
    socks, got = [], []
    for _ in range(n):
        c = ns.socket()
        for level, opt, val in opts:
            c.setsockopt(level, opt, val)
        socks.append(c)
        try:
            c.connect(dst)
            got.append(c.getsockname()[1])
        except OSError as e:
            got.append(errno.errorcode[e.errno])
    return socks, got


def close_all(*groups):
    for g in groups:
        for s in g:
            s.close()


def test_connect_even_first_then_odd_then_eaddrnotavail(any_ns):
    """[V eph:X] an 8-port range: even ports, then odd, then EADDRNOTAVAIL; another
    destination still gets a port; bind(0) cannot share a connect()-held port on the same
    address, but can on another."""
    any_ns.sysctl("net.ipv4.ip_local_port_range", "40000 40007")
    l1, l2 = listen(any_ns, 5000), listen(any_ns, 5001)
    socks, got = connect_all(any_ns, 9, ("127.0.0.1", 5000))
    assert sorted(got[:4]) == [40000, 40002, 40004, 40006]
    assert sorted(got[4:8]) == [40001, 40003, 40005, 40007]
    assert got[8] == "EADDRNOTAVAIL"
    more, got2 = connect_all(any_ns, 1, ("127.0.0.1", 5001))
    assert 40000 <= got2[0] <= 40007
    b = any_ns.socket()
    with pytest.raises(OSError) as ei:
        b.bind(("127.0.0.1", 0))
    assert ei.value.errno == errno.EADDRINUSE
    c = any_ns.socket()
    c.bind(("127.0.0.2", 0))
    assert 40000 <= c.getsockname()[1] <= 40007
    close_all(socks, more, [b, c, l1, l2])


def test_connect_default_range_even_and_distinct(any_ns):
    """[V eph:P] 60 connect()s to one destination: even ports, all distinct."""
    lst = listen(any_ns, 5000)
    socks, got = connect_all(any_ns, 60, ("127.0.0.1", 5000))
    assert all(isinstance(p, int) and p % 2 == 0 and 32768 <= p <= 60999 for p in got)
    assert len(set(got)) == 60
    close_all(socks, [lst])


def test_connect_never_uses_an_explicitly_bound_port(any_ns):
    """[V eph:C] a port held by bind() is never taken by connect() autobind, even for another
    address; once it is closed the port is usable again (6.18 bucket reset)."""
    any_ns.sysctl("net.ipv4.ip_local_port_range", "40000 40000")
    l1, l2 = listen(any_ns, 5000), listen(any_ns, 5001)
    c1 = any_ns.socket()
    c1.connect(("127.0.0.1", 5000))
    assert c1.getsockname() == ("127.0.0.1", 40000)
    b = any_ns.socket()
    b.bind(("127.0.0.2", 40000))
    c2 = any_ns.socket()
    with pytest.raises(OSError) as ei:
        c2.connect(("127.0.0.1", 5001))
    assert ei.value.errno == errno.EADDRNOTAVAIL
    b.close()
    c3 = any_ns.socket()
    c3.connect(("127.0.0.1", 5001))
    assert c3.getsockname() == ("127.0.0.1", 40000)
    close_all([c1, c2, c3, l1, l2])


def test_bind_address_no_port_shares_a_source_port(any_ns):
    """[V eph:N] IP_BIND_ADDRESS_NO_PORT: connect() picks the port, so sockets with one source
    address share it across destinations, never on one 4-tuple."""
    any_ns.sysctl("net.ipv4.ip_local_port_range", "40000 40000")
    l1, l2 = listen(any_ns, 5000), listen(any_ns, 5001)
    nop = (socket.IPPROTO_IP, 24, 1)
    a = any_ns.socket()
    a.setsockopt(*nop)
    a.bind(("127.0.0.1", 0))
    assert a.getsockname() == ("127.0.0.1", 0)
    a.connect(("127.0.0.1", 5000))
    assert a.getsockname() == ("127.0.0.1", 40000)
    b = any_ns.socket()
    b.setsockopt(*nop)
    b.bind(("127.0.0.1", 0))
    b.connect(("127.0.0.1", 5001))
    assert b.getsockname() == ("127.0.0.1", 40000)
    p = any_ns.socket()
    with pytest.raises(OSError) as ei:
        p.bind(("127.0.0.1", 0))
    assert ei.value.errno == errno.EADDRINUSE
    c = any_ns.socket()
    c.setsockopt(*nop)
    c.bind(("127.0.0.1", 0))
    with pytest.raises(OSError) as ei:
        c.connect(("127.0.0.1", 5000))
    assert ei.value.errno == errno.EADDRNOTAVAIL
    close_all([a, b, c, p, l1, l2])


def test_per_socket_range_steps_by_one(any_ns):
    """[V eph:L] IP_LOCAL_PORT_RANGE: step 1, both parities, every port, then EADDRNOTAVAIL."""
    lst = listen(any_ns, 5000)
    opt = (socket.IPPROTO_IP, 51, struct.pack("I", 50000 | (50009 << 16)))
    socks, got = connect_all(any_ns, 11, ("127.0.0.1", 5000), (opt,))
    assert sorted(got[:10]) == list(range(50000, 50010)) and got[10] == "EADDRNOTAVAIL"
    close_all(socks, [lst])


def test_odd_sized_range(any_ns):
    """[V oddrange:Z] 40000-40002: connect() uses two ports (one is skipped); with the same
    range set per socket, all three."""
    any_ns.sysctl("net.ipv4.ip_local_port_range", "40000 40002")
    lst = listen(any_ns, 5000)
    socks, got = connect_all(any_ns, 4, ("127.0.0.1", 5000))
    assert sorted(got[:2]) == [40000, 40001] and got[2:] == ["EADDRNOTAVAIL", "EADDRNOTAVAIL"]
    opt = (socket.IPPROTO_IP, 51, struct.pack("I", 40000 | (40002 << 16)))
    lst2 = listen(any_ns, 5001)
    socks2, got2 = connect_all(any_ns, 4, ("127.0.0.1", 5001), (opt,))
    assert sorted(got2[:3]) == [40000, 40001, 40002] and got2[3] == "EADDRNOTAVAIL"
    close_all(socks, socks2, [lst, lst2])


def test_exhaustion_errnos(any_ns):
    """[V eph:X] TCP connect() when every port is held by bind(0): EADDRNOTAVAIL; UDP connect()
    unbound when UDP ports are exhausted: EAGAIN."""
    any_ns.sysctl("net.ipv4.ip_local_port_range", "40000 40001")
    lst = listen(any_ns, 5000)
    held = []
    for _ in range(2):
        s = any_ns.socket()
        s.bind(("0.0.0.0", 0))
        held.append(s)
    c = any_ns.socket()
    with pytest.raises(OSError) as ei:
        c.connect(("127.0.0.1", 5000))
    assert ei.value.errno == errno.EADDRNOTAVAIL
    for _ in range(2):
        u = any_ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("0.0.0.0", 0))
        held.append(u)
    v = any_ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(BlockingIOError) as ei2:
        v.connect(("127.0.0.1", 9))
    assert ei2.value.errno == errno.EAGAIN
    close_all(held, [c, v, lst])


def test_ipv6_connect_ports(any_ns):
    """The same rules for IPv6: even ports from the range, per destination."""
    lst = any_ns.socket(socket.AF_INET6)
    lst.bind(("::1", 5000))
    lst.listen(64)
    socks = []
    for _ in range(20):
        c = any_ns.socket(socket.AF_INET6)
        c.connect(("::1", 5000))
        socks.append(c)
    ports = [c.getsockname()[1] for c in socks]
    assert all(p % 2 == 0 and 32768 <= p <= 60999 for p in ports) and len(set(ports)) == 20
    close_all(socks, [lst])
