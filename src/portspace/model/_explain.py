"""Why a call was refused (or would succeed), and the smallest change that would make it work.

Theory of operation
-------------------
A refusal records a :class:`~._netns.Refusal`: frozen views of the socket asking and of the
owners of the port at that moment.  Nothing is computed then (refusals stay fast); reading
``err.reasons`` runs :func:`reasons_for` once and caches the list.

Every reason names a rule (a stable id and its spec section), the socket that blocks (by fd,
with protocol, address, state, uid and options) and fixes.  Fixes are not guessed: each
candidate change -- close the blocker, set an option on both, use another address or port --
is re-checked with the same predicates from ``_rules.py`` on modified views, and only those
that would make the call succeed are offered.

Rule 1: this module never changes state; it reads views and the namespace's configuration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from . import _rules
from ._addr import AF_INET, AF_INET6, ANY, coverage, format_ipv4
from ._errors import Cause, Op
from ._rules import CLOSE, CLOSE_WAIT, ESTABLISHED, LISTEN, STATE_NAMES, SYN_SENT
from ._sock import SockView


@dataclass(frozen=True)
class SockInfo:
    """A socket as an explanation names it."""

    fd: int
    proto: str
    family: int
    address: str
    port: int
    state: str
    uid: int
    reuseaddr: bool
    reuseport: bool
    device: str | None
    v6only: bool
    time_wait: bool = False
    time_left: float | None = None
    remote: str | None = None

    def options_text(self) -> str:
        opts = [n for n, on in (("SO_REUSEADDR", self.reuseaddr), ("SO_REUSEPORT", self.reuseport)) if on]
        if self.device:
            opts.append(f"SO_BINDTODEVICE={self.device}")
        if self.family == AF_INET6 and self.v6only:
            opts.append("IPV6_V6ONLY")
        return ", ".join(opts) if opts else "no options"

    def __str__(self) -> str:
        fam = "" if self.family == AF_INET else "6"
        peer = f" -> {self.remote}" if self.remote else ""
        if self.time_wait:
            left = f", {self.time_left:.1f} s left" if self.time_left is not None else ""
            return (f"a {self.state} remnant of socket #{self.fd} ({self.proto.upper()}{fam} "
                    f"{self.address}:{self.port}{peer}{left}, it had {self.options_text()})")
        return (f"socket #{self.fd} ({self.proto.upper()}{fam} {self.address}:{self.port}{peer}, {self.state}, "
                f"uid {self.uid}, {self.options_text()})")

    def as_dict(self) -> dict[str, Any]:
        return {"fd": self.fd, "proto": self.proto, "family": "inet6" if self.family == AF_INET6 else "inet",
                "address": self.address, "port": self.port, "state": self.state, "uid": self.uid,
                "reuseaddr": self.reuseaddr, "reuseport": self.reuseport, "device": self.device,
                "v6only": self.v6only, "time_wait": self.time_wait, "time_left": self.time_left,
                "remote": self.remote}


@dataclass(frozen=True)
class Reason:
    """One reason: ``rule`` is a stable kebab-case id, ``spec`` the section of the Linux port
    spec, ``message`` a sentence, ``blocker`` the socket in the way (if any), ``fixes`` the
    changes that were checked to make the call succeed."""

    rule: str
    spec: str
    message: str
    blocker: SockInfo | None = None
    fixes: tuple[str, ...] = field(default_factory=tuple)
    others: tuple[int, ...] = ()
    """fds of further blockers alike to ``blocker`` (same rule, state, flags, uid, address)."""

    def __str__(self) -> str:
        text = f"[{self.rule}, spec {self.spec}] {self.message}"
        if self.fixes:
            text += "\n    would succeed if: " + "; or ".join(self.fixes)
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "spec": self.spec, "message": self.message,
                "blocker": self.blocker.as_dict() if self.blocker else None, "fixes": list(self.fixes),
                "others": list(self.others)}


class LazyReasons(Sequence[Reason]):
    """The ``reasons`` attribute of a refusal: computed from the recorded views on first use."""

    __slots__ = ("_refusal", "_items")

    def __init__(self, refusal: Any) -> None:
        self._refusal = refusal
        self._items: list[Reason] | None = None

    def _get(self) -> list[Reason]:
        if self._items is None:
            r = self._refusal
            # the refusal recorded raw field tuples; make them views (the new socket with the
            # port it asked for)
            r.new = SockView._make(r.new)._replace(num=r.port)
            r.owners = tuple(SockView._make(o) for o in r.owners)
            self._items = reasons_for(r)
            self._refusal = None
        return self._items

    def __getitem__(self, i: Any) -> Any:
        return self._get()[i]

    def __len__(self) -> int:
        return len(self._get())

    def __iter__(self) -> Iterator[Reason]:
        return iter(self._get())

    def __str__(self) -> str:
        return "\n".join(str(r) for r in self._get())

    def __repr__(self) -> str:
        return f"LazyReasons({self._get()!r})"


def sock_info(ns: Any, v: Any) -> SockInfo:
    dev = ns.dev_by_index[v.bound_dev].name if v.bound_dev and v.bound_dev in ns.dev_by_index else None
    state = STATE_NAMES[v.state] if v.tcp else ("UNCONN" if v.state == CLOSE else "ESTAB")
    left = None
    if v.is_tw and v.expires:
        left = max(0.0, v.expires - ns.clock_seconds())
    return SockInfo(v.fd, v.proto, v.family, v.local_text(), v.num, state, v.uid,
                    bool(v.reuseaddr), bool(v.reuseport), dev, bool(v.v6only), bool(v.is_tw), left,
                    v.remote_text())


def _claims_text(v: Any) -> str:
    return v.local_text()


def _why_pair(new: Any, old: Any) -> tuple[str, str, str]:
    """(rule id, spec §, sentence) for a TCP/UDP pair that conflicts."""
    cover = f"{_claims_text(old)} and {_claims_text(new)} overlap"
    if new.local_text() == old.local_text():
        cover = f"both bind {_claims_text(new)}"
    if new.tcp:
        if new.reuseaddr and old.reuseaddr and old.state == LISTEN:
            return ("tcp-reuseaddr-vs-listener", "§3.2",
                    f"{cover}; both have SO_REUSEADDR, but TCP SO_REUSEADDR never relaxes a conflict "
                    f"with a listening socket")
    if new.reuseport and old.reuseport:
        if new.uid != old.uid and not old.is_tw:
            return ("reuseport-same-uid", "§3.2" if new.tcp else "§3.4",
                    f"{cover}; both have SO_REUSEPORT, but sharing needs the same owner uid "
                    f"(uid {new.uid} vs uid {old.uid})")
    if old.is_tw:
        # a remnant's flags are frozen: say which the new socket has in vain, and what is left
        lacking = [n for n, mine, its in (("SO_REUSEADDR", new.reuseaddr, old.reuseaddr),
                                          ("SO_REUSEPORT", new.reuseport, old.reuseport)) if mine and not its]
        if lacking:
            had = " nor ".join(lacking) if len(lacking) > 1 else lacking[0]
            return ("time-wait-kept-old-flags", "§6.3",
                    f"{cover}; it had {'neither ' if len(lacking) > 1 else 'no '}{had}, and a remnant keeps "
                    f"the flags its socket had, so setting {' and '.join(lacking)} now does not help; wait "
                    f"for it to expire")
    if new.reuseaddr != old.reuseaddr and not (new.reuseport and old.reuseport):
        who = "the new socket" if new.reuseaddr else ("the remnant" if old.is_tw else f"socket #{old.fd}")
        return ("reuse-option-on-one-side", "§3.5",
                f"{cover}; only {who} has SO_REUSEADDR -- an option set on one side has no effect")
    if new.reuseport != old.reuseport:
        who = "the new socket" if new.reuseport else ("the remnant" if old.is_tw else f"socket #{old.fd}")
        return ("reuse-option-on-one-side", "§3.5",
                f"{cover}; only {who} has SO_REUSEPORT -- an option set on one side has no effect")
    return ("overlap-without-reuse", "§2.1, §3.5",
            f"{cover}, and neither SO_REUSEADDR nor SO_REUSEPORT is set on both sockets")


def _conflicts(refusal: Any, new: Any, owners: Sequence[Any]) -> list[Any]:
    if new.tcp:
        return [o for o in owners if _rules.tcp_conflict(new, o, True, True)]
    return [o for o in owners if _rules.udp_conflict(new, o)]


def _with_addr(ns: Any, v: Any, family: int, rcv: int, v6: int, v6only: bool) -> Any:
    c4, c6 = coverage(family, rcv, v6, v6only)
    return v._replace(rcv_saddr=rcv, v6_rcv_saddr=v6, v6only=v6only, cov4=c4, cov6=c6)


def _candidate_addresses(ns: Any, new: Any) -> list[tuple[str, Any]]:
    """Local addresses of ``new``'s family it could bind instead (most specific first)."""
    out: list[tuple[str, Any]] = []
    if new.family == AF_INET:
        cands = [a for a, _, _, _ in ns.v4_addrs]
        if 0x7F000002 not in cands:
            cands.append(0x7F000002)  # 127.0.0.0/8 is local through lo
        for a in cands:
            if a != new.rcv_saddr:
                out.append((format_ipv4(a), _with_addr(ns, new, AF_INET, a, 0, False)))
    else:
        for a, _, _ in ns.v6_addrs:
            if a != new.v6_rcv_saddr:
                out.append((f"[{_with_addr(ns, new, AF_INET6, 0x7F000006, a, True).local_text()[1:-1]}]",
                            _with_addr(ns, new, AF_INET6, 0x7F000006, a, True)))
        if new.v6_rcv_saddr == 0 and not new.v6only:
            out.append(("[::] with IPV6_V6ONLY", _with_addr(ns, new, AF_INET6, 0, 0, True)))
    return out


