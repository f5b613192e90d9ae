"""``portspace explain connect``: would a TCP connect() to this destination start on this host
now, and why not?

Theory of operation
-------------------
A new socket's ``connect(D:P)`` goes through three steps, each of which can refuse it:

1. **The route** (``tcp_v4_connect`` / ``tcp_v6_connect`` → ``ip_route_connect``): the kernel
   is asked which route D takes (``_rtnl.route_get``: ``RTM_GETROUTE``, what ``ip route get``
   asks; nothing changes).  Its error *is* connect()'s error -- ENETUNREACH without a route,
   EHOSTUNREACH / EACCES / EINVAL for unreachable / prohibit / blackhole routes [V probe] --
   and its preferred source address S is the one connect() binds (spec §5.3).
2. **The port** (``__inet_hash_connect``, spec §5.3, §6.1, §6.4): the connect() autobind tries
   every port of the ephemeral range (less the reserved ones); a port with no TCP owner is
   usable, one whose owners all got it from connect() is usable when the 4-tuple
   (S, port, D, P) is new, one held by bind()/listen() or an accepted connection never is.
   The counting is :func:`._ports.report`'s for the one destination.  A TIME_WAIT remnant of
   (S, port, D, P) is recycled when ``tcp_tw_reuse`` allows it (2: loopback only), it is older
   than ``tcp_tw_reuse_delay`` and the connection used TCP timestamps -- which the kernel does
   not export: when recycling decides, the answer *depends* (exit 3, both cases).  None usable:
   EADDRNOTAVAIL.
3. **The answer** of D: for a local destination the model decides whether a listener takes the
   SYN (the snapshot loaded as for ``explain tcp``, then ``who_receives``); nobody listening is
   ECONNREFUSED (reported at once by a blocking connect(); a non-blocking one says EINPROGRESS
   first).  For a remote destination nothing here can know: the answer says the SYN would be
   sent, from which address and how many ports are left, and stops there (no packet is sent).

Which sockets got their port from connect() cannot be read either (the ``SOCK_CONNECT_BIND``
userlock is not exported): a port held only by connected sockets is shareable if they got it from
connect(), never if they bound it with bind() before connect().  When the answer rests on such
ports (no free port left), it *depends* (exit 3): both cases are given, and both happen on the
kernel (tests/live/test_connect_explain.py).
"""
from __future__ import annotations

import copy
import errno
from dataclasses import dataclass
from typing import Any

from ._ports import _loopback
from ._query import Case, HostReason, Question, Verdict, explain as explain_bind
from ._rows import addr_text
from ._rtnl import Route
from ._snapshot import Assumption, HostSocket, Snapshot, load, never
from ..model._addr import AF_INET, AF_INET6, parse_ipv4, parse_ipv6, v6_is_mapped
from ..model._rules import CLOSE, LISTEN, SYN_RECV, TIME_WAIT

__all__ = ["ConnectQuestion", "explain_connect", "ROUTE_ERRORS"]

ROUTE_ERRORS = {
    errno.ENETUNREACH: "no route leads to {dest} (no matching route, or a 'throw' route)",
    errno.EHOSTUNREACH: "the route to {dest} is of type 'unreachable'",
    errno.EACCES: "the route to {dest} is of type 'prohibit'",
    errno.EINVAL: "the route to {dest} is of type 'blackhole' (or the destination is invalid)",
}
"""What the route lookup's errors mean (``fib_props``: the error of each route type) [V probe]."""

TW_DURATION_MS = 60_000   # TCP_TIMEWAIT_LEN: a remnant's age is 60 s minus its timer's time left


