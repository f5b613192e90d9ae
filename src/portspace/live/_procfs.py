"""Processes and sysctls from procfs: who holds each socket, and the port manager's knobs.

Theory of operation
-------------------
*Attribution.*  A socket is a file; every process holding it has an fd whose link reads
``socket:[INODE]``, and sock_diag / /proc/net give the same inode.  :func:`scan_holders` walks
``ROOT/<pid>/fd/*`` once (as ``ss -p``, netstat, lsof and psutil do) and returns, for each inode,
*every* ``(pid, fd)`` holding it -- a socket shared by a forked worker pool has several holders
(psutil keeps only the first).  A TIME_WAIT remnant has inode 0 and no holder, ever.
:func:`scan_socket_fds` is the same walk for the snapshot: it matches each link *text* against
the wanted sockets' texts (:func:`socket_link`), so the per-fd Python work is one membership
test, and only hits are parsed.  At 16 000 socket fds the kernel's readlink and listdir are
most of its cost; ``ss -p`` makes the same readlinks (and one getxattr per socket on top).

Processes come and go during the scan: a pid directory that vanishes (ENOENT, ESRCH) is skipped
and counted in ``vanished``; one whose fds we may not read (EACCES/EPERM: another user's process
without root, as for ``ss -p``) is listed in ``denied`` so the caller can say what it could not
see.  Nothing here raises for a process-level problem.

*Sysctls.*  :func:`read_sysctls` reads ``ROOT/sys/net/...`` (the reader's network namespace);
a missing file (an older kernel, no IPv6) is left out, never guessed.  The pure parsers
(:func:`parse_port_range`, :func:`parse_reserved_ports`, :func:`parse_socket_link`,
:func:`parse_cmdline`, :func:`parse_capabilities`) take text, so tests feed them fixture text.

Every path is built from the ``root`` argument (default ``/proc``), so a test points it at a
fixture tree (psutil's ``PROCFS_PATH`` idiom).  This module only reads: it opens nothing for
writing.
"""
from __future__ import annotations

import marshal
import os
import sys
from typing import Container

__all__ = ["Holders", "scan_holders", "FdScan", "scan_socket_fds", "BackgroundScan", "socket_link", "command_of", "read_sysctls", "SYSCTLS", "parse_socket_link",
           "parse_cmdline", "parse_port_range", "parse_reserved_ports", "parse_capabilities",
           "caller_capabilities", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]

CAP_NET_BIND_SERVICE = 10
CAP_NET_RAW = 13

# The sysctls that decide bind()/listen()/connect() port questions (spec §1.7).
SYSCTLS = (
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_nonlocal_bind",
    "net.ipv6.ip_nonlocal_bind",
    "net.ipv4.ip_autobind_reuse",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_tw_reuse_delay",
    "net.ipv4.tcp_timestamps",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv6.bindv6only",
)

try:   # the optional C accelerator (setup.py); scan_socket_fds is the reference
    from ._speedups import walk as _walk_c
except ImportError:   # pragma: no cover - depends on the build
    _walk_c = None

_SOCKET_PREFIX = "socket:["
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class Holders:
    """The result of :func:`scan_holders`."""

    __slots__ = ("by_inode", "scanned", "denied", "vanished")

    def __init__(self, by_inode: dict[int, list[tuple[int, int]]] | None = None, scanned: int = 0,
                 denied: list[int] | None = None, vanished: int = 0) -> None:
        self.by_inode: dict[int, list[tuple[int, int]]] = {} if by_inode is None else by_inode  # inode -> [(pid, fd)]
        self.scanned = scanned                                   # processes whose fd table was read
        self.denied: list[int] = [] if denied is None else denied  # pids whose fds could not be read
        self.vanished = vanished                                 # processes that exited during the scan

    def __repr__(self) -> str:
        return (f"Holders(by_inode={self.by_inode!r}, scanned={self.scanned!r}, denied={self.denied!r}, "
                f"vanished={self.vanished!r})")

    def pids(self, inode: int) -> list[int]:
        """The distinct pids holding ``inode``, in scan order."""
        seen: list[int] = []
        for pid, _fd in self.by_inode.get(inode, ()):
            if pid not in seen:
                seen.append(pid)
        return seen


