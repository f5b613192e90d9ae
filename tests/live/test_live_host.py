"""The inspector on a real kernel: known sockets in a private network namespace, then ``ls``,
``explain`` and ``ports`` run inside it -- each verdict cross-checked by actually trying the
bind there, and ``ls`` compared with ``ss -tuanp`` on listening sockets (as psutil tests
against ss).

Readers see the network namespace of the process that reads, so they run either in the
namespace's child process (``kns.run``) or in a separate process entered into it with
``nsenter --net`` (the realistic case: another process's sockets, flags by pidfd_getfd).
Loopback only; nothing outside the private namespace is touched.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import portspace
from portspace.live import KernelNamespace, probe

_reason = probe()
if _reason is not None:
    pytest.skip(f"live kernel namespace unavailable: {_reason}", allow_module_level=True)

pytestmark = pytest.mark.kernel

SOL = socket.SOL_SOCKET
SRC = str(Path(portspace.__file__).resolve().parent.parent)


# ---- run in the namespace's child (top-level, picklable) ----------------------------------

def cli(argv):
    """``portspace ARGV`` in this process: (exit code, stdout, stderr)."""
    from portspace.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def cli_as_user(argv, uid):
    """``cli(argv)`` in a forked process that dropped to ``uid`` (no capabilities) and holds no
    socket of its own: what an unprivileged user sees."""
    import portspace.cli._live  # noqa: F401 - import everything before giving up root
    import portspace.live._query  # noqa: F401
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the grandchild
        status = 1
        try:
            os.closerange(3, r)
            os.closerange(r + 1, w)
            os.closerange(w + 1, 1 << 16)
            os.close(r)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            data = pickle.dumps(cli(argv))
            while data:
                data = data[os.write(w, data):]
            status = 0
        finally:
            os._exit(status)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 1 << 16):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    return pickle.loads(b"".join(chunks))


def churn_and_snapshot(n_children, rounds):
    """Snapshots while short-lived processes holding sockets come and go."""
    import random
    from portspace.live import snapshot
    kids = []
    for i in range(n_children):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - grandchild
            try:
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                time.sleep(random.random() * 0.03)
            finally:
                os._exit(0)
        kids.append(pid)
    seen = []
    for _ in range(rounds):
        snap = snapshot()
        seen.append(sum(1 for hs in snap.sockets if hs.row.lport == 5000))
    for pid in kids:
        os.waitpid(pid, 0)
    return seen


# ---- the namespace ---------------------------------------------------------------------------


class Host:
    """A private namespace with the sockets of the issue's acceptance list."""

    def __init__(self) -> None:
        self.kns = kns = KernelNamespace()
        self.socks = []
        lst = self._tcp(("127.0.0.1", 5000), reuseaddr=True)
        lst.listen()                                                  # the listener
        self._tcp(("127.0.0.1", 40001))                               # bound-only
        dual = self._tcp(("::", 5002), family=socket.AF_INET6)
        dual.listen()                                                 # a dual-stack listener
        # a TIME_WAIT remnant: a SO_REUSEADDR client on 41000, which closes first
        client = self._tcp(("127.0.0.1", 41000), reuseaddr=True)
        client.connect(("127.0.0.1", 5000))
        acc, _ = lst.accept()
        client.close()
        time.sleep(0.05)
        acc.close()
        # a live connection (for ports)
        c = kns.socket()
        c.connect(("127.0.0.1", 5000))
        a, _ = lst.accept()
        self.socks += [c, a]
        self.client_port = c.getsockname()[1]
        with kns.user(1000):
            u = kns.socket(socket.AF_INET, socket.SOCK_DGRAM)         # UDP of another uid
            u.bind(("0.0.0.0", 6000))
        self.socks.append(u)
        for _ in range(3):                                            # a SO_REUSEPORT group
            self._tcp(("0.0.0.0", 7000), reuseport=True).listen()
        time.sleep(0.05)

    def _tcp(self, addr, family=socket.AF_INET, reuseaddr=False, reuseport=False):
        s = self.kns.socket(family, socket.SOCK_STREAM)
        if reuseaddr:
            s.setsockopt(SOL, socket.SO_REUSEADDR, 1)
        if reuseport:
            s.setsockopt(SOL, socket.SO_REUSEPORT, 1)
        s.bind(addr)
        self.socks.append(s)
        return s

    def cli(self, *argv):
        return self.kns.run(cli, list(argv))

    def outside(self, *argv, check=True):
        """A separate process entered into the namespace (nsenter), like a user's shell."""
        nsenter = shutil.which("nsenter")
        if nsenter is None:
            pytest.skip("nsenter (util-linux) is not installed")
        env = dict(os.environ, PYTHONPATH=SRC, NO_COLOR="1")
        proc = subprocess.run([nsenter, f"--net=/proc/{self.kns.pid}/ns/net", "--", *argv],
                              capture_output=True, text=True, env=env, timeout=60)
        return proc

    def try_bind(self, proto, family, host, port, *, reuseaddr=False, reuseport=False, v6only=False,
                 device=None, uid=0, listen=False):
        """Actually do it in the namespace: None, or the errno name."""
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        with self.kns.user(uid):
            s = self.kns.socket(family, kind)
            try:
                if reuseaddr:
                    s.setsockopt(SOL, socket.SO_REUSEADDR, 1)
                if reuseport:
                    s.setsockopt(SOL, socket.SO_REUSEPORT, 1)
                if v6only:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if device:
                    s.setsockopt(SOL, socket.SO_BINDTODEVICE, device.encode())
                s.bind((host, port))
                if listen:
                    s.listen()
                return None
            except OSError as e:
                return errno.errorcode[e.errno]
            finally:
                s.close()

    def close(self):
        self.kns.close()


