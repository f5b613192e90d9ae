"""Devices and local addresses of the reader's network namespace (what ``ip link`` / ``ip addr``
read), for loading into the model: bind() checks that an address is local (spec §3.1) and that
a device exists (SO_BINDTODEVICE).

Theory of operation
-------------------
Two ``NETLINK_ROUTE`` dumps: ``RTM_GETLINK`` answered by ``RTM_NEWLINK`` messages
(``struct ifinfomsg`` + ``IFLA_IFNAME``) and ``RTM_GETADDR`` answered by ``RTM_NEWADDR``
(``struct ifaddrmsg`` + ``IFA_LOCAL`` / ``IFA_ADDRESS`` / ``IFA_FLAGS``), from
``include/uapi/linux/{rtnetlink,if_link,if_addr}.h``.

An IPv4 address's own address is ``IFA_LOCAL`` (``IFA_ADDRESS`` is the peer on point-to-point
links); IPv6 has only ``IFA_ADDRESS`` unless a peer is set.  IPv6 addresses that are still
tentative (duplicate address detection running) or failed DAD cannot be bound yet
(``ipv6_chk_addr_and_flags(..., IFA_F_TENTATIVE)``), so they are reported apart.

``explain connect`` also asks the kernel which route a destination takes (``RTM_GETROUTE`` with
``RTA_DST``, as ``ip route get`` does; a question, nothing changes): the answer's ``rtm_type``
(``RTN_UNICAST``, ``RTN_LOCAL``...), ``RTA_PREFSRC`` (the source address connect() will use)
and ``RTA_OIF``; or an error that is connect()'s own error for that destination (ENETUNREACH
without a route, EHOSTUNREACH/EACCES/EINVAL for unreachable/prohibit/blackhole routes [V probe,
tests/live/test_connect_explain.py]).

Rule 1: :func:`decode_links`, :func:`decode_addrs` and :func:`decode_route` are pure;
:func:`read` does the two dumps and :func:`route_get` the one question.
"""
from __future__ import annotations

import errno
import struct
from typing import NamedTuple

from . import _netlink
from ..model._addr import AF_INET, AF_INET6

__all__ = ["Link", "Addr", "Interfaces", "Route", "decode_links", "decode_addrs", "decode_route", "read",
           "route_get", "route_request"]

RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTA_DST, RTA_SRC, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC, RTA_UID = 1, 2, 4, 5, 7, 25
ROUTE_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast", 6: "blackhole",
               7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat"}
IFLA_IFNAME = 3
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
IFF_UP, IFF_LOOPBACK = 0x1, 0x8
IFA_F_DADFAILED, IFA_F_TENTATIVE = 0x08, 0x40

_IFINFO = struct.Struct("=BxHiII")   # family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBi")    # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags


class Link(NamedTuple):
    name: str
    ifindex: int
    loopback: bool
    up: bool


class Addr(NamedTuple):
    family: int
    addr: int
    plen: int
    ifindex: int
    usable: bool = True   # False: tentative or failed duplicate address detection


class Route(NamedTuple):
    """The kernel's answer to ``ip route get DEST``."""

    family: int
    kind: str                  # "unicast", "local", ... (ROUTE_TYPES)
    source: int | None         # RTA_PREFSRC: the source address a connect() gets
    oif: int | None            # RTA_OIF: the output device
    gateway: int | None        # RTA_GATEWAY


class Interfaces:
    """Devices, addresses, and one line per message that could not be decoded.  (Plain
    classes and NamedTuples in ``live/``, not dataclasses: ``portspace ls`` does not pay for
    importing ``dataclasses`` and ``inspect``.)"""

    __slots__ = ("links", "addrs", "errors")

    def __init__(self, links: list[Link] | None = None, addrs: list[Addr] | None = None,
                 errors: list[str] | None = None) -> None:
        self.links: list[Link] = [] if links is None else links
        self.addrs: list[Addr] = [] if addrs is None else addrs
        self.errors: list[str] = [] if errors is None else errors

    def __repr__(self) -> str:
        return f"Interfaces(links={self.links!r}, addrs={self.addrs!r}, errors={self.errors!r})"


def decode_links(data: bytes | memoryview, out: Interfaces | None = None) -> Interfaces:
    out = out if out is not None else Interfaces()
    for mtype, _f, start, end in _netlink.iter_messages(data):
        if mtype != RTM_NEWLINK:
            continue
        if end - start < _IFINFO.size:
            out.errors.append("short ifinfomsg")
            continue
        _fam, _type, index, flags, _change = _IFINFO.unpack_from(data, start)
        name = None
        for atype, a0, a1 in _netlink.iter_attrs(data, start + _IFINFO.size, end):
            if atype == IFLA_IFNAME:
                name = bytes(data[a0:a1]).split(b"\0", 1)[0].decode("utf-8", "replace")
        if not name:
            out.errors.append(f"link {index} has no name")
            continue
        out.links.append(Link(name, index, bool(flags & IFF_LOOPBACK), bool(flags & IFF_UP)))
    return out