def _fd_list(socks: list[Any], limit: int = 4) -> str:
    """"#3 and #5", or "#3, #5, #7 and 1998 more" for long lists."""
    fds = [f"#{s.fd}" for s in socks]
    if len(fds) <= limit:
        return " and ".join(fds)
    return ", ".join(fds[:3]) + f" and {len(fds) - 3} more"


def _fixes_for_conflict(refusal: Any, blockers: list[Any]) -> list[str]:
    ns, new, owners = refusal.ns, refusal.new, refusal.owners
    fixes: list[str] = []
    ids = {b.fd for b in blockers}
    others = [o for o in owners if o.fd not in ids]
    names = _fd_list(blockers)
    # 1. options on both sides
    frozen = [b for b in blockers if b.is_tw]  # a remnant's flags cannot change any more
    if frozen:
        # only the new socket can still change: an option the remnants kept may be enough
        for opt, field_ in (("SO_REUSEADDR", "reuseaddr"), ("SO_REUSEPORT", "reuseport")):
            if getattr(new, field_):
                continue
            trial_new = new._replace(**{field_: True})
            if not _conflicts(refusal, trial_new, owners):
                many = len(frozen) > 1
                fixes.append(f"{opt} were set on the new socket (the remnant{'s' if many else ''} of "
                             f"{_fd_list(frozen)} ha{'ve' if many else 's'} it)")
    elif new.tcp:
        listening = [b for b in blockers if b.state == LISTEN]
        if not listening and refusal.op is Op.BIND:
            trial_new = new._replace(reuseaddr=True)
            trial = [o._replace(reuseaddr=True) if o.fd in ids else o for o in owners]
            if not _conflicts(refusal, trial_new, trial):
                fixes.append(f"SO_REUSEADDR were set on the new socket and on {names} (it works only while "
                             f"the others do not listen)")
    else:
        trial_new = new._replace(reuseaddr=True)
        trial = [o._replace(reuseaddr=True) if o.fd in ids else o for o in owners]
        if not _conflicts(refusal, trial_new, trial):
            fixes.append(f"SO_REUSEADDR were set on the new socket and on {names} (unicast then goes to "
                         f"the best match, the last bound on ties)")
    uids = {b.uid for b in blockers if not b.is_tw}
    target_uid = new.uid if not uids or uids == {new.uid} else (uids.pop() if len(uids) == 1 else None)
    if target_uid is not None and not frozen:
        trial_new = new._replace(reuseport=True, uid=target_uid)
        trial = [o._replace(reuseport=True) if o.fd in ids else o for o in owners]
        if not _conflicts(refusal, trial_new, trial):
            who = "" if target_uid == new.uid else f", and the new socket were created by uid {target_uid}"
            fixes.append(f"SO_REUSEPORT were set on the new socket and on {names} before they bind{who}")
    # 2. close the blockers, or wait for remnants.  Closing leaves nothing on the port only for
    # sockets that are not connected or whose peer closed first (CLOSE_WAIT); an ESTABLISHED
    # socket's close() is the active close and leaves a remnant with the same flags (spec §6.2)
    live = [b for b in blockers if not b.is_tw]
    plain = [b for b in live if not b.tcp or b.state in (LISTEN, CLOSE, SYN_SENT, CLOSE_WAIT)]
    connected = [b for b in live if b.tcp and b.state == ESTABLISHED and b.remote_text() != f"{b.local_text()}:{b.num}"]
    if len(plain) + len(connected) == len(live) and not _conflicts(refusal, new, others):
        rems = [b for b in blockers if b.is_tw]
        parts = []
        if plain:
            parts.append(_fd_list(plain) + " were closed")
        if connected:
            many = len(connected) > 1
            parts.append(f"{_fd_list(connected)} were closed after {'their peers' if many else 'its peer'} "
                         f"closed, or with SO_LINGER {{1, 0}} (a plain close() would leave a remnant on the port)")
        if rems:
            wait = max((b.expires - ns.clock_seconds()) for b in rems)
            wait = math.ceil(round(wait * 10, 6)) / 10  # rounded up: waiting that long is enough
            parts.append(f"you waited {wait:.1f} s for the TIME_WAIT remnant{'s' if len(rems) > 1 else ''} "
                         f"of {_fd_list(rems)} to expire")
        fixes.append(", and ".join(parts))
    # 3. another address
    if refusal.op is Op.BIND:
        for text, cand in _candidate_addresses(ns, new):
            if not _conflicts(refusal, cand, owners):
                fixes.append(f"the socket bound {text}:{refusal.port} instead")
                break
        # 4. another port
        port = refusal.port
        table = ns.bhash if new.tcp else ns.udp_ports
        for p in range(port + 1, min(port + 200, 65536)):
            if p not in table:
                fixes.append(f"it bound port {p} (free for {new.proto.upper()})")
                break
    return fixes


