"""The host's TCP and UDP sockets from a ``NETLINK_SOCK_DIAG`` dump (what ``ss`` reads).

Theory of operation
-------------------
One ``SOCK_DIAG_BY_FAMILY`` request per (family, protocol) asks the kernel for every socket of
the reader's network namespace whose state is in ``idiag_states``.  We ask for *all* states plus
the ``TCP_BOUND_INACTIVE`` bit, which makes inet_diag also walk bhash2 for TCP sockets that are
bound but neither listening nor connected -- sockets that block ``bind()`` and that
``/proc/net/tcp``, netstat, lsof and psutil never show (kernel commit 91051f003948, Linux 6.8;
peers note §4.6, checked live).  Without that kernel change the bit is ignored and such sockets
are simply absent (:func:`dump` cannot tell; the snapshot notes it).

Each answer is an ``inet_diag_msg`` (``include/uapi/linux/inet_diag.h``) followed by
attributes::

    u8 family, state, timer, retrans
    inet_diag_sockid { be16 sport, dport; be32 src[4], dst[4]; u32 if; u32 cookie[2] }
    u32 expires (ms), rqueue, wqueue, uid, inode
    attributes: INET_DIAG_SKV6ONLY (u8; AF_INET6 sockets in LISTEN or CLOSE only, the only
                one read), INET_DIAG_SOCKOPT, INET_DIAG_SHUTDOWN, ...

A TIME_WAIT remnant (``inet_twsk_diag_fill``) has timer 3, uid 0, inode 0, no attributes, and its
``tw_substate`` as state (TIME_WAIT, or FIN_WAIT2 for an orphan waiting for the peer's FIN).
Request sockets (SYN_RECV) are answered by ``inet_req_diag_fill`` with inode 0.

Rule 1: :func:`build_request`, :func:`port_filter` and :func:`decode` are pure (tested on
captured bytes in tests/data/sockdiag/); :func:`dump` is the only I/O.  Decoding reads only the
fields a :class:`~._rows.SockRow` needs, with precompiled structs, and never raises on bad
input: truncated or malformed messages are counted in :class:`Decoded.errors`.

Kernel-side filtering (``INET_DIAG_REQ_BYTECODE``): :func:`port_filter` builds the two-op
program ``sport >= lo && sport <= hi`` the way ss compiles ``sport >= :lo and sport <= :hi``
(``misc/ss.c: ssfilter_bytecompile``), so ``portspace explain`` reads only the few sockets on and
near the port it is asked about.
"""
from __future__ import annotations

import _socket   # the C module (see _netlink)
import struct
from typing import Iterable

from . import _netlink
from ._rows import TCP_BOUND_INACTIVE, SockRow
from ..model._addr import AF_INET, AF_INET6

__all__ = ["Decoded", "build_request", "port_filter", "decode", "dump", "ALL_STATES"]

SOCK_DIAG_BY_FAMILY = 20
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_SKV6ONLY = 11
INET_DIAG_BC_S_GE = 2
INET_DIAG_BC_S_LE = 3

# every TCP state (1..12, incl. TCP_NEW_SYN_RECV for request sockets) and the bound-inactive bit
ALL_STATES = ((1 << 13) - 2) | (1 << TCP_BOUND_INACTIVE)

# struct inet_diag_req_v2: family, protocol, ext, pad, states; then a zero inet_diag_sockid
_REQ = struct.Struct("=BBBBI48x")
# struct inet_diag_msg in one read: family, state, timer, retrans; sport, dport, src[4], dst[4]
# (network byte order, swapped below); if, cookie[2], expires, rqueue, wqueue, uid, inode.
_MSG = struct.Struct("=BBBBHH4I4IIIIIIIII")
_MSG_SIZE = 72
_ntohs, _ntohl = _socket.ntohs, _socket.ntohl
_LISTEN, _CLOSE = 10, 7
_BC_OP = struct.Struct("=BBH")             # struct inet_diag_bc_op { u8 code; u8 yes; u16 no; }

try:   # the optional C accelerator (setup.py); the Python loops below give the same rows
    from . import _speedups
except ImportError:   # pragma: no cover - depends on the build
    _speedups = None


class Decoded:
    """The result of :func:`decode`: the rows, and what could not be decoded (one line each)."""

    __slots__ = ("rows", "errors")

    def __init__(self, rows: list[SockRow] | None = None, errors: list[str] | None = None) -> None:
        self.rows: list[SockRow] = [] if rows is None else rows
        self.errors: list[str] = [] if errors is None else errors

    def __repr__(self) -> str:
        return f"Decoded(rows={self.rows!r}, errors={self.errors!r})"