def parse_socket_link(target: str) -> int | None:
    """``"socket:[186978]"`` -> 186978; anything else (a file, a pipe, garbage) -> None.

    >>> parse_socket_link("socket:[186978]"), parse_socket_link("pipe:[5]"), parse_socket_link("socket:[x]")
    (186978, None, None)
    """
    if not target.startswith(_SOCKET_PREFIX) or not target.endswith("]"):
        return None
    digits = target[len(_SOCKET_PREFIX):-1]
    return int(digits) if digits.isdigit() else None


def socket_link(inode: int) -> str:
    """The fd link text of socket ``inode`` (the key :func:`scan_socket_fds` matches on).

    >>> socket_link(186978)
    'socket:[186978]'
    """
    return f"{_SOCKET_PREFIX}{inode}]"


class FdScan:
    """The result of :func:`scan_socket_fds`: for each process with at least one wanted socket,
    ``(pid, [(link, fd), ...])`` in scan order (fds in the order the kernel lists them)."""

    __slots__ = ("processes", "scanned", "denied", "vanished")

    def __init__(self) -> None:
        self.processes: list[tuple[int, list[tuple[str, int]]]] = []
        self.scanned = 0
        self.denied: list[int] = []
        self.vanished = 0

    def __repr__(self) -> str:
        return (f"FdScan(processes={self.processes!r}, scanned={self.scanned!r}, denied={self.denied!r}, "
                f"vanished={self.vanished!r})")


def scan_socket_fds(root: str = "/proc", wanted: Container[str] | None = None, skip: int | None = None) -> FdScan:
    """Walk ``root/<pid>/fd`` once and find the fds whose link is a socket.

    Args:
        root: the procfs root.
        wanted: only these links (``socket:[INODE]``, see :func:`socket_link`); every socket
            when None.  Matching the link text against a set (or dict) needs no parsing per fd:
            the walk's Python work is one membership test per fd and one ``int()`` per hit.
        skip: a pid not to scan (:class:`BackgroundScan`'s child: it holds copies of its
            parent's fds and is not a holder of anything).

    Per process, the links are read in one comprehension; when one readlink fails (the fd was
    closed between listdir and readlink, or the process exited) that process is read again fd
    by fd, skipping the failed ones.  The kernel's readlink and listdir are most of the cost
    (at 16 000 socket fds: ~2 us per readlink, ~1 us per listed fd on a small VM).
    """
    out = FdScan()
    processes = out.processes
    try:
        entries = os.listdir(root)
    except OSError:
        return out
    join = os.path.join
    skip_name = None if skip is None else str(skip)
    for name in entries:
        if not name.isdigit() or name == skip_name:
            continue
        pid = int(name)
        try:
            dfd = os.open(join(root, name, "fd"), _DIR_FLAGS)
        except PermissionError:
            out.denied.append(pid)
            continue
        except OSError:  # ENOENT/ESRCH: exited; ENOTDIR & co: not a process directory
            out.vanished += 1
            continue
        try:
            try:
                fds = os.listdir(dfd)
            except PermissionError:
                out.denied.append(pid)
                continue
            except OSError:
                out.vanished += 1
                continue
            out.scanned += 1
            readlink = os.readlink   # looked up here: tests replace it
            try:
                links = [readlink(f, dir_fd=dfd) for f in fds]
            except OSError:
                links = []
                kept = []
                for f in fds:
                    try:
                        links.append(readlink(f, dir_fd=dfd))
                        kept.append(f)
                    except OSError:
                        continue
                fds = kept
            if wanted is None:
                hits = [(t, f) for f, t in zip(fds, links)
                        if t[:8] == _SOCKET_PREFIX and t[-1:] == "]" and t[8:-1].isdigit()]
            else:
                hits = [(t, f) for f, t in zip(fds, links) if t in wanted]
            if hits:
                pairs = []
                for t, f in hits:
                    if f.isdigit():
                        pairs.append((t, int(f)))
                if pairs:
                    processes.append((pid, pairs))
        finally:
            os.close(dfd)
    return out


