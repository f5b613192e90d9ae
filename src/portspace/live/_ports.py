"""``portspace ports``: the ephemeral range, who uses it, and how many connections are left.

Theory of operation
-------------------
Pure arithmetic over a :class:`~._snapshot.Snapshot` (no I/O here), following spec §5.3, the
kernel's connect() autobind (``inet_hashtables.c: __inet_hash_connect``):

* the candidate ports are ``ip_local_port_range`` minus ``ip_local_reserved_ports``;
* a port with no TCP owner is free for any destination;
* a port whose owners all got it from connect() (bucket flags -1/-1) may be reused for another
  destination -- the 4-tuple (source, port, destination) only has to be new (§6.1);
* a port held by a listener, a bound-only socket or an accepted connection (flags >= 0) is never
  chosen by connect(), for any destination (§5.3, [V eph:C]).

So for connections from source address S to destination D, the ports left are::

    |free ports| + |ports held only by connect()ed sockets, none of them S -> D|

Which sockets got their port from connect() cannot be read (the kernel does not export the
``SOCK_CONNECT_BIND`` userlock); it is *estimated*: a connected socket or TIME_WAIT remnant whose
port has no listener and no bound-only socket is taken as connect()-bound.  The report says so.
A TIME_WAIT remnant to D holds its 4-tuple for up to 60 s (§6.2), unless connect() may recycle it
(``tcp_tw_reuse``, §6.4: 2 = loopback only, 1 s after the close, with TCP timestamps); those are
counted apart.

UDP has no 4-tuple rule for autobind (§5.5): a UDP port is free for a new socket when no UDP
socket holds it (before SO_REUSEADDR/SO_REUSEPORT sharing).

Warnings: a TCP listener (or bound-only socket) on a fixed port inside the ephemeral range, not
reserved.  connect() never takes a port a listener holds, but while the listener is down (a
restart) an outgoing connection can take it, and the listener's bind() then fails with
EADDRINUSE -- the misattribution of peers note §0.5.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._rows import TCP_NEW_SYN_RECV, addr_text
from ._snapshot import HostSocket, Snapshot
from ..model._addr import AF_INET6, v4_is_loopback
from ..model._rules import CLOSE, LISTEN, SYN_RECV

__all__ = ["Destination", "PortsReport", "report"]


@dataclass
class Destination:
    family: int
    source: int
    address: int
    port: int
    live: int = 0             # connections in any non-TIME_WAIT state
    time_wait: int = 0        # remnants holding the 4-tuple
    recyclable: int = 0       # remnants connect() may recycle (tcp_tw_reuse)
    left: int = 0             # further connect()s before EADDRNOTAVAIL

    @property
    def text(self) -> str:
        a = addr_text(self.family, self.address)
        return f"[{a}]:{self.port}" if self.family == AF_INET6 else f"{a}:{self.port}"

    @property
    def source_text(self) -> str:
        return addr_text(self.family, self.source)

    def as_dict(self) -> dict[str, Any]:
        return {"destination": self.text, "source": self.source_text, "connections": self.live,
                "time_wait": self.time_wait, "time_wait_recyclable": self.recyclable,
                "connections_left": self.left}


@dataclass
class PortsReport:
    range: tuple[int, int]
    reserved: frozenset[int]
    usable: int                                   # ports of the range connect() may pick
    tcp: dict[str, int] = field(default_factory=dict)
    udp: dict[str, int] = field(default_factory=dict)
    destinations: list[Destination] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        lo, hi = self.range
        return {"ip_local_port_range": [lo, hi], "range_size": hi - lo + 1,
                "ip_local_reserved_ports": _ranges_text(self.reserved),
                "reserved_in_range": sum(1 for p in self.reserved if lo <= p <= hi),
                "usable_for_connect": self.usable, "tcp": self.tcp, "udp": self.udp,
                "destinations": [d.as_dict() for d in self.destinations],
                "warnings": self.warnings, "notes": self.notes}


def _ranges_text(ports: frozenset[int]) -> str:
    """{1, 2, 3, 7} -> "1-3,7" (the kernel's format)."""
    out: list[str] = []
    for p in sorted(ports):
        if out and out[-1][1] == p - 1:
            out[-1] = (out[-1][0], p)  # type: ignore[assignment]
        else:
            out.append((p, p))  # type: ignore[arg-type]
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in out)  # type: ignore[misc]


def _loopback(family: int, addr: int) -> bool:
    if family == AF_INET6:
        return addr == 1 or (addr >> 32 == 0xFFFF and v4_is_loopback(addr & 0xFFFFFFFF))
    return v4_is_loopback(addr)


