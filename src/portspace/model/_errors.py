"""The one place an errno is chosen (style rule 3).

Theory of operation
-------------------
Rule code never names an errno.  It reports a :class:`Cause` ("the address is in use", "no
ephemeral port is left", ...) for an :class:`Op`; :func:`errno_for` maps (op, protocol, cause)
to the errno Linux 6.18 returns, and :func:`refuse` builds the exception the stdlib itself
raises for that errno: ``OSError(errno, os.strerror(errno))``, which CPython turns into
``PermissionError`` (EACCES), ``BlockingIOError`` (EAGAIN), ``ConnectionRefusedError``
(ECONNREFUSED) and so on.  ``str(exc)`` is therefore identical to the kernel's
(``[Errno 98] Address already in use``).  portspace's extras -- ``exc.cause`` and the lazily
computed ``exc.reasons`` -- are attributes on that very instance, never a subclass.

The table is keyed by operation and protocol because the same cause has different errnos on
different paths (spec §0.6, §5.6): no ephemeral port is EADDRINUSE for bind()/listen(),
EADDRNOTAVAIL for TCP connect() and EAGAIN for UDP sendto()/connect().
"""
from __future__ import annotations

import enum
import errno
import os
from typing import Any, Final


class Op(enum.Enum):
    __hash__ = object.__hash__  # members are singletons; the default hashes the name in Python

    SOCKET = "socket"
    SETSOCKOPT = "setsockopt"
    GETSOCKOPT = "getsockopt"
    BIND = "bind"
    LISTEN = "listen"
    CONNECT = "connect"
    ACCEPT = "accept"
    SEND = "send"
    SENDTO = "sendto"
    RECV = "recv"
    SHUTDOWN = "shutdown"
    SELECT = "select"
    CLOSE = "close"
    GETSOCKNAME = "getsockname"
    GETPEERNAME = "getpeername"
    SYSCTL = "sysctl"
    NETLINK = "netlink"  # ip addr / ip link


class Proto(enum.Enum):
    __hash__ = object.__hash__  # members are singletons; the default hashes the name in Python

    TCP = "tcp"
    UDP = "udp"
    ANY = "any"


class Cause(enum.Enum):
    """Why a call was refused, in the kernel's terms."""
    __hash__ = object.__hash__  # members are singletons; the default hashes the name in Python


    ADDR_IN_USE = "the port is held by a conflicting socket (spec §3.2-3.5)"
    NO_EPHEMERAL_PORT = "no port of the ephemeral range is free (spec §5.6)"
    ADDR_NOT_LOCAL = "the address is not configured in this namespace (spec §3.1)"
    PRIVILEGED_PORT = "the port is below ip_unprivileged_port_start and the caller lacks CAP_NET_BIND_SERVICE (spec §3.1)"
    ALREADY_BOUND = "the socket already has a port or is not in CLOSE state (spec §3.1)"
    BAD_FAMILY = "the address family does not match the socket (spec §3.1)"
    MAPPED_ON_V6ONLY = "a v4-mapped address on an IPV6_V6ONLY socket (spec §3.1)"
    SCOPE_REQUIRED = "a link-local address needs a device (spec §3.1)"
    MULTICAST_STREAM = "a TCP socket cannot bind an IPv6 multicast address (spec §3.1)"
    NO_DEVICE = "no such device"
    INVALID = "invalid argument"
    BAD_OPTLEN = "option length does not match the option"
    V6ONLY_AFTER_BIND = "IPV6_V6ONLY cannot change once the socket has a port (spec §1.1)"
    NOT_STREAM = "the operation needs a SOCK_STREAM socket"
    NO_PROTOOPT = "unknown option for this level"
    BAD_FD = "the socket is closed"
    NOT_CONNECTED = "the socket is not connected"
    SYSCTL_INVALID = "the kernel rejects this value"
    SYSCTL_UNKNOWN = "no such sysctl"
    SYSCTL_DENIED = "only root may write sysctls (the /proc/sys file is 0644 root)"
    ADDR_EXISTS = "the address is already configured"
    DEVICE_EXISTS = "a device of that name exists"
    NOT_PERMITTED = "operation not permitted"
    OPT_NOT_SUPPORTED = "the option's level is not supported by this socket's family"
    PROTO_NOT_SUPPORTED = "the protocol does not match the socket type"
    NET_UNREACHABLE = "no route to the destination (or a TCP destination that is broadcast/multicast)"
    IS_CONNECTED = "the socket is already connected (or listening)"
    ALREADY_CONNECTING = "a previous connect() is still in progress"
    IN_PROGRESS = "the connection is being established (non-blocking connect)"
    TUPLE_IN_USE = "the 4-tuple (local address and port, remote address and port) is taken (spec §6.1)"
    CONN_REFUSED = "nothing listens on the destination (the peer answered with a reset)"
    CONN_ABORTED = "the connection attempt failed earlier and its error was already reported"
    CONN_RESET = "the peer reset the connection"
    FORMER_LISTENER = ("the socket has listened; once shutdown() or connect(AF_UNSPEC) stopped it, Linux refuses "
                       "to connect it (probed on 6.18: EINVAL after routing, for any destination)")
    MAPPED_SOURCE_NATIVE_DEST = ("the socket's local address is v4-mapped (::ffff:a.b.c.d), so it can only reach "
                                 "IPv4 destinations (ip6_dst_lookup_tail)")
    FORMER_CLIENT = ("the socket has sent a SYN (a connect() that got past routing and port selection, whatever "
                     "its outcome); Linux refuses to make it a listener (probed on 6.18)")
    BROADCAST_NEEDS_OPTION = "sending to a broadcast address needs SO_BROADCAST (spec §6.6)"
    WOULD_BLOCK = "nothing is ready and the socket is non-blocking"
    FAULT = "the option buffer is not readable (NULL with a length)"
    # UDP data and multicast (model/_datagram.py)
    MESSAGE_TOO_LONG = "the datagram is longer than 65507 (IPv4) / 65527 (IPv6) bytes"
    DEST_ADDR_REQUIRED = "no destination: the socket is not connected and no address was given"
    SEND_SHUTDOWN = "the sending side was shut down"
    PROTOCOL_ERROR = "multicast membership on a TCP socket"
    NO_BUFFERS = "the socket already has net.ipv4.igmp_max_memberships (20) memberships"
    GROUP_FULL = "the reuseport group already has 32768 members (reuseport_grow fails, spec §1.4)"
    BROKEN_PIPE = ("the stream cannot carry data: never connected, shut down for writing, or closed "
                   "by a reset (spec §5.6)")
    TFO_DISABLED = "MSG_FASTOPEN needs the client bit (1) of net.ipv4.tcp_fastopen"


