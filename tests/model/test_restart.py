"""The server-restart table (issue 5, spec §6.3, seeds 001/004): an old server on 0.0.0.0:port
leaves something behind, a new server binds the same port and listens.

Rows: the old server's flags (none, SO_REUSEADDR, SO_REUSEPORT, both) x the new server's flags
(the same four) x what the old server left (``listening``: it still listens; ``child``: the
listener closed, an accepted ESTABLISHED child alive; ``remnant``: only the server-side TIME_WAIT
remnant of that child, the server closed first; ``client-first``: the client closed first, so
the server side holds no remnant) x the new server's uid (0, as the old one, or 1000) x its
address (0.0.0.0 or 127.0.0.1).  256 cells.

Expected outcomes are the kernel's: ``tests/data/restart_matrix.txt`` was recorded by running
the same generated steps on Linux 6.18 in a private namespace (``python
tests/model/test_restart.py --record``; the file names the kernel).  The tests run every cell on
the model *and* on the kernel and compare both with the record, check the model's explanation
of every refusal (the right blocker: the listener, the child, or the remnant with its time left
and its frozen flags), and apply every fix the explanation offers -- on both sides where it
takes no real time, on the model's virtual clock for "wait" -- to show each one works.
"""
from __future__ import annotations

import itertools
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from portspace.diff import failures, run_script

DATA = Path(__file__).parent.parent / "data" / "restart_matrix.txt"
FLAGS = {"none": "", "RA": "reuseaddr", "RP": "reuseport", "RA+RP": "reuseaddr reuseport"}
STATES = ("listening", "child", "remnant", "client-first")
UIDS = (0, 1000)
ADDRS = ("0.0.0.0", "127.0.0.1")


class Cell(NamedTuple):
    old: str
    new: str
    state: str
    uid: int
    addr: str

    def key(self) -> str:
        return f"old={self.old} new={self.new} state={self.state} uid={self.uid} addr={self.addr}"


CELLS = [Cell(*c) for c in itertools.product(FLAGS, FLAGS, STATES, UIDS, ADDRS)]

LEFT_BEHIND = {
    "listening": "",
    "child": """
        c = tcp4
        c connect 127.0.0.1 {port}
        a = L accept
        L close
    """,
    "remnant": """
        c = tcp4
        c connect 127.0.0.1 {port}
        a = L accept
        a close
        c close
        L close
    """,
    "client-first": """
        c = tcp4
        c connect 127.0.0.1 {port}
        a = L accept
        c close
        a close
        L close
    """,
}


def setup_script(cell: Cell, port: int) -> str:
    """The old server and what it left behind (no expectations: the kernel decides)."""
    return (f"L = tcp4 {FLAGS[cell.old]}\nL bind 0.0.0.0 {port}\nL listen\n"
            + LEFT_BEHIND[cell.state].format(port=port))


def new_socket(cell: Cell, name: str = "n") -> str:
    return f"{name} = tcp4 {FLAGS[cell.new]} uid={cell.uid}\n"


def cell_script(cell: Cell, port: int) -> str:
    return setup_script(cell, port) + new_socket(cell) + f"n bind {cell.addr} {port}\nn listen\n"


def cell_outcome(results: list[Any]) -> str:
    """``bind`` outcome, and ``/listen`` outcome when the bind succeeded."""
    bind, listen = results[-2], results[-1]
    assert bind.step.op == "bind" and listen.step.op == "listen"
    return bind.outcome if bind.outcome != "OK" else f"OK/{listen.outcome}"


def run_cells(ns: Any, cells: list[Cell], base: int = 21000) -> dict[Cell, str]:
    """Each cell on its own port (10 apart, so the "another port" fixes have room)."""
    out = {}
    for i, cell in enumerate(cells):
        results = run_script(ns, cell_script(cell, base + 10 * i))
        bad = [r for r in results[:-2] if r.error is not None]
        assert not bad, (cell, [(r.step.line, r.outcome) for r in bad])
        out[cell] = cell_outcome(results)
    return out