@pytest.fixture(scope="module")
def host():
    h = Host()
    yield h
    h.close()


def _ls(host, *extra):
    code, out, err = host.cli("ls", "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def _find(data, proto, local, state=None):
    found = [s for s in data["sockets"] if s["proto"] == proto and s["local"] == local
             and (state is None or s["state"] == state)]
    return found


# ---- ls ----------------------------------------------------------------------------------------


def test_ls_finds_every_socket(host):
    data = _ls(host)
    assert data["source"] == "sock_diag"
    me = host.kns.pid
    (lst,) = _find(data, "tcp", "127.0.0.1:5000", "LISTEN")
    assert lst["uid"] == 0 and [p["pid"] for p in lst["processes"]] == [me]
    assert lst["reuseaddr"] is True and lst["reuseport"] is False            # read by pidfd_getfd
    (bound,) = _find(data, "tcp", "127.0.0.1:40001")
    assert bound["state"] == "BOUND" and [p["pid"] for p in bound["processes"]] == [me]
    (tw,) = _find(data, "tcp", "127.0.0.1:41000")
    assert tw["state"] == "TIME_WAIT" and tw["time_wait"] and tw["peer"] == "127.0.0.1:5000"
    assert tw["processes"] == [] and tw["uid"] is None and tw["reuseaddr"] is None   # no fd, no process
    assert 0 < tw["timer_ms"] <= 60_000
    (udp,) = _find(data, "udp", "0.0.0.0:6000")
    assert udp["state"] == "UNCONN" and udp["uid"] == 1000 and [p["pid"] for p in udp["processes"]] == [me]
    group = _find(data, "tcp", "0.0.0.0:7000", "LISTEN")
    assert len(group) == 3 and all(s["reuseport"] is True and s["uid"] == 0 for s in group)
    assert len({s["processes"][0]["fd"] for s in group}) == 3
    (dual,) = _find(data, "tcp", "[::]:5002", "LISTEN")
    assert dual["v6only"] is False
    assert len(_find(data, "tcp", "127.0.0.1:5000", "ESTABLISHED")) == 1


def test_ls_text_and_filters(host):
    code, out, _ = host.cli("ls", "--tcp", "--port", "7000")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 4 and all("reuseport" in x and "LISTEN" in x for x in lines[1:])
    assert [s["local"] for s in _ls(host, "--udp")["sockets"]] == ["0.0.0.0:6000"]
    assert len(_ls(host, "--pid", str(host.kns.pid))["sockets"]) == 9    # everything but the remnant
    assert _ls(host, "--pid", "1")["sockets"] == []


def test_ls_from_another_process_reads_flags_with_pidfd(host):
    proc = host.outside(sys.executable, "-m", "portspace", "ls", "--tcp", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    (lst,) = _find(data, "tcp", "127.0.0.1:5000", "LISTEN")
    assert lst["processes"][0]["pid"] == host.kns.pid and lst["reuseaddr"] is True


def test_ls_procnet_source_misses_bound_only_and_says_so(host):
    data = _ls(host, "--source", "procnet")
    assert data["source"] == "/proc/net"
    assert _find(data, "tcp", "127.0.0.1:40001") == []
    assert any("bound but neither listening nor connected" in n for n in data["notes"])
    assert len(_find(data, "tcp", "0.0.0.0:7000")) == 3


def _ss_listeners(text):
    out = set()
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 6 or (f[0], f[1]) not in (("tcp", "LISTEN"), ("udp", "UNCONN")):
            continue
        local = f[4]
        addr, _, port = local.rpartition(":")
        addr = addr.split("%")[0].strip("[]")
        addr = "::" if addr == "*" else addr
        pids = frozenset(int(p.split("=")[1]) for p in line.split("pid")[1:] for p in ["pid" + p.split(",")[0]])
        out.add((f[0], addr, int(port), pids))
    return out


def test_ls_agrees_with_ss_on_listening_sockets(host):
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")
    ss = host.outside("ss", "-tuanp")
    assert ss.returncode == 0, ss.stderr
    mine = host.outside(sys.executable, "-m", "portspace", "ls", "--json")
    assert mine.returncode == 0, mine.stderr
    ours = {(s["proto"], s["local_address"], s["local_port"], frozenset(p["pid"] for p in s["processes"]))
            for s in json.loads(mine.stdout)["sockets"] if s["state"] in ("LISTEN", "UNCONN")}
    theirs = _ss_listeners(ss.stdout)
    assert theirs and ours == theirs


def test_ls_as_unprivileged_user_names_what_it_cannot_see(host):
    code, out, err = host.kns.run(cli_as_user, ["ls", "--json"], 1000)
    assert code == 0, err
    data = json.loads(out)
    (lst,) = _find(data, "tcp", "127.0.0.1:5000", "LISTEN")
    assert lst["processes"] == [] and lst["reuseaddr"] is None               # unknown, not guessed
    assert _find(data, "tcp", "127.0.0.1:40001")                              # still listed
    assert any("could not read the fds" in n and "not root" in n for n in data["notes"])


def test_snapshots_while_processes_come_and_go(host):
    assert host.kns.run(churn_and_snapshot, 30, 5) == [2] * 5                # listener + accepted


# ---- explain, cross-checked by binding for real ----------------------------------------------

CASES = [
    # (argv, expected exit, kwargs of the real attempt)
    (["tcp", "127.0.0.1:5000"], 1, {}),
    (["tcp", "127.0.0.1:5000", "--reuseaddr"], 1, {"reuseaddr": True}),
    (["tcp", "0.0.0.0:5000", "--reuseport"], 1, {"reuseport": True}),
    (["tcp", "127.0.0.2:5000"], 0, {}),
    (["tcp", "0.0.0.0:40001"], 1, {}),
    (["tcp", "127.0.0.1:40001", "--reuseaddr"], 1, {"reuseaddr": True}),
    (["tcp", "127.0.0.1:41000"], 1, {}),
    (["tcp", "127.0.0.1:41000", "--reuseaddr"], 3, {"reuseaddr": True}),     # the remnant has it: case 1
    (["udp", "127.0.0.1:6000"], 1, {}),
    (["udp", "127.0.0.1:6000", "--reuseport"], 1, {"reuseport": True}),
    (["udp", "127.0.0.1:6000", "--reuseport", "--uid", "1000"], 1, {"reuseport": True, "uid": 1000}),
    (["tcp", "127.0.0.1:6000"], 0, {}),
    (["tcp", "0.0.0.0:7000", "--reuseport", "--listen"], 0, {"reuseport": True, "listen": True}),
    (["tcp", "0.0.0.0:7000", "--reuseport", "--uid", "1000"], 1, {"reuseport": True, "uid": 1000}),
    (["tcp", "0.0.0.0:7000"], 1, {}),
    (["tcp", "[::]:5000"], 1, {}),
    (["tcp", "[::]:5002", "--v6only"], 1, {"v6only": True}),
    (["tcp", "0.0.0.0:5002"], 1, {}),
    (["tcp", "[::1]:5000"], 0, {}),
    (["tcp", "10.9.9.9:8080"], 1, {}),
    (["tcp", "127.0.0.1:80", "--uid", "1000"], 1, {"uid": 1000}),
    (["tcp", "127.0.0.1:80"], 0, {}),
    (["tcp", "127.0.0.1:5000", "--device", "nosuch"], 1, {"device": "nosuch"}),
    (["tcp", "127.0.0.1:7001", "--device", "lo", "--listen"], 0, {"device": "lo", "listen": True}),
]


@pytest.mark.parametrize("argv, code, real", [pytest.param(a, c, r, id=" ".join(a)) for a, c, r in CASES])
def test_explain_matches_the_kernel(host, argv, code, real):
    got, out, err = host.cli("explain", *argv, "--json")
    assert got == code, (out, err)
    v = json.loads(out)
    from portspace.live import parse_endpoint
    family, addr, port = parse_endpoint(argv[1])
    actual = host.try_bind(argv[0], family, addr, port, **real)
    if code == 3:
        # the remnant's SO_REUSEADDR could not be read; it *is* set (the client set it), so the
        # kernel must agree with the case that assumes it
        yes, no = v["cases"]
        assert "has SO_REUSEADDR" in yes["assumption"] and yes["ok"] and not no["ok"]
        assert actual is None
        return
    (case,) = v["cases"]
    assert case["error"] == actual, (v, actual)
    if case["error"] == "EADDRINUSE":
        assert case["reasons"] and all(r["blocker"] for r in case["reasons"])


def test_explain_names_the_blocker(host):
    code, out, _ = host.cli("explain", "tcp", "0.0.0.0:40001", "--json")
    assert code == 1
    (r,) = json.loads(out)["cases"][0]["reasons"]
    assert r["blocker"]["state"] == "BOUND" and r["blocker"]["processes"][0]["pid"] == host.kns.pid
    code, out, _ = host.cli("explain", "tcp", "127.0.0.1:41000", "--json")
    (r,) = json.loads(out)["cases"][0]["reasons"]
    assert r["blocker"]["time_wait"] and r["blocker"]["processes"] == []
    code, out, _ = host.cli("explain", "tcp", "0.0.0.0:7000", "--reuseport", "--uid", "1000", "--json")
    (r,) = json.loads(out)["cases"][0]["reasons"]          # the group: one blocker and 2 like it
    assert r["rule"] == "reuseport-same-uid" and r["blocker"]["local_port"] == 7000
    assert r["more_blockers"] == 2 and r["more_blockers_by_holder"][0]["state"] == "LISTEN"


def test_explain_suggested_free_port_is_free(host):
    code, out, _ = host.cli("explain", "tcp", "127.0.0.1:5000", "--json")
    fixes = json.loads(out)["cases"][0]["reasons"][0]["fixes"]
    (port_fix,) = [f for f in fixes if f.startswith("it bound port")]
    port = int(port_fix.split()[3])
    assert host.try_bind("tcp", socket.AF_INET, "127.0.0.1", port) is None


def test_explain_text_depends_shows_both_cases(host):
    code, out, _ = host.cli("explain", "tcp", "127.0.0.1:41000", "--reuseaddr")
    assert code == 3
    assert "depends on flags that could not be read" in out.splitlines()[0]
    assert "case 1, if the TIME_WAIT remnant 127.0.0.1:41000->127.0.0.1:5000 has SO_REUSEADDR: would succeed" in out
    assert "case 2," in out and "would fail with EADDRINUSE" in out


def test_explain_from_another_process(host):
    proc = host.outside(sys.executable, "-m", "portspace", "explain", "tcp", "127.0.0.1:5000", "--reuseaddr")
    assert proc.returncode == 1, proc.stderr
    assert f"pid {host.kns.pid} (python" in proc.stdout and "SO_REUSEADDR]" in proc.stdout
    assert "tcp-reuseaddr-vs-listener" in proc.stdout


def test_explain_as_unprivileged_user(host):
    # flags of root's sockets are unknown to uid 1000: a certain failure stays certain ...
    code, out, _ = host.kns.run(cli_as_user, ["explain", "tcp", "127.0.0.1:5000", "--json"], 1000)
    assert code == 1 and json.loads(out)["cases"][0]["assumption"].startswith("it fails whatever")
    # ... and where the unknown flags decide, both cases (the group does have SO_REUSEPORT)
    code, out, _ = host.kns.run(cli_as_user, ["explain", "tcp", "0.0.0.0:7000", "--reuseport", "--uid", "0",
                                              "--json"], 1000)
    assert code == 3
    v = json.loads(out)
    assert {d["flag"] for d in v["deciding_unknowns"]} == {"SO_REUSEPORT"} and len(v["deciding_unknowns"]) == 3
    assert host.try_bind("tcp", socket.AF_INET, "0.0.0.0", 7000, reuseport=True) is None
    # privileged ports: uid 1000 has no CAP_NET_BIND_SERVICE
    code, out, _ = host.kns.run(cli_as_user, ["explain", "tcp", "127.0.0.1:80", "--json"], 1000)
    assert code == 1 and json.loads(out)["cases"][0]["error"] == "EACCES"


# ---- ports -------------------------------------------------------------------------------------


def test_ports(host):
    code, out, err = host.cli("ports", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["ip_local_port_range"] == [32768, 60999] and d["usable_for_connect"] == 28232
    (dest,) = d["destinations"]
    assert dest["destination"] == "127.0.0.1:5000" and dest["source"] == "127.0.0.1"
    assert dest["connections"] == 1 and dest["time_wait"] == 1 and dest["time_wait_recyclable"] == 1
    # held in the range: the client's port, 40001 (bound) and 41000 (remnant); the two
    # connect()ed ones are both used towards this destination
    assert dest["connections_left"] == 28232 - 3
    assert any("40001" in w and "inside ip_local_port_range" in w for w in d["warnings"])


def test_ports_with_reserved_ports_and_a_small_range():
    with KernelNamespace() as kns:
        kns.sysctl("net.ipv4.ip_local_port_range", "40000 40009")
        kns.sysctl("net.ipv4.ip_local_reserved_ports", "40005")
        srv = kns.socket()
        srv.bind(("127.0.0.1", 40005))
        srv.listen()
        clients = []
        for _ in range(3):
            c = kns.socket()
            c.connect(("127.0.0.1", 40005))
            clients.append(c)
        code, out, _ = kns.run(cli, ["ports", "--json"])
        d = json.loads(out)
        assert d["usable_for_connect"] == 9 and d["ip_local_reserved_ports"] == "40005"
        (dest,) = d["destinations"]
        assert dest["connections"] == 3 and dest["connections_left"] == 6
        assert not any("inside" in w for w in d["warnings"])                     # 40005 is reserved
        code, out, _ = kns.run(cli, ["ports"])
        assert "LEFT BEFORE EADDRNOTAVAIL" in out and "warning: only 6 more connections" in out
        # the kernel agrees: exactly 6 more connections, then EADDRNOTAVAIL
        for _ in range(6):
            c = kns.socket()
            c.connect(("127.0.0.1", 40005))
            clients.append(c)
        last = kns.socket()
        with pytest.raises(OSError) as e:
            last.connect(("127.0.0.1", 40005))
        assert e.value.errno == errno.EADDRNOTAVAIL
        code, out, _ = kns.run(cli, ["ports", "--json"])
        assert json.loads(out)["destinations"][0]["connections_left"] == 0


# ---- the inspector only reads ------------------------------------------------------------------


def run_audited(argvs):
    """Run the commands under an audit hook that records every open() of /proc or /sys for
    writing (the child is disposable: the hook cannot be removed)."""
    events = []

    def hook(event, args):
        if event == "open" and isinstance(args[0], (str, bytes)):
            path, mode, flags = os.fsdecode(args[0]), args[1] or "", args[2] or 0
            writes = any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC)
            if writes and os.path.abspath(path).startswith(("/proc", "/sys")):
                events.append(path)
    sys.addaudithook(hook)
    return [cli(a)[0] for a in argvs], events


def test_inspector_only_reads():
    with KernelNamespace() as kns:
        lst = kns.socket()
        lst.setsockopt(SOL, socket.SO_REUSEPORT, 1)
        lst.bind(("127.0.0.1", 5000))
        lst.listen()
        codes, writes = kns.run(run_audited, [["ls", "--all-flags"], ["ls", "--source", "procnet"],
                                              ["explain", "tcp", "127.0.0.1:5000", "--reuseport", "--listen"],
                                              ["ports"], ["explain", "connect", "127.0.0.1:5000"]])
        assert codes == [0, 0, 0, 0, 0] and writes == []
        # the sockets whose flags were borrowed are untouched: same options, still accepting
        assert lst.getsockopt(SOL, socket.SO_REUSEPORT) == 1 and lst.getsockopt(SOL, socket.SO_REUSEADDR) == 0
        c = kns.socket()
        c.connect(("127.0.0.1", 5000))
        a, _ = lst.accept()
        for s in (a, c, lst):
            s.close()


# ---- IPv6 scopes and devices -------------------------------------------------------------------


def bind_v6(host, port, scope_id, device):
    s = socket.socket(socket.AF_INET6)
    try:
        if device:
            s.setsockopt(SOL, socket.SO_BINDTODEVICE, device.encode())
        s.bind((host, port, 0, scope_id))
        return None
    except OSError as e:
        return errno.errorcode[e.errno]
    finally:
        s.close()


@pytest.mark.parametrize("endpoint, device, scope_id", [
    pytest.param("[fe80::1%d0]:5003", None, 2, id="link-local with its device: the listener blocks"),
    pytest.param("[fe80::1]:5003", None, 0, id="link-local without a scope: EINVAL"),
    pytest.param("[fe80::1%lo]:5003", None, 1, id="link-local on the wrong device"),
    pytest.param("[fe80::1%2]:5004", None, 2, id="numeric scope, free port"),
    pytest.param("[2001:db8::1]:5003", None, 0, id="global address, other port holder is link-local"),
    pytest.param("[2001:db8::1]:5003", "lo", 0, id="global address of d0 bound to lo"),
])
def test_explain_ipv6_scopes_match_the_kernel(endpoint, device, scope_id):
    with KernelNamespace() as kns:
        kns.add_device("d0")                                   # ifindex 2
        kns.add_address("fe80::1/64", "d0")
        kns.add_address("2001:db8::1/64", "d0")
        lst = kns.socket(socket.AF_INET6)
        lst.bind(("fe80::1", 5003, 0, 2))
        lst.listen()
        argv = ["explain", "tcp", endpoint, "--json"] + (["--device", device] if device else [])
        code, out, err = kns.run(cli, argv)
        v = json.loads(out)
        host = endpoint[1:].split("]")[0].split("%")[0]
        port = int(endpoint.rsplit(":", 1)[1])
        actual = kns.run(bind_v6, host, port, scope_id, device)
        assert v["cases"][0]["error"] == actual and code == (0 if actual is None else 1), (v, actual)
        lst.close()
