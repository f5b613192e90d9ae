"""A snapshot of the host's port state, and its loading into a model namespace.

Theory of operation
-------------------
:func:`take` reads, only by reading:

1. the socket table of the reader's network namespace -- sock_diag (:mod:`._sockdiag`), or
   /proc/net (:mod:`._procnet`) when sock_diag is unavailable or ``source="procnet"``;
2. devices and local addresses (:mod:`._rtnl`) and the port manager's sysctls (:mod:`._procfs`);
3. the processes holding each socket (one walk of ``/proc/<pid>/fd``, :mod:`._procfs`), which
   starts first and runs in a forked child during 1 and 2 (:class:`._procfs.BackgroundScan`);
4. the SO_REUSEADDR / SO_REUSEPORT flags of held sockets, by borrowing one holder's fd
   (:mod:`._pidfd`) -- when permitted.

The per-row loops (decoding, sorting in ``ls`` order, the fd walk) run in C where the optional
accelerator ``_speedups`` is built; the Python loops are the reference and the fallback.

Everything that could not be seen is written down in ``Snapshot.notes`` in plain words, and
every flag that could not be read stays ``None``: *unknown, never guessed*.  A TIME_WAIT
remnant's flags are always unknown (it has no fd); so is IPV6_V6ONLY of a ``[::]`` socket read
from /proc/net.

:func:`load` turns a snapshot into a :class:`portspace.Namespace`: sysctls, devices and
addresses through the namespace's own calls, then every port-holding socket through
``NetNS.adopt`` (facts, not requests: no conflict check).  Unknown flags are replaced by one
*assumption* chosen by the caller (:mod:`._query` loads the snapshot under several to find out
whether an unknown decides the answer).  It returns the namespace and ``model fd -> HostSocket``
so explanations can name host sockets.

Kernel facts used here:

* request sockets (SYN_RECV) are not owners of a bind bucket (they live in ehash only), so they
  are listed but not loaded;
* an AF_INET6 socket bound to a specific non-mapped address has the ``LOOPBACK4_IPV6`` sentinel
  as IPv4 receive address and is v6only in effect (spec §2.1); one bound to ``::ffff:A`` has
  receive address A and cannot be v6only;
* the sysctls are written in an order the model's validation accepts whatever the host values
  (``ip_unprivileged_port_start`` first to 0, then the range, then its real value).
"""
from __future__ import annotations

import gc
import operator
import os
from typing import Callable, Iterable, NamedTuple

from . import _procfs, _procnet, _rtnl, _sockdiag
from ._pidfd import FlagReader
from ._rows import SockRow, TCP_NEW_SYN_RECV, endpoint_text, printable
from ..model._addr import AF_INET, AF_INET6, LOOPBACK4_IPV6, v6_is_mapped
from ..model._rules import SYN_RECV

try:   # the optional C accelerator (setup.py)
    from ._speedups import attribute as _attributec, sort_rows as _sortc
except ImportError:   # pragma: no cover - depends on the build
    _attributec = _sortc = None

__all__ = ["Holder", "HostSocket", "Snapshot", "take", "load", "FLAGS"]

FLAGS = ("reuseaddr", "reuseport", "v6only")
FLAG_NAMES = {"reuseaddr": "SO_REUSEADDR", "reuseport": "SO_REUSEPORT", "v6only": "IPV6_V6ONLY"}


class Holder(NamedTuple):
    """A process holding a socket: pid, the fd number in that process, its command line."""

    pid: int
    fd: int
    command: str | None


