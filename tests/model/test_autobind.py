"""Automatic ports of bind(port 0) and listen(), compared by properties on the model and the
kernel (the kernel's random offset is secret; the model's is injected).  Facts from
../shared/linux-port-experiments/results/scenarios_eph.txt and scenarios_oddrange.txt
(spec §5.2, §5.5, §5.6)."""
from __future__ import annotations

import errno
import socket

import pytest

TCP, UDP = socket.SOCK_STREAM, socket.SOCK_DGRAM


def bind0_all(ns, typ, n, host="127.0.0.1", reuseaddr=False):
    socks, got = [], []
    for _ in range(n):
        s = ns.socket(socket.AF_INET, typ)
        if reuseaddr:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        socks.append(s)
        try:
            s.bind((host, 0))
            got.append(s.getsockname()[1])
        except OSError as e:
            got.append(errno.errorcode[e.errno])
    return socks, got


def close_all(socks):
    for s in socks:
        s.close()


def test_tcp_bind0_odd_ports_first_then_even_then_eaddrinuse(any_ns):
    """[V eph:X] 8-port range: four odd ports, then four even ones, then EADDRINUSE."""
    any_ns.sysctl("net.ipv4.ip_local_port_range", "40000 40007")
    socks, got = bind0_all(any_ns, TCP, 10)
    assert sorted(got[:4]) == [40001, 40003, 40005, 40007]
    assert sorted(got[4:8]) == [40000, 40002, 40004, 40006]
    assert got[8:] == ["EADDRINUSE", "EADDRINUSE"]
    listener = any_ns.socket()
    with pytest.raises(OSError) as ei:
        listener.listen()  # listen() autobind on an exhausted range
    assert ei.value.errno == errno.EADDRINUSE
    close_all(socks + [listener])


def test_tcp_bind0_odd_sized_range_skips_a_port(any_ns):
    """[V oddrange] 40000-40002: 40002 is never chosen by bind(0)."""
    any_ns.sysctl("net.ipv4.ip_local_port_range", "40000 40002")
    socks, got = bind0_all(any_ns, TCP, 4)
    assert got == [40001, 40000, "EADDRINUSE", "EADDRINUSE"]
    close_all(socks)


def test_udp_bind0_uses_every_port_then_eaddrinuse(any_ns):
    """[V eph:X, oddrange] UDP has no parity rule and no skipped port."""
    any_ns.sysctl("net.ipv4.ip_local_port_range", "40000 40002")
    socks, got = bind0_all(any_ns, UDP, 4)
    assert sorted(got[:3]) == [40000, 40001, 40002] and got[3] == "EADDRINUSE"
    close_all(socks)


@pytest.mark.parametrize("reuse,want_third", [(0, "EADDRINUSE"), (1, "shared")])
def test_tcp_bind0_autobind_reuse(any_ns, reuse, want_third):
    """[V eph:A] SO_REUSEADDR bind(0) on a 2-port range: the third shares only with
    ip_autobind_reuse=1."""
    any_ns.sysctl("net.ipv4.ip_local_port_range", "40000 40001")
    any_ns.sysctl("net.ipv4.ip_autobind_reuse", reuse)
    socks, got = bind0_all(any_ns, TCP, 3, reuseaddr=True)
    assert got[:2] == [40001, 40000]
    assert (got[2] if got[2] == "EADDRINUSE" else "shared") == want_third
    close_all(socks)


def test_udp_bind0_reuseaddr_shares(any_ns):
    """[V eph:A] UDP autobind may share with SO_REUSEADDR sockets."""
    any_ns.sysctl("net.ipv4.ip_local_port_range", "40000 40001")
    socks, got = bind0_all(any_ns, UDP, 3, reuseaddr=True)
    assert all(isinstance(p, int) and 40000 <= p <= 40001 for p in got)
    close_all(socks)


def test_reserved_ports_skipped_by_autobind_not_by_bind(any_ns):
    """[V eph:R]"""
    any_ns.sysctl("net.ipv4.ip_local_port_range", "40000 40007")
    any_ns.sysctl("net.ipv4.ip_local_reserved_ports", "40000-40006")
    socks, got = bind0_all(any_ns, TCP, 2)
    assert got == [40007, "EADDRINUSE"]
    usocks, ugot = bind0_all(any_ns, UDP, 1)
    assert ugot == [40007]
    s = any_ns.socket()
    s.bind(("127.0.0.1", 40003))
    close_all(socks + usocks + [s])


def test_reuseaddr_bind0_prefers_lower_half(any_ns):
    """[V eph:P] with SO_REUSEADDR, bind(0) takes odd ports of the lower half first."""
    socks, got = bind0_all(any_ns, TCP, 40, reuseaddr=True)
    assert all(p % 2 == 1 and 32768 <= p < 46884 for p in got)
    close_all(socks)


def test_bind0_default_range_odd(any_ns):
    socks, got = bind0_all(any_ns, TCP, 60)
    assert all(p % 2 == 1 and 32768 <= p <= 60999 for p in got) and len(set(got)) == 60
    usocks, ugot = bind0_all(any_ns, UDP, 60)
    assert all(32768 <= p <= 60999 for p in ugot) and len(set(ugot)) == 60
    close_all(socks + usocks)


def test_per_socket_range(any_ns):
    """[V eph:L] IP_LOCAL_PORT_RANGE halves outside the netns range are ignored."""
    import struct
    s = any_ns.socket()
    s.setsockopt(socket.IPPROTO_IP, 51, struct.pack("I", 100 | (32800 << 16)))
    s.bind(("127.0.0.1", 0))
    assert 32768 <= s.getsockname()[1] <= 32800
    t = any_ns.socket()
    with pytest.raises(OSError) as ei:
        t.setsockopt(socket.IPPROTO_IP, 51, struct.pack("I", 200 | (100 << 16)))
    assert ei.value.errno == errno.EINVAL
    close_all([s, t])


def test_no_port_bind_records_address_only(any_ns):
    """[V eph:N] IP_BIND_ADDRESS_NO_PORT: bind(addr, 0) keeps port 0."""
    s = any_ns.socket()
    s.setsockopt(socket.IPPROTO_IP, 24, 1)
    s.bind(("127.0.0.1", 0))
    assert s.getsockname() == ("127.0.0.1", 0)
    s.close()