class BackgroundScan:
    """:func:`scan_socket_fds` of every socket link (as ``(inode, fd)`` pairs: ints, not link
    texts), and the command line of each process found holding one, computed in a forked child
    while the caller reads sock_diag.

    Why a process: the walk is ~16 000 readlinks at 20 000 sockets, the dump ~70 recvs and
    the decoding of 2 MB; each half is kernel time interleaved with Python, so a thread gains
    nothing (both need the GIL between their syscalls, measured) while a child runs on the
    other core.  ``portspace ls`` takes the walk off its critical path this way.

    The child shares nothing back but one ``marshal`` payload on a pipe (plain lists, ints and
    strings).  It skips its own pid (its fds are copies of the parent's).  Where forking is
    unavailable or unwise -- no ``os.fork``, other threads running (a forked child would hold
    copies of their locks), a failed fork -- or the child fails, :meth:`result` runs the same
    walk in the caller's process: the answer is the same, only later.
    """

    __slots__ = ("root", "pid", "fd", "forked")

    def __init__(self, root: str = "/proc", fork: bool = True) -> None:
        self.root = root
        self.pid: int | None = None
        self.fd: int | None = None
        self.forked = False
        if fork and _may_fork():
            self._start()

    def _start(self) -> None:
        try:
            r, w = os.pipe()
        except OSError:
            return
        try:
            pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            return
        if pid == 0:   # the child: walk, send, exit without running the parent's cleanup
            code = 70
            try:
                os.close(r)
                payload = marshal.dumps(_scan_payload(self.root, os.getpid()))
                view = memoryview(payload)
                while view:
                    view = view[os.write(w, view):]
                code = 0
            except BaseException:   # noqa: BLE001 - the parent falls back to its own walk
                pass
            finally:
                os._exit(code)
        os.close(w)
        self.pid, self.fd, self.forked = pid, r, True

    def result(self) -> tuple[FdScan, dict[int, str | None]]:
        """The walk's outcome: ``(FdScan, pid -> command line)``.  Call once."""
        payload = None
        data = self._collect()
        if data is not None:
            try:
                payload = marshal.loads(data)
            except (EOFError, ValueError, TypeError):
                pass
        if not (isinstance(payload, tuple) and len(payload) == 5):   # no child, or a failed one: walk here
            payload = _scan_payload(self.root, None)
        scan = FdScan()
        scan.processes, scan.scanned, scan.denied, scan.vanished, commands = payload
        return scan, commands

    def _collect(self) -> bytes | None:
        if self.pid is None or self.fd is None:
            return None
        chunks = []
        try:
            while True:
                b = os.read(self.fd, 1 << 20)
                if not b:
                    break
                chunks.append(b)
        except OSError:
            chunks = []
        finally:
            os.close(self.fd)
            self.fd = None
        status = self._reap()   # None: reaped by others (SIGCHLD ignored); a cut payload fails to load
        return b"".join(chunks) if status in (0, None) and chunks else None

    def _reap(self) -> int | None:
        pid, self.pid = self.pid, None
        if pid is None:
            return None
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                return os.waitstatus_to_exitcode(status)
            except ChildProcessError:   # reaped by someone else (a SIGCHLD handler)
                return None
            except InterruptedError:    # pragma: no cover - PEP 475 retries
                continue

    def close(self) -> None:
        """Stop a child whose result is no longer wanted (an error in the caller)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.pid is not None:
            try:
                os.kill(self.pid, 9)
            except OSError:
                pass
            self._reap()


def _may_fork() -> bool:
    if not hasattr(os, "fork"):
        return False
    threading = sys.modules.get("threading")
    return threading is None or threading.active_count() <= 1


def _scan_payload(root: str, skip: int | None) -> tuple:
    """``(processes, scanned, denied, vanished, commands)`` with ``(inode, fd)`` pairs."""
    if _walk_c is not None:   # the C accelerator's copy of scan_socket_fds(root, None, skip)
        processes, scanned, denied, vanished = _walk_c(root, skip)
    else:
        scan = scan_socket_fds(root, None, skip)
        cut = len(_SOCKET_PREFIX)
        processes = [(pid, [(int(link[cut:-1]), fd) for link, fd in pairs]) for pid, pairs in scan.processes]
        scanned, denied, vanished = scan.scanned, scan.denied, scan.vanished
    commands = {pid: command_of(pid, root) for pid, _pairs in processes}
    return processes, scanned, denied, vanished, commands


def scan_holders(root: str = "/proc", wanted: set[int] | frozenset[int] | None = None) -> Holders:
    """Walk ``root/<pid>/fd`` and map socket inodes to ``(pid, fd)`` holders
    (:func:`scan_socket_fds`, with inodes instead of link texts).

    Args:
        root: the procfs root.
        wanted: only record these inodes (all sockets when None).  Every process is still
            scanned: which one holds an inode cannot be known in advance.

    The reader's own process is scanned like any other: a program may inspect its own sockets.
    """
    scan = scan_socket_fds(root, None if wanted is None else {socket_link(i) for i in wanted})
    out = Holders(scanned=scan.scanned, denied=scan.denied, vanished=scan.vanished)
    by_inode = out.by_inode
    cut = len(_SOCKET_PREFIX)
    for pid, pairs in scan.processes:
        for link, fd in pairs:
            inode = int(link[cut:-1])
            holders = by_inode.get(inode)
            if holders is None:
                by_inode[inode] = [(pid, fd)]
            else:
                holders.append((pid, fd))
    return out


def parse_cmdline(raw: bytes) -> str:
    """``/proc/<pid>/cmdline`` (NUL-separated arguments) as one line of text."""
    parts = raw.rstrip(b"\0").split(b"\0")
    return " ".join(p.decode("utf-8", "replace") for p in parts if p or len(parts) > 1).strip()


def command_of(pid: int, root: str = "/proc") -> str | None:
    """The command line of ``pid`` (``[comm]`` for a kernel thread or a zombie, whose cmdline is
    empty); None when the process is gone or unreadable."""
    base = os.path.join(root, str(pid))
    try:
        with open(os.path.join(base, "cmdline"), "rb") as f:
            text = parse_cmdline(f.read(4096))
        if text:
            return text
        with open(os.path.join(base, "comm"), "rb") as f:
            comm = f.read(64).decode("utf-8", "replace").strip()
        return f"[{comm}]" if comm else None
    except OSError:
        return None


def parse_port_range(text: str) -> tuple[int, int] | None:
    """``"32768\\t60999"`` -> (32768, 60999); None when malformed."""
    parts = text.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    lo, hi = int(parts[0]), int(parts[1])
    return (lo, hi) if 0 < lo <= hi <= 65535 else None


def parse_reserved_ports(text: str) -> frozenset[int] | None:
    """``"8080,9000-9002"`` -> {8080, 9000, 9001, 9002}; ``""`` -> empty; None when malformed."""
    text = text.strip()
    ports: set[int] = set()
    if not text:
        return frozenset()
    for item in text.split(","):
        lo_text, sep, hi_text = item.strip().partition("-")
        if not lo_text.isdigit() or (sep and not hi_text.isdigit()):
            return None
        lo = int(lo_text)
        hi = int(hi_text) if sep else lo
        if not 0 <= lo <= hi <= 65535:
            return None
        ports.update(range(lo, hi + 1))
    return frozenset(ports)


def read_sysctls(root: str = "/proc", names: tuple[str, ...] = SYSCTLS) -> dict[str, str]:
    """``name -> text`` (without the trailing newline) for each sysctl that can be read."""
    out: dict[str, str] = {}
    for name in names:
        path = os.path.join(root, "sys", *name.split("."))
        try:
            with open(path, encoding="ascii", errors="replace") as f:
                out[name] = f.read().rstrip("\n")
        except OSError:
            continue
    return out


def parse_capabilities(status_text: str) -> int | None:
    """The effective capability mask from ``/proc/<pid>/status`` text (``CapEff:`` line)."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            try:
                return int(line.split(":", 1)[1].strip(), 16)
            except ValueError:
                return None
    return None


def caller_capabilities(root: str = "/proc") -> int | None:
    """The reader's own effective capabilities (None when unreadable)."""
    try:
        with open(os.path.join(root, "self", "status"), encoding="ascii", errors="replace") as f:
            return parse_capabilities(f.read())
    except OSError:
        return None