class HostSocket:
    """A socket of the host (or a TIME_WAIT remnant) with what is known about it.  Compared by
    identity: two remnants can have equal fields.  (A plain slotted class, not a dataclass: a
    snapshot makes one per socket, 20 000 of them for ``ls``.)"""

    __slots__ = ("row", "holders", "reuseaddr", "reuseport", "flags_note", "device")

    def __init__(self, row: SockRow, holders: list[Holder] | None = None, reuseaddr: bool | None = None,
                 reuseport: bool | None = None, flags_note: str | None = None, device: str | None = None) -> None:
        self.row = row
        self.holders: list[Holder] = [] if holders is None else holders
        self.reuseaddr = reuseaddr
        self.reuseport = reuseport
        self.flags_note = flags_note      # why the reuse flags are unknown
        self.device = device              # name of the bound device (row.ifindex)

    def __repr__(self) -> str:
        return (f"HostSocket(row={self.row!r}, holders={self.holders!r}, reuseaddr={self.reuseaddr!r}, "
                f"reuseport={self.reuseport!r}, flags_note={self.flags_note!r}, device={self.device!r})")

    @property
    def v6only(self) -> bool | None:
        """IPV6_V6ONLY: reported by sock_diag for listening/bound AF_INET6 sockets; forced (and
        so known) for a specific non-mapped IPv6 address; never set for an IPv4 or mapped one."""
        r = self.row
        if r.family == AF_INET:
            return False
        if r.v6only is not None:
            return r.v6only
        if r.laddr == 0:
            return None
        return not v6_is_mapped(r.laddr)

    def unknown_flags(self) -> list[str]:
        """The flags of this socket that matter to the port manager and could not be read."""
        out = []
        if self.reuseaddr is None:
            out.append("reuseaddr")
        if self.reuseport is None:
            out.append("reuseport")
        r = self.row
        if r.family != AF_INET and r.v6only is None and r.laddr == 0:
            out.append("v6only")
        return out

    @property
    def local(self) -> str:
        r = self.row
        return endpoint_text(r.family, r.laddr, r.lport, self.device)

    @property
    def peer(self) -> str:
        r = self.row
        return endpoint_text(r.family, r.raddr, r.rport, self.device) if r.rport else "*"

    @property
    def pids(self) -> list[int]:
        out: list[int] = []
        for h in self.holders:
            if h.pid not in out:
                out.append(h.pid)
        return out

    def flags_text(self, unknown: str = "?") -> str:
        """``SO_REUSEADDR,SO_REUSEPORT,IPV6_V6ONLY,dev=eth0``; an unknown flag is followed by
        ``unknown`` (``SO_REUSEADDR?``); ``-`` when none is set."""
        parts = []
        for f in ("reuseaddr", "reuseport", "v6only"):
            if f == "v6only" and self.row.family == AF_INET:
                continue
            v = self.v6only if f == "v6only" else getattr(self, f)
            if v is None:
                parts.append(FLAG_NAMES[f] + unknown)
            elif v:
                parts.append(FLAG_NAMES[f])
        if self.device:
            parts.append(f"dev={printable(self.device)}")
        elif self.row.ifindex:
            parts.append(f"ifindex={self.row.ifindex}")
        return ",".join(parts) if parts else "-"

    def label(self) -> str:
        """A short name for explanations: who holds it, or what it is."""
        r = self.row
        if r.tw:
            return f"the {r.state_text} remnant {self.local}->{self.peer}"
        if self.holders:
            h = self.holders[0]
            cmd = f" ({comm_of(h.command)})" if h.command else ""
            more = f" and {len(self.pids) - 1} more processes" if len(self.pids) > 1 else ""
            return f"pid {h.pid}{cmd} fd {h.fd}{more}"
        return f"socket inode {r.inode} (holder not visible)"

    def describe(self) -> str:
        """Label, then in brackets protocol, addresses, state, uid and flags."""
        r = self.row
        fam = "6" if r.family == AF_INET6 else ""
        flags = self.flags_text(" unknown").replace(",", ", ")
        flags = "no options" if flags == "-" else flags
        if r.tw:
            left = f", {r.expires_ms / 1000:.0f} s left" if r.expires_ms is not None else ""
            return f"{self.label()} [{r.proto.upper()}{fam}, no process{left}, {flags}]"
        ends = self.local if not r.rport else f"{self.local}->{self.peer}"
        return f"{self.label()} [{r.proto.upper()}{fam} {ends} {r.state_text}, uid {r.uid}, {flags}]"

    def as_dict(self) -> dict:
        r = self.row
        return {
            "proto": r.proto, "family": "inet6" if r.family == AF_INET6 else "inet",
            "state": r.state_text, "local": self.local, "peer": self.peer,
            "local_address": self.local.rsplit(":", 1)[0].strip("[]"), "local_port": r.lport,
            "peer_port": r.rport, "uid": None if r.tw else r.uid, "inode": r.inode or None,
            "time_wait": r.tw, "timer_ms": r.expires_ms,
            "device": self.device, "ifindex": r.ifindex or None,
            "reuseaddr": self.reuseaddr, "reuseport": self.reuseport, "v6only": self.v6only,
            "flags_unknown_because": self.flags_note,
            "processes": [{"pid": h.pid, "fd": h.fd, "command": h.command} for h in self.holders],
        }


