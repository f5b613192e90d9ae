"""``portspace.Socket``: a model socket with the stdlib ``socket.socket`` method names,
signatures and exceptions.

Theory of operation
-------------------
The facade does what CPython's socket module does before a syscall -- argument parsing,
timeouts, the closed-socket check (the kernel answers EBADF for fd -1) -- and then calls the
namespace's kernel model (``model._netns.NetNS``) with typed arguments.  Refusals raised by the
model are already the stdlib's exceptions (see ``model/_errors.py``); this file only adds the
exceptions the stdlib raises itself (TypeError, OverflowError, ValueError, gaierror).

A scenario written for real sockets therefore runs unchanged on a model ``Namespace``: replace
``socket.socket`` with ``ns.socket``.
"""
from __future__ import annotations

import math
import socket as _stdsocket
from typing import TYPE_CHECKING, Any

from ._hostaddr import c_int, sockaddr
from .model._addr import AF_INET, AF_INET6, format_ipv4, format_ipv6, v6_needs_scope
from .model._errors import Cause, Op, Proto, refuse

if TYPE_CHECKING:
    from ._namespace import Namespace

_NONBLOCK = _stdsocket.SOCK_NONBLOCK
_CLOEXEC = _stdsocket.SOCK_CLOEXEC
_SOMAXCONN_DEFAULT = min(_stdsocket.SOMAXCONN, 128)


# Parsed-address cache: (family, address tuple) -> (addr, port, flowinfo, scope_id).  Only
# plain (str, int[, int, int]) tuples without a "%scope" are cached, so the result cannot
# depend on the namespace's devices; parsing errors are never cached.
_PARSED: dict[tuple[int, Any], tuple[int, int, int, int]] = {}


def _parse_and_cache(family: int, address: Any, caller: str, devices: Any) -> tuple[int, int, int, int]:
    parsed = sockaddr(family, address, caller, devices)
    if (type(address) is tuple and type(address[0]) is str and "%" not in address[0]
            and all(type(x) is int for x in address[1:])):
        if len(_PARSED) > 65536:
            _PARSED.clear()
        _PARSED[(family, address)] = parsed
    return parsed


