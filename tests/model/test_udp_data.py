"""UDP data through model sockets, each case also run on the kernel (``any_ns``): sendto/send
errors in kernel order, ECONNREFUSED from the ICMP port unreachable, truncation, MSG_PEEK,
select readiness, the receive buffer's capacity, IPv4-mapped sources, and bad calls."""
from __future__ import annotations

import socket

import pytest

import portspace
from portspace.diff import failures, run_script

A4, A6, U = socket.AF_INET, socket.AF_INET6, socket.SOCK_DGRAM

STEPS = {
    "sendto errors in kernel order": """
        r = udp4 nonblock
        r bind 127.0.0.1 21000
        s = udp4
        s sendto 127.0.0.1 0            -> EINVAL
        s name                          -> 0.0.0.0:eph
        s sendto 10.0.0.1 21000         -> ENETUNREACH
        s sendto 239.1.1.1 21000        -> ENETUNREACH
        s sendto 127.255.255.255 21000  -> EACCES
        s sendto 0.0.0.0 21000 zero     -> 4
        r recvfrom                      -> b'zero' from 127.0.0.1:eph
        r recvfrom                      -> EAGAIN
    """,
    "receive side shut down: a non-blocking recvfrom still says EAGAIN (found by the UDP lockstep)": """
        r = udp4 nonblock
        r bind 127.0.0.1 21010          -> OK
        r shutdown rd                   -> ENOTCONN
        r recvfrom                      -> EAGAIN
        s = udp4
        s sendto 127.0.0.1 21010 late   -> 4
        r recvfrom                      -> b'late' from 127.0.0.1:eph
    """,
    "a v4-mapped source cannot send to a native IPv6 address: EAFNOSUPPORT (found by the UDP lockstep)": """
        a = udp6 nonblock
        a bind ::ffff:127.0.0.1 21011   -> OK
        b = udp6 nonblock
        b bind ::1 21012                -> OK
        a sendto ::1 21012              -> EAFNOSUPPORT
        b sendto ::ffff:127.0.0.1 0     -> ENETUNREACH
        b sendto ::1 0                  -> EINVAL
        a sendto 2001:db8::1 21012      -> ENETUNREACH
        a sendto ::ffff:127.0.0.1 21011 -> 1
        a recvfrom                      -> b'x' from [::ffff:127.0.0.1]:21011
    """,
    "connected to a v4-mapped peer with port 0: an IPv6 send is EINVAL, IPv4 sends (found by the UDP lockstep)": """
        a = udp6 nonblock
        a connect ::ffff:127.0.0.1 0    -> OK
        a send                          -> EINVAL
        b = udp4 nonblock
        b connect 127.0.0.1 0           -> OK
        b send                          -> 1
    """,
    "an address on a connected socket is allowed": """
        r = udp4 nonblock
        r bind 127.0.0.1 21001
        r2 = udp4 nonblock
        r2 bind 127.0.0.2 21001
        c = udp4
        c connect 127.0.0.1 21001
        c sendto 127.0.0.2 21001 other  -> 5
        r2 recvfrom                     -> b'other' from 127.0.0.1:eph
        r drain                         -> 0
    """,
    "ECONNREFUSED on the next call of a connected socket, once": """
        c = udp4 nonblock
        c connect 127.0.0.1 21002
        c sendto 127.0.0.1 21002        -> 1
        c recvfrom                      -> ECONNREFUSED
        c recvfrom                      -> EAGAIN
        c sendto 127.0.0.1 21002        -> 1
        c error                         -> 111
        c error                         -> 0
        c sendto 127.0.0.1 21002        -> 1
        c sendto 127.0.0.1 21002        -> ECONNREFUSED
        u = udp4 nonblock
        u sendto 127.0.0.1 21002        -> 1
        u sendto 127.0.0.1 21002        -> 1
        u error                         -> 0
        k = udp4 nonblock
        k connect 127.0.0.1 21003
        k sendto 127.0.0.1 21004        -> 1
        k sendto 127.0.0.1 21004        -> 1
        k error                         -> 0
    """,
    "truncation, empty datagrams and bufsize 0": """
        r = udp4 nonblock
        r bind 127.0.0.1 21005
        s = udp4
        s sendto 127.0.0.1 21005 hello_world  -> 11
        r recvfrom 5                    -> b'hello' from 127.0.0.1:eph
        r recvfrom                      -> EAGAIN
        s sendto 127.0.0.1 21005 ''     -> 0
        r recvfrom                      -> b'' from 127.0.0.1:eph
        s sendto 127.0.0.1 21005 abc    -> 3
        r recvfrom 0                    -> b'' from 127.0.0.1:eph
        r recvfrom                      -> EAGAIN
    """,
    "IPv6: v4 datagrams to a dual socket come from a mapped address; sizes": """
        r = udp6 nonblock v6only=0
        r bind [::] 21006
        s6 = udp6
        s6 sendto [::1] 21006 six       -> 3
        s6 sendto [::ffff:127.0.0.1] 21006 mapped -> 6
        s4 = udp4
        s4 sendto 127.0.0.1 21006 four  -> 4
        r recvfrom                      -> b'six' from [::1]:eph
        r recvfrom                      -> b'mapped' from [::ffff:127.0.0.1]:eph
        r recvfrom                      -> b'four' from [::ffff:127.0.0.1]:eph
        s6 sendto [::] 21006 any        -> 3
        r recvfrom                      -> b'any' from [::1]:eph
        s6 sendto [2001:db8::1] 21006   -> ENETUNREACH
        v6o = udp6 v6only
        v6o sendto [::ffff:127.0.0.1] 21006 -> ENETUNREACH
    """,
    "autobind on send keeps one port; shut down sending side": """
        r = udp4 nonblock
        r bind 127.0.0.1 21007
        s = udp4
        s sendto 127.0.0.1 21007 a      -> 1
        s sendto 127.0.0.1 21007 b      -> 1
        r recvfrom                      -> b'a' from 127.0.0.1:eph
        c = udp4
        c connect 127.0.0.1 21007
        c shutdown wr
        c sendto 127.0.0.1 21007        -> EPIPE
    """,
}