def comm_of(command: str | None) -> str:
    """The program name of a command line, as ss and netstat show it: ``/usr/bin/python3 -m x``
    -> ``python3``; ``nginx: worker process`` -> ``nginx:``; ``[kthreadd]`` stays; shown
    :func:`~._rows.printable` (a newline or ESC in it escaped)."""
    if not command:
        return "?"
    first = command.split(" ", 1)[0]
    return printable(first.rsplit("/", 1)[-1] or first)


class Snapshot:
    """What :func:`take` read (see the module header)."""

    _FIELDS = ("sockets", "source", "sysctls", "links", "addrs", "notes", "protos", "ports", "euid", "caps",
               "scanned", "denied")

    def __init__(self, sockets: list[HostSocket], source: str, sysctls: dict[str, str], links: list[_rtnl.Link],
                 addrs: list[_rtnl.Addr], notes: list[str], protos: tuple[str, ...], ports: tuple[int, int] | None,
                 euid: int, caps: int | None, scanned: int = 0, denied: list[int] | None = None) -> None:
        self.sockets = sockets
        self.source = source                  # "sock_diag" or "/proc/net"
        self.sysctls = sysctls
        self.links = links
        self.addrs = addrs
        self.notes = notes
        self.protos = protos
        self.ports = ports                    # the local-port window read (None: all)
        self.euid = euid
        self.caps = caps                      # the reader's effective capabilities
        self.scanned = scanned                # processes whose fds were read
        self.denied: list[int] = [] if denied is None else denied
        self._groups: dict = {}               # load()'s cache, per protocol
        self.ordered = False                  # sockets in ROW_ORDER (take(ordered=True))

    def __repr__(self) -> str:
        return "Snapshot(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in self._FIELDS) + ")"

    def groups(self, proto: str) -> dict[tuple, list[HostSocket]]:
        """The ``proto`` sockets the model holds (request sockets and portless rows left out),
        grouped by everything the conflict rules read, flags as known (None: unknown).  Cached;
        :func:`read_flags` clears the cache."""
        stamp = (proto, id(self.sockets), len(self.sockets))   # sockets may be replaced or added to
        g = self._groups.get(stamp)
        if g is None:
            g = self._groups[stamp] = {}
            for hs in self.sockets:
                r = hs.row
                if r.proto != proto or r.state in (SYN_RECV, TCP_NEW_SYN_RECV) or not r.lport:
                    continue
                key = (r.family, r.laddr, r.lport, r.ifindex, r.uid, hs.reuseaddr, hs.reuseport, hs.v6only,
                       r.state, r.tw)
                members = g.get(key)
                if members is None:
                    g[key] = [hs]
                else:
                    members.append(hs)
        return g

    @property
    def sees_bound_only(self) -> bool:
        return self.source == "sock_diag"

    def port_range(self) -> tuple[int, int]:
        return _procfs.parse_port_range(self.sysctls.get("net.ipv4.ip_local_port_range", "")) or (32768, 60999)

    def reserved(self) -> frozenset[int]:
        return _procfs.parse_reserved_ports(self.sysctls.get("net.ipv4.ip_local_reserved_ports", "")) or frozenset()


FlagPolicy = Callable[[SockRow], bool]

ROW_ORDER = operator.itemgetter(0, 4, 1, 3, 2, 5, 6)
"""The order of :attr:`Snapshot.sockets` with ``take(ordered=True)``: protocol, local port,
family, local address, state, remote address, remote port (the order ``portspace ls`` prints)."""


