"""Process attribution and sysctl reads under a fixture procfs root (psutil's PROCFS_PATH idiom):
several holders per socket, vanishing and unreadable processes, malformed text."""
from __future__ import annotations

import os

import pytest

from portspace.live import _procfs
from portspace.live._procfs import (command_of, parse_capabilities, parse_cmdline, parse_port_range,
                                    parse_reserved_ports, parse_socket_link, read_sysctls, scan_holders)


def _proc(root, pid, fds, cmdline=b"", comm=b""):
    d = root / str(pid)
    (d / "fd").mkdir(parents=True)
    for fd, target in fds.items():
        os.symlink(target, d / "fd" / str(fd))
    (d / "cmdline").write_bytes(cmdline)
    (d / "comm").write_bytes(comm)
    return d


@pytest.fixture
def root(tmp_path):
    _proc(tmp_path, 100, {0: "/dev/null", 3: "socket:[1111]", 4: "socket:[2222]", 5: "pipe:[9]"},
          b"nginx: master process\0", b"nginx\n")
    _proc(tmp_path, 101, {3: "socket:[1111]", 7: "socket:[3333]"}, b"nginx: worker\0", b"nginx\n")
    _proc(tmp_path, 2, {}, b"", b"kthreadd\n")                     # a kernel thread: no cmdline
    (tmp_path / "self").mkdir()
    (tmp_path / "net").mkdir()
    (tmp_path / "999").mkdir()                                     # exited: no fd directory left
    (tmp_path / "sys" / "net" / "ipv4").mkdir(parents=True)
    (tmp_path / "sys" / "net" / "ipv4" / "ip_local_port_range").write_text("40000\t40009\n")
    (tmp_path / "sys" / "net" / "ipv4" / "ip_local_reserved_ports").write_text("40003,40005-40006\n")
    return tmp_path


def test_scan_holders_every_pid_of_a_shared_socket(root):
    h = scan_holders(str(root))
    assert sorted(h.by_inode[1111]) == [(100, 3), (101, 3)]                # listdir order is arbitrary
    assert h.by_inode[2222] == [(100, 4)] and h.by_inode[3333] == [(101, 7)]
    assert sorted(h.pids(1111)) == [100, 101]
    assert 9 not in h.by_inode                                       # a pipe is not a socket
    assert h.vanished == 1 and h.denied == [] and h.scanned == 3


def test_scan_holders_wanted_subset(root):
    h = scan_holders(str(root), wanted={3333})
    assert set(h.by_inode) == {3333}


def test_scan_holders_process_vanishing_mid_scan(root, monkeypatch):
    real = os.readlink

    def flaky(path, *, dir_fd=None):
        if path == "4":
            raise FileNotFoundError(2, "gone")                       # fd closed between listdir and readlink
        return real(path, dir_fd=dir_fd)
    monkeypatch.setattr(_procfs.os, "readlink", flaky)
    real_listdir = os.listdir

    def listdir(path="."):
        if isinstance(path, int) and os.readlink(f"/proc/self/fd/{path}").endswith("/101/fd"):
            raise ProcessLookupError(3, "No such process")           # exited between open and listdir
        return real_listdir(path)
    monkeypatch.setattr(_procfs.os, "listdir", listdir)
    h = scan_holders(str(root))
    assert h.by_inode == {1111: [(100, 3)]}
    assert h.vanished == 2


def test_scan_holders_permission_denied(root, monkeypatch):
    real_open = os.open

    def deny(path, flags, *a, **kw):
        if str(path).endswith("/101/fd"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *a, **kw)
    monkeypatch.setattr(_procfs.os, "open", deny)
    h = scan_holders(str(root))
    assert h.denied == [101] and h.pids(1111) == [100] and 3333 not in h.by_inode


def test_scan_holders_missing_root(tmp_path):
    h = scan_holders(str(tmp_path / "nope"))
    assert h.by_inode == {} and h.scanned == 0


