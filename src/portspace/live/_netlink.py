"""Netlink plumbing for the host inspector: message framing, attributes, and one dump.

Theory of operation
-------------------
Two netlink families are read: ``NETLINK_SOCK_DIAG`` (the socket table, :mod:`._sockdiag`) and
``NETLINK_ROUTE`` (devices and addresses, :mod:`._rtnl`).  Both are *dumps*: one request with
``NLM_F_DUMP``, then a stream of multipart messages ending with ``NLMSG_DONE`` (or an
``NLMSG_ERROR`` carrying a negative errno).

Rule 1: the functions that turn bytes into values (:func:`iter_messages`, :func:`iter_attrs`,
:func:`done_status`) are pure, so the decoders built on them are tested on captured bytes.
Rule 2: :func:`dump` and :func:`request` (one question, one answer: ``ip route get``) are the
only functions here that do I/O.  It returns the raw datagrams
exactly as the kernel sent them; decoding is the caller's business.  A dump never writes
anything but its one request to the kernel: the inspector only reads.

Framing (``include/uapi/linux/netlink.h``)::

    struct nlmsghdr { u32 nlmsg_len; u16 nlmsg_type; u16 nlmsg_flags; u32 nlmsg_seq; u32 nlmsg_pid; }
    struct nlattr   { u16 nla_len; u16 nla_type; }        payloads padded to 4 bytes (NLA_ALIGN)

Everything is in host byte order except what the payload's own struct says (ports and
addresses in ``inet_diag_sockid`` are big-endian).

Speed: a 20 000-socket dump is about 2 MB in ~70 datagrams; the decoders read only the
fields they need with precompiled ``struct.Struct`` objects (see ../peers.md's note that pure
Python netlink decoding of every field was the slowest inspector measured).
"""
from __future__ import annotations

import errno
import os
import _socket   # the C module: ``socket`` (enums, the Python class) costs ~2 ms to import
import struct
from collections.abc import Iterator

__all__ = ["NetlinkError", "NLMSG_HDR", "NLA_HDR", "dump", "request", "iter_messages", "iter_attrs", "pack_request"]

NETLINK_ROUTE = 0
NETLINK_SOCK_DIAG = 4

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH

SOL_NETLINK = 270
NETLINK_EXT_ACK = 11

NLMSG_HDR = struct.Struct("=IHHII")
NLA_HDR = struct.Struct("=HH")
_ERR = struct.Struct("=i")

# One recv() gets one kernel skb; the kernel sizes dump skbs from the receive buffer (up to
# 32 KiB per skb with a large buffer), so 1 MiB is never short.
_RECV_SIZE = 1 << 20


class NetlinkError(OSError):
    """The kernel answered a dump with NLMSG_ERROR (errno set), or the stream was malformed."""


def pack_request(msg_type: int, payload: bytes, seq: int = 1, flags: int = NLM_F_REQUEST | NLM_F_DUMP) -> bytes:
    """One netlink request: header + payload (the payload is padded to 4 bytes)."""
    pad = (-len(payload)) % 4
    return NLMSG_HDR.pack(NLMSG_HDR.size + len(payload), msg_type, flags, seq, 0) + payload + b"\0" * pad


def iter_messages(data: bytes | memoryview) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(type, flags, start, end)`` for each netlink message in ``data``: the payload is
    ``data[start:end]``.  A truncated or malformed header ends the iteration (the rest of the
    buffer cannot be framed); the caller learns of it through :func:`framing_error`."""
    n = len(data)
    off = 0
    unpack = NLMSG_HDR.unpack_from
    hsize = NLMSG_HDR.size
    while off + hsize <= n:
        length, mtype, flags, _seq, _pid = unpack(data, off)
        if length < hsize or off + length > n:
            return
        yield mtype, flags, off + hsize, off + length
        off += (length + 3) & ~3


def framing_error(data: bytes | memoryview) -> str | None:
    """None if ``data`` is a whole number of well-formed messages, else what is wrong."""
    n = len(data)
    off = 0
    hsize = NLMSG_HDR.size
    while off < n:
        if off + hsize > n:
            return f"truncated netlink header at byte {off} ({n - off} of {hsize} bytes)"
        length = NLMSG_HDR.unpack_from(data, off)[0]
        if length < hsize:
            return f"bad netlink message length {length} at byte {off}"
        if off + length > n:
            return f"truncated netlink message at byte {off} ({n - off} of {length} bytes)"
        off += (length + 3) & ~3
    return None


def iter_attrs(data: bytes | memoryview, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Yield ``(type, start, end)`` for each attribute in ``data[start:end]`` (the value is
    ``data[start:end]``).  The nested/byte-order flag bits of ``nla_type`` are masked off.  A
    malformed attribute ends the iteration."""
    off = start
    unpack = NLA_HDR.unpack_from
    while off + 4 <= end:
        length, atype = unpack(data, off)
        if length < 4 or off + length > end:
            return
        yield atype & 0x3FFF, off + 4, off + length
        off += (length + 3) & ~3