def sort_rows(rows: list[SockRow]) -> None:
    """Sort rows in place in :data:`ROW_ORDER` (stable): by the C accelerator where it is built
    and the rows are as it expects, else by ``list.sort`` (the reference; same order)."""
    if _sortc is None or not _sortc(rows):
        rows.sort(key=ROW_ORDER)   # a C key on the row tuples: cheaper here than on HostSockets later


def take(protos: Iterable[str] = ("tcp", "udp"), ports: tuple[int, int] | None = None, *,
         root: str = "/proc", source: str = "auto", processes: bool = True,
         read_flags: bool | FlagPolicy = True, ordered: bool = False) -> Snapshot:
    """Read the host (see the module header).

    Args:
        protos: "tcp" and/or "udp".
        ports: only sockets whose local port is in this inclusive window (kernel-side filter
            with sock_diag; filtered after parsing with /proc/net).
        root: the procfs root (``/proc``; tests point it elsewhere).
        source: "auto" (sock_diag, else /proc/net), "sock_diag" or "procnet".
        processes: attribute sockets to processes (walks /proc/*/fd).
        read_flags: read SO_REUSEADDR/SO_REUSEPORT of held sockets: all (True), none (False),
            or those for which the predicate on the row is true.  The others are marked
            :data:`NOT_READ` (unknown); :func:`read_flags` reads them later, and ``explain()``
            does so for the few that matter.
        ordered: sockets in :data:`ROW_ORDER` (``ls``'s order) rather than the kernel's dump
            order (listeners first, which explanations keep: they name the main blocker first).
    """
    # the cyclic GC is paused while the snapshot is built (as ``portspace ls`` does for its
    # whole run): tens of thousands of acyclic containers would trigger full collections
    paused = gc.isenabled()
    gc.disable()
    try:
        return _take(tuple(protos), ports, root, source, processes, read_flags, ordered)
    finally:
        if paused:
            gc.enable()


def _take(protos: tuple[str, ...], ports: tuple[int, int] | None, root: str, source: str, processes: bool,
          read_flags: bool | FlagPolicy, ordered: bool) -> Snapshot:
    # the /proc fd walk starts first, in a child process, and runs during the dump
    walk = _procfs.BackgroundScan(root) if processes else None
    try:
        return _take_with(walk, protos, ports, root, source, processes, read_flags, ordered)
    finally:
        if walk is not None:
            walk.close()


def _take_with(walk: _procfs.BackgroundScan | None, protos: tuple[str, ...], ports: tuple[int, int] | None, root: str,
               source: str, processes: bool, read_flags: bool | FlagPolicy, ordered: bool) -> Snapshot:
    notes: list[str] = []
    rows: list[SockRow] = []
    used = source
    if source in ("auto", "sock_diag"):
        try:
            dec = _sockdiag.dump(protos, ports=ports)
            rows = dec.rows
            notes.extend(f"sock_diag: {e}" for e in dec.errors[:5])
            used = "sock_diag"
        except OSError as e:
            if source == "sock_diag":
                raise
            notes.append(f"sock_diag is unavailable ({e.strerror or e}); read /proc/net instead")
            used = "procnet"
    if used == "procnet":
        parsed = _procnet.read(root, protos)
        rows = parsed.rows
        if ports is not None:
            rows = [r for r in rows if ports[0] <= r.lport <= ports[1]]
        notes.extend(parsed.errors[:5])
        if len(parsed.errors) > 5:
            notes.append(f"... and {len(parsed.errors) - 5} more unreadable lines")
        if "tcp" in protos:
            notes.append("/proc/net cannot show TCP sockets that are bound but neither listening nor "
                         "connected; they block bind() and are missing here")
        notes.append("/proc/net shows neither bound devices nor IPV6_V6ONLY")
    # devices and addresses
    try:
        ifs = _rtnl.read()
        links, addrs = ifs.links, ifs.addrs
        notes.extend(f"rtnetlink: {e}" for e in ifs.errors[:3])
    except OSError as e:
        links, addrs = [], []
        notes.append(f"devices and addresses are unreadable ({e.strerror or e}); only lo's are known")
    by_index = {link.ifindex: link.name for link in links}
    sysctls = _procfs.read_sysctls(root)
    missing = [n for n in ("net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start")
               if n not in sysctls]
    if missing:
        notes.append("unreadable sysctls (model defaults used): " + ", ".join(missing))
    if ordered:
        sort_rows(rows)
    if by_index and any(r.ifindex for r in rows):
        socks = [HostSocket(r, device=by_index.get(r.ifindex) if r.ifindex else None) for r in rows]
    else:
        socks = list(map(HostSocket, rows))
    snap = Snapshot(socks, "sock_diag" if used == "sock_diag" else "/proc/net", sysctls, links, addrs, notes,
                    protos, ports, os.geteuid(), _procfs.caller_capabilities(root))
    snap.ordered = ordered
    if walk is not None:
        # The walk ran during the dump (BackgroundScan): a socket opened after its process's
        # fds were read shows no holder, as one closed before them would (any order of the
        # two reads has such a race; the kernel offers no atomic view of both).
        _attribute(snap, *walk.result())
    else:
        for hs in socks:
            if not hs.row.tw:
                hs.flags_note = "processes were not scanned"
    if processes:
        _read_flags(snap, read_flags)
    for hs in socks:
        if hs.row.tw:
            hs.flags_note = "a TIME_WAIT remnant has no fd: its flags cannot be read"
    return snap


