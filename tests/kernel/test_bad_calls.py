"""Bad and edge calls, model vs stdlib-on-the-kernel.

Each case below is one small function of a namespace.  It runs on a fresh model
``portspace.Namespace`` and on a fresh ``KernelNamespace`` (real ``socket.socket`` objects in a
private netns), both with the standard setup of conftest.py, and the two outcomes must be
identical: the same exception class (exactly), errno and ``str()`` -- or both return the same
value (compared by type and repr).

Socket methods are called through :func:`call`, which on the kernel side goes straight to the
child's real ``socket.socket`` method: the proxy's own Python signatures would otherwise answer
wrong-argument-count calls with their own TypeError before the stdlib sees them.

No host name other than ``'localhost'`` (on AF_INET, where /etc/hosts has it) ever appears:
everything else is numeric, so nothing here depends on DNS.
"""
from __future__ import annotations

import decimal
import errno
from dataclasses import dataclass
from socket import (AF_INET, AF_INET6, IPPROTO_IP, IPPROTO_IPV6, IPPROTO_TCP, IPPROTO_UDP,
                    IPV6_V6ONLY, SO_BINDTODEVICE, SO_REUSEADDR, SO_REUSEPORT, SOCK_CLOEXEC,
                    SOCK_DGRAM, SOCK_NONBLOCK, SOCK_STREAM, SOL_SOCKET)
from typing import Any, Callable

IP_LOCAL_PORT_RANGE = 51  # linux/in.h (not in Python 3.11's socket module)

import pytest

from portspace.live import KernelNamespace, KernelSocket

from ..conftest import make_ns

pytestmark = pytest.mark.kernel

LOOSE = "loose"  # compare class, errno, strerror (and filename when both have one), not str()


# ---- helpers ---------------------------------------------------------------------------------


