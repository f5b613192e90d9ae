#!/usr/bin/env python3
"""Delivery throughput: datagrams per second through the portspace model and through the real
kernel on loopback, in one run, and the demux cost with 1, 16 and 1,024 sockets on one port.

Each workload is one function taking a socket factory (``socket.socket`` on the kernel side,
``ns.socket`` of a fresh ``portspace.Namespace(seed=1)`` on the model side), so both sides run
the same Python loop.  The kernel side runs in a child in a private network namespace (the
helpers of bench_ports.py: ``unshare -n``, or unshare(2) through ctypes; the child checks its
netns differs from the parent's and brings lo up).  Every workload returns an outcome (how many
datagrams arrived, how many reached each kind of socket); the sides must agree.

Workloads:

* ``udp_pingpong``: sendto + recvfrom of a 64-byte datagram between two sockets on 127.0.0.1.
* ``udp_send_{1,16,1024}``: with N SO_REUSEPORT sockets on 127.0.0.1:port, send a datagram from
  a rotating source port (N flows spread by the hash) and drain the receiver it reached; the
  model side also reports the cost of the lookup alone (``who_receives`` without formatting).
* ``udp_send_chain_{16,1024}``: N SO_REUSEADDR sockets on 127.0.0.1:port (no groups): every
  datagram walks the whole hash2 chain, and the newest bind takes all (``newest_took_all``).

Usage:  PYTHONPATH=src python3 benchmarks/bench_delivery.py [--n 0.2] [--json] [--only model]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
from time import perf_counter
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_ports as _bp  # noqa: E402  (the private-namespace helpers)

A4, U = socket.AF_INET, socket.SOCK_DGRAM


def udp_pingpong(mk: Callable[..., Any], n: int) -> tuple[float, dict[str, int]]:
    a = mk(A4, U)
    a.bind(("127.0.0.1", 23000))
    b = mk(A4, U)
    b.bind(("127.0.0.1", 23001))
    payload = b"p" * 64
    got = 0
    t0 = perf_counter()
    for _ in range(n):
        a.sendto(payload, ("127.0.0.1", 23001))
        data, _src = b.recvfrom(2048)
        got += len(data) == 64
    dt = perf_counter() - t0
    a.close()
    b.close()
    return dt, {"received": got}


def _group_send(members: int, reuseport: bool) -> Callable[..., tuple[float, dict[str, int]]]:
    def run(mk: Callable[..., Any], n: int) -> tuple[float, dict[str, int]]:
        socks = []
        for _ in range(members):
            s = mk(A4, U | socket.SOCK_NONBLOCK)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT if reuseport else socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 23010))
            socks.append(s)
        senders = []
        for i in range(16):
            c = mk(A4, U)
            c.bind(("127.0.0.1", 24000 + i))
            senders.append(c)
        got = 0
        per: dict[int, int] = {}
        t0 = perf_counter()
        for i in range(n):
            senders[i & 15].sendto(b"d", ("127.0.0.1", 23010))
        dt_send = perf_counter() - t0
        # count where they went (not timed): with no groups the newest bind takes all
        for k, s in enumerate(socks):
            while True:
                try:
                    s.recv(16)
                except BlockingIOError:
                    break
                got += 1
                per[k] = per.get(k, 0) + 1
        for s in socks + senders:
            s.close()
        # hash-independent outcome only (which members the 16 flows reach, and how many
        # datagrams overflow their buffers, depend on the kernel's secret key)
        out = {"flows_on_at_most_16_members": int(0 < len(per) <= min(16, members))}
        if not reuseport:
            out["newest_took_all"] = int(per.get(members - 1, 0) == got)
            out["received"] = got
        return dt_send, out
    return run


WORKLOADS = [("udp_pingpong", "UDP sendto+recvfrom 64 B on 127.0.0.1, x{n}", udp_pingpong, 20000)]
for _m in (1, 16, 1024):
    WORKLOADS.append((f"udp_send_group_{_m}", f"UDP sendto to a reuseport group of {_m} (16 flows), x{{n}}",
                      _group_send(_m, True), 20000))
for _m in (16, 1024):
    WORKLOADS.append((f"udp_send_chain_{_m}", f"UDP sendto, {_m} SO_REUSEADDR sockets on one port, x{{n}}",
                      _group_send(_m, False), 5000))


def measure(mk_factory: Callable[[], Callable[..., Any]], plan: dict[str, int]) -> dict[str, Any]:
    out = {}
    for key, _label, fn, _base in WORKLOADS:
        n = plan[key]
        try:
            dt, outcome = fn(mk_factory(), n)
            # the kernel drops what does not fit the receive buffer; count what arrived
            out[key] = {"ops_per_s": n / dt if dt else None, "outcome": outcome}
        except Exception as e:  # noqa: BLE001 - reported in the table
            out[key] = {"error": f"{type(e).__name__}: {e}"}
    return out


def model_side(plan: dict[str, int]) -> dict[str, Any]:
    import portspace

    def factory() -> Callable[..., Any]:
        return portspace.Namespace(seed=1).socket
    res = measure(factory, plan)
    # the lookup alone (no socket layer): who_receives' core without the trace
    from portspace.model._demux import Packet, udp_lookup
    for m in (1, 16, 1024):
        ns = portspace.Namespace(seed=1)
        socks = []
        for _ in range(m):
            s = ns.socket(A4, U)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", 23010))
            socks.append(s)
        k = ns._kernel
        n = 50000
        t0 = perf_counter()
        for i in range(n):
            udp_lookup(k, Packet(False, False, 0x7F000001, 30000 + (i & 1023), 0x7F000001, 23010))
        res[f"lookup_group_{m}"] = {"ops_per_s": n / (perf_counter() - t0)}
        for s in socks:
            s.close()
    return {"available": True, "results": res}


def kernel_child(parent_netns: int, plan: dict[str, int]) -> dict[str, Any]:
    try:
        _bp._enter_private_netns(parent_netns)
        _bp._lo_up()
    except (RuntimeError, OSError) as e:
        return {"available": False, "error": str(e)}
    _bp._raise_nofile(4096)
    return {"available": True, "netns": _bp._netns_id(), "results": measure(lambda: socket.socket, plan)}


def run_kernel(plan: dict[str, int]) -> dict[str, Any]:
    child = [sys.executable, os.path.abspath(__file__), "--_kernel-child", str(_bp._netns_id()),
             "--_plan", json.dumps(plan)]
    cmds = ([["unshare", "-n"] + child] if os.geteuid() == 0 else []) + [child]
    errors = []
    for cmd in cmds:
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
            out = json.loads(p.stdout)
        except (OSError, ValueError) as e:
            errors.append(f"{cmd[0]}: {e}")
            continue
        if out.get("available"):
            return out
        errors.append(out.get("error", "unknown"))
    return {"available": False, "error": "; ".join(errors)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=float, default=1.0, help="scale every count")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", choices=["model", "kernel"])
    ap.add_argument("--_kernel-child", dest="kchild", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--_plan", dest="plan", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.kchild is not None:
        print(json.dumps(kernel_child(a.kchild, json.loads(a.plan))))
        return 0
    plan = {key: max(1, int(base * a.n)) for key, _l, _f, base in WORKLOADS}
    kernel = run_kernel(plan) if a.only != "model" else None
    model = model_side(plan) if a.only != "kernel" else None
    rows = []
    bad = False
    for key, label, _f, _b in WORKLOADS:
        k = (kernel or {}).get("results", {}).get(key, {})
        m = (model or {}).get("results", {}).get(key, {})
        kr, mr = k.get("ops_per_s"), m.get("ops_per_s")
        agree = None if "outcome" not in k or "outcome" not in m else k["outcome"] == m["outcome"]
        bad |= agree is False
        rows.append({"workload": label.format(n=plan[key]), "key": key, "kernel_ops_per_s": kr, "model_ops_per_s": mr,
                     "ratio_model_kernel": mr / kr if kr and mr else None, "outcomes_agree": agree,
                     "kernel_outcome": k.get("outcome") or k.get("error"), "model_outcome": m.get("outcome") or m.get("error")})
    lookups = {k: v["ops_per_s"] for k, v in (model or {}).get("results", {}).items() if k.startswith("lookup_")}
    if a.json:
        print(json.dumps({"rows": rows, "model_lookup_ops_per_s": lookups}, indent=1))
        return 1 if bad else 0
    w = max(len(r["workload"]) for r in rows)
    print(f"{'workload':<{w}}  {'kernel ops/s':>13}  {'model ops/s':>13}  {'model/kernel':>12}")
    for r in rows:
        def num(x: float | None) -> str:
            return "n/a" if x is None else f"{x:,.0f}"
        ratio = "n/a" if r["ratio_model_kernel"] is None else f"{r['ratio_model_kernel']:.2f}x"
        note = "" if r["outcomes_agree"] is not False else f"  OUTCOMES DIFFER kernel={r['kernel_outcome']} model={r['model_outcome']}"
        print(f"{r['workload']:<{w}}  {num(r['kernel_ops_per_s']):>13}  {num(r['model_ops_per_s']):>13}  {ratio:>12}{note}")
    if lookups:
        print("model lookup alone (udp_lookup, no socket layer): "
              + ", ".join(f"{k.split('_')[-1]} sockets {v:,.0f}/s" for k, v in lookups.items()))
    if kernel is not None and not kernel.get("available"):
        print(f"kernel side unavailable: {kernel.get('error')}")
    print(f"Python {platform.python_version()}, Linux {platform.release()}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
