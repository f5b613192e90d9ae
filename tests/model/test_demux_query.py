"""``ns.who_receives`` and ``ns.flow_report``: queries that change nothing and agree with what
delivery then does (the query and delivery share model/_demux.py)."""
from __future__ import annotations

import socket

import pytest

import portspace

A4, A6, T, U = socket.AF_INET, socket.AF_INET6, socket.SOCK_STREAM, socket.SOCK_DGRAM


def _listeners(ns, n, host="127.0.0.1", port=22000):
    out = []
    for _ in range(n):
        s = ns.socket(A4, T | socket.SOCK_NONBLOCK)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((host, port))
        s.listen()
        out.append(s)
    return out


def test_query_predicts_tcp_delivery_and_changes_nothing():
    ns = portspace.Namespace(seed=3)
    ls = _listeners(ns, 4)
    for sp in range(30000, 30040):
        before = str(ns.tables())
        d = ns.who_receives("tcp", ("127.0.0.1", sp), ("127.0.0.1", 22000))
        assert str(ns.tables()) == before
        assert len(d.fds) == 1 and "reuseport group" in str(d)
        c = ns.socket(A4, T)
        c.bind(("127.0.0.1", sp))
        c.connect(("127.0.0.1", 22000))
        got = [s.fileno() for s in ls if s._sk.accept_queue]
        assert got == list(d.fds)
        # once connected, the same 4-tuple is answered by the established hash
        child = ns.who_receives("tcp", ("127.0.0.1", sp), ("127.0.0.1", 22000))
        assert "established hash: exact 4-tuple match" in str(child)
        for s in ls:
            if s._sk.accept_queue:
                a, _ = s.accept()
                a.close()
        c.close()
    for s in ls:
        s.close()


def test_query_predicts_udp_delivery():
    ns = portspace.Namespace(seed=5)
    us = []
    for i in range(3):
        s = ns.socket(A4, U | socket.SOCK_NONBLOCK)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", 22001))
        us.append(s)
    us[0].connect(("127.0.0.1", 7100))
    for sp in [7100] + list(range(31000, 31030)):
        d = ns.who_receives("udp", ("127.0.0.1", sp), ("127.0.0.1", 22001))
        c = ns.socket(A4, U)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        c.bind(("127.0.0.1", sp))
        c.sendto(b"x", ("127.0.0.1", 22001))
        c.close()
        got = []
        for s in us:
            try:
                s.recv(10)
                got.append(s.fileno())
            except BlockingIOError:
                pass
        assert got == list(d.fds)
        if sp == 7100:
            assert "hash4" in str(d) and d.fds == (us[0].fileno(),)
        else:
            assert us[0].fileno() not in d.fds
    for s in us:
        s.close()


def test_query_text_names_scores_chains_and_member_index():
    ns = portspace.Namespace()
    a = ns.socket(A4, T)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    a.bind(("127.0.0.1", 22002))
    a.listen()
    b = ns.socket(A4, T)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
    b.bind(("0.0.0.0", 22002))
    b.listen()
    d = ns.who_receives("tcp", ("127.0.0.1", 5555), ("127.0.0.1", 22002))
    text = str(d)
    assert d.fds == (a.fileno(),)
    assert "listener pass A: chain 127.0.0.1:22002" in text and "score 2" in text
    assert "pass B" not in text        # pass B only runs when pass A found nothing
    d2 = ns.who_receives("tcp", ("127.0.0.2", 5555), ("127.0.0.2", 22002))
    assert d2.fds == (b.fileno(),) and "listener pass B" in str(d2) and "score 3" in str(d2)
    # another input device: b (bound to lo) is not eligible
    ns.add_device("d0")
    d3 = ns.who_receives("tcp", ("127.0.0.2", 5555), ("127.0.0.2", 22002), dev="d0")
    assert d3.fds == () and "not eligible" in str(d3)
    nobody = ns.who_receives("udp", ("127.0.0.1", 1), ("127.0.0.1", 22002))
    assert nobody.fds == () and "nobody" in str(nobody)
    a.close()
    b.close()


def test_query_multicast_and_broadcast_fanout():
    ns = portspace.Namespace()
    ss = []
    for i in range(3):
        s = ns.socket(A4, U)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("0.0.0.0", 22003))
        ss.append(s)
    d = ns.who_receives("udp", ("127.0.0.1", 9), ("127.255.255.255", 22003))
    assert d.kind == "broadcast" and sorted(d.fds) == sorted(s.fileno() for s in ss)
    m = ns.who_receives("udp", ("127.0.0.1", 9), ("239.1.2.3", 22003))
    assert m.kind == "multicast" and m.fds == () and "has not joined" in str(m)
    ss[0].setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton("239.1.2.3") + socket.inet_aton("127.0.0.1"))
    ss[2].setsockopt(socket.IPPROTO_IP, 49, 0)
    m = ns.who_receives("udp", ("127.0.0.1", 9), ("239.1.2.3", 22003))
    assert sorted(m.fds) == sorted([ss[0].fileno(), ss[1].fileno()])
    assert "IP_MULTICAST_ALL is 0" in str(m)
    for s in ss:
        s.close()


@pytest.mark.parametrize("bad,exc", [(("127.0.0.1",), TypeError), (("127.0.0.1", 70000), OverflowError),
                                     (("nohost", 1), ValueError)])
def test_query_bad_input(bad, exc):
    ns = portspace.Namespace()
    with pytest.raises(exc):
        ns.who_receives("udp", bad, ("127.0.0.1", 1))
    with pytest.raises(ValueError):
        ns.who_receives("sctp", ("127.0.0.1", 1), ("127.0.0.1", 1))
    with pytest.raises(ValueError):
        ns.who_receives("udp", ("::1", 1), ("127.0.0.1", 1))


def test_flow_report_distribution_and_moves():
    from tests.model.test_demux import binomial_interval, stay_fraction
    ns = portspace.Namespace(seed=11)
    ls = _listeners(ns, 4, port=22004)
    sources = [("127.0.0.1", p) for p in range(41000, 41200)]
    before = ns.flow_report("tcp", ("127.0.0.1", 22004), sources)
    lo, hi = binomial_interval(200, 0.25)
    assert set(before.counts) == {s.fileno() for s in ls}
    assert all(lo <= n <= hi for n in before.counts.values()), str(before)
    assert ns.flow_report("tcp", ("127.0.0.1", 22004), sources).moved(before) == 0   # affinity
    ls[1].close()
    after = ns.flow_report("tcp", ("127.0.0.1", 22004), sources)
    mlo, mhi = binomial_interval(200, 1 - stay_fraction(4, 1))
    assert mlo <= before.moved(after) <= mhi
    # joining again: the flows of the members that kept their slot may move again
    ls[1] = _listeners(ns, 1, port=22004)[0]
    rejoined = ns.flow_report("tcp", ("127.0.0.1", 22004), sources)
    assert set(rejoined.counts) == {s.fileno() for s in ls}
    for s in ls:
        s.close()