@dataclass(frozen=True)
class ConnectQuestion:
    """A new TCP socket's connect() to ``host:port`` (optionally bound to a device first)."""

    family: int
    host: str
    port: int
    device: str | None = None
    uid: int | None = None
    source: str | None = None     # bind(SOURCE, 0) before connect()
    no_port: bool = False         # ... with IP_BIND_ADDRESS_NO_PORT (the port is chosen by connect())
    proto: str = "tcp"

    def __post_init__(self) -> None:
        if self.no_port and self.source is None:
            raise ValueError("--bind-no-port needs --from ADDR (IP_BIND_ADDRESS_NO_PORT applies to a bind())")
        if self.source is not None:
            if (":" in self.source) != (self.family == AF_INET6):
                raise ValueError(f"the source {self.source} and the destination {self.host} are of different "
                                 f"families")
            if "%" in self.source:
                raise ValueError("a link-local source address (%scope) is not modelled")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"connect() needs a destination port from 1 to 65535, not {self.port}")
        if "%" in self.host:
            raise ValueError("connect() to a link-local IPv6 address (%scope) is not modelled")
        for what, text in (("destination", self.host), ("source", self.source)):
            if text is not None and self.family == AF_INET6 and v6_is_mapped(parse_ipv6(text)):
                raise ValueError(f"a v4-mapped {what} address ({text}) is not modelled by explain connect: "
                                 f"ask about the IPv4 address")
        if self.uid is not None and not 0 <= self.uid <= 0xFFFFFFFE:
            raise ValueError(f"uid {self.uid} out of range")

    @property
    def address(self) -> int:
        return parse_ipv6(self.host) if self.family == AF_INET6 else parse_ipv4(self.host)

    @property
    def route_address(self) -> int:
        """The destination the route is asked for: ``::`` means ``::1`` (``tcp_v6_connect``);
        ``0.0.0.0`` is asked as it is (the route lookup makes it the source, ``ip_route_connect``)."""
        a = self.address
        return 1 if a == 0 and self.family == AF_INET6 else a

    @property
    def source_address(self) -> int | None:
        if self.source is None:
            return None
        return parse_ipv6(self.source) if self.family == AF_INET6 else parse_ipv4(self.source)

    def bind_question(self) -> Question | None:
        """The bind() made before connect(), when ``source`` is given: of port 0."""
        if self.source is None:
            return None
        return Question("tcp", self.family, self.source, 0, device=self.device, uid=self.uid, no_port=self.no_port)

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if self.family == AF_INET6 else f"{self.host}:{self.port}"

    def text(self, uid: int) -> str:
        fam = "6" if self.family == AF_INET6 else ""
        dev = f" with SO_BINDTODEVICE={self.device}" if self.device else ""
        call = f"connect(TCP{fam} {self.endpoint})"
        if self.source is not None:
            src = f"[{self.source}]:0" if self.family == AF_INET6 else f"{self.source}:0"
            call = f"bind({src}){' with IP_BIND_ADDRESS_NO_PORT' if self.no_port else ''} + {call}"
        return f"{call}{dev} as uid {uid}"

    def as_dict(self) -> dict[str, Any]:
        return {"proto": "tcp", "call": "connect", "family": "inet6" if self.family == AF_INET6 else "inet",
                "address": self.host, "port": self.port, "device": self.device, "uid": self.uid,
                "source": self.source, "bind_address_no_port": self.no_port}


@dataclass
class PortCount:
    """The connect() autobind's candidates for one (source, destination)."""

    usable: int = 0          # ports of the range, less the reserved ones
    free: int = 0            # no TCP owner
    shared: int = 0          # owned only by connect()ed sockets, none of them S -> D
    to_dest: int = 0         # ports whose 4-tuple S -> D is held by a live connection
    fixed: int = 0           # held by a listener, a bound-only socket or an accepted connection
    waiting: list[HostSocket] | None = None      # TIME_WAIT remnants S -> D holding their port
    recyclable: list[HostSocket] | None = None   # of those, recyclable if they used timestamps
    estimated: int = 0       # ports taken as connect()-only by the estimate
    sharers: list[HostSocket] | None = None      # the connected sockets on the shared ports

    @property
    def left(self) -> int:
        return self.free + self.shared

    def as_dict(self) -> dict[str, Any]:
        return {"usable": self.usable, "free": self.free, "shared_with_other_destinations": self.shared,
                "held_by_connections_to_it": self.to_dest, "held_by_bind_or_listen": self.fixed,
                "time_wait_to_it": len(self.waiting or ()), "time_wait_recyclable": len(self.recyclable or ()),
                "left": self.left}


