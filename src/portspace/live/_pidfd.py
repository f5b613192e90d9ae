"""SO_REUSEADDR / SO_REUSEPORT of another process's socket, read with pidfd_getfd + getsockopt.

Theory of operation
-------------------
No kernel interface exports a socket's reuse flags: sock_diag's ``INET_DIAG_SOCKOPT`` has
freebind, transparent, bind_address_no_port... but not ``sk_reuse``/``sk_reuseport``, and
/proc/net has neither (peers note §4.1).  The one way without eBPF (peers note §4.6, checked
live) is to borrow the holder's fd:

1. ``pidfd_open(pid)`` (Linux 5.3) -- ``os.pidfd_open``;
2. ``pidfd_getfd(pidfd, fd, 0)`` (Linux 5.6) duplicates the holder's fd into this process.  The
   kernel requires ptrace-attach rights over the holder (``PTRACE_MODE_ATTACH_REALCREDS``):
   root, or the same uid without Yama restrictions;
3. check that the copy is the socket asked about (the holder may have closed and reused the
   fd number in between): ``getsockopt(SO_COOKIE)`` against the sock_diag cookie, or ``fstat``
   against the inode when no cookie is known (rows from /proc/net);
4. ``getsockopt(SOL_SOCKET, SO_REUSEADDR / SO_REUSEPORT)`` on the copy, then ``close`` it.

This only *reads*: getsockopt changes nothing, and closing our duplicate drops a reference, not
the socket (the holder's fd keeps it open).  While we hold the copy the socket cannot be freed,
for a few microseconds.

When any step fails the flags are *unknown* (None) with the reason -- never guessed.  A
TIME_WAIT remnant has no fd at all, so its flags are always unknown here.

``pidfd_getfd`` has no wrapper in Python 3.11's ``os``: it is called by the C accelerator
(``_speedups.pidfd_getfd``, built with the libc's own syscall number) or, where that is not
built, with ``syscall(2)`` through ctypes (imported then only: ~1 ms).  Since Linux 5.1 new system calls have the same number on every architecture that uses
the generic table, so 434 (pidfd_open) and 438 (pidfd_getfd) hold on x86_64 and aarch64 alike;
other machines are refused rather than guessed.
"""
from __future__ import annotations

import errno
import os
import sys

import _socket   # the C module (see _netlink)

__all__ = ["FlagReader", "SYSCALLS"]

# (pidfd_open, pidfd_getfd) by `uname -m`
SYSCALLS = {"x86_64": (434, 438), "aarch64": (434, 438), "arm64": (434, 438)}

_SOL_SOCKET = _socket.SOL_SOCKET
_SO_REUSEADDR = _socket.SO_REUSEADDR
_SO_REUSEPORT = getattr(_socket, "SO_REUSEPORT", 15)
_SOCK_STREAM = _socket.SOCK_STREAM
SO_COOKIE = 57   # include/uapi/asm-generic/socket.h (x86_64 and aarch64; not in Python 3.11's socket)
_SocketType = _socket.socket   # the C type: no Python-level __init__ per wrapped copy
_from_bytes = int.from_bytes
_BYTEORDER = sys.byteorder

try:   # the optional C accelerator (setup.py)
    from ._speedups import pidfd_getfd as _speedups_getfd
except ImportError:   # pragma: no cover - depends on the build
    _speedups_getfd = None


