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
3. ``fstat`` the copy and compare its inode with the socket's (the holder may have closed and
   reused the fd number in between);
4. ``getsockopt(SOL_SOCKET, SO_REUSEADDR / SO_REUSEPORT)`` on the copy, then ``close`` it.

This only *reads*: getsockopt changes nothing, and closing our duplicate drops a reference, not
the socket (the holder's fd keeps it open).  While we hold the copy the socket cannot be freed,
for a few microseconds.

When any step fails the flags are *unknown* (None) with the reason -- never guessed.  A
TIME_WAIT remnant has no fd at all, so its flags are always unknown here.

``pidfd_getfd`` has no libc wrapper in Python 3.11: it is called with ``syscall(2)`` through
ctypes.  Since Linux 5.1 new system calls have the same number on every architecture that uses
the generic table, so 434 (pidfd_open) and 438 (pidfd_getfd) hold on x86_64 and aarch64 alike;
other machines are refused rather than guessed.
"""
from __future__ import annotations

import ctypes
import errno
import os
import socket

__all__ = ["FlagReader", "SYSCALLS"]

# (pidfd_open, pidfd_getfd) by `uname -m`
SYSCALLS = {"x86_64": (434, 438), "aarch64": (434, 438), "arm64": (434, 438)}

_SOL_SOCKET = socket.SOL_SOCKET
_SO_REUSEADDR = socket.SO_REUSEADDR
_SO_REUSEPORT = getattr(socket, "SO_REUSEPORT", 15)


class FlagReader:
    """Reads reuse flags of sockets held by other processes; caches one pidfd per pid.

    Use as a context manager (it closes its pidfds)."""

    def __init__(self, machine: str | None = None) -> None:
        machine = machine or os.uname().machine   # platform.machine(), without importing platform
        nums = SYSCALLS.get(machine)
        self._pidfds: dict[int, int | str] = {}
        self.unavailable: str | None = None
        self._getfd_nr = 0
        self._libc: ctypes.CDLL | None = None
        if nums is None:
            self.unavailable = f"pidfd_getfd's syscall number is not known for {machine}"
            return
        self._getfd_nr = nums[1]
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            libc.getsockopt.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                                        ctypes.c_void_p]
            libc.getsockopt.restype = ctypes.c_int
        except (OSError, AttributeError) as e:  # pragma: no cover - glibc/musl always have both
            self.unavailable = f"cannot use the C library: {e}"
            return
        self._libc = libc
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

    def read(self, pid: int, fd: int, inode: int) -> tuple[bool | None, bool | None, str | None]:
        """``(reuseaddr, reuseport, None)`` read from ``pid``'s ``fd``, or ``(None, None, why)``."""
        if self.unavailable is not None:
            return None, None, self.unavailable
        pidfd = self._pidfd(pid)
        if isinstance(pidfd, str):
            return None, None, pidfd
        libc = self._libc
        assert libc is not None
        copy = libc.syscall(ctypes.c_long(self._getfd_nr), ctypes.c_long(pidfd), ctypes.c_long(fd),
                            ctypes.c_long(0))
        if copy < 0:
            return None, None, _why(ctypes.get_errno(), pid)
        try:
            if os.fstat(copy).st_ino != inode:
                return None, None, "the holder reused the fd number during the scan"
            val = ctypes.c_int(0)
            size = ctypes.c_uint32(4)
            out = []
            for opt in (_SO_REUSEADDR, _SO_REUSEPORT):
                val.value = 0
                size.value = 4
                if libc.getsockopt(copy, _SOL_SOCKET, opt, ctypes.byref(val), ctypes.byref(size)) != 0:
                    e = ctypes.get_errno()
                    return None, None, f"getsockopt failed: {os.strerror(e)}"
                out.append(val.value != 0)
            return out[0], out[1], None
        finally:
            os.close(copy)


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