def count_ports(snap: Snapshot, family: int, source: int, dest: int, dport: int) -> tuple[PortCount, list[HostSocket]]:
    """The candidates of connect() from ``source`` to ``dest:dport``, and the sockets that hold
    the ports it cannot use (for the explanation).  Addresses in the socket's family; an
    IPv4 destination is compared with IPv4 and v4-mapped rows alike."""
    lo, hi = snap.port_range()
    reserved = snap.reserved()
    cands = {p for p in range(lo, hi + 1) if p not in reserved}
    tcp = [hs for hs in snap.sockets if hs.row.proto == "tcp" and hs.row.state not in (SYN_RECV, 12) and hs.row.lport]
    fixed = {hs.row.lport for hs in tcp if hs.row.state in (LISTEN, CLOSE)}
    owned = {hs.row.lport for hs in tcp}
    c = PortCount(usable=len(cands), waiting=[], recyclable=[], sharers=[])
    c.free = len(cands - owned)
    c.fixed = len(cands & fixed)
    # ports held by connections: of this 4-tuple's source and destination, or not
    to_dest: set[int] = set()
    tw_to_dest: dict[int, list[HostSocket]] = {}
    holders: list[HostSocket] = []
    reuse = snap.sysctls.get("net.ipv4.tcp_tw_reuse", "2").strip()
    delay = _int(snap.sysctls.get("net.ipv4.tcp_tw_reuse_delay", "1000"), 1000)
    for hs in tcp:
        r = hs.row
        if r.lport not in cands:
            continue
        if r.lport in fixed:
            holders.append(hs)
            continue
        if _same(r.family, r.laddr, family, source) and _same(r.family, r.raddr, family, dest) and r.rport == dport:
            holders.append(hs)
            if r.tw:
                tw_to_dest.setdefault(r.lport, []).append(hs)
            else:
                to_dest.add(r.lport)
    shared = (cands & owned) - fixed - to_dest - set(tw_to_dest)
    c.shared = len(shared)
    c.sharers = [hs for hs in tcp if hs.row.lport in shared]
    c.estimated = len((cands & owned) - fixed)
    c.to_dest = len(to_dest)
    timestamps = snap.sysctls.get("net.ipv4.tcp_timestamps", "1").strip() != "0"
    for port, remnants in tw_to_dest.items():
        if port in to_dest:
            continue                     # a live connection holds the 4-tuple as well
        c.waiting.extend(remnants)
        for hs in remnants:
            r = hs.row
            loop = r.ifindex == 1 or _loopback(r.family, r.laddr) or _loopback(r.family, r.raddr)
            allowed = r.state == TIME_WAIT and (reuse == "1" or (reuse == "2" and loop))
            age = TW_DURATION_MS - r.expires_ms if r.expires_ms is not None else None
            if allowed and timestamps and age is not None and age > delay:
                c.recyclable.append(hs)
    return c, holders


def _int(text: str, default: int) -> int:
    text = text.strip()
    return int(text) if text.isdigit() else default


def _same(row_family: int, row_addr: int, family: int, addr: int) -> bool:
    """A row's address equals ``addr`` of ``family`` (v4-mapped rows match IPv4 addresses)."""
    if row_family == family:
        return row_addr == addr
    if row_family == AF_INET6 and family == AF_INET:
        return v6_is_mapped(row_addr) and row_addr & 0xFFFFFFFF == addr
    return False