def recorded() -> dict[Cell, str]:
    table = {}
    for line in DATA.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, _, want = line.partition(" -> ")
        fields = dict(f.split("=", 1) for f in key.split())
        table[Cell(fields["old"], fields["new"], fields["state"], int(fields["uid"]), fields["addr"])] = want.strip()
    return table


@pytest.fixture(scope="module")
def table() -> dict[Cell, str]:
    t = recorded()
    assert set(t) == set(CELLS), "tests/data/restart_matrix.txt does not cover the generated cells; re-record"
    return t


@pytest.mark.parametrize("state", STATES)
def test_restart_table(any_ns, table, state):
    """Every cell of one old state, model or kernel, against the recorded kernel table."""
    cells = [c for c in CELLS if c.state == state]
    got = run_cells(any_ns, cells)
    wrong = [f"{c.key()}: recorded {table[c]}, got {got[c]}" for c in cells if got[c] != table[c]]
    assert not wrong, "\n".join(wrong)


def test_restart_table_is_not_trivial(table):
    """The record separates the cases the seeds confuse (it is not all OK or all EADDRINUSE)."""
    outcomes = set(table.values())
    assert "EADDRINUSE" in outcomes and "OK/OK" in outcomes
    # the seeds' claim "SO_REUSEADDR fixes the restart" holds only if the old server had it too
    assert table[Cell("none", "RA", "remnant", 0, "0.0.0.0")] == "EADDRINUSE"
    assert table[Cell("RA", "RA", "remnant", 0, "0.0.0.0")] == "OK/OK"
    # a client that closed first leaves the server's port free whatever the flags
    assert all(table[c] == "OK/OK" for c in CELLS if c.state == "client-first")


# -- explanations ---------------------------------------------------------------------------

def _run_keeping(ns: Any, script: str) -> tuple[list[Any], dict[str, Any], dict[str, int]]:
    """Run steps, keeping the sockets open; also the model fd of every named socket."""
    from portspace.diff._script import _run_step, parse
    socks: dict[str, Any] = {}
    fds: dict[str, int] = {}
    results = []
    for st in parse(script):
        results.append(_run_step(ns, socks, st))
        for name, s in socks.items():
            if name not in fds and s.fileno() >= 0:
                fds[name] = s.fileno()
    return results, socks, fds


def _close_all(socks: dict[str, Any]) -> None:
    for s in socks.values():
        s.close()


FIX_WAIT = re.compile(r"you waited ([0-9.]+) s for the TIME_WAIT remnants? of (.+) to expire")
FIX_CLOSE = re.compile(r"^(#\d+(?: and #\d+)*) were closed$")
FIX_CLOSE_CONNECTED = re.compile(r"^(#\d+(?: and #\d+)*) were closed after (?:its peer|their peers) closed, "
                                 r"or with SO_LINGER \{1, 0\}")
FIX_ADDR = re.compile(r"^the socket bound ([0-9.]+):(\d+) instead$")
FIX_PORT = re.compile(r"^it bound port (\d+) \(free for TCP\)$")
FIX_OPTS = re.compile(r"^(SO_REUSEADDR|SO_REUSEPORT) were set on the new socket and on (#\d+(?: and #\d+)*)")
FIX_NEW_OPT = re.compile(r"^(SO_REUSEADDR|SO_REUSEPORT) were set on the new socket \(")


def _with_opt(flags: str, opt: str) -> str:
    have = set(flags.split("+")) - {"none"}
    have.add("RA" if opt == "SO_REUSEADDR" else "RP")
    return "+".join(x for x in ("RA", "RP") if x in have)


def explain_cell(cell: Cell, port: int = 21000) -> tuple[Any, dict[str, int], list[str]]:
    """Run a refused cell on a fresh model up to the bind; its reasons, fds, and a list of
    fix checks: ("script", text) to run on both sides, ("cell", Cell) whose recorded kernel
    outcome must be OK, ("wait", seconds) for the virtual clock."""
    import portspace
    ns = portspace.Namespace(seed=7)
    results, socks, fds = _run_keeping(ns, setup_script(cell, port) + new_socket(cell) + f"n bind {cell.addr} {port}\n")
    err = results[-1].error
    reasons = list(err.reasons) if err is not None else []
    _close_all(socks)
    return reasons, fds, []