def port_filter(lo: int, hi: int) -> bytes:
    """Bytecode for ``lo <= sport <= hi`` (as ss compiles ``sport >= :lo and sport <= :hi``).

    Each comparison is two ops: the test (``yes`` = 8 skips over both, ``no`` = a jump past the
    end, i.e. "reject") and a carrier op holding the port in ``no``.  The first test's reject
    jump is relocated over the second test, as ``ssfilter_patch`` does for an AND."""
    if not 0 <= lo <= hi <= 65535:
        raise ValueError(f"bad port range {lo}-{hi}")
    first = _BC_OP.pack(INET_DIAG_BC_S_GE, 8, 12 + 8) + _BC_OP.pack(0, 0, lo)
    second = _BC_OP.pack(INET_DIAG_BC_S_LE, 8, 12) + _BC_OP.pack(0, 0, hi)
    return first + second


def build_request(family: int, protocol: int, states: int = ALL_STATES, bytecode: bytes | None = None,
                  seq: int = 1) -> bytes:
    """The ``SOCK_DIAG_BY_FAMILY`` dump request for one (family, IPPROTO_TCP/UDP)."""
    payload = _REQ.pack(family, protocol, 0, 0, states & 0xFFFFFFFF)
    if bytecode:
        payload += _netlink.NLA_HDR.pack(4 + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
    return _netlink.pack_request(SOCK_DIAG_BY_FAMILY, payload, seq)


def decode(data: bytes | memoryview, proto: str, out: Decoded | None = None) -> Decoded:
    """Decode the messages of one dump reply (any number of datagrams, concatenated).

    ``proto`` ("tcp" or "udp") is the protocol the request asked for; inet_diag messages do not
    repeat it.  NLMSG_DONE / NLMSG_ERROR / other types are skipped (:func:`dump` has already
    acted on them).  Never raises on malformed input.

    This is the inspector's hot loop (20 000 sockets: one call per message), so it walks the
    buffer itself instead of using the generic iterators of ``_netlink``, and reads attributes
    only where one is needed: IPV6_V6ONLY of AF_INET6 sockets in LISTEN or CLOSE."""
    out = out if out is not None else Decoded()
    n = len(data)
    if _speedups is not None:
        return _decode_c(data, proto, out)
    if n >= 16:
        length = _FIRST.unpack_from(data, 0)[0]
        if length >= 16 + _MSG_SIZE and length % 4 == 0 and n % length == 0 and _uniform(data, length):
            _decode_uniform(data, length, proto, out)
            return out
    return _decode_general(data, proto, out)


# The fast path.  A dump datagram is, in practice, a run of messages of one length (124 bytes
# each for TCP sockets on 6.18, 20 000 sockets in ~65 datagrams); the last one ends with
# NLMSG_DONE and takes the general path.  Such a run is read by two ``iter_unpack`` passes in C:
# native byte order for the header and the host-order fields, big-endian for ports and
# addresses (no ntohs/ntohl per field).  Messages that need their attributes (IPV6_V6ONLY of
# AF_INET6 sockets in LISTEN or CLOSE) or that are not inet_diag messages are decoded one by
# one by the general path, in place.
_FIRST = struct.Struct("=I")
_fast_structs: dict[int, tuple[struct.Struct, struct.Struct, struct.Struct]] = {}


def _structs(length: int) -> tuple[struct.Struct, struct.Struct, struct.Struct]:
    st = _fast_structs.get(length)
    if st is None:
        pad = length - 16 - _MSG_SIZE
        st = _fast_structs[length] = (
            struct.Struct(f"=IH{length - 6}x"),                               # nlmsg_len, nlmsg_type
            struct.Struct(f"=16xBBBB36xIIIIIIII{pad}x"),                      # family..retrans, if, cookie, ...
            struct.Struct(f">20xHHQQQQ{length - 56}x"))                       # sport, dport, src, dst
    return st


def _uniform(data: bytes | memoryview, length: int) -> bool:
    return set(_structs(length)[0].iter_unpack(data)) == {(length, SOCK_DIAG_BY_FAMILY)}


def _decode_uniform(data: bytes | memoryview, length: int, proto: str, out: Decoded) -> None:
    _hdr, native, big = _structs(length)
    append = out.rows.append
    new_row = tuple.__new__
    row_type = SockRow
    for i, ((family, state, timer, _retrans, ifindex, c0, c1, expires, _rq, _wq, uid, inode),
            (sport, dport, s_hi, s_lo, d_hi, d_lo)) in enumerate(zip(native.iter_unpack(data), big.iter_unpack(data))):
        if family == AF_INET:
            laddr, raddr = s_hi >> 32, d_hi >> 32
        elif family == AF_INET6 and state != _LISTEN and state != _CLOSE:
            laddr, raddr = (s_hi << 64) | s_lo, (d_hi << 64) | d_lo
        else:   # attributes to read, or an unknown family: the general path, this message only
            off = i * length
            _decode_general(data[off:off + length], proto, out)
            continue
        append(new_row(row_type, (proto, family, state, laddr, sport, raddr, dport, ifindex, uid, inode, None, timer,
                                  expires if timer else None, timer == 3 and inode == 0, c0 | (c1 << 32))))


def _decode_c(data: bytes | memoryview, proto: str, out: Decoded) -> Decoded:
    """:func:`decode` by the C accelerator, which takes every well-formed message it knows;
    each one it stops at is decoded (or reported) by :func:`_decode_general`, the reference."""
    n = len(data)
    rows = out.rows
    off = 0
    c_decode = _speedups.decode
    hdr = _netlink.NLMSG_HDR.unpack_from
    while True:
        off = c_decode(data, proto, rows, SockRow, off)
        if off + 16 > n:
            if off < n:
                out.errors.append(_truncated_header(proto, off, n))
            return out
        length = hdr(data, off)[0]
        if length < 16 or off + length > n:   # framing error: reported (relative to here), the rest lost
            _decode_general(data[off:], proto, out)
            return out
        _decode_general(data[off:off + length], proto, out)
        off += (length + 3) & ~3


def _decode_general(data: bytes | memoryview, proto: str, out: Decoded) -> Decoded:
    """:func:`decode` message by message (any mix of lengths and types)."""
    rows = out.rows
    append = rows.append
    unpack = _MSG.unpack_from
    hdr = _netlink.NLMSG_HDR.unpack_from
    nla = _netlink.NLA_HDR.unpack_from
    new_row = tuple.__new__
    n = len(data)
    off = 0
    while off + 16 <= n:
        length, mtype = hdr(data, off)[:2]
        if length < 16 or off + length > n:
            out.errors.append(f"{proto}: {_netlink.framing_error(data[off:]) or 'malformed netlink message'}")
            break
        start, end = off + 16, off + length
        off += (length + 3) & ~3
        if mtype != SOCK_DIAG_BY_FAMILY:
            continue
        if end - start < _MSG_SIZE:
            out.errors.append(f"{proto}: short inet_diag_msg ({end - start} of {_MSG_SIZE} bytes)")
            continue
        (family, state, timer, _retrans, sport, dport, s0, s1, s2, s3, d0, d1, d2, d3,
         ifindex, c0, c1, expires, _rq, _wq, uid, inode) = unpack(data, start)
        v6only = None
        if family == AF_INET:
            laddr, raddr = _ntohl(s0), _ntohl(d0)
        elif family == AF_INET6:
            laddr = (_ntohl(s0) << 96) | (_ntohl(s1) << 64) | (_ntohl(s2) << 32) | _ntohl(s3)
            raddr = (_ntohl(d0) << 96) | (_ntohl(d1) << 64) | (_ntohl(d2) << 32) | _ntohl(d3)
            if state == _LISTEN or state == _CLOSE:
                a = start + _MSG_SIZE
                while a + 4 <= end:
                    alen, atype = nla(data, a)
                    if alen < 4 or a + alen > end:
                        break
                    if atype & 0x3FFF == INET_DIAG_SKV6ONLY and alen > 4:
                        v6only = data[a + 4] != 0
                        break
                    a += (alen + 3) & ~3
        else:
            out.errors.append(f"{proto}: unknown address family {family}")
            continue
        tw = timer == 3 and inode == 0
        append(new_row(SockRow, (proto, family, state, laddr, _ntohs(sport), raddr, _ntohs(dport), ifindex, uid,
                                 inode, v6only, timer, expires if timer else None, tw, c0 | (c1 << 32))))
    if off < n and off + 16 > n:
        out.errors.append(_truncated_header(proto, off, n))
    return out


def _truncated_header(proto: str, off: int, n: int) -> str:
    return f"{proto}: truncated netlink header at byte {off} ({n - off} of 16 bytes)"


def dump(protos: Iterable[str] = ("tcp", "udp"), families: Iterable[int] = (AF_INET, AF_INET6),
         ports: tuple[int, int] | None = None) -> Decoded:
    """Dump the reader's network namespace: every socket of ``protos`` x ``families`` in every
    state (bound-inactive TCP sockets included where the kernel supports it), optionally only
    those whose local port is in ``ports`` (inclusive, filtered by the kernel).

    Raises:
        OSError: sock_diag is not available (no AF_NETLINK, a missing diag module, a seccomp
            or LSM denial); the caller falls back to /proc/net.
    """
    out = Decoded()
    bytecode = port_filter(*ports) if ports is not None else None
    for proto in protos:
        ipproto = _socket.IPPROTO_TCP if proto == "tcp" else _socket.IPPROTO_UDP
        for family in families:
            chunks = _netlink.dump(_netlink.NETLINK_SOCK_DIAG, build_request(family, ipproto, bytecode=bytecode))
            for chunk in chunks:
                decode(chunk, proto, out)
    return out