def report(snap: Snapshot) -> PortsReport:
    lo, hi = snap.port_range()
    reserved = snap.reserved()
    candidates = [p for p in range(lo, hi + 1) if p not in reserved]
    cand_set = set(candidates)
    rep = PortsReport((lo, hi), reserved, len(candidates))
    tcp = [hs for hs in snap.sockets if hs.row.proto == "tcp" and hs.row.state not in (SYN_RECV, TCP_NEW_SYN_RECV)]
    udp = [hs for hs in snap.sockets if hs.row.proto == "udp"]
    # ports whose bucket was made by bind()/listen(): any listener or bound-only owner
    fixed_ports = {hs.row.lport for hs in tcp if hs.row.state in (LISTEN, CLOSE)}
    tcp_ports = {hs.row.lport for hs in tcp}
    connect_only = tcp_ports - fixed_ports
    free = cand_set - tcp_ports
    shared = cand_set & connect_only
    tw = [hs for hs in tcp if hs.row.tw]
    rep.tcp = {"sockets": len(tcp) - len(tw), "time_wait": len(tw), "ports_in_use": len(tcp_ports),
               "ports_in_use_in_range": len(tcp_ports & set(range(lo, hi + 1))),
               "ports_fixed_by_bind_or_listen": len(fixed_ports),
               "ports_time_wait_only": len({hs.row.lport for hs in tw} - {hs.row.lport for hs in tcp if not hs.row.tw}),
               "ports_free_in_range": len(free)}
    udp_ports = {hs.row.lport for hs in udp}
    rep.udp = {"sockets": len(udp), "ports_in_use": len(udp_ports),
               "ports_in_use_in_range": len(udp_ports & set(range(lo, hi + 1))),
               "ports_free_in_range": len(cand_set - udp_ports)}
    # destinations
    tw_reuse = snap.sysctls.get("net.ipv4.tcp_tw_reuse", "2").strip()
    timestamps = snap.sysctls.get("net.ipv4.tcp_timestamps", "1").strip() != "0"
    dests: dict[tuple[int, int, int, int], Destination] = {}
    used: dict[tuple[int, int, int, int], set[int]] = {}
    for hs in tcp:
        r = hs.row
        if r.state in (LISTEN, CLOSE) or not r.rport or r.lport in fixed_ports:
            continue  # listeners, bound-only sockets, and accepted connections of a listener
        key = (r.family, r.laddr, r.raddr, r.rport)
        d = dests.get(key)
        if d is None:
            d = dests[key] = Destination(r.family, r.laddr, r.raddr, r.rport)
            used[key] = set()
        used[key].add(r.lport)
        if r.tw:
            d.time_wait += 1
            if r.state == 6 and timestamps and (tw_reuse == "1" or (tw_reuse == "2" and (
                    r.ifindex == 1 or _loopback(r.family, r.laddr) or _loopback(r.family, r.raddr)))):
                d.recyclable += 1
        else:
            d.live += 1
    for key, d in dests.items():
        d.left = len(free) + len(shared - used[key])
    rep.destinations = sorted(dests.values(), key=lambda d: (-(d.live + d.time_wait), d.text))
    # warnings
    listeners: dict[int, list[HostSocket]] = {}
    for hs in tcp:
        if hs.row.state in (LISTEN, CLOSE) and lo <= hs.row.lport <= hi:
            listeners.setdefault(hs.row.lport, []).append(hs)
    for port in sorted(listeners):
        if port in reserved:
            continue
        hs = listeners[port][0]
        what = "listens on" if hs.row.state == LISTEN else "is bound to"
        rep.warnings.append(f"{hs.label()} {what} TCP port {port}, inside ip_local_port_range {lo}-{hi}: while it "
                            f"is down, an outgoing connection can take the port and its bind() fails with EADDRINUSE "
                            f"(add it to net.ipv4.ip_local_reserved_ports)")
    for d in rep.destinations:
        if d.left < max(100, rep.usable // 20):
            rep.warnings.append(f"only {d.left} more connections from {d.source_text} to {d.text} before connect() "
                                f"fails with EADDRNOTAVAIL")
    if dests:
        rep.notes.append("connections left assume that sockets on ports without a listener or bound-only socket "
                         "got their port from connect() (the kernel does not report it)")
    if snap.ports is not None:
        rep.notes.append(f"only local ports {snap.ports[0]}-{snap.ports[1]} were read")
    return rep