def decode_addrs(data: bytes | memoryview, out: Interfaces | None = None) -> Interfaces:
    out = out if out is not None else Interfaces()
    for mtype, _f, start, end in _netlink.iter_messages(data):
        if mtype != RTM_NEWADDR:
            continue
        if end - start < _IFADDR.size:
            out.errors.append("short ifaddrmsg")
            continue
        family, plen, flags, _scope, index = _IFADDR.unpack_from(data, start)
        local = address = None
        for atype, a0, a1 in _netlink.iter_attrs(data, start + _IFADDR.size, end):
            if atype == IFA_LOCAL:
                local = bytes(data[a0:a1])
            elif atype == IFA_ADDRESS:
                address = bytes(data[a0:a1])
            elif atype == IFA_FLAGS and a1 - a0 >= 4:
                flags = struct.unpack_from("=I", data, a0)[0]
        raw = local if local is not None else address
        want = 4 if family == AF_INET else 16 if family == AF_INET6 else 0
        if raw is None or len(raw) != want:
            out.errors.append(f"address of family {family} on ifindex {index} has no usable value")
            continue
        usable = not flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)
        out.addrs.append(Addr(family, int.from_bytes(raw, "big"), plen, index, usable))
    return out


def read() -> Interfaces:
    """Dump the links and addresses of the reader's namespace.

    Raises:
        OSError: NETLINK_ROUTE cannot be used (the caller notes that local-address checks
            then see only the model's defaults).
    """
    out = Interfaces()
    for chunk in _netlink.dump(_netlink.NETLINK_ROUTE, _netlink.pack_request(RTM_GETLINK, _IFINFO.pack(0, 0, 0, 0, 0))):
        decode_links(chunk, out)
    for chunk in _netlink.dump(_netlink.NETLINK_ROUTE, _netlink.pack_request(RTM_GETADDR, _IFADDR.pack(0, 0, 0, 0, 0))):
        decode_addrs(chunk, out)
    return out


def route_request(family: int, dest: int, oif: int = 0, uid: int | None = None, seq: int = 1,
                  src: int | None = None) -> bytes:
    """The ``RTM_GETROUTE`` request for one destination (``ip route get DEST [from SRC] [oif DEV]
    [uid U]``; ``from``: the source of a socket bound before connect())."""
    size = 4 if family == AF_INET else 16
    attrs = _attr(RTA_DST, dest.to_bytes(size, "big"))
    if src is not None:
        attrs += _attr(RTA_SRC, src.to_bytes(size, "big"))
    if oif:
        attrs += _attr(RTA_OIF, struct.pack("=I", oif))
    if uid is not None:
        attrs += _attr(RTA_UID, struct.pack("=I", uid))
    body = _RTMSG.pack(family, size * 8, 0, 0, 0, 0, 0, 0, 0) + attrs
    return _netlink.pack_request(RTM_GETROUTE, body, seq, flags=_netlink.NLM_F_REQUEST)


def _attr(atype: int, value: bytes) -> bytes:
    return _netlink.NLA_HDR.pack(4 + len(value), atype) + value + b"\0" * (-len(value) % 4)


def decode_route(data: bytes | memoryview) -> Route | None:
    """The first ``RTM_NEWROUTE`` of an answer, or None when there is none (or it is short)."""
    for mtype, _f, start, end in _netlink.iter_messages(data):
        if mtype != RTM_NEWROUTE or end - start < _RTMSG.size:
            continue
        family, *_rest, rtype, _flags = _RTMSG.unpack_from(data, start)
        want = 4 if family == AF_INET else 16 if family == AF_INET6 else 0
        source = oif = gateway = None
        for atype, a0, a1 in _netlink.iter_attrs(data, start + _RTMSG.size, end):
            if atype == RTA_PREFSRC and a1 - a0 == want:
                source = int.from_bytes(bytes(data[a0:a1]), "big")
            elif atype == RTA_GATEWAY and a1 - a0 == want:
                gateway = int.from_bytes(bytes(data[a0:a1]), "big")
            elif atype == RTA_OIF and a1 - a0 == 4:
                oif = struct.unpack_from("=I", data, a0)[0]
        return Route(family, ROUTE_TYPES.get(rtype, f"type {rtype}"), source, oif, gateway)
    return None


def route_get(family: int, dest: int, oif: int = 0, uid: int | None = None, src: int | None = None) -> Route:
    """Ask the kernel which route ``dest`` takes (nothing changes: a question).

    Raises:
        OSError: the route lookup's error, which is connect()'s error for this destination
            (a :class:`~._netlink.NetlinkError`), or NETLINK_ROUTE cannot be used.
    """
    route = decode_route(_netlink.request(_netlink.NETLINK_ROUTE, route_request(family, dest, oif, uid, src=src)))
    if route is None:
        raise _netlink.NetlinkError(errno.EPROTO, "the route answer holds no route")
    return route

