"""``portspace run``, ``portspace matrix``, ``portspace claims``: scenarios for people.

Theory of operation
-------------------
All three only render: ``run`` loads a scenario file (``diff._scenario``) and runs its steps
with ``diff.run_script`` on a model namespace, on ``live.KernelNamespace`` (``--kernel``) or on
both (``--diff``); ``matrix`` computes the pairwise bind tables of spec §3.6 with
``diff._matrix`` (never a stored table); ``claims`` runs every example scenario shipped in
``portspace/examples`` and judges each claim from the outcomes (``diff._scenario.judge``).

Output: text for people, ``--json`` for scripts; colour only on a terminal and never with
``NO_COLOR`` or ``TERM=dumb``.  Bad arguments or a bad file: one line on stderr, exit status 2.
``run`` exits 1 when an expected outcome is not met (on any side run); ``matrix --kernel`` exits
1 when a cell differs; ``claims`` exits 0 (the verdicts are the answer).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, TextIO

from . import _live

COMMANDS = ("run", "matrix", "claims")
STANDARD_SETUP = "ns addr 127.0.0.2/8\n"   # the matrix's second IPv4 address (as in the live experiment)

RUN_EPILOG = """\
examples:
  portspace run scenario.json                   each step, its outcome, and why refusals happen
  portspace run scenario.json --tables          the kernel's tables after every step
  portspace run scenario.json --diff            model and live kernel side by side (root)
  portspace run steps.txt --kernel --json       a text step script, on the kernel, as JSON
  portspace run --example seed000-udp-and-tcp   a scenario shipped with portspace
  portspace run --list                          the shipped scenarios

exit status: 0 every expected outcome met, 1 some expected outcome not met,
             2 bad arguments or a bad scenario file (or no kernel namespace for --kernel/--diff)

The file format (JSON, or one step a line) is described in docs/scenarios.md."""

MATRIX_EPILOG = """\
examples:
  portspace matrix                              TCP, no options (spec §3.6)
  portspace matrix --proto udp --mode reuseaddr
  portspace matrix --mode reuseport/uid --kernel   also on the live kernel, differences marked
  portspace matrix --json | jq '.tables[0].rows["0.0.0.0"]'

A cell is the second socket's bind() after the first bound (and, in a "listening" table,
listened); TCP tables where the first only bound show "bind/listen": the second bind, then
listen() on both.  ok = success, INUSE = EADDRINUSE.
exit status: 0, 1 when --kernel found a cell that differs, 2 bad arguments"""

CLAIMS_EPILOG = """\
examples:
  portspace claims                              every claim, its verdict on the model, the evidence
  portspace claims --kernel                     also on the live kernel (root; one scenario sleeps 61 s)
  portspace claims --json | jq '.[] | select(.verdict != "true") | .claim'