class Socket:
    """A socket in a model :class:`~portspace.Namespace`.  Create it with ``ns.socket()``."""

    __slots__ = ("_ns", "_sk", "_family", "_type", "_proto", "_timeout", "__weakref__")

    def __init__(self, ns: "Namespace", sk: Any, family: int, type: int, proto: int) -> None:
        self._ns = ns
        self._sk = sk
        self._family = family
        self._type = type
        self._proto = proto
        self._timeout: float | None = 0.0 if type & _NONBLOCK else _stdsocket.getdefaulttimeout()

    # -- attributes ------------------------------------------------------------------
    @property
    def family(self) -> _stdsocket.AddressFamily:
        return _stdsocket.AddressFamily(self._family)

    @property
    def type(self) -> _stdsocket.SocketKind:
        return _stdsocket.SocketKind(self._type & ~(_NONBLOCK | _CLOEXEC))

    @property
    def proto(self) -> int:
        return self._proto

    @property
    def namespace(self) -> "Namespace":
        return self._ns

    def fileno(self) -> int:
        return -1 if self._sk.closed else self._sk.fd

    def __repr__(self) -> str:
        sk = self._sk
        if sk.closed:
            return (f"<portspace.Socket [closed] fd=-1, family={self._family}, type={self._type & 0xF}, "
                    f"proto={self._proto}>")
        return (f"<portspace.Socket fd={sk.fd}, family={self._family}, type={self._type & 0xF}, "
                f"proto={self._proto}, laddr={self.getsockname()!r}>")

    def __enter__(self) -> "Socket":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _live(self) -> Any:
        sk = self._sk
        if sk.closed:
            raise refuse(Op.CLOSE, Proto.ANY, Cause.BAD_FD)
        return sk

    # -- options ---------------------------------------------------------------------
    def setsockopt(self, level: int, optname: int, value: Any, optlen: Any = None, /) -> None:
        """``socket.setsockopt(level, optname, value: int | Buffer)`` or
        ``setsockopt(level, optname, None, optlen: int)``."""
        level = c_int(level)
        optname = c_int(optname)
        if optlen is None:
            if isinstance(value, int) and not isinstance(value, bool) and -(1 << 31) <= value < (1 << 31):
                buf = value.to_bytes(4, "little", signed=True)
            elif isinstance(value, bool):
                buf = int(value).to_bytes(4, "little")
            else:
                try:
                    buf = bytes(memoryview(value))
                except TypeError:
                    raise TypeError(f"a bytes-like object is required, not '{type(value).__name__}'") from None
        else:
            if value is not None:
                raise TypeError("setsockopt() takes exactly 3 arguments (4 given)")
            n = c_int(optlen)
            if n:
                # a NULL buffer with a length: the kernel's copy faults for a value it reads
                self._live()
                return self._ns._kernel.setsockopt_null(self._sk, level, optname, n)
            buf = b""
        self._ns._kernel.setsockopt(self._live(), level, optname, buf)

    def getsockopt(self, level: int, optname: int, buflen: int = 0, /) -> Any:
        level = c_int(level)
        optname = c_int(optname)
        buflen = c_int(buflen)
        if buflen == 0:
            raw = self._ns._kernel.getsockopt(self._live(), level, optname, 4)
            return int.from_bytes(raw.ljust(4, b"\0")[:4], "little", signed=True)
        if buflen < 0 or buflen > 1024:
            raise OSError("getsockopt buflen out of range")
        return self._ns._kernel.getsockopt(self._live(), level, optname, buflen)

    # -- bind / listen / close -------------------------------------------------------------
    def bind(self, address: Any, /) -> None:
        kernel = self._ns._kernel
        try:
            parsed = _PARSED.get((self._family, address))
        except TypeError:  # unhashable address: the parser reports it as CPython does
            parsed = None
        if parsed is None:
            parsed = _parse_and_cache(self._family, address, "bind", kernel.devices)
        sk = self._sk
        if sk.closed:
            raise refuse(Op.CLOSE, Proto.ANY, Cause.BAD_FD)
        if self._family == AF_INET:
            kernel.bind_v4(sk, parsed[0], parsed[1])
        else:
            kernel.bind_v6(sk, parsed[0], parsed[1], parsed[3])

    def listen(self, backlog: Any = _SOMAXCONN_DEFAULT, /) -> None:
        backlog = max(c_int(backlog), 0)
        kernel = self._ns._kernel
        kernel.listen(self._live(), min(backlog, kernel.sysctls.ints["net.core.somaxconn"]))

    def close(self) -> None:
        if not self._sk.closed:
            self._ns._kernel.close(self._sk)

    def detach(self) -> int:
        raise NotImplementedError("Socket.detach(): a model socket has no OS file descriptor")

    def getsockname(self) -> tuple:
        sk = self._live()
        if self._family == AF_INET:
            return (format_ipv4(sk.rcv_saddr), sk.num)
        scope = sk.bound_dev if v6_needs_scope(sk.v6_rcv_saddr) else 0
        return (format_ipv6(sk.v6_rcv_saddr), sk.num, 0, scope)

    # -- blocking mode ---------------------------------------------------------------
    def setblocking(self, flag: Any, /) -> None:
        flag = c_int(flag)
        self._live()
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    def settimeout(self, value: Any, /) -> None:
        if value is None:
            t = None
        else:
            if isinstance(value, float):
                if math.isnan(value):
                    raise ValueError("Invalid value NaN (not a number)")
                t = value
            else:
                try:
                    t = float(c_int(value)) if not isinstance(value, int) else float(value)
                except OverflowError:
                    t = float(value)
            if t < 0:
                raise ValueError("Timeout value out of range")
        self._live()
        self._timeout = t

    def gettimeout(self) -> float | None:
        return self._timeout

    # -- not yet modelled (the connect()/delivery issues) ------------------------------
    def _unmodelled(self, what: str) -> Any:
        from .model._errors import OutOfScope
        raise OutOfScope(f"{what} is not modelled yet (bind/listen/close only in this version)")

    def connect(self, address: Any, /) -> None:
        self._unmodelled("connect()")

    def connect_ex(self, address: Any, /) -> int:
        return self._unmodelled("connect_ex()")

    def accept(self) -> Any:
        return self._unmodelled("accept()")

    def send(self, data: Any, flags: int = 0, /) -> int:
        return self._unmodelled("send()")

    def sendall(self, data: Any, flags: int = 0, /) -> None:
        self._unmodelled("sendall()")

    def sendto(self, *args: Any) -> int:
        return self._unmodelled("sendto()")

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        return self._unmodelled("recv()")

    def recvfrom(self, bufsize: int, flags: int = 0, /) -> Any:
        return self._unmodelled("recvfrom()")

    def shutdown(self, how: int, /) -> None:
        self._unmodelled("shutdown()")

    def getpeername(self) -> Any:
        return self._unmodelled("getpeername()")

    _ = AF_INET6
