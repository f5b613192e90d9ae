"""Tests of the kernel side of the differential harness (portspace.live.KernelNamespace).

Everything runs inside private network namespaces (loopback only); nothing here touches the
host's network or resolves a host name."""
from __future__ import annotations

import errno
import gc
import os
import signal
import socket
import time

import pytest

from portspace.live import KernelNamespace, KernelSocket, Unavailable, probe

_reason = probe()
if _reason is not None:
    pytest.skip(f"no private network namespace here: {_reason}", allow_module_level=True)

pytestmark = pytest.mark.kernel

SOL, REUSEPORT = socket.SOL_SOCKET, socket.SO_REUSEPORT


@pytest.fixture
def ns():
    with KernelNamespace() as ns:
        yield ns


def _reaped(pid: int) -> bool:
    """True when pid is no child of ours any more (reaped: no zombie left)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


# ---- helpers run in the child via ns.run (must be top-level, picklable) ----


class KwOnlyError(Exception):
    """Pickles fine but cannot be unpickled: __init__ does not accept its own args."""

    def __init__(self, msg, *, extra):
        super().__init__(msg)
        self.extra = extra


def raise_kw_only():
    raise KwOnlyError("boom", extra=1)


def raise_permission_error():
    raise PermissionError(errno.EACCES, "custom text")


def my_netns():
    return os.readlink("/proc/self/ns/net")


def euid_egid():
    return os.geteuid(), os.getegid()


def local_port(sock):
    return sock.getsockname()[1]


def make_socket():
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


# ---- the namespace itself ----


def test_private_namespace_with_loopback(ns):
    assert ns.run(my_netns) != os.readlink("/proc/self/ns/net")
    with ns.socket() as s:
        s.bind(("127.0.0.1", 0))
    with ns.socket(socket.AF_INET6) as s6:
        s6.bind(("::1", 0))
        assert s6.getsockname()[0] == "::1"


def test_socket_proxy_attributes(ns):
    s = ns.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    assert isinstance(s, KernelSocket)
    assert s.family is socket.AF_INET6 and s.type is socket.SOCK_DGRAM and s.proto == 0
    assert s.fileno() >= 3
    assert repr(s).startswith("<KernelSocket fd=")
    assert s.getblocking() is True and s.gettimeout() is None
    s.settimeout(1.5)
    assert s.gettimeout() == 1.5 and s.timeout == 1.5  # `timeout` via generic __getattr__
    s.setblocking(False)
    assert s.getblocking() is False
    assert not s.get_inheritable()  # any stdlib method is forwarded
    s.close()
    assert s.fileno() == -1
    assert "[closed]" in repr(s)


# ---- bind outcomes ----


def test_second_tcp_bind_is_eaddrinuse(ns):
    a, b = ns.socket(), ns.socket()
    a.bind(("0.0.0.0", 8080))
    with pytest.raises(OSError) as info:
        b.bind(("0.0.0.0", 8080))
    assert type(info.value) is OSError
    assert info.value.errno == errno.EADDRINUSE
    assert info.value.strerror == "Address already in use"
    assert str(info.value) == "[Errno 98] Address already in use"


def test_tcp_and_udp_share_a_port(ns):
    ns.socket(socket.AF_INET, socket.SOCK_STREAM).bind(("0.0.0.0", 8080))
    ns.socket(socket.AF_INET, socket.SOCK_DGRAM).bind(("0.0.0.0", 8080))


def test_sysctl_read_and_einval(ns):
    name = "net.ipv4.ip_local_port_range"
    assert ns.sysctl(name) == "32768\t60999"
    with pytest.raises(OSError) as info:
        ns.sysctl(name, "1000 2000")  # below ip_unprivileged_port_start (1024)
    assert info.value.errno == errno.EINVAL
    assert ns.sysctl(name) == "32768\t60999"
    ns.sysctl(name, (40000, 40010))
    assert ns.sysctl(name) == "40000\t40010"
    ns.sysctl("net/ipv4/ip_unprivileged_port_start", 80)
    assert ns.sysctl("net.ipv4.ip_unprivileged_port_start") == "80"


def test_sysctl_unknown_and_global_names(ns):
    with pytest.raises(FileNotFoundError) as info:
        ns.sysctl("net.ipv4.no_such_knob")
    assert info.value.errno == errno.ENOENT
    with pytest.raises(ValueError, match="only net"):
        ns.sysctl("kernel.hostname", "x")  # global: would change the host
    with pytest.raises(ValueError):
        ns.sysctl("net.ipv4..ip_local_port_range")
    with pytest.raises(TypeError):
        ns.sysctl("net.ipv4.ip_local_port_range", 1.5)


def test_sysctl_is_per_namespace(ns):
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40010")
    with KernelNamespace() as other:
        assert other.sysctl("net.ipv4.ip_local_port_range") == "32768\t60999"
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        host = f.read()
    assert host != "40000\t40010\n"


def test_unprivileged_user_cannot_bind_below_1024(ns):
    with ns.user(1000):
        s = ns.socket()
        assert ns.run(euid_egid) == (1000, 1000)
        with pytest.raises(PermissionError) as info:
            s.bind(("127.0.0.1", 80))
        assert info.value.errno == errno.EACCES
        assert str(info.value) == "[Errno 13] Permission denied"
        s.bind(("127.0.0.1", 1024))
    assert ns.run(euid_egid) == (0, 0)
    ns.socket().bind(("127.0.0.1", 80))  # root again


def test_user_blocks_nest(ns):
    with ns.user(1000):
        with ns.user(2000):
            assert ns.run(euid_egid) == (2000, 2000)
        assert ns.run(euid_egid) == (1000, 1000)
    with pytest.raises(ValueError):
        with ns.user(-1):
            pass


def _reuseport_socket(ns, uid):
    with ns.user(uid):
        s = ns.socket()
    s.setsockopt(SOL, REUSEPORT, 1)
    return s


def test_reuseport_needs_the_same_owner(ns):
    a = _reuseport_socket(ns, 0)
    a.bind(("0.0.0.0", 8080))
    b = _reuseport_socket(ns, 1000)  # different sk_uid: conflicts even with SO_REUSEPORT
    with pytest.raises(OSError) as info:
        b.bind(("0.0.0.0", 8080))
    assert info.value.errno == errno.EADDRINUSE

    c, d = _reuseport_socket(ns, 1000), _reuseport_socket(ns, 1000)
    c.bind(("0.0.0.0", 8081))
    d.bind(("0.0.0.0", 8081))  # same owner: shares the port
    assert c.getsockopt(SOL, REUSEPORT) == 1


def test_add_address(ns):
    s = ns.socket()
    with pytest.raises(OSError) as info:
        s.bind(("192.168.1.100", 0))
    assert info.value.errno == errno.EADDRNOTAVAIL
    ns.add_address("192.168.1.100/32")
    s.bind(("192.168.1.100", 0))
    ns.add_address("fd00::1/128")
    with ns.socket(socket.AF_INET6) as s6:
        s6.bind(("fd00::1", 0))  # nodad: usable at once
    with pytest.raises(RuntimeError, match="already assigned"):
        ns.add_address("192.168.1.100/32")


def test_add_device_and_bindtodevice(ns):
    s = ns.socket()
    with pytest.raises(OSError) as info:
        s.setsockopt(SOL, socket.SO_BINDTODEVICE, b"d0")
    assert info.value.errno == errno.ENODEV
    ns.add_device("d0")
    s.setsockopt(SOL, socket.SO_BINDTODEVICE, b"d0")
    assert s.getsockopt(SOL, socket.SO_BINDTODEVICE, 16).rstrip(b"\0") == b"d0"
    s.bind(("0.0.0.0", 8080))


# ---- exceptions and closed sockets behave like the stdlib ----


def test_bad_arguments_round_trip(ns):
    s = ns.socket()
    with pytest.raises(OverflowError) as info:
        s.bind(("127.0.0.1", 70000))
    assert str(info.value) == "bind(): port must be 0-65535."
    with pytest.raises(TypeError) as tinfo:
        s.bind("127.0.0.1")
    assert str(tinfo.value) == "bind(): AF_INET address must be tuple, not str"
    # getaddrinfo without DNS: AI_NUMERICHOST refuses a non-numeric host locally.
    with pytest.raises(socket.gaierror) as ginfo:
        ns.run(socket.getaddrinfo, "not-an-address", 80, 0, 0, 0, socket.AI_NUMERICHOST)
    assert ginfo.value.errno == socket.EAI_NONAME
    with pytest.raises(PermissionError, match=r"^\[Errno 13\] custom text$"):
        ns.run(raise_permission_error)


def test_unpicklable_exception_falls_back_to_builtin_base(ns):
    with pytest.raises(Exception) as info:
        ns.run(raise_kw_only)
    assert type(info.value) is Exception and str(info.value) == "boom"
    assert "KwOnlyError" in info.value.__notes__[0]
    assert ns.socket_count() == 0  # the child survived


def test_closed_socket_behaves_like_stdlib(ns):
    s = ns.socket()
    s.close()
    s.close()  # twice is fine
    assert s.fileno() == -1
    with pytest.raises(OSError) as info:
        s.bind(("127.0.0.1", 0))
    assert info.value.errno == errno.EBADF
    assert str(info.value) == "[Errno 9] Bad file descriptor"


def test_sockets_of_a_closed_namespace_are_closed():
    ns = KernelNamespace()
    s = ns.socket()
    ns.close()
    ns.close()
    assert s.fileno() == -1
    s.close()
    with pytest.raises(OSError) as info:
        s.bind(("127.0.0.1", 0))
    assert info.value.errno == errno.EBADF
    with pytest.raises(ValueError):
        ns.socket()


def test_nonblocking_accept_with_nothing_queued(ns):
    lst = ns.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    lst.setblocking(False)
    with pytest.raises(BlockingIOError) as info:
        lst.accept()
    assert info.value.errno == errno.EAGAIN


def test_connect_accept_and_data(ns):
    lst = ns.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(5)
    cli = ns.socket()
    cli.connect(lst.getsockname())
    conn, addr = lst.accept()
    assert isinstance(conn, KernelSocket) and conn.family is socket.AF_INET
    assert addr == cli.getsockname() == conn.getpeername()
    cli.sendall(memoryview(b"hello"))
    buf = bytearray(8)
    assert conn.recv_into(buf) == 5 and buf[:5] == b"hello"
    conn.send(b"x")
    assert cli.recv(10) == b"x"
    assert ns.run(local_port, conn) == lst.getsockname()[1]  # proxies arrive as real sockets


def test_udp_sendto_recvfrom(ns):
    a = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.sendto(b"ping", a.getsockname())
    data, addr = a.recvfrom(16)
    assert data == b"ping" and addr == ("127.0.0.1", b.getsockname()[1])  # b autobound to 0.0.0.0


def test_socket_count_and_run_results(ns):
    assert ns.socket_count() == 0
    socks = [ns.socket() for _ in range(3)]
    made = ns.run(make_socket)
    assert isinstance(made, KernelSocket) and made.type is socket.SOCK_DGRAM
    assert ns.socket_count() == 4
    lst = socks[0]
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    socks[1].connect(lst.getsockname())
    conn, _ = lst.accept()
    assert ns.socket_count() == 5
    for s in [*socks, made, conn]:
        s.close()
    assert ns.socket_count() == 0


def test_proxy_of_another_namespace_is_refused(ns):
    with KernelNamespace() as other:
        s = other.socket()
        with pytest.raises(ValueError, match="another KernelNamespace"):
            ns.run(local_port, s)


# ---- child robustness and lifetime ----


def test_request_timeout_kills_the_child(ns):
    lst = ns.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    ns.request_timeout = 0.2
    pid = ns.pid
    with pytest.raises(TimeoutError, match="kernel child did not answer"):
        lst.accept()  # blocking, nothing queued
    assert ns.closed and _reaped(pid)


def test_child_ignores_sigint(ns):
    os.kill(ns.pid, signal.SIGINT)
    time.sleep(0.01)
    assert ns.socket_count() == 0


def test_child_exits_when_the_pipe_closes():
    ns = KernelNamespace()
    later = KernelNamespace()  # forked while ns's pipe was open: must not hold a copy of it
    try:
        ns._conn.close()
        pid = ns.pid
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.001)
        else:
            pytest.fail("the child did not exit on EOF")
    finally:
        later.close()
        ns.close()


def test_forgotten_namespace_is_torn_down():
    ns = KernelNamespace()
    pid = ns.pid
    del ns
    gc.collect()
    assert _reaped(pid)


def test_many_namespaces_leave_no_zombie_or_fd():
    fds_before = len(os.listdir("/proc/self/fd"))
    pids = []
    for _ in range(200):
        with KernelNamespace() as ns:
            ns.socket().bind(("127.0.0.1", 80))
            pids.append(ns.pid)
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert all(_reaped(pid) for pid in pids)


def test_unavailable_is_an_exception_with_a_reason():
    assert issubclass(Unavailable, Exception)
    assert str(Unavailable("no unshare")) == "no unshare"
    assert probe() is None
