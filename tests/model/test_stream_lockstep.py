"""Random programs on one TCP connection, run on the model and on the kernel: the same
outcome at every step.

Hypothesis writes a step script (``portspace.diff`` vocabulary) for a client ``c`` and the
accepted server side ``a`` (both non-blocking, so nothing waits): sends of a few sizes,
recv / recvfrom with MSG_PEEK, MSG_WAITALL and MSG_DONTWAIT, shutdown of either direction,
close, SO_ERROR, select readiness and getpeername.  Every program ends by binding the
client's and the server's ports afresh, which shows who still holds a TIME_WAIT remnant.  The
script runs on a fresh model namespace and a fresh KernelNamespace; ``compare`` must find no
difference (a failure prints the script, ready for ``run_script``).
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portspace.diff import compare, run_script

from ..conftest import make_ns

pytestmark = pytest.mark.kernel

HEAD = """
L = tcp4
L bind 127.0.0.1 5700
L listen
c = tcp4 range=40007-40007
c connect 127.0.0.1 5700
a = L accept
L close
c timeout 0
a timeout 0
"""
TAIL = """
t = tcp4
t bind 127.0.0.1 40007
s = tcp4
s bind 127.0.0.1 5700
"""

SIDE = st.sampled_from("ca")
FLAGS = st.sampled_from(["", " peek", " waitall", " dontwait", " peek|waitall"])
STEP = st.one_of(
    st.builds(lambda s, n: f"{s} send {'d*' + str(n) if n else chr(39) * 2}", SIDE, st.sampled_from([0, 1, 5, 3000])),
    st.builds(lambda s, n, f: f"{s} recv {n}{f}", SIDE, st.sampled_from([1, 4, 100, 5000]), FLAGS),
    st.builds(lambda s, n: f"{s} recvfrom {n}", SIDE, st.sampled_from([0, 3])),
    st.builds(lambda s, h: f"{s} shutdown {h}", SIDE, st.sampled_from(["rd", "wr", "rdwr"])),
    st.builds(lambda s: f"{s} close", SIDE),
    st.builds(lambda s: f"{s} error", SIDE),
    st.builds(lambda s: f"{s} select", SIDE),
    st.builds(lambda s: f"{s} peer", SIDE),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=14))
def test_stream_programs_agree(steps: list[str]) -> None:
    script = HEAD + "\n".join(steps) + TAIL
    model = make_ns("model", standard=False)
    got = run_script(model, script)
    model.check_invariants()
    kernel = make_ns("kernel", standard=False)
    try:
        want = run_script(kernel, script)
    finally:
        kernel.close()
    diff = compare(got, want)
    assert not diff, "script:\n" + script + "\n" + "\n".join(diff)
