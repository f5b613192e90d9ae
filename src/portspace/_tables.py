"""A read-only, printable view of the model's kernel tables (what seed 000 asks to see).

``Tables.of(netns)`` copies the tables into plain data (so later steps do not change it);
``str()`` renders them as text and ``as_dict()`` as JSON-ready data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .model._addr import AF_INET
from .model._explain import SockInfo, sock_info
from .model._rules import FASTREUSEPORT_ANY, FASTREUSEPORT_STRICT
from .model._sock import addr_text

_FRP = {0: "0", -1: "-1", FASTREUSEPORT_ANY: "ANY", FASTREUSEPORT_STRICT: "STRICT"}


@dataclass(frozen=True)
class Bind2View:
    address: str
    owners: tuple[SockInfo, ...]


@dataclass(frozen=True)
class BucketView:
    port: int
    fastreuse: int
    fastreuseport: str
    fastuid: int | None
    fast_address: str | None
    addresses: tuple[Bind2View, ...]


@dataclass(frozen=True)
class ChainView:
    address: str
    port: int
    members: tuple[SockInfo, ...]
    groups: tuple[int | None, ...]


@dataclass(frozen=True)
class Tables:
    tcp_bhash: tuple[BucketView, ...]
    tcp_listeners: tuple[ChainView, ...]
    udp_ports: tuple[tuple[int, tuple[SockInfo, ...]], ...]
    udp_chains: tuple[ChainView, ...]
    groups: dict[int, tuple[int, ...]] = field(default_factory=dict)
    unbound: tuple[SockInfo, ...] = ()

    @classmethod
    def of(cls, ns: Any) -> "Tables":
        buckets = []
        for port in sorted(ns.bhash):
            tb = ns.bhash[port]
            b2 = tuple(Bind2View(addr_text(o.family, o.rcv_saddr, o.v6_rcv_saddr) if (o := tb2.owners[0]) else "",
                                 tuple(sock_info(ns, s) for s in tb2.owners)) for tb2 in tb.tb2s.values())
            fast_addr = None
            if tb.fastreuseport > 0:
                fast_addr = addr_text(tb.fast_family, tb.fast_rcv_saddr, tb.fast_v6_rcv_saddr)
            buckets.append(BucketView(port, tb.fastreuse, _FRP.get(tb.fastreuseport, str(tb.fastreuseport)),
                                      tb.fastuid if tb.fastreuseport > 0 else None, fast_addr, b2))
        groups: dict[int, tuple[int, ...]] = {}

        def chains(table: dict) -> tuple[ChainView, ...]:
            out = []
            for (fam, addr, port), members in sorted(table.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1])):
                if not members:
                    continue
                for s in members:
                    if s.group is not None:
                        groups[s.group.gid] = tuple(m.fd for m in s.group.socks)
                text = addr_text(AF_INET, addr, 0) if fam == AF_INET else addr_text(10, 0, addr)
                out.append(ChainView(text, port, tuple(sock_info(ns, s) for s in members),
                                     tuple(s.group.gid if s.group else None for s in members)))
            return tuple(out)

        listeners = chains(ns.lhash2)
        udp_chains = chains(ns.udp_hash2)
        udp = tuple((port, tuple(sock_info(ns, s) for s in ns.udp_ports[port])) for port in sorted(ns.udp_ports))
        unbound = tuple(sock_info(ns, s) for s in ns.socks.values() if not s.num)
        return cls(tuple(buckets), listeners, udp, udp_chains, groups, unbound)

    def __str__(self) -> str:
        lines = ["TCP bind buckets (bhash: port -> bhash2: address -> owners)"]
        if not self.tcp_bhash:
            lines.append("  (empty)")
        for b in self.tcp_bhash:
            fast = f"fastreuse={b.fastreuse} fastreuseport={b.fastreuseport}"
            if b.fastuid is not None:
                fast += f" (uid {b.fastuid}, {b.fast_address})"
            lines.append(f"  port {b.port}  [{fast}]")
            for a in b.addresses:
                lines.append(f"    {a.address}")
                for o in a.owners:
                    peer = f" -> {o.remote}" if o.remote else ""
                    if o.time_wait:
                        left = f", {o.time_left:.1f} s left" if o.time_left is not None else ""
                        lines.append(f"      {o.state} remnant of #{o.fd}{peer}{left}, {o.options_text()}")
                    else:
                        lines.append(f"      #{o.fd} {o.state}{peer}, uid {o.uid}, {o.options_text()}")
        lines.append("TCP listeners (lhash2 chains, lookup order)")
        if not self.tcp_listeners:
            lines.append("  (empty)")
        for c in self.tcp_listeners:
            members = ", ".join(f"#{m.fd}" + (f" (group {g})" if g else "") for m, g in zip(c.members, c.groups))
            lines.append(f"  {c.address}:{c.port} -> {members}")
        lines.append("UDP sockets (port slot, newest first)")
        if not self.udp_ports:
            lines.append("  (empty)")
        for port, socks in self.udp_ports:
            lines.append(f"  port {port}")
            for o in socks:
                lines.append(f"    #{o.fd} {o.address}, uid {o.uid}, {o.options_text()}")
        if self.groups:
            lines.append("Reuseport groups (members in slot order)")
            for gid, members in sorted(self.groups.items()):
                lines.append(f"  group {gid}: " + ", ".join(f"#{m}" for m in members))
        if self.unbound:
            lines.append("Sockets without a port: " + ", ".join(f"#{o.fd} ({o.proto})" for o in self.unbound))
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tcp_bhash": [{"port": b.port, "fastreuse": b.fastreuse, "fastreuseport": b.fastreuseport,
                           "fastuid": b.fastuid, "fast_address": b.fast_address,
                           "addresses": [{"address": a.address, "owners": [o.as_dict() for o in a.owners]}
                                         for a in b.addresses]} for b in self.tcp_bhash],
            "tcp_listeners": [{"address": c.address, "port": c.port, "members": [m.fd for m in c.members],
                               "groups": list(c.groups)} for c in self.tcp_listeners],
            "udp_ports": [{"port": p, "sockets": [o.as_dict() for o in socks]} for p, socks in self.udp_ports],
            "groups": {str(k): list(v) for k, v in self.groups.items()},
            "unbound": [o.as_dict() for o in self.unbound],
        }