def error_code(data: bytes | memoryview, start: int, end: int) -> int:
    """The errno of an NLMSG_ERROR payload (``struct nlmsgerr``: int error; then the request's
    header); 0 is an ACK.  Returned positive."""
    if end - start < 4:
        return errno.EBADMSG
    return -_ERR.unpack_from(data, start)[0]


def dump(protocol: int, request: bytes, seq: int = 1) -> list[bytes]:
    """Send one dump request on a fresh ``AF_NETLINK`` socket and return the datagrams received
    up to and including the one holding ``NLMSG_DONE``.

    Raises:
        NetlinkError: the kernel answered with an error (e.g. ENOENT when the diag module for
            a protocol is missing, EACCES/EPERM under a restrictive seccomp or LSM).
        OSError: the netlink socket cannot be opened (EPROTONOSUPPORT, EAFNOSUPPORT, EACCES).
    """
    s = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, protocol)
    try:
        s.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, _RECV_SIZE)
        s.bind((0, 0))
        s.sendto(request, (0, 0))
        chunks: list[bytes] = []
        hdr = NLMSG_HDR.unpack_from
        while True:
            data = s.recv(_RECV_SIZE)
            if not data:
                raise NetlinkError(errno.EPROTO, "netlink dump ended without NLMSG_DONE")
            chunks.append(data)
            # Walk the headers only (the payloads are the decoder's business) looking for the
            # end of the dump; a malformed datagram stops the dump rather than looping.
            n, off = len(data), 0
            while off < n:
                if off + 16 > n:
                    raise NetlinkError(errno.EPROTO, f"malformed netlink reply: {framing_error(data)}")
                length, mtype = hdr(data, off)[:2]
                if length < 16 or off + length > n:
                    raise NetlinkError(errno.EPROTO, f"malformed netlink reply: {framing_error(data)}")
                if mtype == NLMSG_DONE:
                    # a dump's DONE may carry an int error (e.g. -EINTR when the table changed
                    # too much during the dump)
                    if length >= 20:
                        err = error_code(data, off + 16, off + length)
                        if err:
                            raise NetlinkError(err, f"netlink dump failed: {os.strerror(err)}")
                    return chunks
                if mtype == NLMSG_ERROR:
                    err = error_code(data, off + 16, off + length)
                    if err:
                        raise NetlinkError(err, os.strerror(err))
                elif mtype == NLMSG_OVERRUN:
                    raise NetlinkError(errno.ENOBUFS, "netlink dump overrun")
                off += (length + 3) & ~3
    finally:
        s.close()


def request(protocol: int, message: bytes) -> bytes:
    """Send one request that is answered by one message (not a dump: ``RTM_GETROUTE`` for one
    destination, as ``ip route get`` asks) and return the datagram of the answer.

    Raises:
        NetlinkError: the kernel answered with NLMSG_ERROR (its errno: ENETUNREACH when there is
            no route, EHOSTUNREACH/EACCES/EINVAL for unreachable/prohibit/blackhole routes), or
            the answer is malformed.
        OSError: the netlink socket cannot be opened.
    """
    s = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, protocol)
    try:
        s.bind((0, 0))
        s.sendto(message, (0, 0))
        data = s.recv(65536)
    finally:
        s.close()
    problem = framing_error(data)
    if problem or not data:
        raise NetlinkError(errno.EPROTO, f"malformed netlink reply: {problem or 'empty'}")
    for mtype, _flags, start, end in iter_messages(data):
        if mtype == NLMSG_ERROR:
            err = error_code(data, start, end)
            if err:
                raise NetlinkError(err, os.strerror(err))
    return data