# (op, proto, cause) -> errno; ``Proto.ANY`` entries apply to both protocols.
ERRNO_FOR: Final[dict[tuple[Op, Proto, Cause], int]] = {
    (Op.BIND, Proto.ANY, Cause.NO_EPHEMERAL_PORT): errno.EADDRINUSE,
    (Op.LISTEN, Proto.TCP, Cause.NO_EPHEMERAL_PORT): errno.EADDRINUSE,
    (Op.CONNECT, Proto.TCP, Cause.NO_EPHEMERAL_PORT): errno.EADDRNOTAVAIL,
    (Op.CONNECT, Proto.UDP, Cause.NO_EPHEMERAL_PORT): errno.EAGAIN,
    (Op.SENDTO, Proto.UDP, Cause.NO_EPHEMERAL_PORT): errno.EAGAIN,
    (Op.LISTEN, Proto.UDP, Cause.NOT_STREAM): errno.EOPNOTSUPP,
    (Op.LISTEN, Proto.TCP, Cause.INVALID): errno.EINVAL,
    # a full reuseport group [V probe: the 32769th member]: udp_lib_get_port fails as "in use"
    # (inet_autobind then answers EAGAIN), inet_csk_listen_start passes ENOMEM on
    (Op.BIND, Proto.UDP, Cause.GROUP_FULL): errno.EADDRINUSE,
    (Op.CONNECT, Proto.UDP, Cause.GROUP_FULL): errno.EAGAIN,
    (Op.SENDTO, Proto.UDP, Cause.GROUP_FULL): errno.EAGAIN,
}

