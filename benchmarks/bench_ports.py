#!/usr/bin/env python3
"""Port-manager throughput: the portspace model against the real kernel, in one run.

Each workload is one function that takes a socket factory: ``socket.socket`` on the kernel
side, ``ns.socket`` of a fresh ``portspace.Namespace(seed=1)`` on the model side.  So both
sides run the very same Python loop and the ratio model/kernel compares like with like.  The
workloads are those of the team's kernel baseline (shared/bench/kernel_baseline.py) plus a
listen() one.

The kernel side never touches the host's network namespace: the script re-executes itself
(``--_kernel-child``) under ``unshare -n`` (or, without that tool, the child calls
``unshare(CLONE_NEWNET)`` through ctypes, and ``CLONE_NEWUSER | CLONE_NEWNET`` when not
root); the child checks that its netns differs from the parent's before anything else,
brings ``lo`` up with the SIOCSIFFLAGS ioctl, raises RLIMIT_NOFILE, runs the workloads on
real ``socket.socket`` and prints its results as JSON on stdout.  If no private namespace can
be had, the script says why and runs the model side only.

Every workload also returns an outcome summary (how many binds succeeded, how many got
EADDRINUSE); the two sides must agree, else the row is flagged: a fast but wrong model is no
result.

Usage (from the repository root):

    PYTHONPATH=src python3 benchmarks/bench_ports.py                 # the table
    PYTHONPATH=src python3 benchmarks/bench_ports.py --n 0.1         # counts x0.1 (quick)
    PYTHONPATH=src python3 benchmarks/bench_ports.py --repeat 3      # 3 passes, kernel and model alternating: medians
    PYTHONPATH=src python3 benchmarks/bench_ports.py --json          # machine-readable
    PYTHONPATH=src python3 benchmarks/bench_ports.py --only model    # or: --only kernel
"""
from __future__ import annotations

import argparse
import ctypes
import errno
import fcntl
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
from time import perf_counter
from typing import Any, Callable

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
EPHEMERAL_PORTS = 60999 - 32768 + 1  # the default ip_local_port_range: what bind(port 0) can hold
GOAL = 2.0  # the team's goal: model >= 2x the kernel


# -- workloads: fn(mk, n) -> (seconds, outcome summary); ``mk`` is socket.socket or ns.socket.
# Each times its own loop with perf_counter, so set-up and the outcome check are not counted.

def tcp_bind_close(mk: Callable[..., Any], n: int) -> tuple[float, dict[str, int]]:
    AF_INET, SOCK_STREAM = socket.AF_INET, socket.SOCK_STREAM
    t0 = perf_counter()
    for i in range(n):
        s = mk(AF_INET, SOCK_STREAM)
        s.bind(("127.0.0.1", 20000 + i % 10000))
        s.close()
    return perf_counter() - t0, {"bound": n}


def udp_bind_close(mk: Callable[..., Any], n: int) -> tuple[float, dict[str, int]]:
    AF_INET, SOCK_DGRAM = socket.AF_INET, socket.SOCK_DGRAM
    t0 = perf_counter()
    for i in range(n):
        s = mk(AF_INET, SOCK_DGRAM)
        s.bind(("127.0.0.1", 20000 + i % 10000))
        s.close()
    return perf_counter() - t0, {"bound": n}


def tcp_bind_conflict(mk: Callable[..., Any], n: int) -> tuple[float, dict[str, int]]:
    a = mk()
    a.bind(("0.0.0.0", 5556))
    a.listen()
    refused = 0
    t0 = perf_counter()
    for _ in range(n):
        s = mk()
        try:
            s.bind(("127.0.0.1", 5556))
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            refused += 1
        s.close()
    dt = perf_counter() - t0
    a.close()
    return dt, {"eaddrinuse": refused}