A verdict is computed from the scenario's outcomes: true (every predicted outcome happened),
false (none did), partly, or "not modelled yet" (the model raised OutOfScope first).
Each scenario is a file portspace run accepts: portspace run --example NAME"""


def add_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    fmt = argparse.RawDescriptionHelpFormatter
    wrap = _live.wrap
    run = sub.add_parser("run", help="run a scenario file step by step on the model (or the kernel)",
                         description=wrap("Run a scenario (JSON, or a text step script) on a model namespace: "
                                          "each step with its outcome and, for a refusal, the model's reasons; "
                                          "optionally the kernel tables after each step, the live kernel, or "
                                          "both side by side."), epilog=RUN_EPILOG, formatter_class=fmt)
    run.add_argument("file", nargs="?", metavar="FILE", help="a .json scenario or a step script")
    run.add_argument("--example", metavar="NAME", help="a scenario shipped with portspace (see --list)")
    run.add_argument("--list", action="store_true", help="list the shipped scenarios and exit")
    side = run.add_mutually_exclusive_group()
    side.add_argument("--kernel", action="store_true", help="run on the live kernel in a private network namespace")
    side.add_argument("--diff", action="store_true", help="run on the model and the kernel, mark differing steps")
    run.add_argument("--tables", action="store_true",
                     help="draw the model's kernel tables after each step (bind buckets, listeners, "
                          "TIME_WAIT, UDP slots, reuseport groups)")
    run.add_argument("--seed", type=int, default=0, help="RNG seed of the model namespace (default 0)")
    run.add_argument("--json", action="store_true", help="machine-readable output")

    from portspace.diff._matrix import MODE_HELP
    mx = sub.add_parser("matrix", help="the pairwise bind conflict matrix (spec §3.6), computed by the model",
                        description=wrap("Compute the pairwise bind()/listen() conflict matrix of spec §3.6 by "
                                         "running every pair of binds (8 address classes) on a fresh model "
                                         "namespace; optionally run the same pairs on the live kernel and "
                                         "mark the cells that differ.  Modes: " +
                                         "; ".join(f"{k} = {v}" for k, v in MODE_HELP.items()) + "."),
                        epilog=MATRIX_EPILOG, formatter_class=fmt)
    mx.add_argument("--proto", choices=("tcp", "udp"), default="tcp", help="protocol (default tcp)")
    mx.add_argument("--mode", choices=[*MODE_HELP, "all"], default="none",
                    help="socket options of the pair (default none; all = every mode)")
    mx.add_argument("--kernel", action="store_true", help="also on the live kernel, differences marked")
    mx.add_argument("--json", action="store_true", help="machine-readable output")

    cl = sub.add_parser("claims", help="popular claims about ports (seed articles, spec §8), checked",
                        description=wrap("Every claim of the three seed articles and of spec §8, each checked by "
                                         "running its example scenario on the model (and on the live kernel "
                                         "with --kernel): the claim, its source, the verdict and the "
                                         "evidence."),
                        epilog=CLAIMS_EPILOG, formatter_class=fmt)
    cl.add_argument("--kernel", action="store_true", help="also on the live kernel (root and unshare)")
    cl.add_argument("--json", action="store_true", help="a JSON list of {claim, source, verdict, evidence, ...}")
    return [run, mx, cl]


# ------------------------------------------------------------------------------------------
# shared
# ------------------------------------------------------------------------------------------


class Fail(Exception):
    """A one-line error: exit status 2."""


def _kernel() -> Any:
    from portspace.live import KernelNamespace, probe
    reason = probe()
    if reason is not None:
        raise Fail(f"the live kernel is not available here ({reason}); run without --kernel/--diff for the model")
    return KernelNamespace()


def example_names() -> list[str]:
    from importlib import resources
    base = resources.files("portspace") / "examples"
    return sorted(p.name[:-5] for p in base.iterdir() if p.name.endswith(".json"))


def load_example(name: str) -> Any:
    from portspace.diff import loads
    from importlib import resources
    base = resources.files("portspace") / "examples"
    fname = name if name.endswith(".json") else name + ".json"
    f = base / fname
    if not f.is_file():
        raise Fail(f"no example scenario {name!r} (one of: {', '.join(example_names())})")
    return loads(f.read_text(encoding="utf-8"), fname, json_format=True)


def _body(line: str) -> str:
    """A step line without its ``-> expected`` part and comment."""
    return line.split("->", 1)[0].split("#", 1)[0].strip() if not line.startswith("ns sysctl") else \
        line.split("->", 1)[0].strip()


def _shown(outcome: str) -> str:
    """An outcome on one line (a sysctl's tab shown as \\t)."""
    return outcome.replace("\t", "\\t").replace("\n", "\\n")


def _reasons(result: Any) -> list[Any]:
    return list(getattr(result.error, "reasons", ()) or ()) if result is not None else []


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        if args.command == "run":
            return _run(args, parser)
        if args.command == "matrix":
            return _matrix(args)
        return _claims(args)
    except Fail as e:
        sys.stderr.write(f"portspace {args.command}: error: {e}\n")
        return 2


# ------------------------------------------------------------------------------------------
# run
# ------------------------------------------------------------------------------------------


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import portspace
    from portspace.diff import ScenarioError, load, run_script
    from portspace.diff._scenario import is_out_of_scope

    if args.list:
        for name in example_names():
            sc = load_example(name)
            print(f"{name:28s} {sc.title}")
        return 0
    if (args.file is None) == (args.example is None):
        raise Fail("give a scenario FILE or --example NAME (see portspace run --help)")
    if args.tables and args.kernel:
        raise Fail("--tables draws the model's tables; use it without --kernel (or with --diff)")
    try:
        sc = load_example(args.example) if args.example else load(args.file)
    except ScenarioError as e:
        raise Fail(str(e)) from None
    sides = ["kernel"] if args.kernel else ["model", "kernel"] if args.diff else ["model"]
    tables: list[Any] = []
    results: dict[str, list[Any]] = {}
    for side in sides:
        if side == "model":
            ns = portspace.Namespace(seed=args.seed)
            hook: Callable[[Any], None] | None = (lambda r, ns=ns: tables.append(ns.tables())) if args.tables else None
            results[side] = run_script(ns, sc.steps, after=hook)
        else:
            k = _kernel()
            try:
                results[side] = run_script(k, sc.steps)
            finally:
                k.close()
    rows = []
    for i, st in enumerate(sc.steps):
        row: dict[str, Any] = {"n": i + 1, "step": _body(st.line), "expect": st.want}
        label = sc.label_of(i)
        if label:
            row["label"] = label
        if i in sc.notes:
            row["note"] = sc.notes[i]
        for side in sides:
            r = results[side][i]
            row[side] = {"outcome": r.outcome, "met": r.ok, "out_of_scope": is_out_of_scope(r),
                         "reasons": [x.as_dict() for x in _reasons(r)]}
        if len(sides) == 2:
            row["differs"] = row["model"]["outcome"] != row["kernel"]["outcome"]
            if label in sc.differences:
                row["named_difference"] = sc.differences[label]
        if tables:
            row["tables"] = tables[i]
        rows.append(row)
    unmet = [r for r in rows if any(not r[s]["met"] for s in sides)]
    status = 1 if unmet else 0
    if args.json:
        out = {"file": sc.name, "title": sc.title, "sides": sides, "ok": not unmet,
               "steps": [{**r, "tables": r["tables"].as_dict()} if "tables" in r else r for r in rows]}
        if len(sides) == 2:
            out["differences"] = sum(r["differs"] for r in rows)
        import json
        json.dump(out, sys.stdout, indent=2)
        print()
        return status
    _print_run(sc, sides, rows, results, sys.stdout)
    return status


def _print_run(sc: Any, sides: list[str], rows: list[dict[str, Any]], results: dict[str, list[Any]],
               out: TextIO) -> None:
    style = _live._Style(out)
    where = {("model",): "on the model of Linux 6.18 (no real sockets)",
             ("kernel",): "on the live kernel (a private network namespace)",
             ("model", "kernel"): "on the model and on the live kernel"}[tuple(sides)]
    out.write(f"{sc.name}: {sc.title}\n{where}\n\n")
    width = min(max(len(r["step"]) for r in rows), 48)
    prev_tables = None
    for r in rows:
        line = f"{r['n']:3d}  {r['step']:{width}s}"
        if len(sides) == 1:
            s = r[sides[0]]
            line += "  " + _outcome_text(s, style)
        else:
            m, k = r["model"], r["kernel"]
            line += f"  model: {_outcome_text(m, style)}   kernel: {_outcome_text(k, style)}"
            if r["differs"]:
                line += "   " + style("<< differs", "1;33")
        if r["expect"] is not None and any(not r[s]["met"] for s in sides) and not any(
                r[s]["out_of_scope"] for s in sides):
            line += "   " + style(f"EXPECTED {_shown(r['expect'])}", "1;31")
        out.write(line.rstrip() + "\n")
        if r.get("note"):
            out.write(f"       note: {r['note']}\n")
        if r.get("named_difference"):
            out.write(f"       known difference: {r['named_difference']}\n")
        side = "model" if "model" in sides else "kernel"
        for reason in r[side]["reasons"]:
            out.write(f"       why: [{reason['rule']}, spec {reason['spec']}] {reason['message']}\n")
            if reason["fixes"]:
                out.write("       would succeed if: " + ";\n                         or ".join(reason["fixes"]) + "\n")
        if "tables" in r:
            text = str(r["tables"])
            if text == prev_tables:
                out.write("       (tables unchanged)\n")
            else:
                out.write("\n" + "\n".join("       " + ln for ln in text.splitlines()) + "\n\n")
            prev_tables = text
    unmet = [r for r in rows if any(not r[s]["met"] for s in sides)]
    n_expect = sum(r["expect"] is not None for r in rows)
    out.write("\n")
    for side in sides:
        oos = [r for r in rows if r[side]["out_of_scope"]]
        bad = [r for r in rows if not r[side]["met"]]
        text = f"{side}: {n_expect - len(bad)} of {n_expect} expected outcomes met"
        if oos:
            text += f"; {len(oos)} steps not modelled yet (first: step {oos[0]['n']})"
        out.write(text + "\n")
    if len(sides) == 2:
        d = [r for r in rows if r["differs"]]
        out.write(f"model vs kernel: {len(d)} steps differ" +
                  (f" ({', '.join(str(r['n']) for r in d[:10])}{' ...' if len(d) > 10 else ''})" if d else "") + "\n")
    _ = unmet


def _outcome_text(s: dict[str, Any], style: Any) -> str:
    if s["out_of_scope"]:
        return style("not modelled yet", "2")
    text = _shown(s["outcome"])
    if text.startswith("E") and text[1:].isupper():
        return style(text, "31")
    return style(text, "32") if text == "OK" else text


# ------------------------------------------------------------------------------------------
# matrix
# ------------------------------------------------------------------------------------------


def _matrix(args: argparse.Namespace) -> int:
    import portspace
    from portspace.diff import failures, run_script
    from portspace.diff._matrix import LABELS, MODES, table

    proto = args.proto.upper()
    modes = list(MODES) if args.mode == "all" else [args.mode]
    kernel = _kernel() if args.kernel else None
    tables = []
    try:
        for mode in modes:
            for listen_first in ((True, False) if proto == "TCP" else (False,)):
                ns = portspace.Namespace(seed=0)
                assert not failures(run_script(ns, STANDARD_SETUP))
                entry: dict[str, Any] = {"proto": proto, "mode": mode, "first_listening": listen_first,
                                         "rows": table(ns, proto, mode, listen_first)}
                if kernel is not None:
                    bad = failures(run_script(kernel, STANDARD_SETUP if not tables else ""))
                    if bad:  # pragma: no cover - the kernel refused the setup
                        raise Fail(f"kernel setup failed: {bad[0]}")
                    entry["kernel_rows"] = table(kernel, proto, mode, listen_first, port=20000 + 100 * len(tables))
                    entry["differences"] = [{"first": a, "second": b, "model": entry["rows"][a][b],
                                             "kernel": entry["kernel_rows"][a][b]}
                                            for a in LABELS for b in LABELS
                                            if entry["rows"][a][b] != entry["kernel_rows"][a][b]]
                tables.append(entry)
    finally:
        if kernel is not None:
            kernel.close()
    ndiff = sum(len(t.get("differences", ())) for t in tables)
    if args.json:
        import json
        json.dump({"tables": tables, "labels": LABELS, "checked_on_kernel": kernel is not None,
                   "differences": ndiff if kernel is not None else None}, sys.stdout, indent=2)
        print()
        return 1 if ndiff else 0
    style = _live._Style(sys.stdout)
    from portspace.diff._matrix import MODE_HELP
    for t in tables:
        what = "first socket LISTENING before the second bind" if t["first_listening"] else (
            "first socket bound only; cell = second bind / second listen after the first listened"
            if proto == "TCP" else "second bind after the first bind")
        print(f"{proto}, {MODE_HELP[t['mode']]} (mode {t['mode']}): {what}")
        w = 19
        print("first \\ second".ljust(w) + "".join(lab.ljust(w) for lab in LABELS).rstrip())
        for a in LABELS:
            cells = []
            for b in LABELS:
                c = t["rows"][a][b]
                if "kernel_rows" in t and t["kernel_rows"][a][b] != c:
                    c = style(f"{c}|k:{t['kernel_rows'][a][b]}", "1;33")
                    cells.append(c + " " * max(1, w - len(f"{t['rows'][a][b]}|k:{t['kernel_rows'][a][b]}")))
                else:
                    cells.append(style(c.ljust(w), "31") if "INUSE" in c else c.ljust(w))
            print(a.ljust(w) + "".join(cells).rstrip())
        print()
    print("computed on the model" + (f" and on the live kernel: {ndiff} cells differ (shown model|k:kernel)"
                                     if kernel is not None else " (add --kernel to check the live kernel)"))
    return 1 if ndiff else 0


# ------------------------------------------------------------------------------------------
# claims
# ------------------------------------------------------------------------------------------


def check_claims(kernel: bool = False, seed: int = 0) -> list[dict[str, Any]]:
    """Every claim of every shipped scenario with its verdict (and the kernel's with ``kernel``)."""
    import portspace
    from portspace.diff import judge, run_script

    out = []
    for name in example_names():
        sc = load_example(name)
        if not sc.claims:
            continue
        model = run_script(portspace.Namespace(seed=seed), sc.steps)
        live = None
        if kernel:
            if sc.seconds > 10:
                sys.stderr.write(f"portspace claims: {sc.name} sleeps {sc.seconds:g} s on the kernel\n")
            k = _kernel()   # a fresh namespace per scenario: sysctls and TIME_WAIT stay behind
            try:
                live = run_script(k, sc.steps)
            finally:
                k.close()
        for c in sc.claims:
            v = judge(sc, c, model).as_dict()
            v["scenario"] = sc.name
            if live is not None:
                kv = judge(sc, c, live)
                v["kernel"] = {"verdict": kv.verdict, "evidence": list(kv.evidence)}
            out.append(v)
    out.sort(key=lambda v: (_source_key(v["source"]), v["scenario"]))
    return out


def _source_key(source: str) -> tuple[int, str]:
    return (0 if source.startswith("seed") else 1, source)


_VERDICT_COLOURS = {"true": "32", "false": "31", "partly": "33"}


def _claims(args: argparse.Namespace) -> int:
    claims = check_claims(kernel=args.kernel)
    if args.json:
        import json
        json.dump(claims, sys.stdout, indent=2)
        print()
        return 0
    style = _live._Style(sys.stdout)
    where = "on the model and on the live kernel" if args.kernel else "on the model of Linux 6.18 (no real sockets)"
    print(f"portspace claims: {len(claims)} claims of the seed articles 000, 001, 004 and spec §8, checked {where}\n")
    for v in claims:
        verdict = style(v["verdict"].upper(), _VERDICT_COLOURS.get(v["verdict"], "2"))
        head = f"[{verdict}]"
        if "kernel" in v:
            kv = v["kernel"]["verdict"]
            head = f"[model {verdict}, kernel {style(kv.upper(), _VERDICT_COLOURS.get(kv, '2'))}]"
        print(f"{head} \"{v['claim']}\"")
        print(f"    source: {v['source']}    scenario: portspace run --example {v['scenario'][:-5]}")
        evidence = v["kernel"]["evidence"] if v["verdict"] == "not modelled yet" and "kernel" in v else v["evidence"]
        for e in evidence:
            mark = "as claimed" if e["held"] else "NOT as claimed"
            pred = f"not {_shown(e['predicted'][1:])}" if e["predicted"].startswith("!") else _shown(e["predicted"])
            got = _shown(e["outcome"])
            if not e["modelled"]:
                print(f"    {_body(e['step'])}  ->  (not modelled yet; the claim predicts {pred})")
            else:
                print(f"    {_body(e['step'])}  ->  {got}   ({mark}: the claim predicts {pred})")
        if v["verdict"] == "not modelled yet":
            print(f"    not modelled yet: {v['why']}")
        if v["note"]:
            print(f"    note: {v['note']}")
        print()
    counts: dict[str, int] = {}
    for v in claims:
        counts[v["verdict"]] = counts.get(v["verdict"], 0) + 1
    print("model verdicts: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if not args.kernel:
        print("(portspace claims --kernel checks them on the live kernel too; needs root and unshare)")
    return 0