def _attribute(snap: Snapshot, scan: _procfs.FdScan, commands: dict[int, str | None]) -> None:
    """Give every socket with an inode its holders, from a walk of ``/proc/<pid>/fd``
    (:class:`~._procfs.BackgroundScan`: every socket fd, ``(inode, fd)`` per process)."""
    snap.scanned = scan.scanned
    snap.denied = scan.denied
    unattributed = None
    if _attributec is not None:   # the C accelerator: the loops below, None when one socket is in two rows
        unattributed = _attributec(snap.sockets, scan.processes, commands, Holder, UNATTRIBUTED)
    if unattributed is None:
        unattributed = _attribute_py(snap.sockets, scan, commands)
    _attribution_notes(snap, scan, unattributed)


UNATTRIBUTED = "no visible process holds it"


def _attribute_py(socks: list[HostSocket], scan: _procfs.FdScan, commands: dict[int, str | None]) -> int:
    """:func:`_attribute`'s loops in Python (the reference; the C accelerator's ``attribute``
    does the same): holders appended, :data:`UNATTRIBUTED` noted; returns how many sockets
    with an inode have no holder."""
    inodes = [hs.row.inode for hs in socks]
    want = dict(zip(inodes, socks))           # inode -> socket (0, a remnant's, is never held)
    held = len(inodes) - inodes.count(0)
    twins: dict[int, list[HostSocket]] = {}
    if len(want) - (0 in want) < held:        # one socket in two rows (it moved between tables during the dump)
        for hs in socks:
            inode = hs.row.inode
            if inode and want[inode] is not hs:
                twins.setdefault(inode, []).append(hs)
    want.pop(0, None)
    get = want.get
    new = tuple.__new__   # Holder(...) without NamedTuple's Python-level __new__
    for pid, pairs in scan.processes:
        command = commands.get(pid)
        for inode, fd in pairs:
            hs = get(inode)
            if hs is not None:   # not a socket of this snapshot (another protocol, a netlink socket)
                hs.holders.append(new(Holder, (pid, fd, command)))
        if twins:
            for inode, fd in pairs:
                for hs in twins.get(inode, ()):
                    hs.holders.append(Holder(pid, fd, command))
    unattributed = 0
    for hs in socks:
        if not hs.holders and hs.row.inode:
            unattributed += 1
            hs.flags_note = UNATTRIBUTED
    return unattributed


