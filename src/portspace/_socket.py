"""``portspace.Socket``: a model socket with the stdlib ``socket.socket`` method names,
signatures and exceptions.

Theory of operation
-------------------
The facade does what CPython's socket module does before a syscall -- argument parsing,
timeouts, the closed-socket check (the kernel answers EBADF for fd -1) -- and then calls the
namespace's kernel model (``model._netns.NetNS``) with typed arguments.  Refusals raised by the
model are already the stdlib's exceptions (see ``model/_errors.py``); this file only adds the
exceptions the stdlib raises itself (TypeError, OverflowError, ValueError, BufferError, gaierror)
with CPython 3.11's messages.  That is why the methods take ``*args, **kwargs``: a wrong
argument count or a keyword is reported as the C function reports it ("socket.bind() takes
exactly one argument (2 given)"), not as a Python signature would.  The timeout is kept in
nanoseconds, rounded up, exactly as ``sock_timeout`` is, so ``gettimeout()`` answers the same.

A scenario written for real sockets therefore runs unchanged on a model ``Namespace``: replace
``socket.socket`` with ``ns.socket``.
"""
from __future__ import annotations

import errno
import math
import operator
import os
import socket as _stdsocket
import sys
import dis as _dis
from typing import TYPE_CHECKING, Any

from ._hostaddr import c_int, c_long, c_uint_nocheck, sockaddr
from .model._addr import AF_INET, AF_INET6, format_ipv4, format_ipv6, v6_needs_scope
from .model._errors import Cause, Deadlock, Op, OutOfScope, Proto, refuse
from .model._rules import CLOSE as _CLOSE
from .model._rules import ESTABLISHED as _ESTABLISHED
from .model._rules import SYN_SENT as _SYN_SENT

if TYPE_CHECKING:
    from ._namespace import Namespace

_NONBLOCK = _stdsocket.SOCK_NONBLOCK
_CLOEXEC = _stdsocket.SOCK_CLOEXEC
_SOMAXCONN_DEFAULT = min(_stdsocket.SOMAXCONN, 128)
_NS_PER_S = 10**9
_PYTIME_MIN, _PYTIME_MAX = -(1 << 63), (1 << 63) - 1


# -- CPython's argument checks, with its messages ---------------------------------------------
# socket.socket's methods are C functions of three kinds: METH_O (one argument: bind,
# settimeout, setblocking), METH_NOARGS (getsockname, fileno, gettimeout, getblocking) and
# METH_VARARGS parsed by PyArg_ParseTuple (listen, setsockopt, getsockopt).  None takes keywords.

def _one_arg(name: str, args: tuple, kwargs: dict) -> Any:
    if kwargs:
        raise TypeError(f"socket.{name}() takes no keyword arguments")
    if len(args) != 1:
        raise TypeError(f"socket.{name}() takes exactly one argument ({len(args)} given)")
    return args[0]


def _no_args(name: str, args: tuple, kwargs: dict) -> None:
    if kwargs:
        raise TypeError(f"socket.{name}() takes no keyword arguments")
    if args:
        raise TypeError(f"socket.{name}() takes no arguments ({len(args)} given)")


def _arg_count(name: str, args: tuple, kwargs: dict, lo: int, hi: int, depth: int = 3) -> None:
    """getargs.c's count check for a format with ``lo`` required and ``hi`` total items
    (``depth``: frames from ``_kw_qualifier`` up to the caller of the socket method)."""
    if kwargs:
        raise TypeError(f"{_kw_qualifier(depth)}{name}() takes no keyword arguments")
    n = len(args)
    if n < lo or n > hi:
        want = lo if n < lo else hi
        how = "exactly" if lo == hi else "at least" if n < lo else "at most"
        raise TypeError(f"{name}() takes {how} {want} argument{'' if want == 1 else 's'} ({n} given)")


def _kw_qualifier(depth: int = 3) -> str:
    """CPython names a METH_VARARGS method "socket.listen()" when keywords reach it through a
    vectorcall (``s.listen(backlog=1)``) and plain "listen()" through ``tp_call``
    (``s.listen(*a, **kw)``).  The facade receives both the same way, so it looks at the
    calling instruction: CALL_FUNCTION_EX is the second form.  (Only on this error path.)"""
    frame = sys._getframe(depth)  # _kw_qualifier <- _arg_count <- the facade method <- the caller
    code = frame.f_code.co_code
    if 0 <= frame.f_lasti < len(code) and _dis.opname[code[frame.f_lasti]] == "CALL_FUNCTION_EX":
        return ""
    return "socket."