def explain_connect(snap: Snapshot, q: ConnectQuestion, route: Route | OSError) -> Verdict:
    """Answer ``q`` (see the module header); ``route`` is the kernel's answer for the
    destination (:func:`._rtnl.route_get`, with the bound source when ``q.source`` is given) or
    the error it raised.

    With ``q.source``, the bind() comes first and is answered as ``explain tcp SOURCE:0`` is (the
    model decides): a refusal there is the answer.  Without IP_BIND_ADDRESS_NO_PORT that bind()
    takes a port no socket holds (spec §5.2), so connect()'s 4-tuple is new; with it, the port
    is chosen by connect() as without a bind, from the bound source."""
    uid = snap.euid if q.uid is None else q.uid
    dest = q.route_address
    notes: list[str] = []
    extra: dict[str, Any] = {}
    bound_port = False
    bq = q.bind_question()
    if bq is not None:
        bv = explain_bind(snap, bq)
        notes.extend(bv.notes)
        extra["bind"] = {"verdict": bv.status, "cases": [c.as_dict() for c in bv.cases]}
        if bv.status != "ok":
            return _verdict(q, uid, bv.status, bv.cases, notes, extra, deciding=bv.deciding,
                            depends_on=bv.depends_on if bv.status == "depends" else None)
        bound_port = not q.no_port
    if isinstance(route, OSError):
        name = errno.errorcode.get(route.errno or 0, str(route.errno))
        why = ROUTE_ERRORS.get(route.errno or 0, "the kernel's route lookup for {dest} fails: " + (route.strerror or ""))
        reason = HostReason("route", "§5.3", why.format(dest=addr_text(q.family, dest)) +
                            f": connect() fails with {name} before any port is taken",
                            ["a route to the destination existed (ip route add ...)"], None)
        extra["route"] = {"error": name}
        return _verdict(q, uid, "fail", [Case(False, name, "connect", [reason])], notes, extra)
    extra["route"] = {"type": route.kind, "source": addr_text(q.family, route.source) if route.source is not None else None,
                      "device": _device_name(snap, route.oif), "gateway": addr_text(q.family, route.gateway)
                      if route.gateway is not None else None}
    if route.kind not in ("unicast", "local"):
        raise NotImplementedError(f"explain connect through a route of type {route.kind!r} is not modelled")
    if route.source is None and q.source is not None:
        route = route._replace(source=q.source_address)     # a bound source: the route keeps it
    if route.source is None:
        raise NotImplementedError("explain connect: the route names no source address (RTA_PREFSRC), and the "
                                  "kernel's source address selection is not modelled")
    source = route.source
    src_text = addr_text(q.family, source)
    extra["source_address"] = src_text
    if dest == 0:
        dest = source    # connect() to 0.0.0.0 reaches the source address itself (ip_route_connect)
    dest_text = addr_text(q.family, dest)
    dest_end = f"[{dest_text}]:{q.port}" if q.family == AF_INET6 else f"{dest_text}:{q.port}"
    if dest != q.address:
        extra["destination_address"] = dest_text
        notes.append(f"connect() to {q.host} reaches {dest_text}")
    lo, hi = snap.port_range()
    tuple_text = f"{src_text} -> {dest_end}"
    if bound_port:
        port_reason = HostReason(
            "bound-before-connect", "§5.2", f"bind() took a port no socket holds, so the 4-tuple {tuple_text} "
            f"from it is new (connect() does not choose the port; it cannot share one with other "
            f"destinations either)", [], None)
        if route.kind == "local":
            return _local_answer(snap, q, uid, source, dest_text, port_reason, notes, extra)
        port_reason.message += (f"; the SYN would leave through {extra['route']['device'] or 'the route'}"
                                f" -- whether {q.endpoint} answers cannot be known here (nothing is sent)")
        return _verdict(q, uid, "ok", [Case(True, None, "connect", [port_reason])], notes, extra)
    counts, holders = count_ports(snap, q.family, source, dest, q.port)
    extra["ports"] = counts.as_dict()
    if counts.left == 0:
        return _exhausted(snap, q, uid, counts, holders, tuple_text, (lo, hi), notes, extra)
    port_reason = HostReason(
        "connect-autobind", "§5.3",
        f"connect() finds a local port for {tuple_text}: {counts.left} of the {counts.usable} usable ports of "
        f"ip_local_port_range {lo}-{hi} are left ({counts.free} free, {counts.shared} used only by connections "
        f"to other destinations)", [], None)
    if route.kind == "local":
        v = _local_answer(snap, q, uid, source, dest_text, port_reason, notes, extra)
    else:
        port_reason.message += (f"; the SYN would leave through {extra['route']['device'] or 'the route'}"
                                f" -- whether {q.endpoint} answers cannot be known here (nothing is sent)")
        v = _verdict(q, uid, "ok", [Case(True, None, "connect", [port_reason])], notes, extra)
    if v.status == "ok" and not counts.free:
        # Every port left is shared with connections to other destinations, which is allowed only
        # if they got it from connect() -- not from bind(port 0) before connect() (spec §5.3: a
        # bucket made by bind() is never used by connect()); the kernel does not report which.
        shared = counts.shared
        counts.shared = 0
        fail = _exhausted(snap, q, uid, counts, holders, tuple_text, (lo, hi), [], extra, shared_unknown=shared)
        counts.shared = shared
        ok = v.cases[0]
        ok.assumption = (f"the connected sockets on the {shared} ports it would share got them from connect() "
                         f"(the usual case)")
        fail.cases[0].assumption = "they bound them with bind() before connect() (such a port is never shared)"
        return _verdict(q, uid, "depends", [ok, *fail.cases], v.notes, extra,
                        depends_on="how connected sockets got their ports (connect() or bind()), which the kernel "
                                   "does not report")
    return v


