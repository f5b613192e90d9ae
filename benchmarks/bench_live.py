#!/usr/bin/env python3
"""The host inspector at scale: ``portspace ls`` / ``explain`` against ``ss -tanp``, in one run.

A private network namespace (``portspace.live.KernelNamespace``: fork + ``unshare -n``,
loopback only) is filled with 20 000 TCP sockets the way the peers survey measured ss,
netstat, lsof and psutil (peers note §4.5): one process holds N client and N accepted
sockets on 127.0.0.1, plus TIME_WAIT remnants (clients that closed first).  By default
8 000 connections (16 000 sockets with fds) + 4 000 remnants = 20 000 sockets (+1 listener,
+1 bound-only socket on the port ``explain`` asks about).

Then, in the same run, each command is timed as a user would run it -- a new process
entered into the namespace with ``nsenter --net`` (so interpreter start-up is included for
portspace, as it is for ss), output to /dev/null -- best and median of ``--repeat`` runs:

* ``ss -tan``, ``ss -tanp`` (iproute2; -p walks /proc/*/fd like portspace does)
* ``portspace ls --tcp``          (sock_diag + /proc fd walk + pidfd_getfd flags + table)
* ``portspace ls --tcp --json``
* ``portspace ls --tcp --all-flags`` (SO_REUSEADDR/SO_REUSEPORT of every held socket: one
  pidfd_getfd per socket)
* ``portspace explain tcp 127.0.0.1:5000``   (kernel-side port filter, model load, verdict:
  8 001 sockets hold that port -- the listener and every accepted connection)
* ``portspace explain connect 127.0.0.1:5000`` (route, the ports left for that destination -- 8 000
  of its connections are open -- and the listener)
* ``portspace ports``             (every TCP and UDP socket, no flags)
* ``python -c pass``              (the interpreter's own start-up, for reference)

and, inside the namespace's process (no start-up): ``snapshot()`` of every TCP socket and
``explain()`` end to end.

Goals (issue 7): ``ls`` no slower than ``ss -tanp``; ``explain`` under 300 ms.

Usage (root, from the repository root):

    PYTHONPATH=src python3 benchmarks/bench_live.py                 # 20 000 sockets
    PYTHONPATH=src python3 benchmarks/bench_live.py --pairs 1000 --tw 500 --repeat 3   # quick
    PYTHONPATH=src python3 benchmarks/bench_live.py --json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))

from portspace.live import KernelNamespace, probe  # noqa: E402

_HELD: list[socket.socket] = []   # in the namespace's child: keeps the sockets open


def fill(pairs: int, tw: int) -> dict:
    """Runs in the namespace's child: a listener on 127.0.0.1:5000, ``pairs`` connections,
    ``tw`` TIME_WAIT remnants, and a bound-only socket on 127.0.0.1:5001."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * pairs + 64
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
        if min(need, hard) < need:
            raise RuntimeError(f"RLIMIT_NOFILE hard limit {hard} < {need} fds needed")
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", 5000))
    lst.listen(4096)
    _HELD.append(lst)
    bound = socket.socket()
    bound.bind(("127.0.0.1", 5001))
    _HELD.append(bound)
    for i in range(tw):
        c = socket.socket()
        c.connect(("127.0.0.1", 5000))
        a, _ = lst.accept()
        c.close()                     # the client closes first: its side goes to TIME_WAIT
        a.close()
    for i in range(pairs):
        c = socket.socket()
        c.connect(("127.0.0.1", 5000))
        a, _ = lst.accept()
        _HELD.extend((c, a))
    time.sleep(0.2)                   # let the last FIN/ACKs settle into TIME_WAIT
    with open("/proc/net/sockstat") as f:
        return {"sockstat": f.read()}


def top_up(tw: int) -> int:
    """Runs in the namespace's child: TIME_WAIT remnants expire after 60 s, and a full run takes
    longer; before each round of commands, new remnants replace the expired ones so every round
    sees ``tw`` of them.  Returns how many were made."""
    with open("/proc/net/sockstat") as f:
        now = int(f.read().split(" tw ", 1)[1].split()[0])
    lst = _HELD[0]
    made = 0
    for _ in range(max(0, tw - now)):
        c = socket.socket()
        c.connect(("127.0.0.1", 5000))
        a, _ = lst.accept()
        c.close()
        a.close()
        made += 1
    time.sleep(0.2 if made else 0)
    return made


