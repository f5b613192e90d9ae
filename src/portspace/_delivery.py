"""Queries about delivery that change nothing: who receives a packet, and how flows spread.

Theory of operation
-------------------
:func:`who_receives` builds the packet the kernel would see (``model._demux.Packet``) from
socket-module address tuples and asks ``model._demux`` -- the very code that delivers SYNs and
datagrams -- with a trace, so the answer says why (established hash / hash4, the chains walked,
each candidate's score, the reuseport group, the hash and the member index).  :func:`flow_report`
runs the same lookup for many source addresses: how many flows reach each socket, and (compared
with a later report) how many flows moved when a member left or joined (spec §7.3).
Nothing here mutates the namespace.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from .model._addr import AF_INET, AF_INET6, V4MAPPED_PREFIX, parse_ipv4, parse_ipv6, v4_is_multicast
from .model._demux import Packet, mcast_targets, tcp_lookup, udp_lookup


def _addr(text: Any, what: str) -> tuple[bool, int, int]:
    if not (isinstance(text, tuple) and len(text) >= 2 and isinstance(text[0], str) and isinstance(text[1], int)):
        raise TypeError(f"{what} must be a (host, port) tuple, not {text!r}")
    host, port = text[0], text[1]
    if not 0 <= port <= 0xFFFF:
        raise OverflowError(f"{what}: port must be 0-65535.")
    h = host[1:-1] if host.startswith("[") else host
    v4 = parse_ipv4(h) if h.count(".") == 3 and ":" not in h else None
    if v4 is not None:
        return False, v4, port
    v6 = parse_ipv6(h)
    if v6 is None:
        raise ValueError(f"{what}: not a numeric IPv4 or IPv6 address: {host!r}")
    if v6 >> 32 == 0xFFFF:
        return False, v6 & 0xFFFFFFFF, port   # a v4-mapped address is an IPv4 packet on the wire
    return True, v6, port


def make_packet(kernel: Any, proto: str, src: Any, dst: Any, dev: str | None) -> Packet:
    if proto not in ("tcp", "udp"):
        raise ValueError(f"proto must be 'tcp' or 'udp', not {proto!r}")
    sv6, s, sp = _addr(src, "src")
    dv6, d, dp = _addr(dst, "dst")
    if sv6 != dv6:
        raise ValueError("src and dst must be of one family")
    ifindex = 1
    if dev is not None:
        d_ = kernel.devices.get(dev)
        if d_ is None:
            raise ValueError(f"no device {dev!r} in this namespace")
        ifindex = d_.ifindex
    return Packet(proto == "tcp", dv6, s, sp, d, dp, ifindex)


@dataclass(frozen=True)
class Delivery:
    """The answer of :func:`who_receives`: the receiving socket(s) (``fds``: their descriptors,
    -1 for a connection not accepted yet or a TIME_WAIT remnant), how (``kind``) and why
    (``lines``: the lookup step by step)."""

    packet: str
    kind: str                 # "unicast", "broadcast", "multicast"
    fds: tuple[int, ...]
    socks: tuple[Any, ...] = field(repr=False, compare=False)
    lines: tuple[str, ...] = field(repr=False)

    def __str__(self) -> str:
        if self.fds:
            who = ", ".join(f"#{fd}" if fd >= 0 else "(no descriptor)" for fd in self.fds)
        else:
            who = "nobody"
        head = f"{self.packet} ({self.kind}) -> {who}"
        return "\n".join([head] + ["  " + ln for ln in self.lines])


def who_receives(kernel: Any, proto: str, src: Any, dst: Any, dev: str | None = None) -> Delivery:
    pkt = make_packet(kernel, proto, src, dst, dev)
    trace: list[str] = []
    kind = "unicast"
    if pkt.tcp:
        got = tcp_lookup(kernel, pkt, trace)
        socks = (got,) if got is not None else ()
    else:
        t = "unicast" if pkt.v6 else kernel.v4_addr_type(pkt.daddr)
        if not pkt.v6 and (t == "broadcast" or v4_is_multicast(pkt.daddr)):
            kind = "multicast" if v4_is_multicast(pkt.daddr) else "broadcast"
            socks = tuple(mcast_targets(kernel, pkt, kind == "multicast", trace))
        else:
            got = udp_lookup(kernel, pkt, trace)
            socks = (got,) if got is not None else ()
    return Delivery(pkt.text(), kind, tuple(s.fd for s in socks), socks, tuple(trace))


@dataclass(frozen=True)
class FlowReport:
    """Where each of a set of flows (source addresses, one destination) lands.  ``assignment``
    maps each source to the receiving descriptor (None: nobody); ``counts`` is per descriptor."""

    assignment: dict[tuple, int | None]

    @property
    def counts(self) -> dict[int | None, int]:
        return dict(Counter(self.assignment.values()))

    def moved(self, later: "FlowReport") -> int:
        """How many flows of this report reach another socket in ``later``."""
        return sum(1 for src, fd in self.assignment.items() if later.assignment.get(src) != fd)

    def __str__(self) -> str:
        c = self.counts
        return ", ".join(f"#{fd}: {n}" for fd, n in sorted(c.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))


def flow_report(kernel: Any, proto: str, dst: Any, sources: Iterable[Any]) -> FlowReport:
    out: dict[tuple, int | None] = {}
    lookup = tcp_lookup if proto == "tcp" else udp_lookup
    for src in sources:
        pkt = make_packet(kernel, proto, src, dst, None)
        sk = lookup(kernel, pkt)
        out[tuple(src)] = None if sk is None else sk.fd
    return FlowReport(out)


_ = (AF_INET, AF_INET6, V4MAPPED_PREFIX)