def reasons_for(refusal: Any) -> list[Reason]:
    """Compute the reasons of a refusal (see module header)."""
    ns, new, cause, op = refusal.ns, refusal.new, refusal.cause, refusal.op
    call = f"{op.value}()"
    if cause is Cause.ADDR_IN_USE:
        blockers = _conflicts(refusal, new, refusal.owners)
        fixes = tuple(_fixes_for_conflict(refusal, blockers)) if blockers else ()
        out: list[Reason] = []
        # blockers alike for the rules (same rule, state, flags, uid, address) make one reason:
        # a busy server's thousands of accepted connections are one line, not thousands
        groups: dict[tuple, list[Any]] = {}
        for b in blockers:
            rule, spec, why = _why_pair(new, b)
            key = (rule, b.state, b.reuseaddr, b.reuseport, b.uid, b.is_tw, b.local_text(), b.bound_dev)
            groups.setdefault(key, []).append((b, spec, why))
        for (rule, *_), members in groups.items():
            b, spec, why = members[0]
            more = ""
            if len(members) > 1:
                fds = ", ".join(f"#{m[0].fd}" for m in members[1:6])
                more = f" (and {len(members) - 1} more like it: {fds}{', ...' if len(members) > 6 else ''})"
            out.append(Reason(rule, spec, f"{call} of {new.proto.upper()} {new.local_text()}:{refusal.port} "
                                          f"on socket #{new.fd} is blocked by {sock_info(ns, b)}{more}: {why}.",
                              sock_info(ns, b), fixes, tuple(m[0].fd for m in members[1:])))
        if not out:
            extra = refusal.extra
            out.append(Reason("bucket-fast-path", "§3.3",
                              f"{call} refused by the TCP bind bucket of port {refusal.port} (fast flags "
                              f"{extra}) although no single owner conflicts now.", None, ()))
        return out
    if cause is Cause.NO_EPHEMERAL_PORT:
        lo, hi, per_sock = ns._effective_range(new) if hasattr(new, "port_range") else (*ns.sysctls.port_range, False)
        lo, hi = ns.sysctls.port_range
        n = hi - lo + 1
        fixes = ("net.ipv4.ip_local_port_range were wider",
                 "some sockets holding ports of the range were closed")
        if new.tcp:
            fixes += ("SO_REUSEADDR were set on this and the holders and net.ipv4.ip_autobind_reuse=1",)
        return [Reason("ephemeral-exhausted", "§5.2" if new.tcp else "§5.5",
                       f"{call} needs an automatic port, and none of the {n} ports of "
                       f"ip_local_port_range {lo}-{hi} (less ip_local_reserved_ports) is free for "
                       f"{new.proto.upper()} {new.local_text()}.", None, fixes)]
    if cause is Cause.ADDR_NOT_LOCAL:
        ex = refusal.extra or {}
        if "addr" in ex:
            text, knob = format_ipv4(ex["addr"]), "net.ipv4.ip_nonlocal_bind=1"
            opt = "IP_FREEBIND"
        else:
            text = _with_addr(ns, new, AF_INET6, 0, ex.get("addr6", 0), True).local_text()
            knob, opt = "net.ipv6.ip_nonlocal_bind=1", "IPV6_FREEBIND"
        return [Reason("address-not-local", "§3.1",
                       f"{text} is not an address of this namespace (bind checks the local routing "
                       f"table).", None,
                       (f"the address were added (ip addr add {text.strip('[]')}/32 dev lo)",
                        f"{opt} were set on the socket", f"{knob}"))]
    if cause is Cause.PRIVILEGED_PORT:
        start = ns.sysctls.ints["net.ipv4.ip_unprivileged_port_start"]
        return [Reason("privileged-port", "§3.1",
                       f"port {refusal.port} is below net.ipv4.ip_unprivileged_port_start ({start}) and the "
                       f"caller (uid {ns.uid}) lacks CAP_NET_BIND_SERVICE.", None,
                       (f"a port >= {start} were used", "the caller had CAP_NET_BIND_SERVICE (or were root)",
                        f"net.ipv4.ip_unprivileged_port_start were lowered to {refusal.port}"))]
    if cause is Cause.ALREADY_BOUND:
        s = ns.socks.get(new.fd)
        have = f"already has port {s.num}" if s is not None and s.num else f"is in state {STATE_NAMES[new.state]}"
        return [Reason("already-bound", "§3.1",
                       f"socket #{new.fd} {have}; a socket binds at most once (also after an autobind or "
                       f"a failed listen(), which keep the port).", None,
                       ("a new socket were created for the new address",))]
    return [Reason(cause.name.lower().replace("_", "-"), "§3.1", cause.value)]