def _expected_blocker(cell: Cell) -> str:
    return {"listening": "L", "child": "a", "remnant": "a"}[cell.state]


def _fix_checks(cell: Cell, fix: str, fds: dict[str, int], port: int) -> list[tuple[str, Any]]:
    names = {fd: name for name, fd in fds.items()}
    prefix = setup_script(cell, port) + new_socket(cell)
    if m := FIX_WAIT.match(fix.split(", and ")[-1]):
        closes = fix.split(", and ")[0] if ", and " in fix else ""
        steps = "".join(f"{names[int(fd)]} close\n" for fd in re.findall(r"#(\d+)", closes))
        return [("wait", (prefix + steps, float(m.group(1))))]
    if m := FIX_CLOSE.match(fix):
        steps = "".join(f"{names[int(fd)]} close -> OK\n" for fd in re.findall(r"#(\d+)", m.group(1)))
        return [("script", prefix + steps + f"n bind {cell.addr} {port} -> OK\n")]
    if m := FIX_CLOSE_CONNECTED.match(fix):
        # both ways: the peer (the client c) closes first, or a reset with SO_LINGER {1, 0}
        blockers = [names[int(fd)] for fd in re.findall(r"#(\d+)", m.group(1))]
        assert blockers == ["a"], (cell, fix)
        bind = f"n bind {cell.addr} {port} -> OK\n"
        return [("script", prefix + "c close -> OK\na close -> OK\n" + bind),
                ("script", prefix + "a linger 1 0 -> OK\na close -> OK\n" + bind)]
    if m := FIX_ADDR.match(fix):
        return [("script", prefix + f"n bind {m.group(1)} {m.group(2)} -> OK\n")]
    if m := FIX_PORT.match(fix):
        return [("script", prefix + f"n bind {cell.addr} {m.group(1)} -> OK\n")]
    if m := FIX_OPTS.match(fix):
        blockers = {names[int(fd)] for fd in re.findall(r"#(\d+)", m.group(2))}
        assert blockers <= {"L", "a"}, (cell, fix)
        uid = cell.uid
        if u := re.search(r"created by uid (\d+)", fix):
            uid = int(u.group(1))
        # the old listener with the option passes it to its child: that cell of the table
        return [("cell", cell._replace(old=_with_opt(cell.old, m.group(1)), new=_with_opt(cell.new, m.group(1)),
                                       uid=uid))]
    if m := FIX_NEW_OPT.match(fix):
        return [("cell", cell._replace(new=_with_opt(cell.new, m.group(1))))]
    raise AssertionError(f"fix not understood by the test: {fix!r}")


def _refused(table: dict[Cell, str], state: str) -> list[Cell]:
    return [c for c in CELLS if c.state == state and not table[c].startswith("OK")]


@pytest.mark.parametrize("state", ["listening", "child", "remnant"])
def test_restart_refusals_explained(table, state):
    """Every refusal names the right blocker: the old listener, the live child, or the remnant
    with its time left and the flags it kept; a refusal offers at least one fix."""
    cells = _refused(table, state)
    assert cells
    for cell in cells:
        reasons, fds, _ = explain_cell(cell)
        assert reasons, cell
        who = _expected_blocker(cell)
        blockers = [r.blocker for r in reasons if r.blocker is not None]
        assert [b.fd for b in blockers] == [fds[who]], (cell, [str(r) for r in reasons])
        (r,) = reasons
        b = r.blocker
        old = set(cell.old.split("+"))
        assert (b.reuseaddr, b.reuseport) == ("RA" in old, "RP" in old), (cell, str(r))
        assert b.uid == 0
        if state == "listening":
            assert b.state == "LISTEN" and not b.time_wait
        elif state == "child":
            assert b.state == "ESTABLISHED" and not b.time_wait
        else:
            assert b.time_wait and b.state == "TIME_WAIT" and b.time_left == pytest.approx(60.0)
            assert "a TIME_WAIT remnant of socket" in r.message and "60.0 s left" in r.message
            assert not any(f.startswith("SO_") and "and on" in f for f in r.fixes), r.fixes
            new = set(cell.new.split("+"))
            lacking = [o for o, k in (("SO_REUSEADDR", "RA"), ("SO_REUSEPORT", "RP")) if k in new and k not in old]
            if lacking:
                assert r.rule == "time-wait-kept-old-flags", (cell, str(r))
                assert "now does not help" in r.message
                assert all(o in r.message for o in lacking), (cell, r.message)
        assert r.fixes, (cell, str(r))


