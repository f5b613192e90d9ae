"""Reading another socket's SO_REUSEADDR / SO_REUSEPORT with pidfd_getfd (here: our own
process, an unbound socket -- nothing reaches the network)."""
from __future__ import annotations

import os
import socket
import sys
import warnings

import pytest

from portspace.live import _pidfd
from portspace.live._pidfd import SO_COOKIE, SYSCALLS, FlagReader


@pytest.fixture(autouse=True, params=["accelerator", "ctypes"])
def syscall_by(request, monkeypatch):
    """Every test twice: pidfd_getfd by the C accelerator (where built) and through ctypes."""
    if request.param == "ctypes":
        monkeypatch.setattr(_pidfd, "_speedups_getfd", None)
    elif _pidfd._speedups_getfd is None:
        pytest.skip("the C accelerator is not built here (the ctypes run covers this test)")
    return request.param


def test_the_call_is_made_as_asked(syscall_by):
    with FlagReader() as r:
        assert (r._libc is None) is (syscall_by == "accelerator")


def test_syscall_numbers_for_both_architectures():
    # the generic syscall table: the same numbers on x86_64 and aarch64 since Linux 5.1
    assert SYSCALLS["x86_64"] == SYSCALLS["aarch64"] == (434, 438)


def test_unknown_architecture_is_refused_not_guessed():
    with FlagReader(machine="sparc64") as r:
        assert r.read(os.getpid(), 0, 0) == (None, None, "pidfd_getfd's syscall number is not known for sparc64")


@pytest.mark.skipif(os.uname().machine not in SYSCALLS, reason="pidfd_getfd number unknown here")
@pytest.mark.parametrize("reuseaddr, reuseport", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_reads_flags_of_a_held_socket(reuseaddr, reuseport):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, reuseaddr)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, reuseport)
        inode = os.fstat(s.fileno()).st_ino
        with FlagReader() as r:
            got = r.read(os.getpid(), s.fileno(), inode)
        if got[2] is not None and "not supported" in got[2]:
            pytest.skip(got[2])
        assert got == (bool(reuseaddr), bool(reuseport), None)
        # reading changed nothing
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == reuseaddr


@pytest.mark.skipif(os.uname().machine not in SYSCALLS, reason="pidfd_getfd number unknown here")
def test_fd_reused_or_closed_or_process_gone():
    with socket.socket() as s, FlagReader() as r:
        inode = os.fstat(s.fileno()).st_ino
        fd = s.fileno()
        ra, rp, why = r.read(os.getpid(), fd, inode + 1)            # another socket got the number
        assert (ra, rp) == (None, None) and "reused the fd number" in why
        assert r.read(os.getpid(), 99999, inode)[2] == "the holder closed the fd"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads (the child only exits)
        pid = os.fork()
    if pid == 0:  # pragma: no cover
        os._exit(0)
    os.waitpid(pid, 0)
    with FlagReader() as r:
        assert r.read(pid, 3, 1)[2] == "the holding process exited"


def _cookie(s: socket.socket) -> int:
    return int.from_bytes(s.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8), sys.byteorder)


@pytest.mark.skipif(os.uname().machine not in SYSCALLS, reason="pidfd_getfd number unknown here")
@pytest.mark.parametrize("family, kind", [(socket.AF_INET, socket.SOCK_STREAM), (socket.AF_INET6, socket.SOCK_STREAM),
                                          (socket.AF_INET, socket.SOCK_DGRAM), (socket.AF_INET6, socket.SOCK_DGRAM)])
def test_identity_by_cookie(family, kind):
    """With a sock_diag cookie the copy is checked by SO_COOKIE (no fstat); a wrong cookie is a
    reused fd number, whatever the inode says."""
    with socket.socket(family, kind) as s, socket.socket(family, kind) as other:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        inode = os.fstat(s.fileno()).st_ino
        with FlagReader() as r:
            got = r.read(os.getpid(), s.fileno(), inode, _cookie(s), family)
            if got[2] is not None and "not supported" in got[2]:
                pytest.skip(got[2])
            assert got == (False, True, None)
            assert r.read(os.getpid(), s.fileno(), inode, _cookie(other), family) == (
                None, None, "the holder reused the fd number during the scan")
            assert r.read(os.getpid(), s.fileno(), inode, 0, family) == (False, True, None)   # by inode
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1 and s.fileno() >= 0


@pytest.mark.skipif(os.uname().machine not in SYSCALLS, reason="pidfd_getfd number unknown here")
def test_fd_number_now_a_file_is_unknown_and_the_copy_closed():
    before = len(os.listdir("/proc/self/fd"))
    with open(os.devnull, "rb") as f, FlagReader() as r:
        got = r.read(os.getpid(), f.fileno(), 12345, 678)
        if got[2] is not None and "not supported" in got[2]:
            pytest.skip(got[2])
        assert got == (None, None, "the holder reused the fd number during the scan")
        assert len(os.listdir("/proc/self/fd")) == before + 2       # f and the reader's pidfd: no copy left