def in_process(repeat: int) -> dict:
    """Runs in the namespace's child: the API without interpreter start-up."""
    from portspace.live import Question, explain, parse_endpoint, snapshot, window_for
    out: dict = {}
    t = []
    n = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        snap = snapshot(("tcp",))
        t.append(time.perf_counter() - t0)
        n = len(snap.sockets)
    out["snapshot_all_tcp"] = t
    out["sockets_seen"] = n
    fam, host, port = parse_endpoint("127.0.0.1:5000")
    q = Question("tcp", fam, host, port)
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        v = explain(snapshot(("tcp",), window_for(q)), q)
        t.append(time.perf_counter() - t0)
    out["explain"] = t
    out["explain_verdict"] = v.status
    t = []
    for _ in range(max(1, repeat // 2)):
        t0 = time.perf_counter()
        snapshot(("tcp",), read_flags=False)
        t.append(time.perf_counter() - t0)
    out["snapshot_no_flags"] = t
    return out


CPU: dict[str, list[float]] = {}   # command -> user+system CPU seconds of each run (nsenter and all)


def timed(cmd: list[str], repeat: int, env: dict, name: str | None = None) -> list[float]:
    """Wall-clock seconds of each run; with ``name``, each run's CPU time (user + system, from
    getrusage of the children) goes to :data:`CPU` -- steadier than wall time on a shared
    machine, where other jobs' load stretches wall time but not the work done."""
    times = []
    for _ in range(repeat):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        times.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if name is not None:
            CPU.setdefault(name, []).append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        if proc.returncode not in (0, 1, 3):
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[:300]}")
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=8000, help="connections (2 sockets each; default 8000)")
    ap.add_argument("--tw", type=int, default=4000, help="TIME_WAIT remnants (default 4000)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per command (default 5)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--baseline", metavar="SRC",
                    help="also time the portspace commands with this source tree (e.g. `git archive REV src | "
                         "tar -x -C /tmp/base` -> /tmp/base/src), interleaved with this one: before/after in one run")
    args = ap.parse_args(argv)
    reason = probe()
    if reason is not None:
        print(f"no private network namespace here: {reason}", file=sys.stderr)
        return 1
    nsenter = shutil.which("nsenter")
    ss = shutil.which("ss")
    if nsenter is None or ss is None:
        print("needs nsenter (util-linux) and ss (iproute2)", file=sys.stderr)
        return 1
    # Like an installed package: byte-code cached (outside the checkout, in a temporary
    # directory), whatever PYTHONDONTWRITEBYTECODE says here; one untimed warm-up run each.
    cache = tempfile.mkdtemp(prefix="portspace-bench-pycache-")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(SRC), NO_COLOR="1", LC_ALL="C", PYTHONPYCACHEPREFIX=cache)
    total = 2 * args.pairs + args.tw
    with KernelNamespace() as kns:
        kns.request_timeout = 600
        t0 = time.perf_counter()
        info = kns.run(fill, args.pairs, args.tw)
        setup = time.perf_counter() - t0
        enter = [nsenter, f"--net=/proc/{kns.pid}/ns/net", "--"]
        py = [sys.executable, "-m", "portspace"]
        cmds = {
            "python -c pass (start-up)": [sys.executable, "-c", "pass"],
            "ss -tan": [ss, "-tan"],
            "ss -tanp": [ss, "-tanp"],
            "portspace ls --tcp": py + ["ls", "--tcp"],
            "portspace ls --tcp --json": py + ["ls", "--tcp", "--json"],
            "portspace ls --tcp --all-flags": py + ["ls", "--tcp", "--all-flags"],
            "portspace explain tcp 127.0.0.1:5000": py + ["explain", "tcp", "127.0.0.1:5000"],
            "portspace explain tcp 127.0.0.1:5000 --reuseport --listen": py + ["explain", "tcp", "127.0.0.1:5000",
                                                                              "--reuseport", "--listen"],
            "portspace explain connect 127.0.0.1:5000": py + ["explain", "connect", "127.0.0.1:5000"],
            "portspace ports": py + ["ports"],
        }
        envs = {"": env}
        if args.baseline:
            envs["(baseline) "] = dict(env, PYTHONPATH=str(Path(args.baseline).resolve()))
        for cmd in cmds.values():
            for e in envs.values():
                timed(enter + cmd, 1, e)
        results: dict[str, list[float]] = {}
        for _ in range(args.repeat):   # rounds: every command once per round, so load drifts hit all alike
            kns.run(top_up, args.tw)
            for name, cmd in cmds.items():
                for tag, e in envs.items():
                    if tag and not name.startswith("portspace"):
                        continue
                    results.setdefault(tag + name, []).extend(timed(enter + cmd, 1, e, tag + name))
        kns.run(top_up, args.tw)
        api = kns.run(in_process, args.repeat)
    rows = [(name, min(t), statistics.median(t)) for name, t in results.items()]
    rows += [("API snapshot(('tcp',)) in process", min(api["snapshot_all_tcp"]), statistics.median(api["snapshot_all_tcp"])),
             ("API snapshot, flags not read", min(api["snapshot_no_flags"]), statistics.median(api["snapshot_no_flags"])),
             ("API explain() in process", min(api["explain"]), statistics.median(api["explain"]))]
    best = {name: b for name, b, _ in rows}
    verdict = {
        "ls_vs_ss_tanp": best["portspace ls --tcp"] / best["ss -tanp"],
        "ls_vs_ss_tanp_cpu": min(CPU["portspace ls --tcp"]) / min(CPU["ss -tanp"]),
        "ls_no_slower_than_ss_tanp": best["portspace ls --tcp"] <= best["ss -tanp"],
        "explain_under_300ms": best["portspace explain tcp 127.0.0.1:5000"] < 0.300,
    }
    shutil.rmtree(cache, ignore_errors=True)
    accel = _accelerator()
    if args.json:
        json.dump({"sockets": total, "sockets_seen": api["sockets_seen"], "setup_s": setup,
                   "times_s": results, "cpu_s": CPU, "api_s": {k: v for k, v in api.items() if isinstance(v, list)},
                   "explain_verdict": api["explain_verdict"], "goals": verdict, "c_accelerator": accel},
                  sys.stdout, indent=1)
        print()
        return 0
    print(f"{total} TCP sockets in a private namespace ({args.pairs} connections = {2 * args.pairs} sockets, "
          f"{args.tw} TIME_WAIT; +listener +bound-only), one holder process; set up in {setup:.1f} s")
    print(f"portspace saw {api['sockets_seen']} TCP sockets; explain verdict: {api['explain_verdict']}")
    print(f"C accelerator (live/_speedups.c): {accel}")
    print("/proc/net/sockstat: " + " | ".join(x.strip() for x in info["sockstat"].splitlines()[:2]))
    print(f"\n{'command (new process via nsenter, output to /dev/null)':66s} {'best':>9s} {'median':>9s}"
          f" {'CPU best':>9s}")
    for name, b, m in rows:
        cpu = f"{min(CPU[name]) * 1000:8.1f}ms" if name in CPU else ""
        print(f"{name:66s} {b * 1000:8.1f}ms {m * 1000:8.1f}ms {cpu}")
    print(f"\nls / ss -tanp = {verdict['ls_vs_ss_tanp']:.2f} wall, {verdict['ls_vs_ss_tanp_cpu']:.2f} CPU (goal <= 1: "
          f"{'met' if verdict['ls_no_slower_than_ss_tanp'] else 'NOT met'}); explain "
          f"{best['portspace explain tcp 127.0.0.1:5000'] * 1000:.0f} ms (goal < 300 ms: "
          f"{'met' if verdict['explain_under_300ms'] else 'NOT met'})")
    return 0


def _accelerator() -> str:
    """Whether the timed portspace (this source tree) has its optional C accelerator: without it
    the Python loops run (build it with ``python3 setup.py build_ext --inplace``)."""
    import importlib.util
    spec = importlib.util.find_spec("portspace.live._speedups")
    return f"built ({Path(spec.origin).name})" if spec and spec.origin else \
        "NOT built: the Python loops were timed (python3 setup.py build_ext --inplace builds it)"


if __name__ == "__main__":
    raise SystemExit(main())