def udp_hold_port0(mk: Callable[..., Any], n: int) -> tuple[float, dict[str, int]]:
    AF_INET, SOCK_DGRAM = socket.AF_INET, socket.SOCK_DGRAM
    socks = []
    t0 = perf_counter()
    for _ in range(n):
        s = mk(AF_INET, SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    dt = perf_counter() - t0
    ports = {s.getsockname()[1] for s in socks}  # not timed
    t1 = perf_counter()
    for s in socks:
        s.close()
    return dt + perf_counter() - t1, {"distinct_ports": len(ports)}


def tcp_bind_listen_close(mk: Callable[..., Any], n: int) -> tuple[float, dict[str, int]]:
    AF_INET, SOCK_STREAM = socket.AF_INET, socket.SOCK_STREAM
    t0 = perf_counter()
    for i in range(n):
        s = mk(AF_INET, SOCK_STREAM)
        s.bind(("127.0.0.1", 20000 + i % 10000))
        s.listen()
        s.close()
    return perf_counter() - t0, {"listened": n}


def tcp_connect_accept(mk: Callable[..., Any], n: int) -> tuple[float, dict[str, int]]:
    """The kernel baseline's connect_ephemeral: connect() with an automatic port to one
    listener and accept(), n times, holding all; then close everything (TIME_WAIT follows)."""
    AF_INET, SOCK_STREAM = socket.AF_INET, socket.SOCK_STREAM
    lst = mk(AF_INET, SOCK_STREAM)
    lst.bind(("127.0.0.1", 7000))
    lst.listen(4096)
    socks = []
    t0 = perf_counter()
    for _ in range(n):
        c = mk(AF_INET, SOCK_STREAM)
        c.connect(("127.0.0.1", 7000))
        a, _ = lst.accept()
        socks.append(c)
        socks.append(a)
    for s in socks:
        s.close()
    dt = perf_counter() - t0
    lst.close()
    return dt, {"connections": n}


# (key, label template, function, base count)
WORKLOADS: list[tuple[str, str, Callable[..., tuple[float, dict[str, int]]], int]] = [
    ("tcp_bind_close", "tcp socket+bind+close", tcp_bind_close, 100_000),
    ("udp_bind_close", "udp socket+bind+close", udp_bind_close, 100_000),
    ("tcp_bind_conflict", "tcp socket+bind(conflict)+close", tcp_bind_conflict, 100_000),
    ("udp_hold_port0", "udp bind(port 0) holding N (N={n})", udp_hold_port0, 19_000),
    ("tcp_bind_listen_close", "tcp socket+bind+listen+close", tcp_bind_listen_close, 50_000),
    ("tcp_connect_accept", "tcp connect+accept (ephemeral) N={n}", tcp_connect_accept, 9_000),
]


def counts(scale: float) -> dict[str, int]:
    out = {}
    for key, _label, _fn, base in WORKLOADS:
        n = max(1, round(base * scale))
        if key == "tcp_connect_accept":
            n = min(n, EPHEMERAL_PORTS // 2, (resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 64) // 2)
        if key == "udp_hold_port0":
            # more than the ephemeral range would be EADDRINUSE on both sides; more than the
            # fd limit EMFILE on the kernel's (its hard limit is the child's ceiling too)
            n = min(n, EPHEMERAL_PORTS, resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 64)
        out[key] = n
    return out


def measure(mk: Callable[[], Callable[..., Any]], plan: dict[str, int]) -> dict[str, Any]:
    """One pass: every workload once, each with a fresh socket factory from ``mk()`` (a new
    model namespace; ``socket.socket`` itself on the kernel side)."""
    results: dict[str, Any] = {}
    for key, _label, fn, _base in WORKLOADS:
        n = plan[key]
        try:
            dt, outcome = fn(mk(), n)
        except Exception as e:  # noqa: BLE001 - reported in the table, the other rows still run
            results[key] = {"n": n, "error": f"{type(e).__name__}: {e}"}
            continue
        results[key] = {"n": n, "ops_per_s": n / dt, "outcome": outcome}
    return results


def merge(passes: list[dict[str, Any]]) -> dict[str, Any]:
    """The median rate of each workload over the passes (an error in any pass wins)."""
    out: dict[str, Any] = {}
    for key, _label, _fn, _base in WORKLOADS:
        runs = [p[key] for p in passes]
        bad = [r for r in runs if "error" in r]
        if bad:
            out[key] = bad[0]
            continue
        outcomes = [r["outcome"] for r in runs]
        rates = [r["ops_per_s"] for r in runs]
        out[key] = {"n": runs[0]["n"], "ops_per_s": statistics.median(rates), "runs": rates,
                    "outcome": outcomes[0] if all(o == outcomes[0] for o in outcomes) else outcomes}
    return out


# -- the model side ---------------------------------------------------------------------------

def _import_portspace() -> Any:
    try:
        import portspace
    except ImportError:  # run from a checkout without PYTHONPATH=src
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
        import portspace
    return portspace


def run_model(plan: dict[str, int]) -> dict[str, Any]:
    portspace = _import_portspace()
    return {"available": True, "results": measure(lambda: portspace.Namespace(seed=1).socket, plan)}


def profile_model(key: str, n: int, top: int = 25) -> None:
    """cProfile one workload on the model, sorted by own time (tottime), then by cumulative."""
    import cProfile
    import pstats
    portspace = _import_portspace()
    fn = next(w[2] for w in WORKLOADS if w[0] == key)
    prof = cProfile.Profile()
    mk = portspace.Namespace(seed=1).socket
    prof.enable()
    fn(mk, n)
    prof.disable()
    stats = pstats.Stats(prof).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


# -- the kernel side: a child process in a private network namespace ------------------------

def _netns_id() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def _enter_private_netns(parent_netns: int) -> None:
    """Make sure this process is in a network namespace other than ``parent_netns``: already
    so under ``unshare -n``, else unshare(2) here.  Raises RuntimeError when impossible."""
    if _netns_id() != parent_netns:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
    if libc.unshare(flags) != 0:
        e = ctypes.get_errno()
        raise RuntimeError(f"unshare({'CLONE_NEWUSER|' if flags & CLONE_NEWUSER else ''}CLONE_NEWNET) "
                           f"failed: {os.strerror(e)}")
    if _netns_id() == parent_netns:
        raise RuntimeError("still in the parent's network namespace after unshare")


def _lo_up() -> None:
    """``ip link set lo up`` as one ioctl (struct ifreq: 16-byte name, then short flags)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack("16sh22x", b"lo", 0))
        flags = struct.unpack("16sh22x", ifr)[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))


def _raise_nofile(need: int) -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    want = max(hard, need)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))  # above hard: root only
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def kernel_child(parent_netns: int, plan: dict[str, int]) -> dict[str, Any]:
    """Runs in the child: private netns or nothing."""
    try:
        _enter_private_netns(parent_netns)
        _lo_up()
    except (RuntimeError, OSError) as e:
        return {"available": False, "error": str(e)}
    nofile = _raise_nofile(plan["udp_hold_port0"] + 64)  # the one workload that holds sockets
    return {"available": True, "netns": _netns_id(), "nofile": nofile,
            "results": measure(lambda: socket.socket, plan)}


def run_kernel(plan: dict[str, int]) -> dict[str, Any]:
    """One pass in a new child, so a new namespace (under ``unshare -n`` when that tool exists,
    else plain: it unshares itself); returns the child's JSON."""
    child = [sys.executable, os.path.abspath(__file__), "--_kernel-child", str(_netns_id()),
             "--_plan", json.dumps(plan)]
    attempts = []
    if shutil.which("unshare") and os.geteuid() == 0:
        attempts.append(["unshare", "-n"] + child)
    attempts.append(child)
    errors = []
    for cmd in attempts:
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
        except OSError as e:
            errors.append(f"{cmd[0]}: {e}")
            continue
        try:
            out = json.loads(p.stdout)
        except ValueError:
            errors.append(f"{' '.join(cmd[:2])}: exit {p.returncode}: {p.stderr.strip()[-300:] or 'no output'}")
            continue
        if out.get("available"):
            return out
        errors.append(out.get("error", "unknown error"))
    return {"available": False, "error": "; ".join(errors)}


# -- report -----------------------------------------------------------------------------------

def rows(plan: dict[str, int], kernel: dict[str, Any] | None, model: dict[str, Any] | None) -> list[dict[str, Any]]:
    out = []
    for key, label, _fn, _base in WORKLOADS:
        k = (kernel or {}).get("results", {}).get(key, {})
        m = (model or {}).get("results", {}).get(key, {})
        kr, mr = k.get("ops_per_s"), m.get("ops_per_s")
        row: dict[str, Any] = {"workload": label.format(n=plan[key]), "key": key, "n": plan[key],
                               "kernel_ops_per_s": kr, "model_ops_per_s": mr,
                               "ratio_model_kernel": (mr / kr) if kr and mr else None,
                               "kernel_outcome": k.get("outcome"), "model_outcome": m.get("outcome"),
                               "kernel_error": k.get("error"), "model_error": m.get("error")}
        row["outcomes_agree"] = (None if k.get("outcome") is None or m.get("outcome") is None
                                 else k["outcome"] == m["outcome"])
        out.append(row)
    return out


def print_table(table: list[dict[str, Any]], kernel: dict[str, Any] | None, repeat: int) -> None:
    def num(x: float | None) -> str:
        return "n/a" if x is None else f"{x:,.0f}"

    w = max(len(r["workload"]) for r in table)
    head = f"{'workload':<{w}}  {'kernel ops/s':>13}  {'model ops/s':>13}  {'model/kernel':>12}"
    print(head)
    print("-" * len(head))
    for r in table:
        ratio = "n/a" if r["ratio_model_kernel"] is None else f"{r['ratio_model_kernel']:.2f}x"
        note = ""
        if r["outcomes_agree"] is False:
            note = f"  OUTCOMES DIFFER kernel={r['kernel_outcome']} model={r['model_outcome']}"
        for side in ("kernel", "model"):
            if r[f"{side}_error"]:
                note += f"  {side} failed: {r[side + '_error']}"
        print(f"{r['workload']:<{w}}  {num(r['kernel_ops_per_s']):>13}  {num(r['model_ops_per_s']):>13}  "
              f"{ratio:>12}{note}")
    print()
    print(f"Python {platform.python_version()}, Linux {platform.release()}, "
          f"{'median of ' + str(repeat) + ' alternating passes' if repeat > 1 else 'one pass per side'}; "
          f"goal: model/kernel >= {GOAL:.0f}x")
    if kernel is not None and kernel.get("available"):
        print(f"kernel side: private netns {kernel['netns']} (lo up), RLIMIT_NOFILE {kernel['nofile']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="portspace model vs the real kernel: port-manager ops per second")
    ap.add_argument("--n", type=float, default=1.0, metavar="N",
                    help="scale every workload's count by N (default 1: 100k/100k/100k/19k/50k)")
    ap.add_argument("--repeat", type=int, default=1, metavar="R",
                    help="R passes, alternating kernel and model; report each side's median rate (default 1)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--only", choices=("model", "kernel"), help="run one side only")
    ap.add_argument("--profile", choices=[w[0] for w in WORKLOADS], metavar="WORKLOAD",
                    help="instead of the table: the model side of one workload under cProfile, "
                         "top functions by own time (" + ", ".join(w[0] for w in WORKLOADS) + ")")
    ap.add_argument("--_kernel-child", type=int, metavar="NETNS", help=argparse.SUPPRESS)
    ap.add_argument("--_plan", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.n <= 0 or args.repeat < 1:
        ap.error("--n must be > 0 and --repeat >= 1")

    if args._kernel_child is not None:
        json.dump(kernel_child(args._kernel_child, json.loads(args._plan)), sys.stdout)
        return 0

    plan = counts(args.n)
    if args.profile:
        profile_model(args.profile, plan[args.profile])
        return 0
    # The passes alternate, kernel then model, so that a change in the machine's load during
    # the run falls on both sides alike; each side keeps its median per workload.
    kernel = model = None
    kernel_passes: list[dict[str, Any]] = []
    model_passes: list[dict[str, Any]] = []
    want_kernel, want_model = args.only != "model", args.only != "kernel"
    for _ in range(args.repeat):
        if want_kernel:
            k = run_kernel(plan)
            if k["available"]:
                kernel_passes.append(k)
            else:
                print(f"kernel side unavailable (no private network namespace: {k['error']}); "
                      f"{'nothing to run' if not want_model else 'running the model side only'}",
                      file=sys.stderr)
                if not want_model:
                    return 1
                kernel, want_kernel = k, False
        if want_model:
            model_passes.append(run_model(plan)["results"])
    if kernel_passes:
        kernel = dict(kernel_passes[-1], results=merge([k["results"] for k in kernel_passes]))
    if model_passes:
        model = {"available": True, "results": merge(model_passes)}

    table = rows(plan, kernel, model)
    if args.json:
        json.dump({"scale": args.n, "repeat": args.repeat, "python": platform.python_version(),
                   "linux": platform.release(), "goal_ratio": GOAL, "kernel": kernel, "model": model,
                   "rows": table}, sys.stdout, indent=2)
        print()
    else:
        print_table(table, kernel, args.repeat)
    return 1 if any(r["outcomes_agree"] is False or r["kernel_error"] or r["model_error"] for r in table) else 0


if __name__ == "__main__":
    sys.exit(main())
