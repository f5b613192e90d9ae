"""``portspace explain``: would this bind()/listen() succeed on this host now, and why not?

Theory of operation
-------------------
A :class:`Question` is the socket the caller has in mind: protocol, local address and port,
SO_REUSEADDR / SO_REUSEPORT / IPV6_V6ONLY / SO_BINDTODEVICE, the uid that creates it, and
whether it will listen.  :func:`explain` answers it against a :class:`~._snapshot.Snapshot`:

1. The snapshot is loaded into a scratch model namespace (:func:`._snapshot.load`, one model
   socket per class of equivalent host sockets) and the call is made there -- the model decides,
   with the kernel's rules, and names the blocking socket by its model fd, which ``fd_map``
   turns back into the host sockets (pid, command, uid, state, flags).  The namespace exists for
   this one question, so the call is made on it directly rather than through
   ``Namespace.explain``, whose deep copy costs seconds at thousands of sockets; success reasons
   come from the model's ``explain_success``, refusal reasons from the exception, as there.
2. Some flags of host sockets cannot be read (TIME_WAIT remnants, other users' processes, and
   IPV6_V6ONLY of ``[::]`` sockets seen through /proc/net).  They are never guessed.  Every such
   flag only ever *relaxes* conflicts when set (SO_REUSEADDR/SO_REUSEPORT on the old socket can
   only allow more, spec §3.2-3.5; IPV6_V6ONLY only shrinks what a ``[::]`` binding claims, spec
   §2.1), so the answer is monotone in them and two loads settle it: all unknown flags off
   (*pessimistic*) and all on (*optimistic*).  Same verdict: it is certain.  Different: the answer
   *depends* on what could not be read, and both cases are given, with the unknown flags that
   decide (found by switching each one off in the optimistic load).  Flags left unread by the
   snapshot (``read_flags=False``) are unknown too; :func:`explain` then reads only those that
   decide or that the answer names, and asks again.
3. The caller's identity: the question's uid (default: the caller's euid).  The model gives uid
   0 every capability and other uids none; a non-root caller that has CAP_NET_BIND_SERVICE is
   modelled by lowering ``ip_unprivileged_port_start`` to 0 in the scratch namespace.

Verdicts: ``ok`` (exit 0), ``fail`` (exit 1), ``depends`` (exit 3).  Only local facts are used;
nothing is bound, nothing on the host changes.
"""
from __future__ import annotations

import errno
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from typing import Any

from ._procfs import CAP_NET_BIND_SERVICE
from ._rows import state_name
from ._snapshot import FLAG_NAMES, NOT_READ, Assumption, HostSocket, Snapshot, load, never, read_flags
from ..model._addr import AF_INET, AF_INET6, format_ipv6
from ..model._errors import Op
from ..model._explain import explain_success

__all__ = ["Question", "Verdict", "Case", "HostReason", "explain", "parse_endpoint", "window_for",
           "NEARBY_PORTS"]

IP_BIND_ADDRESS_NO_PORT = 24   # include/uapi/linux/in.h (not in Python 3.11's socket module)

NEARBY_PORTS = 256
"""How many ports above the asked one are read too: the model's explanations suggest the next
free port within 200 (``model._explain._fixes_for_conflict``), which must be checked against
the host's sockets on those ports."""


