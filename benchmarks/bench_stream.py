#!/usr/bin/env python3
"""TCP stream throughput: the portspace model against the real kernel, in one run.

Each workload is one function of a namespace-shaped object (``socket()`` only): the model
side gets a fresh ``portspace.Namespace(seed=1)``, the kernel side runs the very same
function *inside* a ``portspace.live.KernelNamespace`` child (``ns.run``) with the stdlib
``socket`` module, so the kernel loop pays no proxy round trip per call -- it is the kernel's
own speed over loopback in a private netns, never the host's.

Workloads:

* ``pingpong``: one connection; n times send(100 bytes) + recv(100) (the ping) -- small
  send+recv pairs per second;
* ``bulk``: one connection; sendall(64 KiB) + recv until 64 KiB, n times -- bytes per second;
* ``connect_cycle``: n times connect + accept + send 10 bytes + recv + close both sides
  (TIME_WAIT remnants accumulate on the client ports, as on the kernel).

Every workload returns an outcome (bytes received); both sides must agree, else the row is
flagged and the exit status is 1.

    PYTHONPATH=src python3 benchmarks/bench_stream.py            # the table
    PYTHONPATH=src python3 benchmarks/bench_stream.py --n 0.1    # counts x0.1
    PYTHONPATH=src python3 benchmarks/bench_stream.py --json
"""
from __future__ import annotations

import argparse
import json
import socket
import sys
from time import perf_counter
from typing import Any, Callable


class _Stdlib:
    """The kernel side's "namespace": the stdlib socket constructor."""

    @staticmethod
    def socket(*args: Any) -> socket.socket:
        return socket.socket(*args)


def _pair(ns: Any, port: int) -> tuple[Any, Any, Any]:
    lsk = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsk.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsk.bind(("127.0.0.1", port))
    lsk.listen(128)
    c = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.connect(("127.0.0.1", port))
    a, _ = lsk.accept()
    return lsk, c, a


def w_pingpong(ns: Any, n: int) -> tuple[float, int]:
    lsk, c, a = _pair(ns, 5600)
    msg = b"p" * 100
    got = 0
    t0 = perf_counter()
    for _ in range(n):
        c.send(msg)
        got += len(a.recv(100))
    dt = perf_counter() - t0
    for s in (c, a, lsk):
        s.close()
    return dt, got


def w_bulk(ns: Any, n: int) -> tuple[float, int]:
    lsk, c, a = _pair(ns, 5601)
    block = b"b" * 65536
    got = 0
    t0 = perf_counter()
    for _ in range(n):
        c.sendall(block)
        left = len(block)
        while left:
            k = len(a.recv(left))
            left -= k
            got += k
    dt = perf_counter() - t0
    for s in (c, a, lsk):
        s.close()
    return dt, got


def w_connect_cycle(ns: Any, n: int) -> tuple[float, int]:
    lsk = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsk.bind(("127.0.0.1", 5602))
    lsk.listen(128)
    got = 0
    t0 = perf_counter()
    for _ in range(n):
        c = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.connect(("127.0.0.1", 5602))
        a, _ = lsk.accept()
        c.send(b"0123456789")
        got += len(a.recv(10))
        c.close()
        a.close()
    dt = perf_counter() - t0
    lsk.close()
    return dt, got


WORKLOADS: dict[str, tuple[Callable[[Any, int], tuple[float, int]], int, str]] = {
    "pingpong": (w_pingpong, 50_000, "send+recv pairs"),
    "bulk": (w_bulk, 1_000, "64 KiB blocks"),
    "connect_cycle": (w_connect_cycle, 5_000, "connections"),
}


def _kernel_side(name: str, n: int) -> tuple[float, int]:
    return WORKLOADS[name][0](_Stdlib, n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=float, default=1.0, help="scale every count")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import portspace
    from portspace.live import KernelNamespace, probe
    why = probe()
    rows = []
    bad = False
    for name, (fn, count, unit) in WORKLOADS.items():
        n = max(1, int(count * args.n))
        m_dt, m_out = fn(portspace.Namespace(seed=1), n)
        k_dt = k_out = None
        if why is None:
            with KernelNamespace() as kns:
                kns.request_timeout = 600
                k_dt, k_out = kns.run(_kernel_side, name, n)
        agree = k_out is None or k_out == m_out
        bad |= not agree
        rows.append({"workload": name, "n": n, "unit": unit, "model_per_s": n / m_dt,
                     "kernel_per_s": None if k_dt is None else n / k_dt,
                     "ratio": None if k_dt is None else k_dt / m_dt,
                     "model_bytes_per_s": m_out / m_dt,
                     "kernel_bytes_per_s": None if k_dt is None else k_out / k_dt, "agree": agree})
    if args.json:
        print(json.dumps({"kernel": why or "ok", "rows": rows}, indent=2))
    else:
        if why is not None:
            print(f"kernel side skipped: {why}")
        print(f"{'workload':15} {'n':>7} {'model/s':>12} {'kernel/s':>12} {'model/kernel':>12}  "
              f"{'model MB/s':>10} {'kernel MB/s':>11}")
        for r in rows:
            k = "-" if r["kernel_per_s"] is None else f"{r['kernel_per_s']:12,.0f}"
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:12.2f}"
            kb = "-" if r["kernel_bytes_per_s"] is None else f"{r['kernel_bytes_per_s'] / 1e6:11.1f}"
            flag = "" if r["agree"] else "  OUTCOMES DIFFER"
            print(f"{r['workload']:15} {r['n']:7} {r['model_per_s']:12,.0f} {k:>12} {ratio:>12}  "
                  f"{r['model_bytes_per_s'] / 1e6:10.1f} {kb:>11}  ({r['unit']}){flag}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