def test_command_of(root):
    assert command_of(100, str(root)) == "nginx: master process"
    assert command_of(2, str(root)) == "[kthreadd]"
    assert command_of(999, str(root)) is None                        # gone
    assert command_of(12345, str(root)) is None


@pytest.mark.parametrize("raw, want", [
    pytest.param(b"python3\0-m\0portspace\0", "python3 -m portspace", id="argv"),
    pytest.param(b"nginx: worker process\0\0\0", "nginx: worker process", id="rewritten title, NUL padding"),
    pytest.param(b"", "", id="empty (kernel thread, zombie)"),
    pytest.param(b"caf\xe9\0", "caf\ufffd", id="not UTF-8"),
])
def test_parse_cmdline(raw, want):
    assert parse_cmdline(raw) == want


@pytest.mark.parametrize("text, want", [
    ("socket:[186978]", 186978), ("socket:[]", None), ("socket:[12a]", None), ("pipe:[5]", None),
    ("/dev/null", None), ("socket:[5", None), ("anon_inode:[eventpoll]", None),
])
def test_parse_socket_link(text, want):
    assert parse_socket_link(text) == want


@pytest.mark.parametrize("text, want", [
    ("32768\t60999", (32768, 60999)), ("40000 40000", (40000, 40000)), ("1 2 3", None), ("x 5", None),
    ("60999\t32768", None), ("0 10", None), ("", None),
])
def test_parse_port_range(text, want):
    assert parse_port_range(text) == want


@pytest.mark.parametrize("text, want", [
    ("", frozenset()), ("8080", frozenset({8080})), ("1-3,7", frozenset({1, 2, 3, 7})),
    (" 9000-9001 ,\t9005\n", frozenset({9000, 9001, 9005})), ("5-3", None), ("a", None), ("1,,2", None),
    ("70000", None),
])
def test_parse_reserved_ports(text, want):
    assert parse_reserved_ports(text) == want


def test_read_sysctls_leaves_missing_ones_out(root):
    s = read_sysctls(str(root))
    assert s == {"net.ipv4.ip_local_port_range": "40000\t40009",
                 "net.ipv4.ip_local_reserved_ports": "40003,40005-40006"}


def test_parse_capabilities():
    assert parse_capabilities("Name:\tx\nCapEff:\t0000000000000400\n") == 1 << 10
    assert parse_capabilities("CapEff:\tzz\n") is None
    assert parse_capabilities("Name: x\n") is None
    assert _procfs.caller_capabilities("/nonexistent") is None


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "in-process"])
def test_snapshot_attribution_by_link_text(root, fork):
    """_attribute matches fd links against the snapshot's sockets: every holder of each, a
    socket seen twice in one dump gets the holders on both rows, an unheld one is noted."""
    from portspace.live._rows import SockRow
    from portspace.live._snapshot import HostSocket, Snapshot, _attribute

    def hs(inode, lport):
        return HostSocket(SockRow("tcp", 2, 10, 0x7F000001, lport, 0, 0, 0, 0, inode, None, 0, None, False))
    shared, twin, single, unheld = hs(1111, 80), hs(1111, 80), hs(3333, 81), hs(4444, 82)
    snap = Snapshot([shared, single, twin, unheld, hs(0, 83)], "sock_diag", {}, [], [], [], ("tcp",), None, 0, 0)
    walk = _procfs.BackgroundScan(str(root), fork=fork)
    assert walk.forked is fork
    _attribute(snap, *walk.result())
    assert sorted(shared.holders) == sorted(twin.holders) == [(100, 3, "nginx: master process"), (101, 3, "nginx: worker")]
    assert single.holders == [(101, 7, "nginx: worker")] and single.holders[0].command == "nginx: worker"
    assert unheld.holders == [] and unheld.flags_note == "no visible process holds it"
    assert snap.scanned == 3 and any("1 socket without a visible holder" in n for n in snap.notes)
    assert any("1 process exited during the scan" in n for n in snap.notes)