def _fix_plan(table: dict[Cell, str], state: str) -> tuple[list[str], list[tuple[Cell, str, Cell]],
                                                           list[tuple[Cell, str, str, float]]]:
    """Every (refused cell, offered fix) on a port of its own (the fix texts name ports and fds,
    so each is explained again on the port its check will use)."""
    scripts, cells, waits = [], [], []
    port = 23000
    for cell in _refused(table, state):
        reasons, _, _ = explain_cell(cell, port)
        count = sum(len(r.fixes) for r in reasons)
        for j in range(count):
            port += 10
            reasons, fds, _ = explain_cell(cell, port)
            fix = [f for r in reasons for f in r.fixes][j]
            for kind, what in _fix_checks(cell, fix, fds, port):
                if kind == "script":
                    scripts.append(what)
                elif kind == "cell":
                    cells.append((cell, fix, what))
                else:
                    waits.append((cell, fix, *what))
    return scripts, cells, waits


@pytest.mark.parametrize("state", ["listening", "child", "remnant"])
def test_restart_fixes_are_true(any_ns, table, state):
    """Each fix the model offers for a refused cell, applied: closing the blocker, another
    address or port (run on this side), options on both sockets (the cell of the table that
    has them, recorded on the kernel).  Waiting is checked on the model's clock only."""
    scripts, cells, waits = _fix_plan(table, state)
    assert scripts or cells or waits
    bad = []
    for script in scripts:
        results = run_script(any_ns, script)
        bad += failures(results)
    for cell, fix, target in cells:
        if not table[target].startswith("OK"):
            bad.append(f"{cell.key()}: fix {fix!r} -> {target.key()} is {table[target]} on the kernel")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("state", ["remnant"])
def test_restart_wait_fix_exact_on_the_virtual_clock(table, state):
    """"you waited X s": X is enough, X - 0.1 s is not."""
    import portspace
    _, _, waits = _fix_plan(table, state)
    assert waits
    for cell, fix, prefix, secs in waits:
        for dt, want in ((secs - 0.1, "EADDRINUSE"), (secs, "OK")):
            ns = portspace.Namespace(seed=7)
            port = int(re.search(r"bind 0\.0\.0\.0 (\d+)", prefix).group(1))
            results = run_script(ns, prefix + f"ns sleep {dt}\nn bind {cell.addr} {port} -> {want}\n")
            assert not failures(results), (cell, fix, failures(results))


def record() -> None:  # pragma: no cover - run by hand on a kernel
    import platform
    from portspace.live import KernelNamespace
    from tests.conftest import STANDARD_SETUP
    lines = [f"# server-restart table, recorded on Linux {platform.release()} in a private namespace by",
             "# python tests/model/test_restart.py --record (generated steps: see test_restart.py).",
             "# outcome: bind() errno, or OK/<listen() outcome>."]
    for state in STATES:
        ns = KernelNamespace()
        run_script(ns, STANDARD_SETUP)
        got = run_cells(ns, [c for c in CELLS if c.state == state])
        ns.close()
        lines += [f"{c.key()} -> {o}" for c, o in got.items()]
    DATA.write_text("\n".join(lines) + "\n")
    print(f"wrote {DATA} ({len(lines) - 3} cells)")


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:] == ["--record"]:
        record()
