"""Every example scenario shipped in portspace/examples: its expected outcomes on the model
(delivery-dependent steps skipped with the model's OutOfScope reason until delivery lands) and
on the live kernel, and model == kernel on every step the model covers (or a named difference).
The expected outcomes in the files are the live results of ../shared/linux-port-experiments
(kernel 6.18.44), cited in each file's "source"."""
from __future__ import annotations

import pytest

import portspace
from portspace.cli._scenarios import example_names, load_example
from portspace.diff import failures, judge, run_script
from portspace.diff._scenario import NOT_MODELLED, is_out_of_scope
from tests.conftest import make_ns

NAMES = example_names()


def _first_oos(results) -> int | None:
    return next((i for i, r in enumerate(results) if is_out_of_scope(r)), None)


def test_examples_are_shipped_and_cover_every_source():
    sources = {c.source.split(" (")[0] for n in NAMES for c in load_example(n).claims}
    assert {"seed 000", "seed 001", "seed 004"} <= sources
    assert {f"spec §8({x})" for x in "abcdefghi"} <= sources


@pytest.mark.parametrize("name", NAMES)
def test_example_on_model(name):
    sc = load_example(name)
    ns = portspace.Namespace(seed=7)
    results = run_script(ns, sc.steps)
    ns.check_invariants()
    cut = _first_oos(results)
    bad = [f"step {i + 1}: {r.step.line}: want {r.step.want}, got {r.outcome}"
           for i, r in enumerate(results[:cut]) if not r.ok]
    assert not bad, "\n".join(bad)
    for c in sc.claims:   # a verdict for every claim; "not modelled yet" only past the OutOfScope step
        v = judge(sc, c, results)
        assert (v.verdict == NOT_MODELLED) == (cut is not None and max(sc.labels[lab] for lab in c.predicts) >= cut)
    if cut is not None:
        pytest.skip(f"model: {results[cut].step.line}: {results[cut].error}")


def _kernel_params():
    for n in NAMES:
        marks = [pytest.mark.kernel] + ([pytest.mark.slow] if load_example(n).seconds > 10 else [])
        yield pytest.param(n, marks=marks, id=n)


@pytest.mark.parametrize("name", list(_kernel_params()))
def test_example_on_kernel_equals_model(name):
    sc = load_example(name)
    kernel = make_ns("kernel", standard=False)
    try:
        live = run_script(kernel, sc.steps)
    finally:
        kernel.close()
    assert not failures(live), "\n".join(failures(live))
    model = run_script(portspace.Namespace(seed=7), sc.steps)
    cut = _first_oos(model)
    diffs = [f"step {i + 1}: {m.step.line}: model {m.outcome}, kernel {k.outcome}"
             for i, (m, k) in enumerate(zip(model[:cut], live)) if m.outcome != k.outcome
             and sc.label_of(i) not in sc.differences]
    assert not diffs, "\n".join(diffs)
    for c in sc.claims:
        kv, mv = judge(sc, c, live), judge(sc, c, model)
        assert kv.verdict != NOT_MODELLED
        assert mv.verdict in (kv.verdict, NOT_MODELLED), c.claim