class FlagReader:
    """Reads reuse flags of sockets held by other processes; caches one pidfd per pid.

    Use as a context manager (it closes its pidfds)."""

    def __init__(self, machine: str | None = None) -> None:
        machine = machine or os.uname().machine   # platform.machine(), without importing platform
        nums = SYSCALLS.get(machine)
        self._pidfds: dict[int, int | str] = {}
        self.unavailable: str | None = None
        self._getfd_nr = 0
        self._libc: object | None = None   # ctypes.CDLL, when ctypes calls the syscall
        if nums is None:
            self.unavailable = f"pidfd_getfd's syscall number is not known for {machine}"
            return
        self._getfd_nr = nums[1]
        if _speedups_getfd is not None:
            self._getfd = _getfd_c
        else:
            import ctypes
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                # syscall(2) is variadic; its arguments are all long here, and declaring them
                # saves a c_long object per argument per call (glibc's syscall is assembly that
                # moves registers: no va_list involved on x86_64 or aarch64)
                getfd = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_long,
                                         use_errno=True)(("syscall", libc))
            except (OSError, AttributeError) as e:  # pragma: no cover - glibc/musl always have syscall
                self.unavailable = f"cannot use the C library: {e}"
                return
            self._libc = libc
            self._getfd = _ctypes_getfd(getfd, ctypes.get_errno)
        if not hasattr(os, "pidfd_open"):  # pragma: no cover - Linux builds of 3.9+ have it
            self.unavailable = "os.pidfd_open is missing"

    def __enter__(self) -> FlagReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for v in self._pidfds.values():
            if isinstance(v, int):
                os.close(v)
        self._pidfds.clear()

    def _pidfd(self, pid: int) -> int | str:
        v = self._pidfds.get(pid)
        if v is None:
            try:
                v = os.pidfd_open(pid)
            except OSError as e:
                v = _why(e.errno, pid)
            self._pidfds[pid] = v
        return v

    def read(self, pid: int, fd: int, inode: int, cookie: int = 0,
             family: int = _socket.AF_INET) -> tuple[bool | None, bool | None, str | None]:
        """``(reuseaddr, reuseport, None)`` read from ``pid``'s ``fd``, or ``(None, None, why)``.

        The copy is checked to be the socket asked about: by its sock_diag ``cookie`` when one
        is given (``getsockopt(SO_COOKIE)``: 64 bits, never reused), else by its ``inode``
        (``fstat``).  The copy is wrapped in a bare ``_socket.socket`` with ``family`` given,
        so that the two getsockopt calls are C method calls (measured at 16 000 sockets:
        about half the time of getsockopt through ctypes); wrapping validates that the fd is a
        socket (CPython calls getsockname) and closing the wrapper closes the copy."""
        if self.unavailable is not None:
            return None, None, self.unavailable
        pidfd = self._pidfds.get(pid)
        if pidfd is None:
            pidfd = self._pidfd(pid)
        if pidfd.__class__ is str:
            return None, None, pidfd  # type: ignore[return-value]
        try:
            copy = self._getfd(self._getfd_nr, pidfd, fd)
        except OSError as e:
            return None, None, _why(e.errno, pid)
        try:
            s = _SocketType(family, _SOCK_STREAM, 0, copy)
        except OSError:
            os.close(copy)
            return None, None, "the holder reused the fd number during the scan"  # not a socket any more
        try:
            if cookie:
                if _from_bytes(s.getsockopt(_SOL_SOCKET, SO_COOKIE, 8), _BYTEORDER) != cookie:
                    return None, None, "the holder reused the fd number during the scan"
            elif os.fstat(copy).st_ino != inode:
                return None, None, "the holder reused the fd number during the scan"
            return (s.getsockopt(_SOL_SOCKET, _SO_REUSEADDR) != 0, s.getsockopt(_SOL_SOCKET, _SO_REUSEPORT) != 0,
                    None)
        except OSError as e:
            return None, None, f"getsockopt failed: {os.strerror(e.errno) if e.errno else e}"
        finally:
            s.close()


def _getfd_c(nr: int, pidfd: int, fd: int) -> int:
    """pidfd_getfd by the C accelerator (its syscall number is the C library's own; ``nr``,
    from :data:`SYSCALLS`, is the same)."""
    return _speedups_getfd(pidfd, fd)


def _ctypes_getfd(getfd, get_errno):
    """pidfd_getfd through ctypes' ``syscall``, raising OSError as the C version does."""
    def call(nr: int, pidfd: int, fd: int) -> int:
        copy = getfd(nr, pidfd, fd, 0)
        if copy < 0:
            err = get_errno()
            raise OSError(err, os.strerror(err))
        return copy
    return call


def _why(err: int, pid: int) -> str:
    """Why the flags are unknown; the same text for every socket of the same cause (the
    snapshot counts sockets per cause), so the pid is not part of it."""
    if err in (errno.EPERM, errno.EACCES):
        return "not permitted (pidfd_getfd needs ptrace rights over the holder: root, or the same user)"
    if err == errno.ESRCH:
        return "the holding process exited"
    if err == errno.EBADF:
        return "the holder closed the fd"
    if err == errno.ENOSYS:
        return "pidfd_getfd is not supported by this kernel (needs Linux >= 5.6)"
    return f"pidfd_getfd failed: {os.strerror(err)}"