def explain_success(ns: Any, sk: Any, op: Op) -> list[Reason]:
    """Why a call that succeeded (on a scratch copy) was allowed: the overlapping owners and
    the rule that let each one share the port."""
    # judged as the call saw it: before listen() put the socket in a reuseport group
    new = sk.view()._replace(group=None)
    if sk.tcp:
        tb = ns.bhash.get(sk.num)
        owners = [o.view() for o in tb.owners() if o is not sk] if tb else []
    else:
        owners = [o.view() for o in ns.udp_ports.get(sk.num, ()) if o is not sk]
    out: list[Reason] = []
    for o in owners:
        info = sock_info(ns, o)
        if not _rules.dev_compatible(new.bound_dev, o.bound_dev):
            out.append(Reason("different-devices", "§2.1", f"shares port {sk.num} with {info}: bound to "
                                                            f"different devices, no conflict.", info))
        elif not _rules.overlaps(new, o):
            out.append(Reason("no-overlap", "§2.1", f"shares port {sk.num} with {info}: the addresses "
                                                     f"{new.local_text()} and {o.local_text()} do not overlap.", info))
        elif sk.tcp and _rules.tcp_conflict(new, o, True, True):
            out.append(Reason("bucket-fast-path", "§3.3",
                              f"shares port {sk.num} with {info} although the pairwise rule would refuse: "
                              f"the bind bucket's SO_REUSEPORT fast path (STRICT mode, same uid, covered "
                              f"address) admitted it without the pairwise check.", info))
        elif new.reuseaddr and o.reuseaddr and (not sk.tcp or o.state != LISTEN):
            out.append(Reason("reuseaddr-shared", "§3.5", f"shares port {sk.num} with {info}: both have "
                                                           f"SO_REUSEADDR" + ("" if not sk.tcp else
                                                                              " and it is not listening") + ".", info))
        else:
            out.append(Reason("reuseport-shared", "§3.5", f"shares port {sk.num} with {info}: both have "
                                                           f"SO_REUSEPORT and the same uid.", info))
    if not out:
        out.append(Reason("port-free", "§3.2" if sk.tcp else "§3.4",
                          f"no other {'TCP' if sk.tcp else 'UDP'} socket holds port {sk.num}"
                          f"{'' if sk.tcp else ''}; TCP and UDP ports are separate spaces.", None))
    return out


_ = (ANY, SockView)