def parse_endpoint(text: str) -> tuple[int, str, int]:
    """``HOST:PORT`` as typed on the command line -> ``(family, host, port)``.

    Accepted: ``0.0.0.0:8080``, ``127.0.0.1:80``, ``[::]:8080``, ``[::ffff:127.0.0.1]:80``,
    ``[fe80::1%eth0]:80``, and ``8080`` / ``:8080`` / ``*:8080`` for ``0.0.0.0:8080``.  Numeric
    addresses only (no name resolution).

    Raises:
        ValueError: with a one-line message naming what is wrong.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty address")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{text!r}: write an IPv6 address as [ADDR]:PORT")
        port_text = rest[1:]
        family = AF_INET6
    elif text.count(":") > 1:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:8080")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = "", text
        if host in ("", "*"):
            host = "0.0.0.0"
        family = AF_INET
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{text!r}: the port must be a number from 0 to 65535")
    plain, _, scope = host.partition("%")
    try:
        ip = ipaddress.ip_address(plain)
    except ValueError:
        raise ValueError(f"{text!r}: {plain!r} is not a numeric IP address (names are not resolved)") from None
    if (ip.version == 6) != (family == AF_INET6):
        raise ValueError(f"{text!r}: write an IPv6 address as [ADDR]:PORT")
    if scope and family != AF_INET6:
        raise ValueError(f"{text!r}: a %scope applies to IPv6 addresses only")
    canonical = format_ipv6(int(ip)) if family == AF_INET6 else str(ip)
    return family, canonical + ("%" + scope if scope else ""), int(port_text)


@dataclass(frozen=True)
class Question:
    """The socket the caller wants to bind (and maybe listen on)."""

    proto: str
    family: int
    host: str
    port: int
    reuseaddr: bool = False
    reuseport: bool = False
    v6only: bool = False
    device: str | None = None
    uid: int | None = None        # None: the caller's euid (and capabilities)
    listen: bool = False
    no_port: bool = False         # IP_BIND_ADDRESS_NO_PORT (a port 0 bind takes no port: connect() will)

    def __post_init__(self) -> None:
        if self.proto not in ("tcp", "udp"):
            raise ValueError(f"unknown protocol {self.proto!r}")
        if self.listen and self.proto != "tcp":
            raise ValueError("--listen applies to TCP only (UDP sockets do not listen)")
        if self.v6only and self.family != AF_INET6:
            raise ValueError("--v6only applies to IPv6 addresses only")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} out of range")
        if self.uid is not None and not 0 <= self.uid <= 0xFFFFFFFE:
            raise ValueError(f"uid {self.uid} out of range")
        if self.no_port and (self.proto != "tcp" or self.listen):
            raise ValueError("IP_BIND_ADDRESS_NO_PORT applies to a TCP socket that connects, not one that listens")

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if self.family == AF_INET6 else f"{self.host}:{self.port}"

    def options(self) -> list[str]:
        out = [n for n, on in (("SO_REUSEADDR", self.reuseaddr), ("SO_REUSEPORT", self.reuseport),
                                ("IPV6_V6ONLY", self.v6only), ("IP_BIND_ADDRESS_NO_PORT", self.no_port)) if on]
        if self.device:
            out.append(f"SO_BINDTODEVICE={self.device}")
        return out

    def text(self, uid: int) -> str:
        fam = "6" if self.family == AF_INET6 else ""
        call = f"bind({self.proto.upper()}{fam} {self.endpoint})" + (" + listen()" if self.listen else "")
        opts = self.options()
        return call + (" with " + ", ".join(opts) if opts else "") + f" as uid {uid}"

    def as_dict(self) -> dict[str, Any]:
        return {"proto": self.proto, "family": "inet6" if self.family == AF_INET6 else "inet",
                "address": self.host, "port": self.port, "reuseaddr": self.reuseaddr,
                "reuseport": self.reuseport, "v6only": self.v6only, "device": self.device,
                "uid": self.uid, "listen": self.listen, "bind_address_no_port": self.no_port}


def window_for(q: Question) -> tuple[int, int] | None:
    """The local ports whose sockets can matter: the asked port and the ones the explanation may
    suggest instead; every port for an automatic (port 0) bind."""
    if q.port == 0:
        return None
    return q.port, min(65535, q.port + NEARBY_PORTS)


@dataclass
class HostReason:
    """A model reason with host names in place of model fds."""

    rule: str
    spec: str
    message: str
    fixes: list[str]
    blocker: HostSocket | None
    others: list[HostSocket] = field(default_factory=list)   # more blockers, same rule, not described

    def others_by_holder(self) -> list[tuple[str, str, int]]:
        """``(holder, state, count)`` of :attr:`others`, most first.  Computed once (a busy port
        has thousands of others; the text and JSON output ask several times)."""
        cached = self.__dict__.get("_by_holder")
        if cached is not None and cached[0] == len(self.others):
            return cached[1]
        counts: dict[tuple[str, str], int] = {}
        names: dict[tuple, str] = {}     # (pid, command) of the first holder -> "pid 12 (nginx)"
        for hs in self.others:
            holders = hs.holders
            if holders:
                h = holders[0]
                holder = names.get((h.pid, h.command))
                if holder is None:
                    holder = names[(h.pid, h.command)] = hs.label().rsplit(" fd ", 1)[0]
            else:
                holder = "no process" if hs.row.tw else "not visible"
            k = (holder, hs.row.proto, hs.row.state)
            counts[k] = counts.get(k, 0) + 1
        by_state: dict[tuple[str, str], int] = {}
        for (holder, proto, state), n in counts.items():
            k2 = (holder, state_name(proto, state))
            by_state[k2] = by_state.get(k2, 0) + n
        out = sorted(((h, st, n) for (h, st), n in by_state.items()), key=lambda x: (-x[2], x[0], x[1]))
        self.__dict__["_by_holder"] = (len(self.others), out)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "spec": self.spec, "message": self.message, "fixes": self.fixes,
                "blocker": self.blocker.as_dict() if self.blocker is not None else None,
                "more_blockers": len(self.others),
                "more_blockers_by_holder": [{"holder": h, "state": st, "count": n}
                                            for h, st, n in self.others_by_holder()]}


@dataclass
class Case:
    """One answer under one assumption about the unknown flags (``assumption`` None: none
    needed)."""

    ok: bool
    error: str | None
    stage: str                    # "setsockopt", "bind" or "listen": the call that decides
    reasons: list[HostReason]
    assumption: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"assumption": self.assumption, "ok": self.ok, "error": self.error, "call": self.stage,
                "reasons": [r.as_dict() for r in self.reasons]}


@dataclass
class Verdict:
    question: Question
    uid: int
    status: str                   # "ok" | "fail" | "depends"
    cases: list[Case]
    deciding: list[tuple[HostSocket, str]] = field(default_factory=list)
    also_possible: list[HostSocket] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    suspects: list[HostSocket] = field(default_factory=list)   # blockers whose unknown flags could decide
    depends_on: str = "flags that could not be read"            # what a "depends" verdict hinges on
    extra: dict[str, Any] = field(default_factory=dict)        # more answer fields (connect: route, ports)

    @property
    def exit_code(self) -> int:
        return {"ok": 0, "fail": 1, "depends": 3}[self.status]

    def as_dict(self) -> dict[str, Any]:
        return {"question": self.question.as_dict(), "uid": self.uid, "verdict": self.status,
                "exit_code": self.exit_code, "cases": [c.as_dict() for c in self.cases],
                "deciding_unknowns": [{"socket": hs.as_dict(), "flag": FLAG_NAMES[f]} for hs, f in self.deciding],
                "possibly_also_blocked_by": [hs.as_dict() for hs in self.also_possible],
                "depends_on": self.depends_on if self.status == "depends" else None,
                **self.extra, "notes": self.notes}


# ------------------------------------------------------------------------------------------


class _Asker:
    """Loads the snapshot under an assumption and asks the question there."""

    def __init__(self, snap: Snapshot, q: Question) -> None:
        self.snap, self.q = snap, q
        self.notes: list[str] = []
        caller = q.uid is None
        self.uid = snap.euid if caller else q.uid  # type: ignore[assignment]
        self.unpriv: int | None = None
        if caller and snap.caps is not None:
            has_cap = bool(snap.caps >> CAP_NET_BIND_SERVICE & 1)
            if self.uid != 0 and has_cap:
                self.unpriv = 0
                self.notes.append("the caller has CAP_NET_BIND_SERVICE: privileged ports are allowed")
            elif self.uid == 0 and not has_cap:
                self.notes.append("the caller is root without CAP_NET_BIND_SERVICE; the model gives uid 0 every "
                                  "capability, so ports below ip_unprivileged_port_start are answered as for full root")

    def ask(self, assume: Assumption) -> tuple[Case, dict[int, list[HostSocket]]]:
        q = self.q
        ns, fd_map, notes = load(self.snap, q.proto, assume, unprivileged_start=self.unpriv)
        for n in notes:
            if n not in self.notes:
                self.notes.append(n)
        kind = socket.SOCK_STREAM if q.proto == "tcp" else socket.SOCK_DGRAM
        with ns.user(self.uid):
            s = ns.socket(q.family, kind)
            new_fd = s.fileno()
            try:
                if q.reuseaddr:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if q.reuseport:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if q.v6only:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if q.device:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, q.device.encode())
                if q.no_port:
                    s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            except OSError as e:
                name = errno.errorcode.get(e.errno or 0, str(e.errno))
                return Case(False, name, "setsockopt", [HostReason(
                    "setsockopt-refused", "§1.1", f"setsockopt() before bind() fails: {e.strerror}"
                    + (f" (no device {q.device!r} in this namespace)" if e.errno == errno.ENODEV else ""),
                    [], None)]), fd_map
            if q.family == AF_INET:
                addr: Any = (q.host, q.port)
            else:
                # CPython ignores a "%scope" in the host text (the tuple's scope_id, 0 by default,
                # overwrites it), so the scope is resolved here, as `ip` would: by device name
                # (or number) among the host's devices.
                host, _, scope = q.host.partition("%")
                ifindex = 0
                if scope:
                    ifindex = int(scope) if scope.isdigit() else next(
                        (link.ifindex for link in self.snap.links if link.name == scope), -1)
                    if ifindex < 0:
                        return Case(False, "ENODEV", "bind", [HostReason(
                            "no-such-device", "§3.1", f"the scope {scope!r} names no device of this namespace",
                            [], None)]), fd_map
                addr = (host, q.port, 0, ifindex)
            # The namespace was built for this one question, so the call is made on it
            # directly (``Namespace.explain`` would first deep-copy it: seconds for the
            # thousands of sockets a busy port can have).
            stage = "bind"
            try:
                s.bind(addr)
                reasons = explain_success(ns._kernel, ns._kernel.socks[new_fd], Op.BIND)
                if q.listen:
                    stage = "listen"
                    # The bind() reasons say why the port is shared: the model's success reasons
                    # for listen() would be computed after the socket joined its reuseport group,
                    # which makes the group's members look like fast-path admissions.
                    s.listen()
            except OSError as e:
                name = errno.errorcode.get(e.errno or 0, str(e.errno))
                return Case(False, name, stage, _host_reasons(getattr(e, "reasons", ()), fd_map, new_fd)), fd_map
        return Case(True, None, stage, _host_reasons(reasons, fd_map, new_fd)), fd_map


# How many blockers of one kind are described one by one; the others are counted by holder.
SHOWN_PER_RULE = 3
# Up to this many unknown flags of blockers, each is tested for being necessary (one model
# load each); beyond, only "which kind of flag would suffice" is tested (three loads).
MAX_SUSPECTS = 8

_FD_REF = re.compile(r"#(\d+)")
_SOCKET_REF = re.compile(r"\bsocket #(\d+)")
_FD_RUN = re.compile(r"#\d+(?: and #\d+){3,}")
_REMNANT_OF = re.compile(r"the (TIME_WAIT|FIN_WAIT2) remnants? of (the \1 remnant)")


def _host_reasons(model_reasons: Any, fd_map: dict[int, list[HostSocket]], new_fd: int) -> list[HostReason]:
    """Model reasons -> host reasons: fds become host names; of many blockers of the same rule
    (a busy server port: thousands of accepted connections), the first few are described and
    the rest listed in ``others``.  Fix sentences are shared by all reasons of one refusal and
    are translated once."""
    labels: dict[int, str] = {}

    def label(fd: int) -> str:
        text = labels.get(fd)
        if text is None:
            cls = fd_map.get(fd)
            if fd == new_fd:
                text = "the new socket"
            elif cls is None:
                text = f"#{fd}"
            elif len(cls) == 1:
                text = cls[0].label()
            else:
                text = f"{cls[0].label()} (and {len(cls) - 1} like it)"
            labels[fd] = text
        return text

    def shorten(m: re.Match[str]) -> str:
        fds = _FD_REF.findall(m.group(0))
        return f"#{fds[0]} and #{fds[1]} and {len(fds) - 2} other sockets"

    def names(text: str) -> str:
        text = _SOCKET_REF.sub(lambda m: "#" + m.group(1), text)
        text = _FD_RUN.sub(shorten, text)
        text = _FD_REF.sub(lambda m: label(int(m.group(1))), text)
        # "the TIME_WAIT remnant of #5" -> "the TIME_WAIT remnant of the TIME_WAIT remnant A->B"
        return _REMNANT_OF.sub(r"\2", text)

    fix_cache: dict[str, str] = {}
    out: list[HostReason] = []
    by_rule: dict[tuple[str, str], HostReason] = {}
    shown: dict[tuple[str, str], int] = {}
    for r in model_reasons:
        cls = fd_map.get(r.blocker.fd) if r.blocker is not None else None
        blocker = cls[0] if cls else None
        key = (r.rule, r.spec)
        if blocker is not None and shown.get(key, 0) >= SHOWN_PER_RULE:
            by_rule[key].others.extend(cls)  # type: ignore[arg-type]
            continue
        message = r.message
        if r.blocker is not None and blocker is not None:
            message = message.replace(str(r.blocker), blocker.describe())
        fixes = []
        for f in r.fixes:
            t = fix_cache.get(f)
            if t is None:
                t = fix_cache[f] = names(f)
            fixes.append(t)
        hr = HostReason(r.rule, r.spec, names(message), fixes, blocker, list(cls[1:]) if cls else [])
        out.append(hr)
        if blocker is not None:
            shown[key] = shown.get(key, 0) + 1
            by_rule.setdefault(key, hr)
    return out


def _blockers(case: Case) -> list[HostSocket]:
    """Every socket that blocks in this case (described or not), in order, without repeats."""
    if case.ok:
        return []
    out: dict[int, HostSocket] = {}    # by identity, first occurrence first
    for r in case.reasons:
        if r.blocker is not None:
            out.setdefault(id(r.blocker), r.blocker)
        # update() keeps a key's first position; its value is the same object anyway
        out.update(zip(map(id, r.others), r.others))
    return list(out.values())


def _flags_text(items: list[tuple[HostSocket, str]], shown: int = 3) -> str:
    text = " and ".join(f"{hs.label()} has {FLAG_NAMES[f]}" for hs, f in items[:shown])
    if len(items) > shown:
        text += f" and {len(items) - shown} more sockets have it too"
    return text


def _labels_text(socks: list[HostSocket], shown: int = 3) -> str:
    text = ", ".join(b.label() for b in socks[:shown])
    return text + (f" and {len(socks) - shown} more" if len(socks) > shown else "")


def explain(snap: Snapshot, q: Question) -> Verdict:
    """Answer ``q`` against ``snap`` (see the module header).

    Flags are read lazily: a snapshot taken with ``read_flags=False`` has every held socket's
    flags :data:`~._snapshot.NOT_READ`.  The first answer treats them as unknown; then only the
    sockets that matter are read (pidfd_getfd) and the question is asked again: first those
    whose unknown flags could decide (when the answer depends), then those the answer names
    (up to READ_PER_REASON per reason, so that their description is exact).  The flags of the
    others cannot change the answer -- an unknown flag only relaxes, so a socket that does not
    block with its flags off never blocks -- which saves one pidfd_getfd per connection on a
    busy port."""
    v = _explain(snap, q)
    if v.status == "depends" and _read_unread(snap, v.suspects + [hs for hs, _ in v.deciding]):
        v = _explain(snap, q)
    named: list[HostSocket] = []
    for c in v.cases:
        for r in c.reasons:
            if r.blocker is not None:
                named.append(r.blocker)
                named.extend(r.others[:READ_PER_REASON - 1])
    if _read_unread(snap, named + v.also_possible[:READ_PER_REASON]):
        v = _explain(snap, q)
    v.notes.extend(n for n in snap.notes if n.startswith("SO_REUSEADDR/SO_REUSEPORT unknown") and n not in v.notes)
    unread = sum(1 for hs in snap.sockets if hs.row.proto == q.proto and hs.flags_note == NOT_READ)
    if unread:
        v.notes.append(f"the flags of {unread} other socket{'s' if unread != 1 else ''} were not read: "
                       "they cannot change the answer")
    return v


# Of the sockets a reason stands for (its blocker and the ones like it), up to this many have
# their flags read when the answer did not need them: enough for a reuseport group to be
# described as one, not a pidfd_getfd per connection of a busy port.
READ_PER_REASON = 64


def _read_unread(snap: Snapshot, socks: list[HostSocket]) -> bool:
    """Read the flags of those of ``socks`` not read yet; False if there were none."""
    seen: set[int] = set()
    todo = []
    for hs in socks:
        if hs.flags_note == NOT_READ and id(hs) not in seen:
            seen.add(id(hs))
            todo.append(hs)
    if todo:
        read_flags(snap, todo)
    return bool(todo)


def _explain(snap: Snapshot, q: Question) -> Verdict:
    asker = _Asker(snap, q)
    pess, _ = asker.ask(never)
    v = Verdict(q, asker.uid, "ok" if pess.ok else "fail", [pess], notes=asker.notes)
    has_unknown = any(None in key[5:8] for key in snap.groups(q.proto))
    if not has_unknown or pess.stage == "setsockopt":
        return v

    def only(items: list[tuple[HostSocket, str]], value: bool = True, default: bool = False) -> Assumption:
        return Assumption(default, {(id(hs), f): value for hs, f in items})

    opt, _ = asker.ask(Assumption(True))
    if opt.ok == pess.ok:
        if not pess.ok:
            # Certain failure: the optimistic case's blockers block whatever the unknowns are.
            # Their reasons are taken from the pessimistic case, whose sentences say what is
            # *missing* (true whatever the unknowns are), not what was assumed present.
            sure = _blockers(opt)
            sure_ids = {id(b) for b in sure}
            v.also_possible = [b for b in _blockers(pess) if id(b) not in sure_ids]
            kept = [r for r in pess.reasons if r.blocker is None or id(r.blocker) in sure_ids]
            for r in kept:
                r.others = [b for b in r.others if id(b) in sure_ids]
            if sure and kept:
                pess.reasons = kept
            else:
                pess = opt
            guessed = [b for b in sure if b.unknown_flags()]
            if guessed:
                pess.assumption = ("it fails whatever the flags that could not be read are (of "
                                   + _labels_text(guessed) + "); the reasons assume they are off")
            v.cases = [pess]
        return v
    if pess.ok and not opt.ok:  # pragma: no cover - the monotonicity argument says never
        v.status = "depends"
        pess.assumption, opt.assumption = "if every unknown flag is off", "if every unknown flag is on"
        v.cases = [opt, pess]
        return v
    # pessimistic fails, optimistic succeeds: it depends on what could not be read
    v.status = "depends"
    suspects = [(hs, f) for hs in _blockers(pess) for f in hs.unknown_flags()]
    v.suspects = [hs for hs, _ in suspects]
    if q.port == 0 or not suspects or len(suspects) > MAX_SUSPECTS:
        # (one load per suspect would be too slow; the per-kind analysis below still answers)
        suspects_needed: list[tuple[HostSocket, str]] = []
    else:
        suspects_needed = [x for x in suspects if not asker.ask(only([x], False, True))[0].ok]
    cond: list[tuple[HostSocket, str]] = []
    if suspects_needed and asker.ask(only(suspects_needed))[0].ok:
        cond = suspects_needed
    if cond:
        yes_case, _ = asker.ask(only(cond))
        yes_case.assumption = "if " + _flags_text(cond)
        pess.assumption = "if not (" + _flags_text(cond) + ")" if len(cond) > 1 else \
            f"if {cond[0][0].label()} does not have {FLAG_NAMES[cond[0][1]]}"
        v.deciding = cond
        v.cases = [yes_case, pess]
    else:
        # no single set of flags is necessary and sufficient: say which kinds of flag suffice
        kinds = []
        for flag in ("reuseaddr", "reuseport", "v6only"):
            sel = [(hs, f) for hs, f in suspects if f == flag]
            if sel and asker.ask(only(sel))[0].ok:
                kinds.append(sel)
        if kinds:
            yes_case, _ = asker.ask(only(kinds[0]))
            yes_case.assumption = "if " + _flags_text(kinds[0])
            v.deciding = [x for k in kinds for x in k]
        else:
            yes_case = opt
            yes_case.assumption = "if every socket whose flags could not be read has them all set"
            v.deciding = suspects
        pess.assumption = "if none of them has " + (" or ".join(sorted({FLAG_NAMES[f] for _, f in v.deciding}))
                                                    or "them")
        v.cases = [yes_case, pess]
    return v