def _attribution_notes(snap: Snapshot, scan: _procfs.FdScan, unattributed: int) -> None:
    if scan.denied:
        who = "not root" if snap.euid != 0 else "denied"
        snap.notes.append(f"could not read the fds of {_count(len(scan.denied), 'process', 'processes')} ({who}); "
                          f"their sockets show no process and unknown flags")
    if scan.vanished:
        snap.notes.append(f"{_count(scan.vanished, 'process', 'processes')} exited during the scan")
    if unattributed:
        snap.notes.append(f"{_count(unattributed, 'socket')} without a visible holder (another user's process, "
                          "a process in another pid namespace, or one that just exited)")


NOT_READ = "not read"


def _read_flags(snap: Snapshot, policy: bool | FlagPolicy) -> None:
    """Read the flags of the held sockets ``policy`` selects (all when True); the others are
    marked :data:`NOT_READ`."""
    chosen = []
    for hs in snap.sockets:
        if not hs.holders:
            continue
        if policy is True or (policy is not False and policy(hs.row)):  # type: ignore[operator]
            chosen.append(hs)
        else:
            hs.flags_note = NOT_READ
    read_flags(snap, chosen)


def read_flags(snap: Snapshot, sockets: Iterable[HostSocket]) -> None:
    """Read SO_REUSEADDR/SO_REUSEPORT of ``sockets`` (through any of their holders) and note
    in ``snap.notes`` how many stay unknown, and why."""
    failures: dict[str, int] = {}
    snap._groups.clear()
    with FlagReader() as reader:
        read = reader.read
        for hs in sockets:
            holders = hs.holders
            if not holders:
                continue
            row = hs.row
            why = None
            for pid, fd, _command in holders:
                ra, rp, why = read(pid, fd, row.inode, row.cookie, row.family)
                if why is None:
                    hs.reuseaddr, hs.reuseport, hs.flags_note = ra, rp, None
                    break
            if why is not None:
                hs.flags_note = why
                failures[why] = failures.get(why, 0) + 1
    for why, n in failures.items():
        snap.notes.append(f"SO_REUSEADDR/SO_REUSEPORT unknown for {_count(n, 'socket')}: {why}")


