"""The ``ls``, ``explain`` and ``ports`` commands on a synthetic snapshot (no I/O): tables, JSON,
exit codes, one-line errors, NO_COLOR."""
from __future__ import annotations

import io
import json

import pytest

import portspace.live
from portspace.cli import main
from portspace.cli._live import _Style

from .offline import standard


@pytest.fixture(autouse=True)
def fake_host(monkeypatch):
    calls = []

    def snapshot(protos=("tcp", "udp"), ports=None, **kw):
        calls.append((tuple(protos), ports, kw))
        snap = standard()
        snap.sockets = [hs for hs in snap.sockets if hs.row.proto in protos
                        and (ports is None or ports[0] <= hs.row.lport <= ports[1])]
        snap.notes.append("a note about what could not be seen")
        return snap
    monkeypatch.setattr(portspace.live, "snapshot", snapshot)
    return calls


def test_ls_table(capsys):
    assert main(["ls"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["PROTO", "STATE", "LOCAL", "PEER", "UID", "FLAGS", "TW-LEFT", "PROCESS"]
    assert len(lines) == 1 + 8
    tw = next(x for x in lines if "TIME_WAIT" in x)
    assert "127.0.0.1:41000" in tw and "reuseaddr?,reuseport?" in tw and "42.0s" in tw
    assert any("BOUND" in x and "100/server fd 4" in x for x in lines)
    assert any("udp" in x and " 1000 " in x and "200/dnsd fd 5" in x for x in lines)
    assert "v6only?" in next(x for x in lines if ":7100" in x)
    assert "\033[" not in out                                     # not a terminal: no colour
    assert err == "portspace: note: a note about what could not be seen\n"


def test_ls_filters_and_json(capsys, fake_host):
    assert main(["ls", "--udp", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["local"] for s in data["sockets"]] == ["0.0.0.0:6000"]
    assert data["sockets"][0]["processes"] == [{"pid": 200, "fd": 5, "command": "dnsd"}]
    assert fake_host[-1][:2] == (("udp",), None)
    assert main(["ls", "--tcp", "--port", "7000", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["sockets"]) == 3 and {s["reuseport"] for s in data["sockets"]} == {True}
    assert fake_host[-1][:2] == (("tcp",), (7000, 7000))             # filtered by the kernel
    assert main(["ls", "--pid", "301", "--json"]) == 0
    assert [s["processes"][0]["pid"] for s in json.loads(capsys.readouterr().out)["sockets"]] == [301]
    assert main(["ls", "--json"]) == 0
    tw = next(s for s in json.loads(capsys.readouterr().out)["sockets"] if s["time_wait"])
    assert tw["processes"] == [] and tw["uid"] is None and tw["timer_ms"] == 42000 and tw["reuseaddr"] is None


@pytest.mark.parametrize("argv, code, first_line", [
    pytest.param(["explain", "tcp", "127.0.0.2:5000"], 0, "would succeed", id="ok: 0"),
    pytest.param(["explain", "tcp", "127.0.0.1:5000"], 1, "would fail with EADDRINUSE", id="fail: 1"),
    pytest.param(["explain", "tcp", "127.0.0.1:41000", "--reuseaddr"], 3, "depends on flags", id="depends: 3"),
    pytest.param(["explain", "udp", "127.0.0.1:6000", "--reuseport", "--uid", "1000"], 1, "would fail",
                 id="udp as another uid"),
    pytest.param(["explain", "tcp", "127.0.0.1:5000", "--device", "nosuch"], 1, "ENODEV at setsockopt()",
                 id="no such device: 1"),
])
def test_explain_exit_codes(capsys, argv, code, first_line):
    assert main(argv) == code
    out = capsys.readouterr().out
    assert first_line in out.splitlines()[0]


def test_explain_text_names_blocker_and_fixes(capsys):
    main(["explain", "tcp", "127.0.0.1:5000"])
    out = capsys.readouterr().out
    assert "pid 100 (server) fd 3 [TCP 127.0.0.1:5000 LISTEN, uid 0, SO_REUSEADDR]" in out
    assert "held by pid 100 fd 3: server --port" in out
    assert "would succeed if:" in out and "port 5001" in out


def test_explain_depends_shows_both_cases(capsys):
    assert main(["explain", "tcp", "127.0.0.1:41000", "--reuseaddr"]) == 3
    out = capsys.readouterr().out
    assert "SO_REUSEADDR unknown (a TIME_WAIT remnant has no fd" in out
    assert "case 1, if the TIME_WAIT remnant 127.0.0.1:41000->127.0.0.1:5000 has SO_REUSEADDR: would succeed" in out
    assert "case 2, if the TIME_WAIT remnant 127.0.0.1:41000->127.0.0.1:5000 does not have SO_REUSEADDR: " \
           "would fail with EADDRINUSE" in out


def test_explain_json(capsys, fake_host):
    assert main(["explain", "tcp", "127.0.0.1:41000", "--reuseaddr", "--json"]) == 3
    d = json.loads(capsys.readouterr().out)
    assert d["verdict"] == "depends" and d["exit_code"] == 3
    assert [c["ok"] for c in d["cases"]] == [True, False]
    assert d["deciding_unknowns"][0]["flag"] == "SO_REUSEADDR"
    assert d["question"]["port"] == 41000 and d["notes"]
    assert fake_host[-1][:2] == (("tcp",), (41000, 41256))          # only the ports that matter are read


@pytest.mark.parametrize("argv, message", [
    pytest.param(["explain", "tcp", "1.2.3.4:99999"], "the port must be a number", id="port out of range"),
    pytest.param(["explain", "tcp", "localhost:80"], "not a numeric IP address", id="a name"),
    pytest.param(["explain", "sctp", "1.2.3.4:80"], "unknown protocol 'sctp'", id="protocol"),
    pytest.param(["explain", "connect", "8080"], "connect needs a destination ADDR:PORT", id="connect to a bare port"),
    pytest.param(["explain", "connect", "10.0.0.1:0"], "connect needs a destination", id="connect to port 0"),
    pytest.param(["explain", "connect", "10.0.0.1:80", "--listen", "--reuseport"],
                 "--reuseport, --listen do not apply to connect", id="connect with bind options"),
    pytest.param(["explain", "connect", "[fe80::1%eth0]:80"], "link-local IPv6 address", id="connect link-local"),
    pytest.param(["explain", "connect", "10.0.0.1:80", "--device", "nope"], "no device 'nope'", id="connect device"),
    pytest.param(["explain", "connect", "[::ffff:10.0.0.1]:80"], "v4-mapped destination", id="connect mapped"),
    pytest.param(["explain", "connect", "10.0.0.1:80", "--bind-no-port"], "--bind-no-port needs --from",
                 id="no-port without a source"),
    pytest.param(["explain", "connect", "10.0.0.1:80", "--from", "::1"], "of different families", id="source family"),
    pytest.param(["explain", "tcp", "10.0.0.1:80", "--from", "10.0.0.2"], "--from and --bind-no-port apply to "
                 "explain connect", id="from with a bind question"),
    pytest.param(["explain", "udp", "1.2.3.4:80", "--listen"], "--listen applies to TCP only", id="udp listen"),
    pytest.param(["explain", "tcp", "1.2.3.4:80", "--v6only"], "--v6only applies to IPv6", id="v6only on v4"),
])
def test_explain_bad_arguments_one_line(capsys, argv, message):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and message in err and err.startswith("portspace explain: error:")


@pytest.mark.parametrize("argv, message", [
    pytest.param(["explain", "tcp"], "the following arguments are required", id="missing address"),
    pytest.param(["explain", "tcp", "1.2.3.4:80", "--uid", "root"], "invalid uid", id="uid not a number"),
    pytest.param(["explain", "tcp", "1.2.3.4:80", "--device", "a" * 16], "invalid device", id="device name"),
    pytest.param(["explain", "connect", "1.2.3.4:80", "--from", "host"], "invalid address", id="from not numeric"),
    pytest.param(["ls", "--port", "70000"], "invalid port", id="ls port"),
    pytest.param(["ls", "--tcp", "--udp"], "not allowed with", id="ls tcp and udp"),
    pytest.param(["ls", "--pid", "x"], "invalid pid", id="ls pid"),
    pytest.param(["ports", "--bogus"], "unrecognized arguments", id="ports unknown option"),
])
def test_argparse_errors_are_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "--help" in err


def test_help_has_examples(capsys):
    for cmd in ("ls", "explain", "ports"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert "examples:" in capsys.readouterr().out


def test_ports_text_and_json(capsys):
    assert main(["ports"]) == 0
    out = capsys.readouterr().out
    assert "ephemeral range   32768-60999 (28232 ports" in out
    assert "TCP connections per destination" in out and "127.0.0.1:5000" in out
    assert main(["ports", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["ip_local_port_range"] == [32768, 60999] and d["tcp"]["time_wait"] == 1
    assert d["destinations"][0]["destination"] == "127.0.0.1:5000"


def test_demo_still_works(capsys):
    assert main(["demo"]) == 0
    assert "seed 000" in capsys.readouterr().out


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert _Style(_Tty()).on and _Style(_Tty())("x", "31") == "\033[31mx\033[0m"
    monkeypatch.setenv("NO_COLOR", "1")
    assert not _Style(_Tty()).on and _Style(_Tty())("x", "31") == "x"
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not _Style(_Tty()).on
    assert not _Style(io.StringIO()).on


def _varied_sockets():
    """Every kind of row the JSON writer has a branch for: v4/v6, remnant, port 0, peers,
    several holders, a device with a link-local scope, unknown and known flags, a command with
    quotes, backslashes and non-ASCII text, no command at all."""
    from portspace.live._snapshot import Holder
    from .offline import sock
    socks = list(standard().sockets)
    socks.append(sock("tcp", "[::1]:5000", "ESTABLISHED", peer="[::1]:40000", pid=7, command='sh -c "a\\b" é\u2603'))
    socks.append(sock("tcp", "[fe80::1]:22", "LISTEN", pid=8, ifindex=2, device="eth0", v6only=True))
    socks.append(sock("udp", "0.0.0.0:0", "UNCONN", pid=9, command=None))
    socks.append(sock("tcp", "[::ffff:127.0.0.1]:8080", "LISTEN", pid=10, reuseaddr=None, reuseport=True))
    shared = sock("tcp", "0.0.0.0:80", "LISTEN", pid=11, command="nginx: master")
    shared.holders += [Holder(12, 6, "nginx: worker"), Holder(12, 7, "nginx: worker"), Holder(13, 6, None)]
    socks.append(shared)
    socks[-1].flags_note = 'odd "note"\n'
    return socks


@pytest.mark.parametrize("loop", ["accelerator", "python"])   # the C loop where built, and the Python one
def test_ls_json_is_exactly_what_json_dumps_writes(loop, monkeypatch):
    from portspace.cli import _live
    from portspace.cli._live import _ls_json
    if loop == "python":
        monkeypatch.setattr(_live, "_ls_json_c", None)
    socks = _varied_sockets()
    notes = ["a note", 'with "quotes" and ünïcode']
    expected = json.dumps({"source": "sock_diag", "sockets": [hs.as_dict() for hs in socks], "notes": notes})
    assert _ls_json("sock_diag", socks, notes) == expected
    assert _ls_json("/proc/net", [], []) == json.dumps({"source": "/proc/net", "sockets": [], "notes": []})


def _reference_cells(hs):
    """One ls row the slow, obvious way (HostSocket's own texts), to check the column builder."""
    r = hs.row
    if hs.holders:
        by_pid: dict[int, list[int]] = {}
        comm = {}
        for h in hs.holders:
            by_pid.setdefault(h.pid, []).append(h.fd)
            comm.setdefault(h.pid, portspace.live.comm_of(h.command))
        procs = ",".join(f"{pid}/{comm[pid]} fd {'+'.join(map(str, fds))}" for pid, fds in by_pid.items())
    else:
        procs = "-" if r.tw else "?"
    flags = hs.flags_text().replace("SO_REUSEADDR", "reuseaddr").replace("SO_REUSEPORT", "reuseport")
    return [r.proto + ("6" if r.family == 10 else ""), r.state_text, hs.local, hs.peer,
            "-" if r.tw else str(r.uid), flags.replace("IPV6_V6ONLY", "v6only"),
            (f"{r.expires_ms / 1000:.1f}s" if r.expires_ms is not None else "?") if r.tw else "-", procs]


@pytest.mark.parametrize("loop", ["_ls_columns", "_ls_columns_py"])   # the C accelerator's, where built; Python's
@pytest.mark.parametrize("with_device", [False, True])
def test_ls_columns_match_each_sockets_own_texts(with_device, loop):
    from portspace.cli import _live
    from .offline import sock
    _ls_columns = getattr(_live, loop)
    socks = _varied_sockets()
    # a connected socket with a running timer (keepalive): TW-LEFT is for remnants only
    ka = sock("tcp", "127.0.0.1:6000", "ESTABLISHED", peer="127.0.0.1:50000", pid=5)
    ka.row = ka.row._replace(timer=2, expires_ms=7200_000)
    # v6 sockets whose IPV6_V6ONLY follows from the address (mapped or not): not one cache entry
    socks += [ka, sock("tcp", "[::1]:6001", "ESTABLISHED", peer="[::1]:50001", pid=5),
              sock("tcp", "[::ffff:127.0.0.1]:6002", "ESTABLISHED", peer="[::ffff:127.0.0.1]:50002", pid=5),
              sock("tcp", "[::]:6003", "LISTEN", pid=5, v6only=None)]
    if not with_device:
        socks = [hs for hs in socks if hs.device is None]
    cols = _ls_columns(socks)
    assert [list(cells) for cells in zip(*cols)] == [_reference_cells(hs) for hs in socks]
    v6 = {cells[2]: cells[5] for cells in zip(*cols)}
    assert "v6only" in v6["[::1]:6001"] and "v6only" not in v6["[::ffff:127.0.0.1]:6002"]
    assert "v6only?" in v6["[::]:6003"]


def test_ls_into_a_closed_pipe_is_quiet(monkeypatch, capsys):
    """``portspace ls | head``: the reader leaves early; no 'cannot read the host' error."""
    class Gone(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")
    monkeypatch.setattr("sys.stdout", Gone())
    assert main(["ls"]) == 1
    assert "cannot read the host" not in capsys.readouterr().err


@pytest.mark.parametrize("was_enabled", [True, False])
def test_commands_restore_the_garbage_collector(was_enabled):
    import gc
    (gc.enable if was_enabled else gc.disable)()
    try:
        assert main(["ls", "--json"]) == 0 and gc.isenabled() is was_enabled
        assert main(["ports"]) == 0 and gc.isenabled() is was_enabled
    finally:
        gc.enable()


def test_hostile_names_cannot_break_the_table_or_drive_the_terminal(monkeypatch, capsys):
    """A process may name itself anything (prctl, argv) and a device may hold an ESC: text
    output shows such characters escaped (one line per socket, no control sequence reaches the
    terminal); JSON carries the raw text."""
    from .offline import snapshot as make, sock
    evil = "\x1b]0;pwned\x07evil\x1b[2J\nsecond line --port 80"
    hostile = make(sock("tcp", "127.0.0.1:5000", "LISTEN", pid=66, command=evil),
                   sock("tcp", "[fe80::1]:5001", "LISTEN", pid=67, command="ok", ifindex=9, device="d\x1bv",
                        v6only=True))
    monkeypatch.setattr(portspace.live, "snapshot", lambda *a, **kw: hostile)
    for argv in (["ls"], ["explain", "tcp", "127.0.0.1:5000"], ["explain", "tcp", "[fe80::1%9]:5001"]):
        main(argv)
        out, err = capsys.readouterr()
        assert not any(ord(c) < 32 and c != "\n" or c == "\x7f" for c in out + err), (argv, out)
        if argv == ["ls"]:
            lines = out.splitlines()
            assert len(lines) == 3
            assert "66/\\x1b]0;pwned\\x07evil\\x1b[2J\\nsecond fd 3" in lines[1]
            assert "[fe80::1%d\\x1bv]:5001" in lines[2] and "dev=d\\x1bv" in lines[2]
        elif argv[2].startswith("127"):
            assert "held by pid 66 fd 3: \\x1b]0;pwned\\x07evil\\x1b[2J\\nsecond line --port 80" in out
    main(["ls", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert data["sockets"][0]["processes"][0]["command"] == evil
    long = "python3 -c " + "x" * 500
    hostile.sockets[0].holders[0] = hostile.sockets[0].holders[0]._replace(command=long)
    main(["explain", "tcp", "127.0.0.1:5000"])
    line = next(x for x in capsys.readouterr().out.splitlines() if "held by pid 66" in x)
    assert line.endswith("... (311 more characters; --json has it all)") and len(line) < 300
    assert data["sockets"][1]["device"] == "d\x1bv"


def test_explain_connect_when_the_route_cannot_be_asked(monkeypatch, capsys):
    """No NETLINK_ROUTE (a seccomp filter, say): one line, exit 1 -- not taken for connect()'s error."""
    import errno
    from portspace.live import _netlink, _rtnl

    def refuse(*a, **kw):
        raise PermissionError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(_rtnl, "route_get", refuse)
    assert main(["explain", "connect", "10.0.0.1:80"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == "portspace explain: error: cannot ask the kernel for the route to 10.0.0.1: " \
                                "Operation not permitted\n"

    def unreachable(*a, **kw):
        raise _netlink.NetlinkError(errno.EHOSTUNREACH, "No route to host")
    monkeypatch.setattr(_rtnl, "route_get", unreachable)
    assert main(["explain", "connect", "10.0.0.1:80"]) == 1
    assert "would fail with EHOSTUNREACH" in capsys.readouterr().out