# cause -> errno where the operation does not matter.
ERRNO_DEFAULT: Final[dict[Cause, int]] = {
    Cause.ADDR_IN_USE: errno.EADDRINUSE,
    Cause.ADDR_NOT_LOCAL: errno.EADDRNOTAVAIL,
    Cause.PRIVILEGED_PORT: errno.EACCES,
    Cause.ALREADY_BOUND: errno.EINVAL,
    Cause.BAD_FAMILY: errno.EAFNOSUPPORT,
    Cause.MAPPED_ON_V6ONLY: errno.EINVAL,
    Cause.SCOPE_REQUIRED: errno.EINVAL,
    Cause.MULTICAST_STREAM: errno.EINVAL,
    Cause.NO_DEVICE: errno.ENODEV,
    Cause.INVALID: errno.EINVAL,
    Cause.BAD_OPTLEN: errno.EINVAL,
    Cause.V6ONLY_AFTER_BIND: errno.EINVAL,
    Cause.NOT_STREAM: errno.EOPNOTSUPP,
    Cause.NO_PROTOOPT: errno.ENOPROTOOPT,
    Cause.BAD_FD: errno.EBADF,
    Cause.NOT_CONNECTED: errno.ENOTCONN,
    Cause.SYSCTL_INVALID: errno.EINVAL,
    Cause.SYSCTL_UNKNOWN: errno.ENOENT,
    Cause.SYSCTL_DENIED: errno.EACCES,
    Cause.ADDR_EXISTS: errno.EEXIST,
    Cause.DEVICE_EXISTS: errno.EEXIST,
    Cause.NOT_PERMITTED: errno.EPERM,
    Cause.FAULT: errno.EFAULT,
    Cause.NET_UNREACHABLE: errno.ENETUNREACH,
    Cause.IS_CONNECTED: errno.EISCONN,
    Cause.ALREADY_CONNECTING: errno.EALREADY,
    Cause.IN_PROGRESS: errno.EINPROGRESS,
    Cause.TUPLE_IN_USE: errno.EADDRNOTAVAIL,
    Cause.CONN_REFUSED: errno.ECONNREFUSED,
    Cause.CONN_ABORTED: errno.ECONNABORTED,
    Cause.CONN_RESET: errno.ECONNRESET,
    Cause.FORMER_LISTENER: errno.EINVAL,
    Cause.FORMER_CLIENT: errno.EINVAL,
    Cause.MAPPED_SOURCE_NATIVE_DEST: errno.EAFNOSUPPORT,
    Cause.BROADCAST_NEEDS_OPTION: errno.EACCES,
    Cause.WOULD_BLOCK: errno.EAGAIN,
    Cause.PROTO_NOT_SUPPORTED: errno.EPROTONOSUPPORT,
    Cause.OPT_NOT_SUPPORTED: errno.EOPNOTSUPP,
    Cause.MESSAGE_TOO_LONG: errno.EMSGSIZE,
    Cause.DEST_ADDR_REQUIRED: errno.EDESTADDRREQ,
    Cause.SEND_SHUTDOWN: errno.EPIPE,
    Cause.PROTOCOL_ERROR: errno.EPROTO,
    Cause.NO_BUFFERS: errno.ENOBUFS,
    Cause.GROUP_FULL: errno.ENOMEM,   # reuseport_grow; UDP paths map it per call above
    Cause.BROKEN_PIPE: errno.EPIPE,
    Cause.TFO_DISABLED: errno.EOPNOTSUPP,
}

# A pending socket error (``sk_err``, kept as an errno number on the socket) -> the cause it
# reports when a data call picks it up (``sock_error``).
SK_ERR_CAUSE: Final[dict[int, Cause]] = {
    errno.ECONNRESET: Cause.CONN_RESET,
    errno.ECONNREFUSED: Cause.CONN_REFUSED,
    errno.EPIPE: Cause.BROKEN_PIPE,
}


def errno_for(op: Op, proto: Proto, cause: Cause) -> int:
    """The errno Linux returns when ``op`` on a ``proto`` socket fails for ``cause``."""
    e = ERRNO_FOR.get((op, proto, cause))
    if e is None:
        e = ERRNO_FOR.get((op, Proto.ANY, cause))
    if e is None:
        e = ERRNO_DEFAULT[cause]
    return e


# strerror texts are fixed per errno; cache them (os.strerror is a libc call).
_STRERROR: dict[int, str] = {}


def refuse(op: Op, proto: Proto, cause: Cause, reasons: Any = None, filename: str | None = None) -> OSError:
    """Build (do not raise) the stdlib's exception for this refusal.

    Args:
        op, proto, cause: what failed and why.
        reasons: an object exposing the explanation lazily (``_explain.LazyReasons``) or None.
        filename: set for errors that the stdlib reports with a path (sysctl files).
    Returns:
        ``OSError(errno, strerror)`` -- CPython picks the subclass from the errno -- carrying
        ``.cause`` and ``.reasons``.
    """
    code = errno_for(op, proto, cause)
    text = _STRERROR.get(code)
    if text is None:
        text = _STRERROR[code] = os.strerror(code)
    exc = OSError(code, text) if filename is None else OSError(code, text, filename)
    exc.cause = cause  # type: ignore[attr-defined]
    exc.reasons = reasons if reasons is not None else ()  # type: ignore[attr-defined]
    return exc


class OutOfScope(NotImplementedError):
    """A Linux feature portspace does not model (spec §9.6 and below).  The message names it."""


class Deadlock(RuntimeError):
    """A blocking call that could never complete in a single-threaded model (a blocking accept()
    with nothing queued, a blocking connect() whose SYN is never answered): raised instead of
    hanging, with the reason in the message."""
