#!/usr/bin/env python3
"""What ``portspace run`` / ``matrix`` cost: the shipped example scenarios and the full 1152-cell
bind matrix, on the model and on the live kernel (``live.KernelNamespace``: real sockets in a
private network namespace, driven through the harness's proxy), in one run, as a ratio.

Scenarios that sleep (TIME_WAIT timings: real time on the kernel, virtual on the model) are
left out of the timing.  The kernel side needs root and unshare; without them only the model
is measured.

    PYTHONPATH=src python3 benchmarks/bench_scenarios.py [--repeat 5] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import portspace
from portspace.cli._scenarios import STANDARD_SETUP, example_names, load_example
from portspace.diff import run_script
from portspace.diff._matrix import all_cells, table
from portspace.live import KernelNamespace, probe


def scenarios(make) -> float:
    t = 0.0
    for name in example_names():
        sc = load_example(name)
        if sc.seconds:
            continue
        ns = make()
        t0 = time.perf_counter()
        run_script(ns, sc.steps)
        t += time.perf_counter() - t0
        getattr(ns, "close", lambda: None)()
    return t


def matrix(make) -> float:
    ns = make()
    run_script(ns, STANDARD_SETUP)
    t0 = time.perf_counter()
    for i, (proto, _typ, mode, lf) in enumerate(all_cells()):
        table(ns, proto, mode, lf, port=20000 + 100 * i)
    t = time.perf_counter() - t0
    getattr(ns, "close", lambda: None)()
    return t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    kernel_ok = probe() is None
    rows = []
    for name, fn in (("examples (no sleeps)", scenarios), ("bind matrix, 1152 cells", matrix)):
        m = statistics.median(fn(lambda: portspace.Namespace(seed=0)) for _ in range(args.repeat))
        k = statistics.median(fn(KernelNamespace) for _ in range(args.repeat)) if kernel_ok else None
        rows.append({"workload": name, "model_s": m, "kernel_s": k, "kernel_over_model": (k / m) if k else None})
    if args.json:
        print(json.dumps({"rows": rows, "kernel": kernel_ok or probe()}, indent=2))
        return 0
    print(f"{'workload':26s} {'model':>9s} {'kernel':>9s} {'kernel/model':>13s}")
    for r in rows:
        k = f"{r['kernel_s'] * 1000:7.1f}ms" if r["kernel_s"] else "      n/a"
        ratio = f"{r['kernel_over_model']:12.2f}x" if r["kernel_over_model"] else "          n/a"
        print(f"{r['workload']:26s} {r['model_s'] * 1000:7.1f}ms {k} {ratio}")
    if not kernel_ok:
        print(f"kernel side not measured: {probe()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