def _device_name(snap: Snapshot, ifindex: int | None) -> str | None:
    if ifindex is None:
        return None
    return next((link.name for link in snap.links if link.ifindex == ifindex), f"ifindex {ifindex}")


def _exhausted(snap: Snapshot, q: ConnectQuestion, uid: int, counts: PortCount, holders: list[HostSocket],
               tuple_text: str, rng: tuple[int, int], notes: list[str], extra: dict[str, Any],
               shared_unknown: int = 0) -> Verdict:
    lo, hi = rng
    waiting = counts.waiting or []
    fixes = [f"net.ipv4.ip_local_port_range were wider than {lo}-{hi} (sysctl -w net.ipv4.ip_local_port_range=...)",
             "the client used another source address (bind() to another local address first, with "
             "IP_BIND_ADDRESS_NO_PORT) or another destination address or port"]
    if counts.to_dest or waiting:
        fixes.append(f"fewer connections to {q.endpoint} were open (reuse them: keep-alive, a connection pool)")
    if shared_unknown:
        fixes.append("the clients that bind() before connect() set IP_BIND_ADDRESS_NO_PORT first (connect() then "
                     "chooses the port, and can share it between destinations)")
        holders = holders + (counts.sharers or [])
    if waiting and not counts.recyclable:
        reuse = snap.sysctls.get("net.ipv4.tcp_tw_reuse", "2").strip()
        fixes.append(f"the {len(waiting)} TIME_WAIT remnants to it were recyclable (net.ipv4.tcp_tw_reuse=1; it is "
                     f"{reuse}) or had expired (within 60 s)")
    message = (f"every usable port of ip_local_port_range {lo}-{hi} ({counts.usable}) is taken for {tuple_text}: "
               f"{counts.to_dest} by connections to it, {len(waiting)} by its TIME_WAIT remnants, "
               f"{counts.fixed} by listeners, bound-only sockets or accepted connections (never used by connect())"
               + (f", {shared_unknown} by connections to other destinations that bound their port with bind()"
                  if shared_unknown else ""))
    described = [hs for hs in holders if not hs.row.tw][:1] or holders[:1]
    reason = HostReason("ports-exhausted", "§5.3", message, fixes, described[0] if described else None,
                        [hs for hs in holders if hs not in described])
    fail = Case(False, "EADDRNOTAVAIL", "connect", [reason])
    if not counts.recyclable:
        return _verdict(q, uid, "fail", [fail], notes, extra)
    n = len(counts.recyclable)
    ok = Case(True, None, "connect", [HostReason(
        "time-wait-recycled", "§6.4",
        f"connect() recycles one of the {n} TIME_WAIT remnants of {tuple_text} (tcp_tw_reuse allows it and it is "
        f"older than tcp_tw_reuse_delay) and takes its port", [], counts.recyclable[0], counts.recyclable[1:])],
        assumption="the remnants' connections used TCP timestamps (the usual case)")
    fail.assumption = "they did not use TCP timestamps"
    notes.append("whether a TIME_WAIT remnant's connection used TCP timestamps is not reported by the kernel")
    return _verdict(q, uid, "depends", [ok, fail], notes, extra, depends_on="whether TIME_WAIT remnants used TCP "
                    "timestamps, which the kernel does not report")


