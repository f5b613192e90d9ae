"""``portspace`` command: ``main(argv) -> int`` over the public API (pyupgrade's CLI idiom).

Subcommands:
  claims   every claim of the seed articles and spec §8, checked by its scenario (``cli/_scenarios.py``)
  run      a scenario file step by step (model, kernel or both), with reasons and tables
  matrix   the pairwise bind conflict matrix of spec §3.6, computed
  demo     seed 000's experiment on the model, each outcome and why refusals happen
  ls, explain, ports   questions about the live host (``cli/_live.py``)
"""
from __future__ import annotations

import argparse
import sys
from _socket import AF_INET, SOCK_DGRAM, SOCK_STREAM   # the C module: `socket` costs ~2 ms to import
from typing import Any, Sequence

import portspace   # cheap: its names are imported on first use

from . import _live, _scenarios

DEMO_STEPS = [
    # (socket name, kind, address, what the article asked)
    ("first UDP socket", SOCK_DGRAM, ("127.0.0.1", 5556), "bind UDP 127.0.0.1:5556"),
    ("second UDP socket", SOCK_DGRAM, ("127.0.0.1", 5556), "bind UDP 127.0.0.1:5556 again"),
    ("TCP socket", SOCK_STREAM, ("127.0.0.1", 5556), "bind TCP 127.0.0.1:5556"),
]


def run_demo(seed: int) -> dict[str, Any]:
    """Seed 000 ("Binding Multiple Sockets To The Same Port") on a fresh model namespace."""
    ns = portspace.Namespace(seed=seed)
    steps: list[dict[str, Any]] = []
    socks: list[portspace.Socket] = []
    for name, kind, addr, what in DEMO_STEPS:
        s = ns.socket(AF_INET, kind)
        socks.append(s)
        entry: dict[str, Any] = {"step": what, "socket": s.fileno(), "name": name}
        ahead = ns.explain(s, "bind", addr)  # side-effect free: why it will (not) work
        try:
            s.bind(addr)
            if kind == SOCK_STREAM:
                s.listen()
                entry["step"] += " and listen()"
            entry["outcome"] = "OK"
            entry["why"] = [r.as_dict() for r in ahead.reasons]
        except OSError as e:
            entry["outcome"] = str(e)
            entry["why"] = [r.as_dict() for r in e.reasons]  # type: ignore[attr-defined]
        steps.append(entry)
    tables = ns.tables()
    result = {"seed_article": "000 Binding Multiple Sockets To The Same Port", "steps": steps,
              "tables": tables.as_dict(), "tables_text": str(tables)}
    for s in socks:
        s.close()
    return result


def _print_demo(res: dict[str, Any]) -> None:
    print("portspace demo: seed 000, on the model of Linux 6.18 (no real sockets)\n")
    for st in res["steps"]:
        print(f"socket #{st['socket']}: {st['step']:44s} -> {st['outcome']}")
        for r in st["why"]:
            print(f"    why: [{r['rule']}, spec {r['spec']}] {r['message']}")
            if r["fixes"]:
                print("    it would succeed if: " + ";\n                         ".join(r["fixes"]))
    print("\nThe kernel's tables after these steps (TCP and UDP are separate port spaces):\n")
    print(res["tables_text"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="portspace",
        description="The Linux 6.18 port manager as an executable model: which bind()/listen() "
                    "succeed, and why the others fail.",
        epilog="examples:\n  portspace claims\n  portspace run --example seed000-udp-and-tcp --tables\n"
               "  portspace matrix --proto udp --mode reuseport\n  portspace demo\n"
               "  portspace demo --json | jq '.steps[1].why'\n"
               "  portspace ls --tcp\n  portspace explain tcp 0.0.0.0:8080\n  portspace ports\n\n"
               "portspace COMMAND --help describes each command, with examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"portspace {portspace.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    scen = _scenarios.add_parsers(sub)
    demo = sub.add_parser("demo", help="seed 000's experiment on the model, with the reasons for each refusal",
                          description="Run the seed-000 experiment (two UDP binds of 127.0.0.1:5556, then "
                                      "TCP on the same port) on a model namespace and explain each outcome.",
                          epilog="example: portspace demo --json", formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--json", action="store_true", help="machine-readable output")
    demo.add_argument("--seed", type=int, default=0, help="RNG seed of the model namespace (default 0)")
    _live.add_parsers(sub, parser)
    for p in (*scen, demo):
        p.error = _live._one_line_error(p)  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "demo":
        res = run_demo(args.seed)
        if args.json:
            import json
            res.pop("tables_text")
            json.dump(res, sys.stdout, indent=2)
            print()
        else:
            _print_demo(res)
        return 0
    if args.command in _scenarios.COMMANDS:
        try:
            return _scenarios.run(args, parser)
        except BrokenPipeError:   # `portspace claims | head`: the reader left; no traceback
            import os
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
    if args.command in _live.COMMANDS:
        return _live.run(args)
    parser.error(f"unknown command {args.command}")  # pragma: no cover - argparse rejects it first
    return 2


def console() -> None:
    """The ``portspace`` executable and ``python -m portspace``: :func:`main`, then an exit that
    skips the interpreter's teardown.

    ``ls`` of 20 000 sockets leaves some 150 000 objects behind; freeing them one by one and the
    final garbage collection of the teardown cost ~5 ms of a ~110 ms run (measured with perf),
    while the kernel reclaims a process's memory at once.  What the teardown does that matters
    is done first: the atexit handlers (weakref finalizers among them), then the flush of stdout
    and stderr.  With threads other than the main one alive, the normal exit runs (it waits for
    them).  ``main()`` itself returns normally: tests and scripts call it in-process."""
    import atexit
    import os
    try:
        rc = main()
    except SystemExit as e:   # argparse (--help, --version, bad arguments): sys.exit's meaning of the code
        if e.code is None or isinstance(e.code, int):
            rc = e.code or 0
        else:
            sys.stderr.write(f"{e.code}\n")
            rc = 1
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        sys.exit(rc)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (BrokenPipeError, ValueError):   # the reader left (`portspace ls | head`), or closed
            pass
        except OSError:
            rc = rc or 1
    os._exit(rc)

