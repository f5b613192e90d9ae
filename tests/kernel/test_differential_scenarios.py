"""Every named scenario, run on the model and on the kernel, compared step by step on *every*
outcome (not only the annotated ones), reported as (-model, +kernel) with the model's reasons."""
from __future__ import annotations

import pytest

import portspace
from portspace.diff import compare, run_script
from tests.conftest import STANDARD_SETUP, make_ns
from tests.model.test_scenarios import SCENARIOS

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_model_equals_kernel(name):
    kernel = make_ns("kernel")
    try:
        model = make_ns("model")
        diffs = compare(run_script(model, SCENARIOS[name]), run_script(kernel, SCENARIOS[name]))
        assert not diffs, "\n".join(diffs)
    finally:
        kernel.close()


def test_compare_reports_model_and_kernel_with_reasons():
    """The report format itself: a deliberately different namespace setup on one side."""
    script = "a = tcp4\nb = tcp4\na bind 127.0.0.1 7000\nb bind 127.0.0.1 7000"
    model = portspace.Namespace()
    kernel = make_ns("kernel", standard=False)
    try:
        m = run_script(model, script)
        k = run_script(kernel, "a = tcp4\nb = tcp4\na bind 127.0.0.1 7000\nb bind 127.0.0.2 7000")
        # same line text is reported from the model side; outcomes differ only on the last step
        diffs = compare(m, k)
        assert len(diffs) == 1
        assert "- model:  EADDRINUSE" in diffs[0] and "+ kernel: OK" in diffs[0]
        assert "blocked by socket #" in diffs[0]
    finally:
        kernel.close()


_ = STANDARD_SETUP