def call(sock: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    """``sock.<name>(*args, **kwargs)``; for a kernel socket, on the child's real socket.socket."""
    if isinstance(sock, KernelSocket):
        return sock._call(name, *args, **kwargs)
    return getattr(sock, name)(*args, **kwargs)


def in_place(ns: Any, fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` where the sockets live: in the kernel child for a KernelNamespace (for
    arguments the harness cannot ship as they are: it sends a memoryview as bytes)."""
    if isinstance(ns, KernelNamespace):
        return ns.run(fn, *args)
    return fn(*args)


def tcp4(ns):
    return ns.socket(AF_INET, SOCK_STREAM)


def udp4(ns):
    return ns.socket(AF_INET, SOCK_DGRAM)


def tcp6(ns):
    return ns.socket(AF_INET6, SOCK_STREAM)


def udp6(ns):
    return ns.socket(AF_INET6, SOCK_DGRAM)


def closed(sock):
    sock.close()
    return sock


def bind4(addr: Any, mk: Callable = tcp4) -> Callable:
    """bind ``addr``; on success return the bound address (the port only when it was given)."""
    def run(ns):
        s = mk(ns)
        call(s, "bind", addr)
        name = call(s, "getsockname")
        return name if isinstance(addr, tuple) and len(addr) > 1 and addr[1] else name[0]
    return run


def bind6(addr: Any, mk: Callable = tcp6) -> Callable:
    def run(ns):
        s = mk(ns)
        call(s, "bind", addr)
        host, port, flow, scope = call(s, "getsockname")
        given = isinstance(addr, tuple) and len(addr) > 1 and addr[1]
        return (host, port if given else None, flow, scope)
    return run


def method(mk: Callable, name: str, *args: Any, close_first: bool = False, **kwargs: Any) -> Callable:
    def run(ns):
        s = mk(ns)
        if close_first:
            s.close()
        return call(s, name, *args, **kwargs)
    return run


def sockopt_then_get(mk: Callable, level: int, opt: int, *value: Any) -> Callable:
    """setsockopt(level, opt, *value), then return getsockopt(level, opt)."""
    def run(ns):
        s = mk(ns)
        call(s, "setsockopt", level, opt, *value)
        return call(s, "getsockopt", level, opt)
    return run


def sockopt_get_buf(mk: Callable, level: int, opt: int, value: int, buflen: int) -> Callable:
    """setsockopt(level, opt, value), then getsockopt(level, opt, buflen)."""
    def run(ns):
        s = mk(ns)
        call(s, "setsockopt", level, opt, value)
        return call(s, "getsockopt", level, opt, buflen)
    return run


# ---- run in the kernel child itself (top-level, so that they pickle) -----------------------


def _bind_memoryview_host(sock):
    sock.bind((memoryview(b"127.0.0.1"), 0))


def _setsockopt_memoryview(sock, step):
    sock.setsockopt(SOL_SOCKET, SO_REUSEPORT, memoryview(b"\x01\x00\x00\x00\x00\x00\x00\x00")[::step])
    return sock.getsockopt(SOL_SOCKET, SO_REUSEPORT)


class HostStr(str):
    """A str subclass: CPython sends it through the idna codec even when it is ASCII."""


def _bind_host_str_subclass(sock, text):
    sock.bind((HostStr(text), 0))
    return sock.getsockname()[0]


def child(fn: Callable, *args: Any, mk: Callable = tcp4) -> Callable:
    return lambda ns: in_place(ns, fn, mk(ns), *args)


# ---- multi-step cases ------------------------------------------------------------------------


def bind_twice(mk):
    def run(ns):
        s = mk(ns)
        host = "127.0.0.1" if s.family == AF_INET else "::1"
        call(s, "bind", (host, 0))
        call(s, "bind", (host, 0))
    return run


def user_binds_80(ns):
    with ns.user(1000):
        s = tcp4(ns)
        call(s, "bind", ("127.0.0.1", 80))


def user_binds_80_v6(ns):
    with ns.user(1000):
        s = udp6(ns)
        call(s, "bind", ("::", 80))


def root_binds_80(ns):
    s = tcp4(ns)
    call(s, "bind", ("127.0.0.1", 80))
    return call(s, "getsockname")


def mapped_on_v6only(ns):
    s = tcp6(ns)
    call(s, "setsockopt", IPPROTO_IPV6, IPV6_V6ONLY, 1)
    call(s, "bind", ("::ffff:127.0.0.1", 0))


def v6only_after_bind(ns):
    s = udp6(ns)
    call(s, "bind", ("::1", 0))
    call(s, "setsockopt", IPPROTO_IPV6, IPV6_V6ONLY, 1)


def bindtodevice_get(buflen: int | None, bound: bool) -> Callable:
    def run(ns):
        s = udp4(ns)
        if bound:
            call(s, "setsockopt", SOL_SOCKET, SO_BINDTODEVICE, b"d0")
        args = () if buflen is None else (buflen,)
        return call(s, "getsockopt", SOL_SOCKET, SO_BINDTODEVICE, *args)
    return run


def bindtodevice_set_get(value: Any) -> Callable:
    def run(ns):
        s = udp4(ns)
        call(s, "setsockopt", SOL_SOCKET, SO_BINDTODEVICE, value)
        return call(s, "getsockopt", SOL_SOCKET, SO_BINDTODEVICE, 16)
    return run


def bindtodevice_unbind(ns):
    s = tcp4(ns)
    call(s, "setsockopt", SOL_SOCKET, SO_BINDTODEVICE, b"d0")
    call(s, "setsockopt", SOL_SOCKET, SO_BINDTODEVICE, b"")
    return call(s, "getsockopt", SOL_SOCKET, SO_BINDTODEVICE, 16)


def timeout_after(value: Any) -> Callable:
    """settimeout(value), then (gettimeout(), getblocking())."""
    def run(ns):
        s = tcp4(ns)
        call(s, "settimeout", value)
        return call(s, "gettimeout"), call(s, "getblocking")
    return run


def blocking_after(value: Any) -> Callable:
    def run(ns):
        s = tcp4(ns)
        call(s, "setblocking", value)
        return call(s, "gettimeout"), call(s, "getblocking")
    return run


def settimeout_on_closed_then_get(ns):
    """The stdlib stores the timeout before the ioctl that fails with EBADF."""
    s = closed(tcp4(ns))
    try:
        call(s, "settimeout", 5)
    except OSError as e:
        return ("EBADF" if e.errno == errno.EBADF else e.errno, call(s, "gettimeout"))
    return ("no error", call(s, "gettimeout"))


def setblocking_on_closed_then_get(ns):
    s = closed(tcp4(ns))
    try:
        call(s, "setblocking", False)
    except OSError as e:
        return ("EBADF" if e.errno == errno.EBADF else e.errno, call(s, "gettimeout"))
    return ("no error", call(s, "gettimeout"))


def close_twice(ns):
    s = tcp4(ns)
    call(s, "close")
    return call(s, "close"), call(s, "fileno")


def closed_state(ns):
    s = closed(udp6(ns))
    return call(s, "fileno"), call(s, "gettimeout"), call(s, "getblocking"), s.family, s.type, s.proto


def attributes(family: int, type_: int, proto: int = 0) -> Callable:
    def run(ns):
        s = ns.socket(family, type_, proto)
        return s.family, s.type, s.proto, call(s, "gettimeout"), call(s, "getblocking")
    return run


def new_socket(*args: Any) -> Callable:
    def run(ns):
        s = ns.socket(*args)
        return s.family, s.type, s.proto
    return run


def sysctl(name: str, value: Any = None) -> Callable:
    return lambda ns: ns.sysctl(name, value)


def listen_backlog(*args: Any, mk: Callable = tcp4) -> Callable:
    def run(ns):
        s = mk(ns)
        call(s, "bind", ("127.0.0.1", 0))
        call(s, "listen", *args)
        return call(s, "getsockopt", SOL_SOCKET, 30)  # SO_ACCEPTCONN
    return run


# ---- data methods and select (issue 6) -------------------------------------------------------


def connected_pair(ns):
    """A listener on 127.0.0.1:5400, a connected client and the accepted server side."""
    lsk = tcp4(ns)
    call(lsk, "bind", ("127.0.0.1", 5400))
    call(lsk, "listen")
    c = tcp4(ns)
    call(c, "connect", ("127.0.0.1", 5400))
    a, _ = call(lsk, "accept")
    return c, a


def on_connected(name: str, *args: Any, **kwargs: Any) -> Callable:
    """``client.<name>(*args)`` on a connected client (the server side non-blocking)."""
    def run(ns):
        c, a = connected_pair(ns)
        call(a, "setblocking", False)
        result = call(c, name, *args, **kwargs)
        if name.startswith("send"):
            return result, call(a, "recv", 100)
        return result
    return run


def _send_memoryview(sock, step):
    return sock.sendto(memoryview(b"abcdefgh")[::step], ("127.0.0.1", 9))


def _send_array(sock):
    import array
    return sock.sendto(array.array("i", [1, 2]), ("127.0.0.1", 9))


def _recv_into_pair(pair_side, args, kwargs):
    """Runs where the sockets live: recv_into a fresh bytearray(8), return (result, buffer)."""
    buf = bytearray(8)
    n = pair_side.recv_into(buf, *args, **kwargs)
    return n, bytes(buf)


def _recvfrom_into_pair(pair_side, nbytes):
    buf = bytearray(8)
    n = pair_side.recvfrom_into(buf, nbytes)
    return n, bytes(buf)


def recv_into_connected(*args: Any, fn: Callable = _recv_into_pair, **kwargs: Any) -> Callable:
    """The client sends b"abcdefghij"; the server side recv_into()s (non-blocking)."""
    def run(ns):
        c, a = connected_pair(ns)
        call(a, "setblocking", False)
        call(c, "send", b"abcdefghij")
        if fn is _recv_into_pair:
            return in_place(ns, fn, a, args, kwargs)
        return in_place(ns, fn, a, *args)
    return run


class BadFileno:
    """An object whose fileno() answers a str (top level, so that it pickles to the child)."""

    def fileno(self):
        return "3"


def select_call(*args: Any, socks: int = 0) -> Callable:
    """``ns.select(*args)``; ``socks`` fresh sockets are appended to the read list first."""
    def run(ns):
        extra = [tcp4(ns) for _ in range(socks)]
        r = list(args[0]) + extra if args and isinstance(args[0], list) else args[0] if args else None
        out = ns.select(r, *args[1:]) if args else ns.select()
        return tuple(len(x) for x in out)
    return run


def select_closed(ns):
    s = closed(tcp4(ns))
    return ns.select([s], [], [], 0)


# ---- the table -------------------------------------------------------------------------------

P = pytest.param
LL = "fe80::1"  # link-local, not configured anywhere
CASES = [
    # -- bind: address shapes and types
    P(bind4("127.0.0.1"), id="bind4-str"),
    P(bind4(["127.0.0.1", 0]), id="bind4-list"),
    P(bind4(None), id="bind4-None"),
    P(bind4(("127.0.0.1",)), id="bind4-1tuple"),
    P(bind4(("127.0.0.1", 0, 0)), id="bind4-3tuple"),
    P(bind4(()), id="bind4-empty-tuple"),
    P(bind6(("::1", 0, 0, 0, 0)), id="bind6-5tuple"),
    P(bind6(("::1",)), id="bind6-1tuple"),
    P(bind6(["::1", 0]), id="bind6-list"),
    P(bind6("::1"), id="bind6-str"),
    P(method(tcp4, "bind"), id="bind-no-args"),
    P(method(tcp4, "bind", ("127.0.0.1", 0), 1), id="bind-two-args"),
    P(method(tcp4, "bind", address=("127.0.0.1", 0)), id="bind-keyword"),
    # -- bind: ports
    P(bind4(("127.0.0.1", 70000)), id="port-70000"),
    P(bind4(("127.0.0.1", -1)), id="port-minus-1"),
    P(bind4(("127.0.0.1", 1 << 40)), id="port-2**40"),
    P(bind4(("127.0.0.1", -(1 << 40))), id="port-minus-2**40"),
    P(bind4(("127.0.0.1", 1 << 100)), id="port-2**100"),
    P(bind4(("127.0.0.1", 80.0)), id="port-float"),
    P(bind4(("127.0.0.1", "80")), id="port-str"),
    P(bind4(("127.0.0.1", None)), id="port-None"),
    P(bind4(("127.0.0.1", True)), id="port-True"),
    P(bind4(("127.0.0.1", 65535)), id="port-65535"),
    P(bind6(("::1", 70000)), id="port6-70000"),
    P(bind6(("::1", 1 << 40)), id="port6-2**40"),
    P(bind6(("::1", -1, 0, 0)), id="port6-minus-1"),
    P(bind6(("::1", 1.5)), id="port6-float"),
    P(bind4(("::1", 70000)), id="port-70000-and-v6-host-on-v4"),
    P(bind4((None, 1 << 40)), id="port-overflow-and-host-None"),
    # -- bind: host types and NUL
    P(bind4((None, 0)), id="host-None"),
    P(bind4((127, 0)), id="host-int"),
    P(bind4((b"127.0.0.1", 0)), id="host-bytes"),
    P(bind4((bytearray(b"127.0.0.2"), 0)), id="host-bytearray"),
    P(child(_bind_memoryview_host), id="host-memoryview"),
    P(child(_bind_host_str_subclass, "127.0.0.2"), id="host-str-subclass"),
    P(child(_bind_host_str_subclass, ""), id="host-str-subclass-empty"),
    P(child(_bind_host_str_subclass, "127..1"), id="host-str-subclass-empty-label"),
    P(bind4(("127.0.0.1\0x", 0)), id="host-NUL"),
    P(bind4((b"127.0.0.1\0", 0)), id="host-bytes-NUL"),
    P(bind6(("::1\0", 0)), id="host6-NUL"),
    P(bind4(("\udcff", 0)), id="host-unencodable-surrogate"),
    P(bind4(("\uff11\uff12\uff17.0.0.1", 0)), id="host-fullwidth-digits-idna"),
    P(bind4(("localhost", 0)), id="host-localhost-v4"),
    # -- bind: special and numeric hosts
    P(bind4(("", 0)), id="host-empty-v4"),
    P(bind6(("", 0)), id="host-empty-v6"),
    P(bind4(("<broadcast>", 0)), id="host-broadcast-tcp4"),
    P(bind4(("<broadcast>", 0), udp4), id="host-broadcast-udp4"),
    P(bind4(("255.255.255.255", 0), udp4), id="host-255.255.255.255-udp4"),
    P(bind6(("<broadcast>", 0)), id="host-broadcast-v6"),
    P(bind6(("255.255.255.255", 0), udp6), id="host-255.255.255.255-v6"),
    P(bind4(("127.1", 0)), id="host-127.1"),
    P(bind4(("0x7f000001", 0)), id="host-0x7f000001"),
    P(bind4(("0177.0.0.2", 0)), id="host-octal"),
    P(bind4(("2130706433", 0)), id="host-decimal-int"),
    P(bind4(("1.2.3", 0)), id="host-1.2.3-EADDRNOTAVAIL"),
    P(bind4(("192.168.1.100", 0)), id="host-standard-setup-addr"),
    P(bind4(("10.9.9.9", 0)), id="host-not-local"),
    P(bind4(("224.0.0.1", 0), udp4), id="host-multicast-udp4"),
    # -- bind: the wrong family's text
    P(bind4(("::1", 0)), id="v6-text-on-v4"),
    P(bind4(("::", 0)), id="v6-any-on-v4"),
    P(bind4(("::1%1", 0)), id="v6-scoped-text-on-v4"),
    P(bind4(("::ffff:127.0.0.2", 0)), id="v4-mapped-text-on-v4"),
    P(bind4(("::ffff:127.0.0.2%7", 0)), id="v4-mapped-text-numeric-scope-on-v4"),
    P(bind4(("::ffff:127.0.0.2%lo", 0)), id="v4-mapped-text-name-scope-on-v4"),
    P(bind4(("::ffff:254.128.0.1%lo", 0)), id="v4-mapped-link-local-looking-name-scope-on-v4"),
    P(bind6(("127.0.0.1", 0)), id="v4-text-on-v6"),
    P(bind6(("127.1", 0)), id="v4-short-text-on-v6"),
    P(bind6(("0.0.0.0", 0), udp6), id="v4-any-text-on-v6"),
    # -- bind: flowinfo and scope ids
    P(bind6(("::1", 0, 0x100000)), id="flowinfo-2**20"),
    P(bind6(("::1", 0, 0xFFFFF)), id="flowinfo-max"),
    P(bind6(("::1", 0, -1)), id="flowinfo-minus-1"),
    P(bind6(("::1", 0, 1 << 40)), id="flowinfo-2**40-masked"),
    P(bind6(("::1", 0, 1.0)), id="flowinfo-float"),
    P(bind6(("::1", 0, "0")), id="flowinfo-str"),
    P(bind6(("::1", 70000, 1 << 20)), id="flowinfo-and-port-bad"),
    P(bind6(("::1", 0, 0, 1)), id="scope-on-loopback"),
    P(bind6(("::1", 0, 0, "1")), id="scope-str"),
    P(bind6((LL, 0)), id="link-local-no-scope"),
    P(bind6((LL, 0, 0, 1)), id="link-local-scope-lo"),
    P(bind6((LL, 0, 0, 999)), id="link-local-scope-999"),
    P(bind6((LL, 0, 0, -1)), id="link-local-scope-minus-1"),
    P(bind6((LL, 0, 0, 1 << 32)), id="link-local-scope-2**32-masked"),
    P(bind6((LL + "%lo", 0)), id="link-local-text-scope-overridden"),
    P(bind6((LL + "%nosuchdev", 0)), id="link-local-text-scope-unknown"),
    P(bind6(("::1%1", 0)), id="loopback-text-scope-1"),
    P(bind6(("::1%lo", 0)), id="loopback-text-scope-name"),
    P(bind6(("::1%", 0)), id="loopback-text-scope-empty"),
    P(bind6(("::1%4294967295", 0)), id="loopback-text-scope-u32max"),
    P(bind6(("::1%4294967296", 0)), id="loopback-text-scope-too-big"),
    P(bind6(("::1%+1", 0)), id="loopback-text-scope-plus"),
    P(bind6(("ff02::1", 0)), id="mc-link-local-no-scope"),
    P(bind6(("ff02::1", 0), udp6), id="mc-link-local-no-scope-udp"),
    P(bind6(("ff05::1", 0), udp6), id="mc-site-udp"),
    P(mapped_on_v6only, id="v4-mapped-on-v6only"),
    P(bind6(("::ffff:127.0.0.1", 0)), id="v4-mapped-dual-stack"),
    P(bind6(("::ffff:10.1.1.1", 0)), id="v4-mapped-not-local"),
    # -- bind: state and privileges
    P(bind_twice(tcp4), id="second-bind-tcp4"),
    P(bind_twice(udp6), id="second-bind-udp6"),
    P(user_binds_80, id="user-1000-binds-80"),
    P(user_binds_80_v6, id="user-1000-binds-80-v6"),
    P(root_binds_80, id="root-binds-80"),
    # -- calls on a closed socket
    P(method(tcp4, "bind", ("127.0.0.1", 0), close_first=True), id="closed-bind"),
    P(method(tcp4, "bind", "127.0.0.1", close_first=True), id="closed-bind-bad-address"),
    P(method(tcp4, "listen", close_first=True), id="closed-listen"),
    P(method(tcp4, "listen", "x", close_first=True), id="closed-listen-bad-backlog"),
    P(method(udp6, "getsockname", close_first=True), id="closed-getsockname"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_REUSEADDR, 1, close_first=True), id="closed-setsockopt"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_REUSEADDR, None, 4, close_first=True),
      id="closed-setsockopt-null"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_REUSEADDR, "x", close_first=True),
      id="closed-setsockopt-bad-value"),
    P(method(tcp4, "getsockopt", SOL_SOCKET, SO_REUSEADDR, close_first=True), id="closed-getsockopt"),
    P(method(tcp4, "getsockopt", SOL_SOCKET, SO_REUSEADDR, 4, close_first=True), id="closed-getsockopt-4"),
    P(method(tcp4, "getsockopt", SOL_SOCKET, SO_REUSEADDR, 2000, close_first=True),
      id="closed-getsockopt-2000"),
    P(method(tcp4, "settimeout", 1.0, close_first=True), id="closed-settimeout"),
    P(method(tcp4, "settimeout", -1, close_first=True), id="closed-settimeout-negative"),
    P(method(tcp4, "setblocking", True, close_first=True), id="closed-setblocking"),
    P(settimeout_on_closed_then_get, id="closed-settimeout-still-stored"),
    P(setblocking_on_closed_then_get, id="closed-setblocking-still-stored"),
    P(method(tcp4, "fileno", close_first=True), id="closed-fileno"),
    P(close_twice, id="close-twice"),
    P(closed_state, id="closed-attributes"),
    # -- setsockopt: values and argument counts
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_REUSEADDR, "1"), id="setsockopt-str"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_REUSEADDR, 1.0), id="setsockopt-float"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_REUSEADDR, None), id="setsockopt-None"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_REUSEADDR, None, 4), id="setsockopt-None-optlen-4-EFAULT"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_REUSEADDR, None, 0), id="setsockopt-None-optlen-0-EINVAL"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_REUSEADDR, None, -1), id="setsockopt-None-optlen-minus-1"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_REUSEADDR, None, 1 << 32), id="setsockopt-None-optlen-2**32"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_REUSEADDR, None, 1.0), id="setsockopt-None-optlen-float"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_REUSEADDR, None, None), id="setsockopt-None-optlen-None"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_REUSEADDR, 1, 4), id="setsockopt-int-with-optlen"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_REUSEADDR, b"\x01\x00"), id="setsockopt-short-bytes-EINVAL"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_REUSEADDR), id="setsockopt-2-args"),
    P(method(tcp4, "setsockopt", SOL_SOCKET), id="setsockopt-1-arg"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_REUSEADDR, None, 4, 5), id="setsockopt-5-args"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_REUSEADDR, 1 << 40), id="setsockopt-int-too-big"),
    P(method(tcp4, "setsockopt", 1.0, SO_REUSEADDR, 1), id="setsockopt-level-float"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, 1 << 40, 1), id="setsockopt-optname-too-big"),
    P(sockopt_then_get(tcp4, SOL_SOCKET, SO_REUSEADDR, True), id="setsockopt-True"),
    P(sockopt_then_get(tcp4, SOL_SOCKET, SO_REUSEPORT, -7), id="setsockopt-negative"),
    P(sockopt_then_get(tcp4, SOL_SOCKET, SO_REUSEADDR, b"\x01\x00\x00\x00"), id="setsockopt-bytes-4"),
    P(sockopt_then_get(tcp4, SOL_SOCKET, SO_REUSEADDR, bytearray(8)), id="setsockopt-bytearray-8"),
    P(child(_setsockopt_memoryview, 1, mk=udp4), id="setsockopt-memoryview"),
    P(child(_setsockopt_memoryview, 2, mk=udp4), id="setsockopt-memoryview-not-contiguous"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_REUSEADDR, None, 1 << 40), id="setsockopt-None-optlen-2**40"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_REUSEADDR, 1, level=1), id="setsockopt-keyword"),
    # -- getsockopt: buffer lengths and argument counts
    P(method(tcp4, "getsockopt", SOL_SOCKET, SO_REUSEADDR, 0), id="getsockopt-buflen-0"),
    P(method(tcp4, "getsockopt", SOL_SOCKET, SO_REUSEADDR, 2), id="getsockopt-buflen-2"),
    P(method(tcp4, "getsockopt", SOL_SOCKET, SO_REUSEADDR, -1), id="getsockopt-buflen-minus-1"),
    P(method(tcp4, "getsockopt", SOL_SOCKET, SO_REUSEADDR, 2000), id="getsockopt-buflen-2000"),
    P(method(tcp4, "getsockopt", SOL_SOCKET, SO_REUSEADDR, 1024), id="getsockopt-buflen-1024"),
    P(method(tcp4, "getsockopt", SOL_SOCKET, SO_REUSEADDR, 1 << 40), id="getsockopt-buflen-2**40"),
    P(method(tcp4, "getsockopt", SOL_SOCKET, SO_REUSEADDR, "4"), id="getsockopt-buflen-str"),
    P(method(tcp4, "getsockopt", SOL_SOCKET), id="getsockopt-1-arg"),
    P(method(tcp4, "getsockopt", SOL_SOCKET, SO_REUSEADDR, 4, 4), id="getsockopt-4-args"),
    P(method(tcp4, "getsockopt", SOL_SOCKET, SO_REUSEADDR, -(1 << 70)), id="getsockopt-buflen-minus-2**70"),
    P(method(tcp4, "getsockopt", SOL_SOCKET, SO_REUSEADDR, buflen=4), id="getsockopt-keyword"),
    P(method(tcp4, "getsockopt", SOL_SOCKET, 3), id="getsockopt-SO_TYPE"),
    P(method(udp6, "getsockopt", SOL_SOCKET, 39, 8), id="getsockopt-SO_DOMAIN-8"),
    # -- SO_BINDTODEVICE
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_BINDTODEVICE, b"nosuchdev"), id="bindtodevice-ENODEV"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_BINDTODEVICE, "d0"), id="bindtodevice-str"),
    P(method(tcp4, "setsockopt", SOL_SOCKET, SO_BINDTODEVICE, b"d0" + b"x" * 20), id="bindtodevice-long-name"),
    P(bindtodevice_set_get(b"lo\0junk"), id="bindtodevice-nul-terminated"),
    P(bindtodevice_set_get(b"d0\0"), id="bindtodevice-with-nul"),
    P(bindtodevice_set_get(bytearray(b"d0")), id="bindtodevice-bytearray"),
    P(bindtodevice_get(None, bound=True), id="bindtodevice-get-bound"),
    P(bindtodevice_get(16, bound=True), id="bindtodevice-get-bound-16"),
    P(bindtodevice_get(8, bound=True), id="bindtodevice-get-bound-8"),
    P(bindtodevice_get(None, bound=False), id="bindtodevice-get-unbound"),
    P(bindtodevice_get(16, bound=False), id="bindtodevice-get-unbound-16"),
    P(bindtodevice_unbind, id="bindtodevice-unbind"),
    # -- IPV6_V6ONLY
    P(method(tcp4, "setsockopt", IPPROTO_IPV6, IPV6_V6ONLY, 1), id="v6only-set-on-inet"),
    P(method(udp4, "setsockopt", IPPROTO_IPV6, IPV6_V6ONLY, 1), id="v6only-set-on-inet-udp"),
    P(method(tcp4, "getsockopt", IPPROTO_IPV6, IPV6_V6ONLY), id="v6only-get-on-inet"),
    P(method(udp4, "getsockopt", IPPROTO_IPV6, IPV6_V6ONLY), id="v6only-get-on-inet-udp"),
    P(v6only_after_bind, id="v6only-after-bind"),
    P(method(tcp6, "setsockopt", IPPROTO_IPV6, IPV6_V6ONLY, b"\x01"), id="v6only-1-byte"),
    P(sockopt_then_get(tcp6, IPPROTO_IPV6, IPV6_V6ONLY, 5), id="v6only-set-5"),
    # -- listen
    P(method(udp4, "listen"), id="listen-udp"),
    P(method(udp6, "listen", 5), id="listen-udp6-backlog"),
    P(listen_backlog("1"), id="listen-str"),
    P(listen_backlog(-5), id="listen-negative"),
    P(listen_backlog(1 << 40), id="listen-2**40"),
    P(listen_backlog(1.5), id="listen-float"),
    P(listen_backlog(), id="listen-no-args"),
    P(listen_backlog(True), id="listen-True"),
    P(listen_backlog(1, 2), id="listen-2-args"),
    P(listen_backlog(1 << 70), id="listen-2**70"),
    P(listen_backlog(-(1 << 70)), id="listen-minus-2**70"),
    P(method(tcp4, "listen", backlog=1), id="listen-keyword"),
    # -- timeouts and blocking
    P(timeout_after(-1), id="settimeout-minus-1"),
    P(timeout_after("1"), id="settimeout-str"),
    P(timeout_after(float("nan")), id="settimeout-nan"),
    P(timeout_after(float("inf")), id="settimeout-inf"),
    P(timeout_after(1 << 70), id="settimeout-2**70"),
    P(timeout_after(1 << 40), id="settimeout-2**40"),
    P(timeout_after(1e300), id="settimeout-1e300"),
    P(timeout_after(-1e300), id="settimeout-minus-1e300"),
    P(timeout_after(1 / 3), id="settimeout-third"),
    P(timeout_after(1e-10), id="settimeout-1e-10-rounds-up"),
    P(timeout_after(-1e-10), id="settimeout-minus-1e-10"),
    P(timeout_after(-0.0), id="settimeout-minus-zero"),
    P(timeout_after(True), id="settimeout-True"),
    P(timeout_after(3), id="settimeout-int"),
    P(timeout_after(None), id="settimeout-None"),
    P(timeout_after(decimal.Decimal("1.5")), id="settimeout-Decimal"),
    P(method(tcp4, "settimeout"), id="settimeout-no-args"),
    P(method(tcp4, "settimeout", 1, 2), id="settimeout-2-args"),
    P(method(tcp4, "settimeout", value=1), id="settimeout-keyword"),
    P(method(tcp4, "setblocking", 1, 2), id="setblocking-2-args"),
    P(method(tcp4, "setblocking"), id="setblocking-no-args"),
    P(method(tcp4, "setblocking", flag=True), id="setblocking-keyword"),
    P(method(tcp4, "gettimeout", 1), id="gettimeout-arg"),
    P(method(tcp4, "getblocking", 1), id="getblocking-arg"),
    P(method(tcp4, "getsockname", 1), id="getsockname-arg"),
    P(method(tcp4, "getsockname", x=1), id="getsockname-keyword"),
    P(method(tcp4, "fileno", 1), id="fileno-arg"),
    P(blocking_after(1 << 40), id="setblocking-2**40"),
    P(blocking_after(1 << 70), id="setblocking-2**70"),
    P(blocking_after(1.5), id="setblocking-float"),
    P(blocking_after("x"), id="setblocking-str"),
    P(blocking_after(0), id="setblocking-0"),
    P(blocking_after(None), id="setblocking-None"),
    # -- socket(): arguments and the attributes of the new socket
    P(new_socket(12345), id="socket-family-12345"),
    P(new_socket(AF_INET, 99), id="socket-type-99"),
    P(new_socket(AF_INET, SOCK_STREAM, IPPROTO_UDP), id="socket-stream-udp"),
    P(new_socket(AF_INET6, SOCK_DGRAM, IPPROTO_TCP), id="socket-dgram-tcp"),
    P(new_socket("2"), id="socket-family-str"),
    P(new_socket(1 << 40), id="socket-family-2**40"),
    P(new_socket(AF_INET, SOCK_STREAM, IPPROTO_TCP), id="socket-proto-tcp"),
    P(new_socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC), id="socket-cloexec"),
    P(new_socket(-1), id="socket-family-minus-1"),
    P(new_socket(AF_INET6, -1), id="socket-type-minus-1"),
    P(new_socket(AF_INET, SOCK_DGRAM, -1), id="socket-proto-minus-1"),
    P(attributes(AF_INET, SOCK_STREAM | SOCK_NONBLOCK), id="attrs-tcp4-nonblock"),
    P(attributes(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK), id="attrs-udp6-nonblock"),
    P(attributes(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP),
      id="attrs-tcp6-nonblock-cloexec"),
    P(attributes(AF_INET, SOCK_DGRAM), id="attrs-udp4-blocking"),
    # -- send / sendall / sendto / recv / recvfrom: arguments as CPython parses them
    P(method(tcp4, "send"), id="send-no-args"),
    P(method(tcp4, "send", b"x", 0, 1), id="send-3-args"),
    P(method(tcp4, "send", "x"), id="send-str"),
    P(method(tcp4, "send", None), id="send-None"),
    P(method(tcp4, "send", 5), id="send-int"),
    P(method(tcp4, "send", b"x", "0"), id="send-flags-str"),
    P(method(tcp4, "send", b"x", 1.0), id="send-flags-float"),
    P(method(tcp4, "send", b"x", 1 << 40), id="send-flags-2**40"),
    P(method(tcp4, "send", data=b"x"), id="send-keyword"),
    P(method(tcp4, "send", b"x"), id="send-unconnected-EPIPE"),
    P(method(tcp4, "send", bytearray(b"x")), id="send-bytearray-unconnected"),
    P(method(tcp4, "send", b"x", close_first=True), id="closed-send"),
    P(method(tcp4, "send", "x", close_first=True), id="closed-send-str"),
    P(on_connected("send", b"hello"), id="send-connected"),
    P(on_connected("send", bytearray(b"ba")), id="send-bytearray-connected"),
    P(on_connected("send", b"x", -1), id="send-flags-minus-1-EISCONN"),
    P(method(tcp4, "sendall"), id="sendall-no-args"),
    P(method(tcp4, "sendall", b"x", 0, 0), id="sendall-3-args"),
    P(method(tcp4, "sendall", "x"), id="sendall-str"),
    P(method(tcp4, "sendall", b""), id="sendall-empty-unconnected"),
    P(method(tcp4, "sendall", b"x", flags=0), id="sendall-keyword"),
    P(method(tcp4, "sendall", b"", close_first=True), id="closed-sendall"),
    P(on_connected("sendall", b"y" * 3000), id="sendall-connected"),
    P(method(tcp4, "sendto", b"x"), id="sendto-1-arg"),
    P(method(tcp4, "sendto", b"x", 0, ("127.0.0.1", 9), 1), id="sendto-4-args"),
    P(method(tcp4, "sendto", b"x", address=("127.0.0.1", 9)), id="sendto-keyword"),
    P(method(tcp4, "sendto", "x", ("127.0.0.1", 9)), id="sendto-str-data"),
    P(method(tcp4, "sendto", b"x", "127.0.0.1"), id="sendto-str-address"),
    P(method(tcp4, "sendto", b"x", None), id="sendto-None-address"),
    P(method(tcp4, "sendto", b"x", ("127.0.0.1", 70000)), id="sendto-port-70000"),
    P(method(tcp4, "sendto", b"x", "0", ("127.0.0.1", 9)), id="sendto-flags-str"),
    P(method(tcp4, "sendto", b"x", ("127.0.0.1", 9)), id="sendto-unconnected-EPIPE"),
    P(method(tcp4, "sendto", b"x", ("::1", 9)), id="sendto-v6-address-on-v4"),
    P(method(tcp4, "sendto", b"x", ("127.0.0.1", 9), close_first=True), id="closed-sendto"),
    P(method(tcp4, "sendto", b"x", "bad", close_first=True), id="closed-sendto-bad-address"),
    P(child(_send_memoryview, 1), id="sendto-memoryview"),
    P(child(_send_memoryview, 2), id="sendto-memoryview-not-contiguous"),
    P(child(_send_array), id="sendto-array"),
    P(on_connected("sendto", b"q", ("127.0.0.1", 9)), id="sendto-connected-ignores-address"),
    P(method(tcp4, "recv"), id="recv-no-args"),
    P(method(tcp4, "recv", 1, 0, 0), id="recv-3-args"),
    P(method(tcp4, "recv", -1), id="recv-negative"),
    P(method(tcp4, "recv", "1"), id="recv-str"),
    P(method(tcp4, "recv", 1.0), id="recv-float"),
    P(method(tcp4, "recv", None), id="recv-None"),
    P(method(tcp4, "recv", 1 << 63), id="recv-2**63"),
    P(method(tcp4, "recv", -(1 << 70)), id="recv-minus-2**70"),
    P(method(tcp4, "recv", (1 << 63) - 1), id="recv-ssize-max"),
    P(method(tcp4, "recv", 1 << 62), id="recv-2**62-MemoryError"),
    P(method(tcp4, "recv", 1, "0"), id="recv-flags-str"),
    P(method(tcp4, "recv", 1, 1 << 40), id="recv-flags-2**40"),
    P(method(tcp4, "recv", bufsize=1), id="recv-keyword"),
    P(method(tcp4, "recv", 1), id="recv-unconnected-ENOTCONN"),
    P(method(tcp4, "recv", 0), id="recv-0-unconnected"),
    P(method(tcp4, "recv", True), id="recv-True-unconnected"),
    P(method(tcp4, "recv", 0, close_first=True), id="closed-recv-0"),
    P(method(tcp4, "recv", 1, close_first=True), id="closed-recv"),
    P(method(tcp4, "recv", -1, close_first=True), id="closed-recv-negative"),
    P(method(tcp4, "recv", 1 << 62, close_first=True), id="closed-recv-2**62"),
    P(on_connected("recv", 10, 0x40), id="recv-connected-dontwait"),
    P(on_connected("recv", 10, -1), id="recv-flags-minus-1"),
    P(method(tcp4, "recvfrom"), id="recvfrom-no-args"),
    P(method(tcp4, "recvfrom", -5), id="recvfrom-negative"),
    P(method(tcp4, "recvfrom", 2.5), id="recvfrom-float"),
    P(method(tcp4, "recvfrom", 1, 2, 3), id="recvfrom-3-args"),
    P(method(tcp4, "recvfrom", bufsize=1), id="recvfrom-keyword"),
    P(method(tcp4, "recvfrom", 0), id="recvfrom-0-unconnected"),
    P(method(tcp4, "recvfrom", 1 << 63), id="recvfrom-2**63"),
    P(method(tcp4, "recvfrom", 0, close_first=True), id="closed-recvfrom-0"),
    P(method(tcp6, "recvfrom", 1), id="recvfrom-unconnected-v6"),
    P(recv_into_connected(), id="recv_into-whole-buffer"),
    P(recv_into_connected(3), id="recv_into-nbytes-3"),
    P(recv_into_connected(nbytes=2, flags=2), id="recv_into-keywords-peek"),
    P(recv_into_connected(9), id="recv_into-nbytes-too-big"),
    P(recv_into_connected(-1), id="recv_into-negative"),
    P(recv_into_connected(x=1), id="recv_into-bad-keyword"),
    P(recv_into_connected(1, 0, 0), id="recv_into-4-args"),
    P(recv_into_connected(1, nbytes=1), id="recv_into-nbytes-twice"),
    P(recv_into_connected(0, fn=_recvfrom_into_pair), id="recvfrom_into-whole-buffer"),
    P(recv_into_connected(4, fn=_recvfrom_into_pair), id="recvfrom_into-4"),
    P(recv_into_connected(9, fn=_recvfrom_into_pair), id="recvfrom_into-too-big"),
    P(method(tcp4, "recv_into", b"abc"), id="recv_into-bytes"),
    P(method(tcp4, "recv_into", "abc"), id="recv_into-str"),
    P(method(tcp4, "recv_into"), id="recv_into-no-args"),
    P(method(tcp4, "recv_into", bytearray(4)), id="recv_into-unconnected"),
    P(method(tcp4, "recv_into", bytearray(0)), id="recv_into-empty-buffer-no-syscall"),
    P(method(tcp4, "recv_into", bytearray(0), close_first=True), id="closed-recv_into-empty"),
    P(method(tcp4, "recv_into", bytearray(2), close_first=True), id="closed-recv_into"),
    P(method(tcp4, "recvfrom_into", bytearray(0)), id="recvfrom_into-empty-unconnected"),
    P(method(tcp4, "recvfrom_into", bytearray(2), -1), id="recvfrom_into-negative"),
    P(method(tcp4, "recvfrom_into", buffer=bytearray(2)), id="recvfrom_into-keyword"),
    # -- select: arguments as CPython checks them
    P(select_call([], [], [], "1"), id="select-timeout-str"),
    P(select_call([], [], [], -1), id="select-timeout-negative"),
    P(select_call([], [], [], -1e-10), id="select-timeout-tiny-negative"),
    P(select_call([], [], [], float("nan")), id="select-timeout-nan"),
    P(select_call([], [], [], 1e300), id="select-timeout-1e300"),
    P(select_call([], [], [], 1 << 70), id="select-timeout-2**70"),
    P(select_call([], [], [], decimal.Decimal("0.5")), id="select-timeout-Decimal"),
    P(select_call(1, [], [], 0), id="select-not-a-sequence"),
    P(select_call([-1], [], [], 0), id="select-negative-fd"),
    P(select_call([1 << 40], [], [], 0), id="select-fd-2**40"),
    P(select_call([5000], [], [], 0), id="select-fd-5000"),
    P(select_call([object()], [], [], 0), id="select-object"),
    P(select_call([BadFileno()], [], [], 0), id="select-fileno-str"),
    P(select_call([], [], [], 0, socks=2), id="select-fresh-sockets"),
    P(select_call([], [], [], 0, 1), id="select-5-args"),
    P(select_call([], []), id="select-2-args"),
    P(lambda ns: ns.select([], [], [], timeout=0), id="select-keyword"),
    P(select_closed, id="select-closed-socket"),
    # -- sysctl writes
    P(sysctl("net.ipv4.ip_local_port_range", "60000 50000"), id="sysctl-range-reversed"),
    P(sysctl("net.ipv4.ip_unprivileged_port_start", "abc"), id="sysctl-not-a-number"),
    P(sysctl("net.ipv4.ip_unprivileged_port_start", 70000), id="sysctl-out-of-range"),
    P(sysctl("net.ipv4.ip_local_port_range", "0 10"), id="sysctl-range-zero"),

    # -- issue 4's bad input: IP_LOCAL_PORT_RANGE lengths and values, connect() targets ----------
    P(method(tcp4, "setsockopt", IPPROTO_IP, IP_LOCAL_PORT_RANGE, b"\x01\x02"), id="port-range-short"),
    P(method(tcp4, "setsockopt", IPPROTO_IP, IP_LOCAL_PORT_RANGE, b"\x00" * 3), id="port-range-3-bytes"),
    P(method(tcp4, "setsockopt", IPPROTO_IP, IP_LOCAL_PORT_RANGE, b"\x00" * 8), id="port-range-8-bytes"),
    P(sockopt_then_get(tcp4, IPPROTO_IP, IP_LOCAL_PORT_RANGE, 40000 | (30000 << 16)), id="port-range-reversed"),
    P(sockopt_then_get(tcp4, IPPROTO_IP, IP_LOCAL_PORT_RANGE, 0xFFFFFFFF), id="port-range-all-ones"),
    P(sockopt_then_get(udp4, IPPROTO_IP, IP_LOCAL_PORT_RANGE, 50000), id="port-range-low-half-only"),
    P(sockopt_then_get(tcp6, IPPROTO_IP, IP_LOCAL_PORT_RANGE, 50000 << 16), id="port-range-v6-high-half"),
    P(method(tcp4, "setsockopt", IPPROTO_IP, IP_LOCAL_PORT_RANGE, -1), id="port-range-int-minus-1"),
    P(method(tcp4, "getsockopt", IPPROTO_IP, IP_LOCAL_PORT_RANGE, 2), id="port-range-get-short"),
    P(sockopt_get_buf(tcp4, IPPROTO_IP, IP_LOCAL_PORT_RANGE, 50000, 3), id="port-range-get-3-of-50000"),
    P(sockopt_get_buf(tcp4, IPPROTO_IP, IP_LOCAL_PORT_RANGE, 0x7FFF0001, 2), id="port-range-get-2-of-big"),
    P(sockopt_get_buf(tcp4, IPPROTO_IP, IP_LOCAL_PORT_RANGE, 100, 2), id="port-range-get-2-of-100"),
    P(method(tcp4, "getsockopt", IPPROTO_IP, IP_LOCAL_PORT_RANGE, 8), id="port-range-get-long"),
    P(method(tcp4, "connect", ("127.0.0.1", 0)), id="connect-tcp-port-0"),
    P(method(udp4, "connect", ("127.0.0.1", 0)), id="connect-udp-port-0"),
    P(method(udp4, "connect", ("255.255.255.255", 9)), id="connect-udp-broadcast-EACCES"),
    P(method(tcp4, "connect", ("255.255.255.255", 9)), id="connect-tcp-broadcast-ENETUNREACH"),
    P(method(udp4, "connect", ("127.255.255.255", 9)), id="connect-udp-subnet-broadcast"),
    P(method(tcp4, "connect", ("224.0.0.1", 9)), id="connect-tcp-multicast"),
    P(method(tcp4, "connect", ("::1", 9)), id="connect-tcp4-to-ipv6"),
    P(method(udp4, "connect", ("::1", 9)), id="connect-udp4-to-ipv6"),
    P(method(tcp6, "connect", ("127.0.0.1", 9)), id="connect-tcp6-to-ipv4-text"),
    P(method(tcp6, "connect", ("::1", 9, 0, 0, 0)), id="connect-tcp6-5-tuple"),
    P(method(tcp4, "connect", ("127.0.0.1",)), id="connect-1-tuple"),
    P(method(tcp4, "connect_ex", ("127.0.0.1", 70000)), id="connect-ex-port-overflow"),
    P(sysctl("net.ipv4.no_such_sysctl", "1"), id="sysctl-write-unknown"),
    P(sysctl("net.ipv4.no_such_sysctl"), id="sysctl-read-unknown"),
]


# ---- the test --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    kind: str                  # "returned" | "raised"
    cls: type | None = None
    errno: Any = None
    text: str = ""
    strerror: Any = None
    filename: Any = None

    def __str__(self) -> str:
        if self.kind == "returned":
            return f"returned {self.text}"
        return f"raised {self.cls.__name__}(errno={self.errno!r}): {self.text}"


def outcome(case: Callable, ns: Any) -> Outcome:
    try:
        value = case(ns)
    except Exception as e:  # noqa: BLE001 - the exception is the outcome
        if isinstance(e, OSError):
            return Outcome("raised", type(e), e.errno, str(e), e.strerror, e.filename)
        return Outcome("raised", type(e), None, str(e))
    return Outcome("returned", text=f"{type(value).__name__} {value!r}")


@pytest.mark.parametrize("case", CASES)
def test_bad_call(case: Callable, request: pytest.FixtureRequest) -> None:
    kernel_ns = make_ns("kernel")  # skips when no private netns can be made
    try:
        got = outcome(case, make_ns("model"))
        want = outcome(case, kernel_ns)
    finally:
        kernel_ns.close()
    if "sysctl" in request.node.callspec.id and want.cls is FileNotFoundError:
        # The kernel side is os.open's error (with the path); the model's has its own path text.
        assert (got.kind, got.cls, got.errno, got.strerror) == (want.kind, want.cls, want.errno, want.strerror), \
            f"model {got}\nkernel {want}"
        if got.filename is not None and want.filename is not None:
            assert got.filename == want.filename
        return
    assert got == want, f"\nmodel:  {got}\nkernel: {want}"


def test_table_size() -> None:
    assert len(CASES) >= 40
    ids = [p.id for p in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