def _timeout_ns(value: Any) -> int:
    """``socket_parse_timeout``: seconds -> nanoseconds as ``_PyTime_FromSecondsObject`` with
    ``_PyTime_ROUND_TIMEOUT`` (away from zero) computes them; -1 for None (blocking)."""
    if value is None:
        return -1
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError("Invalid value NaN (not a number)")
        d = value * 1e9
        d = float(math.ceil(d) if d >= 0 else math.floor(d)) if math.isfinite(d) else d
        if not -9223372036854775808.0 <= d < 9223372036854775808.0:
            raise OverflowError("timestamp out of range for platform time_t")
        ns = int(d)
    else:
        sec = operator.index(value)  # PyLong_AsLongLong
        ns = sec * _NS_PER_S
        if not _PYTIME_MIN <= sec <= _PYTIME_MAX or not _PYTIME_MIN <= ns <= _PYTIME_MAX:
            raise OverflowError("timestamp too large to convert to C _PyTime_t")
    if ns < 0:
        raise ValueError("Timeout value out of range")
    return ns


def _seconds(ns: int) -> float:
    """``_PyTime_AsSecondsDouble``."""
    return float(ns // _NS_PER_S) if ns % _NS_PER_S == 0 else float(ns) / 1e9


def _default_timeout_ns() -> int:
    t = _stdsocket.getdefaulttimeout()
    return -1 if t is None else round(t * _NS_PER_S)  # the stdlib keeps it in ns: round-trip


def _bytes_like(value: Any) -> bytes:
    """The ``"y*"`` format: any C-contiguous buffer (bytes, bytearray, memoryview, array)."""
    if type(value) is bytes:
        return value
    try:
        view = memoryview(value)
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not '{type(value).__name__}'") from None
    if not view.c_contiguous:
        raise BufferError("memoryview: underlying buffer is not C-contiguous")
    return view.tobytes()


_MISSING = object()
_ALLOC_PROBE = 1 << 24


def _allocate_like_cpython(n: int) -> None:
    """recv()/recvfrom() allocate their result (``PyBytes_FromStringAndSize(NULL, n)``) before
    the system call, so a huge ``bufsize`` is OverflowError "byte string is too large" (beyond
    ``PY_SSIZE_T_MAX`` minus the bytes header) or MemoryError (malloc refused) whatever the
    socket.  For the second, map as much anonymous private memory as malloc would (glibc
    serves such sizes with mmap), without touching a page, and drop it at once: the kernel's
    overcommit check then answers as it would for CPython's own allocation."""
    if n > sys.maxsize - 33:  # PyBytesObject_SIZE on 64-bit builds
        raise OverflowError("byte string is too large")
    import mmap
    try:
        m = mmap.mmap(-1, n + 33, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except OSError:
        raise MemoryError() from None
    m.close()


def _ssize(value: Any) -> int:
    """The ``"n"`` format: an object with ``__index__``, within C ssize_t."""
    v = operator.index(value)
    if not -(1 << 63) <= v < (1 << 63):
        raise OverflowError("Python int too large to convert to C ssize_t")
    return v


# Host-text cache: (family, host str) -> the address as an int.  Only plain str hosts without
# a "%scope" are cached, so the result cannot depend on the namespace's devices; parsing errors
# are never cached.  Ports, flowinfo and scope ids are checked on every call.
_HOSTS: dict[tuple[int, str], int] = {}


class Socket:
    """A socket in a model :class:`~portspace.Namespace`.  Create it with ``ns.socket()``."""

    __slots__ = ("_ns", "_sk", "_family", "_type", "_proto", "_timeout_ns", "__weakref__")

    def __init__(self, ns: "Namespace", sk: Any, family: int, type: int, proto: int) -> None:
        self._ns = ns
        self._sk = sk
        self._family = family
        self._type = type
        self._proto = proto
        # ``sock_timeout`` in ns, -1 for blocking (None), as CPython keeps it
        self._timeout_ns = 0 if type & _NONBLOCK else _default_timeout_ns()

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

    def fileno(self, *args: Any, **kwargs: Any) -> int:
        _no_args("fileno", args, kwargs)
        return -1 if self._sk.closed else self._sk.fd

    def __repr__(self) -> str:
        sk = self._sk
        if sk.closed:
            return (f"<portspace.Socket [closed] fd=-1, family={self._family}, type={self._type & 0xF}, "
                    f"proto={self._proto}>")
        return (f"<portspace.Socket fd={sk.fd}, family={self._family}, type={self._type & 0xF}, "
                f"proto={self._proto}, laddr={self._name()!r}>")

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
    def setsockopt(self, *args: Any, **kwargs: Any) -> None:
        """``setsockopt(level, optname, value: int | Buffer)`` or
        ``setsockopt(level, optname, None, optlen: int)``.

        CPython tries three formats in turn -- ``"iii"``, ``"iiO!I"`` (None and an unsigned
        optlen, taken modulo 2**32), ``"iiy*"`` -- and reports the last one's error."""
        if kwargs:
            raise TypeError("setsockopt() takes no keyword arguments")
        if len(args) == 3:
            try:
                level, optname, flag = c_int(args[0]), c_int(args[1]), c_int(args[2])
            except (TypeError, OverflowError):
                pass
            else:
                self._setsockopt(level, optname, flag.to_bytes(4, "little", signed=True))
                return
        elif len(args) == 4 and args[2] is None:
            try:
                level, optname, optlen = c_int(args[0]), c_int(args[1]), c_uint_nocheck(args[3])
            except (TypeError, OverflowError):
                pass
            else:
                sk = self._live()
                if optlen >= 1 << 31:  # the kernel's optlen is an int: negative is EINVAL
                    raise refuse(Op.SETSOCKOPT, Proto.TCP if sk.tcp else Proto.UDP, Cause.INVALID)
                if optlen:
                    # a NULL buffer with a length: the kernel's copy faults for a value it reads
                    return self._ns._kernel.setsockopt_null(sk, level, optname, optlen)
                self._setsockopt(level, optname, b"")
                return
        _arg_count("setsockopt", args, {}, 3, 3)
        level, optname, value = c_int(args[0]), c_int(args[1]), args[2]
        try:
            view = memoryview(value)
        except TypeError:
            raise TypeError(f"a bytes-like object is required, not '{type(value).__name__}'") from None
        if not view.c_contiguous:
            # y* asks for a PyBUF_SIMPLE buffer; this is memoryview's refusal (other exporters
            # word it their own way)
            raise BufferError("memoryview: underlying buffer is not C-contiguous")
        self._setsockopt(level, optname, view.tobytes())

    def _setsockopt(self, level: int, optname: int, buf: bytes) -> None:
        self._ns._kernel.setsockopt(self._live(), level, optname, buf)

    def getsockopt(self, *args: Any, **kwargs: Any) -> Any:
        """``getsockopt(level, optname[, buflen])``: an int without buflen (or with 0), else
        up to ``buflen`` (1..1024) bytes."""
        _arg_count("getsockopt", args, kwargs, 2, 3)
        level = c_int(args[0])
        optname = c_int(args[1])
        buflen = c_int(args[2]) if len(args) > 2 else 0
        if buflen == 0:
            raw = self._ns._kernel.getsockopt(self._live(), level, optname, 4)
            return int.from_bytes(raw.ljust(4, b"\0")[:4], "little", signed=True)
        if buflen < 0 or buflen > 1024:  # socklen_t is unsigned: -1 is "too big"
            raise OSError("getsockopt buflen out of range")
        return self._ns._kernel.getsockopt(self._live(), level, optname, buflen)

    # -- bind / listen / close -------------------------------------------------------------
    def bind(self, *args: Any, **kwargs: Any) -> None:
        """``bind(address)``: ``(host, port)`` for AF_INET, ``(host, port[, flowinfo[,
        scope_id]])`` for AF_INET6."""
        address = args[0] if len(args) == 1 and not kwargs else _one_arg("bind", args, kwargs)
        kernel = self._ns._kernel
        addr, port, _flow, scope = self._sockaddr(address, "bind")
        sk = self._live()
        if self._family == AF_INET:
            kernel.bind_v4(sk, addr, port)
        else:
            kernel.bind_v6(sk, addr, port, scope)

    def _sockaddr(self, address: Any, caller: str) -> tuple[int, int, int, int]:
        """Parse an address tuple.  Fast path: a plain ``(str, int)`` (or IPv6 ``(str, int[,
        int[, int]])``) whose host text was parsed before -- the host's address is cached per
        family (``_HOSTS``), the port checked here; everything else goes through the full
        CPython-faithful parser."""
        if type(address) is tuple and 2 <= len(address) <= 4:
            host = address[0]
            port = address[1]
            if type(host) is str and type(port) is int and 0 <= port <= 0xFFFF:
                a = _HOSTS.get((self._family, host))
                if a is not None:
                    if len(address) == 2:
                        return (a, port, 0, 0)
                    if self._family == AF_INET6 and all(type(x) is int for x in address[2:]):
                        flow = address[2] & 0xFFFFFFFF
                        scope = (address[3] & 0xFFFFFFFF) if len(address) == 4 else 0
                        if flow <= 0xFFFFF:
                            return (a, port, flow, scope)
        parsed = sockaddr(self._family, address, caller, self._ns._kernel.devices)
        if type(address) is tuple and type(address[0]) is str and "%" not in address[0]:
            if len(_HOSTS) > 4096:
                _HOSTS.clear()
            _HOSTS[(self._family, address[0])] = parsed[0]
        return parsed

    def listen(self, *args: Any, **kwargs: Any) -> None:
        """``listen([backlog])``: a negative backlog is 0; the kernel caps it at somaxconn."""
        _arg_count("listen", args, kwargs, 0, 1)
        backlog = max(c_int(args[0]), 0) if args else _SOMAXCONN_DEFAULT
        kernel = self._ns._kernel
        kernel.listen(self._live(), min(backlog, kernel.sysctls.ints["net.core.somaxconn"]))

    def close(self) -> None:
        if not self._sk.closed:
            self._ns._kernel.close(self._sk)

    def detach(self) -> int:
        raise NotImplementedError("Socket.detach(): a model socket has no OS file descriptor")

    def getsockname(self, *args: Any, **kwargs: Any) -> tuple:
        _no_args("getsockname", args, kwargs)
        return self._name()

    def _name(self) -> tuple:
        sk = self._live()
        if self._family == AF_INET:
            return (format_ipv4(sk.rcv_saddr), sk.sport)
        scope = sk.bound_dev if v6_needs_scope(sk.v6_rcv_saddr) else 0
        return (format_ipv6(sk.v6_rcv_saddr), sk.sport, 0, scope)

    # -- blocking mode ---------------------------------------------------------------
    # As in CPython, the new timeout is stored before the (model) ioctl that fails with EBADF
    # on a closed socket, so gettimeout() shows it even then.
    def setblocking(self, *args: Any, **kwargs: Any) -> None:
        """``setblocking(flag)``: True is ``settimeout(None)``, False is ``settimeout(0.0)``."""
        flag = c_long(_one_arg("setblocking", args, kwargs))
        self._timeout_ns = -1 if flag else 0
        self._live()

    def getblocking(self, *args: Any, **kwargs: Any) -> bool:
        _no_args("getblocking", args, kwargs)
        return self._timeout_ns != 0

    def settimeout(self, *args: Any, **kwargs: Any) -> None:
        """``settimeout(value)``: None (blocking) or seconds >= 0, kept in nanoseconds
        (rounded up), as CPython does."""
        self._timeout_ns = _timeout_ns(_one_arg("settimeout", args, kwargs))
        self._live()

    def gettimeout(self, *args: Any, **kwargs: Any) -> float | None:
        _no_args("gettimeout", args, kwargs)
        return None if self._timeout_ns < 0 else _seconds(self._timeout_ns)

    # -- connect / accept / peers ----------------------------------------------------
    def connect(self, *args: Any, **kwargs: Any) -> None:
        """``connect(address)``.  On loopback the handshake completes inside the call, as on
        Linux.  Non-blocking: ``BlockingIOError`` EINPROGRESS, then a second connect() succeeds
        (or reports the refusal), a third gives EISCONN.  With a timeout, as CPython does it:
        success, ``ConnectionRefusedError``, or ``TimeoutError('timed out')``."""
        address = _one_arg("connect", args, kwargs)
        self._connect(address, "connect")

    def connect_ex(self, *args: Any, **kwargs: Any) -> int:
        """``connect_ex(address)``: the errno instead of an exception (0 on success)."""
        address = _one_arg("connect_ex", args, kwargs)
        try:
            self._connect(address, "connect_ex")
        except TimeoutError:
            return errno.EWOULDBLOCK
        except OSError as e:
            if e.errno is None or isinstance(e, _stdsocket.gaierror):
                raise
            return e.errno
        return 0

    def _connect(self, address: Any, caller: str) -> None:
        kernel = self._ns._kernel
        addr, port, _flow, scope = self._sockaddr(address, caller)
        sk = self._live()
        t = self._timeout_ns
        outcome = kernel.connect(sk, addr, port, scope, nonblock=t >= 0)
        if outcome == "done":
            return
        if t == 0:
            raise refuse(Op.CONNECT, Proto.TCP, Cause.IN_PROGRESS)
        # a timeout: CPython waits for writability, then reads SO_ERROR
        if sk.state == _ESTABLISHED:
            return
        if sk.err:
            code, sk.err = sk.err, 0
            e = OSError(code, os.strerror(code))
            raise e
        raise TimeoutError("timed out")

    def accept(self, *args: Any, **kwargs: Any) -> tuple["Socket", tuple]:
        """``accept()`` -> ``(socket, address)``; the new socket has the listener's family, type
        without SOCK_NONBLOCK, and the default timeout, as in CPython."""
        _no_args("accept", args, kwargs)
        kernel = self._ns._kernel
        lsk = self._live()
        child = kernel.accept(lsk)
        if child is None:
            if self._timeout_ns == 0:
                raise refuse(Op.ACCEPT, Proto.TCP, Cause.WOULD_BLOCK)
            if self._timeout_ns > 0:
                raise TimeoutError("timed out")
            raise Deadlock("a blocking accept() with no connection queued would wait forever: nothing else "
                           "can connect while this single-threaded model waits (use a timeout or a "
                           "non-blocking socket)")
        s = Socket(self._ns, child, self._family, self._type & ~_NONBLOCK, self._proto)
        return s, s._peer()

    def getpeername(self, *args: Any, **kwargs: Any) -> tuple:
        """``getpeername()``: ENOTCONN unless connected (a TCP socket in SYN_SENT or CLOSE is not)."""
        _no_args("getpeername", args, kwargs)
        sk = self._live()
        if not sk.dport or (sk.tcp and sk.state in (_CLOSE, _SYN_SENT)):
            raise refuse(Op.GETPEERNAME, Proto.TCP if sk.tcp else Proto.UDP, Cause.NOT_CONNECTED)
        return self._peer()

    def _peer(self) -> tuple:
        sk = self._sk
        if self._family == AF_INET:
            return (format_ipv4(sk.daddr), sk.dport)
        return (format_ipv6(sk.v6_daddr), sk.dport, 0, 0)

    def disconnect(self) -> None:
        """The kernel's ``connect(AF_UNSPEC)`` (the stdlib has no call for it): UDP forgets its
        peer (and releases a port it did not bind explicitly); TCP aborts the connection."""
        self._ns._kernel.disconnect(self._live())

    # -- data ---------------------------------------------------------------------------
    # The facade parses the arguments as CPython does ("y*|i:send", "n|i:recv", sendto's two
    # forms), then calls ``NetNS.sendmsg`` / ``NetNS.recvmsg`` with typed arguments.  The
    # kernel model answers at once: a count of bytes (send), ``(data, source)`` (recv), or
    # ``None`` for "would block".  What a would-block means is decided here, as CPython's
    # ``sock_call`` does it:
    #
    # * non-blocking socket (timeout 0), or MSG_DONTWAIT on a blocking one: EAGAIN;
    # * a timeout: CPython's fd is non-blocking and it first polls (POLLIN or POLLOUT; an error
    #   or hang-up also wakes it).  Nothing else can happen in a single-threaded model while it
    #   waits, so "not ready" and "would block" (EAGAIN after a wake-up) are
    #   ``TimeoutError('timed out')`` -- a listener's recv() times out rather than ENOTCONN;
    # * blocking: a clear ``Deadlock``, since the call could never complete.
    def _data_call(self, what: str, writing: bool, flags: int, fn: Any) -> Any:
        """Run ``fn(nonblock)`` (the model call) with CPython's blocking rules (see above)."""
        t = self._timeout_ns
        if t > 0:
            kernel = self._ns._kernel
            sk = self._live()
            if not kernel.poll(sk)[1 if writing else 0]:
                raise TimeoutError("timed out")
            try:
                res = fn(True)
            except BlockingIOError as e:
                if e.errno != errno.EAGAIN:
                    raise
                res = None
            if res is None:
                raise TimeoutError("timed out")
            return res
        res = fn(t == 0)
        if res is None:
            if t == 0 or flags & _stdsocket.MSG_DONTWAIT:
                raise refuse(Op.SEND if writing else Op.RECV, Proto.TCP if self._sk.tcp else Proto.UDP,
                             Cause.WOULD_BLOCK)
            raise Deadlock(f"a blocking {what} on socket #{self._sk.fd} would wait forever: nothing else can "
                           "run while this single-threaded model waits (use a timeout, a non-blocking socket "
                           "or ns.select())")
        return res

    def send(self, *args: Any, **kwargs: Any) -> int:
        """``send(data[, flags])`` -> bytes sent."""
        _arg_count("send", args, kwargs, 1, 2)
        data = _bytes_like(args[0])
        flags = c_int(args[1]) if len(args) > 1 else 0
        kernel = self._ns._kernel
        return self._data_call("send()", True, flags,
                               lambda nb: kernel.sendmsg(self._live(), data, flags, None, nb))

    def sendall(self, *args: Any, **kwargs: Any) -> None:
        """``sendall(data[, flags])``: send() until everything is sent; at least one send() even
        for no data, as CPython's loop does.  An error or a would-block ends it (what was sent
        stays sent)."""
        _arg_count("sendall", args, kwargs, 1, 2)
        data = _bytes_like(args[0])
        flags = c_int(args[1]) if len(args) > 1 else 0
        kernel = self._ns._kernel
        view = memoryview(data)
        while True:
            chunk = bytes(view)
            n = self._data_call("sendall()", True, flags,
                                lambda nb: kernel.sendmsg(self._live(), chunk, flags, None, nb))
            view = view[n:]
            if not view:
                return

    def sendto(self, *args: Any, **kwargs: Any) -> int:
        """``sendto(data, address)`` or ``sendto(data, flags, address)`` -> bytes sent.  On TCP the
        address only matters with MSG_FASTOPEN (model/_stream.py)."""
        if kwargs:
            raise TypeError(f"{_kw_qualifier(2)}sendto() takes no keyword arguments")
        if len(args) not in (2, 3):
            raise TypeError(f"sendto() takes 2 or 3 arguments ({len(args)} given)")
        data = _bytes_like(args[0])
        flags = c_int(args[1]) if len(args) == 3 else 0
        dest = self._sockaddr(args[-1], "sendto")
        kernel = self._ns._kernel
        return self._data_call("sendto()", True, flags,
                               lambda nb: kernel.sendmsg(self._live(), data, flags, dest, nb))

    def recv(self, *args: Any, **kwargs: Any) -> bytes:
        """``recv(bufsize[, flags])`` -> bytes (``b''`` at end of stream).  ``recv(0)`` is
        ``b''`` without a system call, as in CPython -- even on a closed socket."""
        bufsize, flags = self._recv_args("recv", args, kwargs)
        if bufsize == 0:
            return b""
        kernel = self._ns._kernel
        got = self._data_call("recv()", False, flags,
                              lambda nb: kernel.recvmsg(self._live(), bufsize, flags, nb))
        return got[0]

    def recvfrom(self, *args: Any, **kwargs: Any) -> tuple[bytes, Any]:
        """``recvfrom(bufsize[, flags])`` -> ``(bytes, address)``; the address is None on a
        connected TCP socket, as the kernel reports no name there."""
        bufsize, flags = self._recv_args("recvfrom", args, kwargs)
        kernel = self._ns._kernel
        data, src = self._data_call("recvfrom()", False, flags,
                                    lambda nb: kernel.recvmsg(self._live(), bufsize, flags, nb))
        return data, (None if src is None else self._format_addr(src))

    def recv_into(self, *args: Any, **kwargs: Any) -> int:
        """``recv_into(buffer[, nbytes[, flags]])`` -> bytes written into ``buffer`` (keywords
        allowed, as in CPython); ``nbytes`` 0 means the buffer's length, and 0 bytes wanted
        means no system call."""
        view, nbytes, flags = self._into_args("recv_into", args, kwargs)
        if nbytes == 0:
            nbytes = len(view)
        if len(view) < nbytes:
            raise ValueError("buffer too small for requested bytes")
        if nbytes == 0:
            return 0
        kernel = self._ns._kernel
        data = self._data_call("recv_into()", False, flags,
                               lambda nb: kernel.recvmsg(self._live(), nbytes, flags, nb))[0]
        view[:len(data)] = data
        return len(data)

    def recvfrom_into(self, *args: Any, **kwargs: Any) -> tuple[int, Any]:
        """``recvfrom_into(buffer[, nbytes[, flags]])`` -> ``(count, address)``."""
        view, nbytes, flags = self._into_args("recvfrom_into", args, kwargs)
        if nbytes == 0:
            nbytes = len(view)
        elif nbytes > len(view):
            raise ValueError("nbytes is greater than the length of the buffer")
        kernel = self._ns._kernel
        data, src = self._data_call("recvfrom_into()", False, flags,
                                    lambda nb: kernel.recvmsg(self._live(), nbytes, flags, nb))
        view[:len(data)] = data
        return len(data), (None if src is None else self._format_addr(src))

    def _into_args(self, name: str, args: tuple, kwargs: dict) -> tuple[memoryview, int, int]:
        """``"w*|ni"`` with the keywords buffer, nbytes, flags (PyArg_ParseTupleAndKeywords)."""
        names = ("buffer", "nbytes", "flags")
        if len(args) + len(kwargs) > 3:
            raise TypeError(f"{name}() takes at most 3 arguments ({len(args) + len(kwargs)} given)")
        vals: list[Any] = list(args) + [_MISSING] * (3 - len(args))
        for k, v in kwargs.items():
            if k not in names:
                raise TypeError(f"'{k}' is an invalid keyword argument for {name}()")
            i = names.index(k)
            if i < len(args):
                raise TypeError(f"argument for {name}() given by name ('{k}') and position ({i + 1})")
            vals[i] = v
        if vals[0] is _MISSING:
            raise TypeError(f"{name}() missing required argument 'buffer' (pos 1)")
        buf = vals[0]
        try:
            view = memoryview(buf)
            if view.readonly:
                raise TypeError
        except TypeError:
            raise TypeError(f"{name}() argument 1 must be read-write bytes-like object, "
                            f"not {type(buf).__name__}") from None
        if not view.c_contiguous:
            raise TypeError(f"{name}() argument 1 must be contiguous buffer, not {type(buf).__name__}")
        nbytes = _ssize(vals[1]) if vals[1] is not _MISSING else 0
        flags = c_int(vals[2]) if vals[2] is not _MISSING else 0
        if nbytes < 0:
            raise ValueError(f"negative buffersize in {name}")
        return view.cast("B"), nbytes, flags

    def sendmsg(self, *args: Any, **kwargs: Any) -> int:
        raise OutOfScope("sendmsg() (scatter/gather and ancillary data) is not modelled; use send()/sendto()")

    def recvmsg(self, *args: Any, **kwargs: Any) -> Any:
        raise OutOfScope("recvmsg() (ancillary data) is not modelled; use recv()/recvfrom()")

    def recvmsg_into(self, *args: Any, **kwargs: Any) -> Any:
        raise OutOfScope("recvmsg_into() (ancillary data) is not modelled; use recv_into()")

    def _recv_args(self, name: str, args: tuple, kwargs: dict) -> tuple[int, int]:
        _arg_count(name, args, kwargs, 1, 2, depth=4)
        bufsize = _ssize(args[0])
        flags = c_int(args[1]) if len(args) > 1 else 0
        if bufsize < 0:
            raise ValueError(f"negative buffersize in {name}")
        if bufsize > _ALLOC_PROBE:
            _allocate_like_cpython(bufsize)
        return bufsize, flags

    def _format_addr(self, src: tuple[int, int, int, int]) -> tuple:
        """A model address ``(addr, port, flowinfo, scope_id)`` as CPython's makesockaddr."""
        if self._family == AF_INET:
            return (format_ipv4(src[0]), src[1])
        return (format_ipv6(src[0]), src[1], src[2], src[3])

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        """``shutdown(how)``: SHUT_RD, SHUT_WR or SHUT_RDWR."""
        how = c_int(_one_arg("shutdown", args, kwargs))
        self._ns._kernel.shutdown(self._live(), how)

    _ = AF_INET6