def _fields(scan):
    return scan.processes, scan.scanned, scan.denied, scan.vanished


def _walk_ints(root):
    """scan_socket_fds with inodes as ints: what BackgroundScan answers."""
    scan = _procfs.scan_socket_fds(root)
    scan.processes = [(pid, [(parse_socket_link(link), fd) for link, fd in pairs]) for pid, pairs in scan.processes]
    return scan


def test_background_scan_answers_as_the_walk_in_process(root):
    """The forked walk returns what scan_socket_fds returns in the caller's process, with the
    command line of every holder."""
    walk = _procfs.BackgroundScan(str(root))
    assert walk.forked
    scan, commands = walk.result()
    assert _fields(scan) == _fields(_walk_ints(str(root)))
    assert sorted((pid, sorted(pairs)) for pid, pairs in scan.processes) == [
        (100, [(1111, 3), (2222, 4)]), (101, [(1111, 3), (3333, 7)])]
    assert commands == {100: "nginx: master process", 101: "nginx: worker"}
    assert walk.pid is None and walk.fd is None                          # reaped, pipe closed


def test_background_scan_falls_back_when_the_child_fails(root, monkeypatch):
    """A child that fails (here: its walk raises) leaves no trace: the caller walks itself."""
    parent = os.getpid()
    real = _procfs._scan_payload

    def failing_in_child(root_, skip):
        if os.getpid() != parent:
            raise RuntimeError("child fails")
        return real(root_, skip)
    monkeypatch.setattr(_procfs, "_scan_payload", failing_in_child)
    walk = _procfs.BackgroundScan(str(root))
    assert walk.forked
    scan, commands = walk.result()
    assert _fields(scan) == _fields(_walk_ints(str(root))) and commands[101] == "nginx: worker"


def test_background_scan_does_not_fork_beside_other_threads(root):
    import threading
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        walk = _procfs.BackgroundScan(str(root))
        assert not walk.forked and walk.pid is None
        assert _fields(walk.result()[0]) == _fields(_walk_ints(str(root)))
    finally:
        stop.set()
        t.join()


def test_background_scan_close_stops_an_unread_child(root):
    walk = _procfs.BackgroundScan(str(root))
    pid = walk.pid
    walk.close()
    assert walk.pid is None and walk.fd is None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)                                      # reaped, not a zombie


def test_background_scan_child_is_not_a_holder():
    """On the real /proc: the child holds copies of its parent's fds but never lists itself,
    so a socket of this process has exactly one holder (an AF_UNIX pair: no port is taken)."""
    a, b = __import__("socket").socketpair()
    try:
        link = os.fstat(a.fileno()).st_ino
        walk = _procfs.BackgroundScan("/proc")
        assert walk.forked
        scan, commands = walk.result()
        holders = [(pid, fd) for pid, pairs in scan.processes for key, fd in pairs if key == link]
        assert holders == [(os.getpid(), a.fileno())]
        assert commands[os.getpid()]
    finally:
        a.close()
        b.close()


def test_background_scan_with_sigchld_ignored_keeps_the_childs_answer(root, monkeypatch):
    """With SIGCHLD ignored the kernel reaps the child itself (waitpid: ECHILD); the payload it
    sent is still the answer -- the caller does not walk again."""
    import signal
    parent = os.getpid()
    walked_here = []
    real = _procfs._scan_payload

    def counting(root_, skip):
        if os.getpid() == parent:
            walked_here.append(root_)
        return real(root_, skip)
    monkeypatch.setattr(_procfs, "_scan_payload", counting)
    old = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        walk = _procfs.BackgroundScan(str(root))
        scan, commands = walk.result()
    finally:
        signal.signal(signal.SIGCHLD, old)
    assert walk.forked and walked_here == []
    assert _fields(scan) == _fields(_walk_ints(str(root))) and commands[100] == "nginx: master process"