@pytest.mark.parametrize("name", list(STEPS))
def test_udp_data_steps(any_ns, name):
    bad = failures(run_script(any_ns, STEPS[name]))
    assert not bad, "\n".join(bad)


def test_send_without_destination(any_ns):
    s = any_ns.socket(A4, U)
    with pytest.raises(OSError) as ei:
        s.send(b"x")
    assert ei.value.errno == 89          # EDESTADDRREQ, after the autobind
    assert s.getsockname()[1] != 0
    s.close()


def test_ipv6_multicast_send(backend):
    """Lo-only namespace: no route to ff02::1 (ENETUNREACH) [V probe]; with another device up
    the kernel routes it there and fails on the source (EADDRNOTAVAIL, standard setup): the
    model raises OutOfScope rather than guess about devices it does not model."""
    from tests.conftest import make_ns
    ns = make_ns(backend, standard=False)
    try:
        s = ns.socket(A6, U)
        with pytest.raises(OSError) as ei:
            s.sendto(b"x", ("ff02::1", 21014))
        assert ei.value.errno == 101
        s.close()
    finally:
        if backend == "kernel":
            ns.close()
    m = portspace.Namespace()
    m.add_device("d0")
    s = m.socket(A6, U)
    with pytest.raises(portspace.OutOfScope):
        s.sendto(b"x", ("ff02::1", 21014))
    s.close()


def test_same_source_port_for_every_autobound_send(any_ns):
    r = any_ns.socket(A4, U | socket.SOCK_NONBLOCK)
    r.bind(("127.0.0.1", 21010))
    s = any_ns.socket(A4, U)
    for _ in range(5):
        s.sendto(b"x", ("127.0.0.1", 21010))
    ports = {r.recvfrom(10)[1][1] for _ in range(5)}
    assert ports == {s.getsockname()[1]}
    r.close()
    s.close()


@pytest.mark.parametrize("size", [65507, 65508, 70000])
def test_emsgsize_limits_v4(any_ns, size):
    s = any_ns.socket(A4, U)
    r = any_ns.socket(A4, U | socket.SOCK_NONBLOCK)
    r.bind(("127.0.0.1", 21011))
    try:
        if size <= 65507:
            assert s.sendto(b"y" * size, ("127.0.0.1", 21011)) == size
            assert len(r.recv(70000)) == size
        else:
            with pytest.raises(OSError) as ei:
                s.sendto(b"y" * size, ("127.0.0.1", 21011))
            assert ei.value.errno == 90
    finally:
        s.close()
        r.close()


@pytest.mark.parametrize("size", [65527, 65528])
def test_emsgsize_limits_v6(any_ns, size):
    s = any_ns.socket(A6, U)
    try:
        if size <= 65527:
            assert s.sendto(b"y" * size, ("::1", 21012)) == size
        else:
            with pytest.raises(OSError) as ei:
                s.sendto(b"y" * size, ("::1", 21012))
            assert ei.value.errno == 90
    finally:
        s.close()


def test_peek_then_read(any_ns):
    r = any_ns.socket(A4, U | socket.SOCK_NONBLOCK)
    r.bind(("127.0.0.1", 21013))
    s = any_ns.socket(A4, U)
    s.sendto(b"hello world", ("127.0.0.1", 21013))
    a = r.recvfrom(5, socket.MSG_PEEK)
    b = r.recvfrom(100)
    assert a[0] == b"hello" and b[0] == b"hello world" and a[1] == b[1]
    with pytest.raises(BlockingIOError):
        r.recvfrom(100, socket.MSG_DONTWAIT)
    r.close()
    s.close()


