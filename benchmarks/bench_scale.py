"""Model-only scale figures (issue 4): fill the whole default ephemeral range with connect()s
to one destination (28,232 connects, then one more -> EADDRNOTAVAIL), and hold 1,000,000
sockets: wall time, per-op cost of bind+close at 1k vs at N sockets, memory per socket.

    PYTHONPATH=src python3 benchmarks/bench_scale.py              # N = 1,000,000 (~1 min, ~0.7 GiB)
    PYTHONPATH=src python3 benchmarks/bench_scale.py --n 200000   # smaller
    PYTHONPATH=src python3 benchmarks/bench_scale.py --json

Python's cyclic garbage collector walks every live object from time to time; with a million
sockets that walk, not the model's tables, is what grows with N.  The run reports both: with
the collector as it is, and with ``gc.freeze()`` after the fill (what a simulator holding a
large, long-lived table would do).  The kernel cannot be driven to 1M sockets here (fd limits);
the kernel-vs-model rates are in bench_ports.py.
"""
from __future__ import annotations

import argparse
import errno
import gc
import json
import resource
import socket
import sys
from time import perf_counter


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def fill_range_one_destination() -> dict:
    import portspace
    ns = portspace.Namespace(seed=1)
    lst = ns.socket()
    lst.bind(("127.0.0.1", 5000))
    lst.listen(4096)
    lo, hi = (int(x) for x in ns.sysctl("net.ipv4.ip_local_port_range").split())
    n = hi - lo + 1
    socks = []
    t0 = perf_counter()
    for i in range(n):
        c = ns.socket()
        c.connect(("127.0.0.1", 5000))
        socks.append(c)
        if i % 4000 == 3999:
            while True:  # keep the accept queue short; accepted children hold port 5000
                lst.setblocking(False)
                try:
                    socks.append(lst.accept()[0])
                except BlockingIOError:
                    break
    fill = perf_counter() - t0
    extra = ns.socket()
    t1 = perf_counter()
    try:
        extra.connect(("127.0.0.1", 5000))
        last = "OK (unexpected)"
    except OSError as e:
        last = errno.errorcode[e.errno]
    last_t = perf_counter() - t1
    return {"connects": n, "fill_s": round(fill, 2), "per_connect_us": round(fill / n * 1e6, 2),
            "one_more": last, "one_more_ms": round(last_t * 1e3, 2)}


def hold(n: int, freeze: bool) -> dict:
    import portspace
    ns = portspace.Namespace(seed=1)
    addrs = [f"127.0.{a // 256}.{a % 256 + 1}" for a in range(64)]
    socks = []

    def probe(k: int = 3000) -> float:
        t = perf_counter()
        for j in range(k):
            s = ns.socket()
            s.bind(("127.0.9.9", 1024 + j))
            s.close()
        return (perf_counter() - t) / k * 1e6

    def fill(count: int) -> None:
        base = len(socks)
        for i in range(base, base + count):
            s = ns.socket()
            s.bind((addrs[i % 64], 1024 + i // 64))
            socks.append(s)

    gc.collect()
    m0 = rss_kib()
    fill(1000)
    at_1k = min(probe() for _ in range(3))
    t0 = perf_counter()
    fill(n - 1000)
    fill_s = perf_counter() - t0
    if freeze:
        gc.freeze()
    m1 = rss_kib()
    at_n = min(probe() for _ in range(3))
    t2 = perf_counter()
    for s in socks:
        s.close()
    close_us = (perf_counter() - t2) / n * 1e6
    if freeze:
        gc.unfreeze()
    return {"sockets": n, "gc_freeze": freeze, "fill_s": round(fill_s, 2),
            "bind_close_us_at_1k": round(at_1k, 2), f"bind_close_us_at_{n}": round(at_n, 2),
            "ratio": round(at_n / at_1k, 2), "close_us": round(close_us, 2),
            "bytes_per_socket": round((m1 - m0) * 1024 / n)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="sockets to hold (default 1,000,000)")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args(argv)
    if args.n < 2000:
        ap.error("--n must be at least 2000")
    out = {"fill_range": fill_range_one_destination(),
           "hold": hold(args.n, freeze=False),
           "hold_frozen": hold(args.n, freeze=True)}
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0
    f = out["fill_range"]
    print(f"fill the default range to one destination: {f['connects']} connects in {f['fill_s']} s "
          f"({f['per_connect_us']} us each); one more -> {f['one_more']} in {f['one_more_ms']} ms")
    for key in ("hold", "hold_frozen"):
        h = out[key]
        n = h["sockets"]
        at_n = h[f"bind_close_us_at_{n}"]
        frozen = " (gc.freeze after the fill)" if h["gc_freeze"] else ""
        print(f"hold {n:,} sockets{frozen}: fill {h['fill_s']} s; bind+close {h['bind_close_us_at_1k']} us at 1k "
              f"vs {at_n} us at {n:,} (x{h['ratio']}); close {h['close_us']} us; {h['bytes_per_socket']} B/socket")
    return 0


if __name__ == "__main__":
    sys.exit(main())