def _local_answer(snap: Snapshot, q: ConnectQuestion, uid: int, source: int, dest_text: str,
                  port_reason: HostReason, notes: list[str], extra: dict[str, Any]) -> Verdict:
    """A local destination: does a listener take the SYN?  Asked of the model under the
    pessimistic and the optimistic assumption about unknown flags (IPV6_V6ONLY of ``[::]``
    listeners decides whether they take IPv4)."""
    # Only the listeners are loaded: the SYN of a new connection has a new 4-tuple, so no
    # established socket or remnant can take it (and 8 000 client sockets would cost seconds).
    end = f"[{dest_text}]:{q.port}" if q.family == AF_INET6 else f"{dest_text}:{q.port}"
    listening = copy.copy(snap)
    listening.sockets = [hs for hs in snap.sockets if hs.row.proto == "tcp" and hs.row.state == LISTEN]
    listening._groups = {}
    found = []
    for assume in (never, Assumption(True)):
        ns, fd_map, _load_notes = load(listening, "tcp", assume)
        src = (addr_text(q.family, source), 40000)
        d = ns.who_receives("tcp", src, (dest_text, q.port), q.device)
        listener = None
        for fd in d.fds:
            cls = fd_map.get(fd)
            if cls and cls[0].row.state == LISTEN:
                listener = cls[0]
        found.append(listener)
    if found[0] is not None and found[1] is not None:
        hs = found[0]
        port_reason.message += f"; {hs.label()}, listening on {hs.local}, takes the SYN"
        notes.append("if that listener's accept queue is full, the SYN is dropped and connect() waits (the queue "
                     "is not modelled)")
        return _verdict(q, uid, "ok", [Case(True, None, "connect", [port_reason])], notes, extra)
    refused = Case(False, "ECONNREFUSED", "connect", [port_reason, HostReason(
        "no-listener", "§7.1", f"nothing listens on {end}: the SYN is answered with a reset (a blocking "
        f"connect() fails with ECONNREFUSED; a non-blocking one says EINPROGRESS, then SO_ERROR is ECONNREFUSED)",
        [f"a server listened on {end} (or on its wildcard address)"], None)])
    if found[0] is None and found[1] is None:
        return _verdict(q, uid, "fail", [refused], notes, extra)
    hs = found[1]
    ok = Case(True, None, "connect", [port_reason], assumption=f"{hs.label()} has IPV6_V6ONLY off")
    refused.assumption = "it has IPV6_V6ONLY on"
    return _verdict(q, uid, "depends", [ok, refused], notes, extra, deciding=[(hs, "v6only")])


def _verdict(q: ConnectQuestion, uid: int, status: str, cases: list[Case], notes: list[str], extra: dict[str, Any],
             depends_on: str | None = None, deciding: list[tuple[HostSocket, str]] | None = None) -> Verdict:
    v = Verdict(q, uid, status, cases, deciding=deciding or [], notes=notes, extra=extra)  # type: ignore[arg-type]
    if depends_on:
        v.depends_on = depends_on
    return v