# (payload size, family): the kernel fills a default receive buffer with a step function of
# the size; these sizes sit on both sides of measured boundaries (model/_datagram.py)
@pytest.mark.parametrize("size,fam", [(1, A4), (197, A4), (198, A4), (1669, A4), (1670, A4), (30000, A4),
                                      (184, A6), (185, A6), (1000, A6)])
def test_receive_buffer_capacity(any_ns, size, fam):
    host = "127.0.0.1" if fam == A4 else "::1"
    r = any_ns.socket(fam, U | socket.SOCK_NONBLOCK)
    r.bind((host, 21020))
    s = any_ns.socket(fam, U)
    for _ in range(300):
        s.sendto(b"z" * size, (host, 21020))
    n = 0
    while True:
        try:
            r.recv(70000)
        except BlockingIOError:
            break
        n += 1
    r.close()
    s.close()
    # the model's answer comes from its own charge table; on the kernel this is the measurement
    from portspace.model._datagram import RCVBUF_DEFAULT, charge
    assert n == RCVBUF_DEFAULT // charge(size, fam == A6)


def test_select_readiness(backend):
    from tests.conftest import make_ns
    ns = make_ns(backend)
    try:
        r = ns.socket(A4, U | socket.SOCK_NONBLOCK)
        r.bind(("127.0.0.1", 21030))
        c = ns.socket(A4, U | socket.SOCK_NONBLOCK)
        c.connect(("127.0.0.1", 21031))
        if backend == "model":
            k = ns._kernel
            poll = lambda s: k.poll(s._sk)  # noqa: E731
        else:
            poll = lambda s: tuple(bool(x) for x in ns.run(_poll_one, s))  # noqa: E731
        assert poll(r) == (False, True, False)
        c.send(b"x")                     # nothing on 21031: an error is pending
        assert poll(c) == (True, True, False)
        with pytest.raises(ConnectionRefusedError):
            c.recv(10)
        assert poll(c) == (False, True, False)
        t = ns.socket(A4, U)
        t.sendto(b"q", ("127.0.0.1", 21030))
        assert poll(r) == (True, True, False)
        for s in (r, c, t):
            s.close()
    finally:
        if backend == "kernel":
            ns.close()


def _poll_one(sock):
    import select
    r, w, x = select.select([sock], [sock], [sock], 0)
    return (bool(r), bool(w), bool(x))


def test_out_of_scope_flags_and_options():
    ns = portspace.Namespace()
    s = ns.socket(A4, U)
    s.bind(("127.0.0.1", 21040))
    with pytest.raises(portspace.OutOfScope, match="MSG_TRUNC"):
        s.recv(10, socket.MSG_TRUNC)
    with pytest.raises(portspace.OutOfScope, match="MSG_OOB"):
        s.sendto(b"x", socket.MSG_OOB, ("127.0.0.1", 21040))
    with pytest.raises(portspace.OutOfScope, match="SO_RCVBUF|not modelled"):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s6 = ns.socket(A6, U)
    with pytest.raises(portspace.OutOfScope, match="IPV6_JOIN_GROUP"):
        s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, bytes(20))
    s.close()
    s6.close()


def test_bad_calls_match_the_stdlib(any_ns):
    s = any_ns.socket(A4, U)
    cases = [
        (lambda: s.sendto("text", ("127.0.0.1", 1))),
        (lambda: s.sendto(b"x", ("127.0.0.1", 70000))),
        (lambda: s.sendto(b"x", "127.0.0.1")),
        (lambda: s.recvfrom(-1)),
        (lambda: s.sendto(b"x")),
    ]
    got = []
    for fn in cases:
        try:
            fn()
            got.append("OK")
        except Exception as e:  # noqa: BLE001 - we compare the exception itself
            got.append(f"{type(e).__name__}: {e}")
    s.close()
    # the same calls on a real stdlib socket (no namespace needed: each fails before the kernel)
    real = socket.socket(A4, U)
    want = []
    for fn in [lambda: real.sendto("text", ("127.0.0.1", 1)), lambda: real.sendto(b"x", ("127.0.0.1", 70000)),
               lambda: real.sendto(b"x", "127.0.0.1"), lambda: real.recvfrom(-1), lambda: real.sendto(b"x")]:
        try:
            fn()
            want.append("OK")
        except Exception as e:  # noqa: BLE001
            want.append(f"{type(e).__name__}: {e}")
    real.close()
    assert got == want