def _count(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


# ------------------------------------------------------------------------------------------
# loading into the model
# ------------------------------------------------------------------------------------------

class Assumption:
    """Values for the flags that could not be read: ``default`` for all, except ``overrides``
    (``(id(socket), flag) -> value``).  Kept as data, not a function, so that :func:`load` can
    treat a thousand unknown sockets alike in one step and only look at the exceptions."""

    __slots__ = ("default", "overrides")

    def __init__(self, default: bool = False, overrides: dict[tuple[int, str], bool] | None = None) -> None:
        self.default = default
        self.overrides = overrides or {}

    def __call__(self, hs: HostSocket, flag: str) -> bool:
        return self.overrides.get((id(hs), flag), self.default)


never = Assumption(False)


def load(snap: Snapshot, proto: str, assume: Assumption = never, *, unprivileged_start: int | None = None):
    """Build a model :class:`portspace.Namespace` holding the snapshot's ``proto`` sockets.

    Returns ``(ns, fd_map, notes)``: ``fd_map`` maps each adopted socket's model fd to the host
    sockets it stands for; ``notes`` says what could not be loaded.  ``unprivileged_start``
    overrides ``ip_unprivileged_port_start`` (used to give a non-root caller its
    CAP_NET_BIND_SERVICE).

    Equivalent sockets are loaded once.  Whether an owner conflicts with a new socket depends
    only on its family, local address and port, device, uid, SO_REUSEADDR, SO_REUSEPORT,
    IPV6_V6ONLY, whether it listens and whether it is a remnant (spec §3.2-3.5; ``adopt`` keeps
    the bucket fast path shut, so the decision is pairwise).  Sockets equal in all of these
    (plus the state, which explanations print) are one *class*; one representative is adopted
    and ``fd_map`` lists the whole class, representative first.  A busy server port with
    thousands of accepted connections thus costs the model one socket, not thousands.
    """
    import portspace
    ns = portspace.Namespace(seed=0)
    kernel = ns._kernel
    notes: list[str] = []
    _load_sysctls(ns, snap, notes, unprivileged_start)
    # devices (lo is ifindex 1 in every namespace, already present)
    for link in snap.links:
        if link.ifindex == 1 and link.name == "lo":
            continue
        try:
            kernel.add_device(link.name, ifindex=link.ifindex, loopback=link.loopback)
        except OSError as e:
            notes.append(f"device {link.name} (ifindex {link.ifindex}) not loaded: {e.strerror}")
    names = {link.ifindex: link.name for link in snap.links}
    names.setdefault(1, "lo")
    default = {(AF_INET, 0x7F000001, 8, 1), (AF_INET6, 1, 128, 1)}
    for a in snap.addrs:
        if (a.family, a.addr, a.plen, a.ifindex) in default or not a.usable:
            continue
        dev = names.get(a.ifindex)
        if dev is None or dev not in kernel.devices:
            continue
        try:
            if a.family == AF_INET:
                kernel.add_address_v4(a.addr, a.plen, dev)
            else:
                kernel.add_address_v6(a.addr, a.plen, dev)
        except OSError:
            pass  # the same address twice (e.g. 127.0.0.1 on lo): already there
    classes: dict[tuple, list[HostSocket]] = {}
    special = {i for i, _ in assume.overrides}
    for (family, laddr, port, ifindex, uid, ra, rp, v6only, state, tw), members in snap.groups(proto).items():
        if ra is not None and rp is not None and v6only is not None:
            classes[(family, laddr, port, ifindex, uid, ra, rp, v6only, state, tw)] = members
            continue
        # unknown flags: the default for all, then the exceptions one by one
        d = assume.default
        base = (family, laddr, port, ifindex, uid, d if ra is None else ra, d if rp is None else rp,
                d if v6only is None else v6only, state, tw)
        rest = members
        if special:
            rest = []
            for hs in members:
                if id(hs) not in special:
                    rest.append(hs)
                    continue
                key = (family, laddr, port, ifindex, uid, assume(hs, "reuseaddr") if ra is None else ra,
                       assume(hs, "reuseport") if rp is None else rp,
                       assume(hs, "v6only") if v6only is None else v6only, state, tw)
                classes.setdefault(key, []).append(hs)
        if rest:
            classes.setdefault(base, []).extend(rest)
    fd_map: dict[int, list[HostSocket]] = {}
    for (family, laddr, port, ifindex, uid, ra, rp, v6only, state, tw), members in classes.items():
        if family == AF_INET:
            rcv, v6 = laddr, 0
        elif v6_is_mapped(laddr):
            rcv, v6 = laddr & 0xFFFFFFFF, laddr
        else:
            rcv, v6 = (0 if laddr == 0 else LOOPBACK4_IPV6), laddr
        sk = kernel.adopt(tcp=proto == "tcp", family=family, rcv_saddr=rcv, v6_rcv_saddr=v6, port=port,
                          v6only=bool(v6only) and family == AF_INET6, bound_dev=ifindex, uid=uid,
                          reuseaddr=bool(ra), reuseport=bool(rp), state=state, is_tw=tw)
        if tw and hasattr(sk, "expires"):
            # adopt() takes no expiry; the remnant's time left (the longest of its class) lets
            # explanations say how long to wait.  Not put on the model's timer heap: this
            # namespace's clock never advances.
            left = max((m.row.expires_ms or 0) for m in members) / 1000
            sk.expires = kernel.clock_seconds() + left
        fd_map[sk.fd] = members
    return ns, fd_map, notes


def _load_sysctls(ns, snap: Snapshot, notes: list[str], unprivileged_start: int | None) -> None:
    s = snap.sysctls
    order = ["net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start"]
    if "net.ipv4.ip_unprivileged_port_start" in s or unprivileged_start is not None:
        ns.sysctl("net.ipv4.ip_unprivileged_port_start", 0)
    for name in order + [n for n in _procfs.SYSCTLS if n not in order]:
        text = s.get(name)
        if name == "net.ipv4.ip_unprivileged_port_start" and unprivileged_start is not None:
            text = str(unprivileged_start)
        if text is None:
            continue
        try:
            ns.sysctl(name, text)
        except (OSError, NotImplementedError) as e:
            notes.append(f"sysctl {name}={text!r} not loaded: {e}")

