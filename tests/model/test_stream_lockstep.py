"""Random programs on one TCP connection, run on the model and on the kernel: the same
outcome at every step.

Hypothesis writes a step script (``portspace.diff`` vocabulary), IPv4 or IPv6, for a client
``c``, the accepted server side ``a``, a second client ``d`` that may connect (and stay in
the listener's queue), and the listener ``L``, which may close and reset what is queued (all
non-blocking, so nothing waits): sends of a few sizes,
recv / recvfrom with MSG_PEEK, MSG_WAITALL and MSG_DONTWAIT, shutdown of either direction,
close, SO_ERROR, select readiness, getpeername, and client TCP Fast Open (also with
``tcp_fastopen`` turned off).  Every program ends by binding the
clients' and the server's ports afresh, which shows who still holds a TIME_WAIT remnant.  The
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
L = {kind}
L bind {host} 5700
L listen
L timeout 0
c = {kind} range=40007-40007
c connect {host} 5700
a = L accept
c timeout 0
a timeout 0
d = {kind} nonblock range=40009-40009
"""
TAIL = """
t = {kind}
t bind {host} 40007
u = {kind}
u bind {host} 40009
s = {kind}
s bind {host} 5700
"""
HOSTS = {"tcp4": "127.0.0.1", "tcp6": "[::1]"}

SIDE = st.sampled_from("cad")
FLAGS = st.sampled_from(["", " peek", " waitall", " dontwait", " peek|waitall"])
STEP = st.one_of(
    st.builds(lambda s, n: f"{s} send {'d*' + str(n) if n else chr(39) * 2}", SIDE, st.sampled_from([0, 1, 5, 3000])),
    st.builds(lambda s, n, f: f"{s} recv {n}{f}", SIDE, st.sampled_from([1, 4, 100, 5000]), FLAGS),
    st.builds(lambda s, n: f"{s} recvfrom {n}", SIDE, st.sampled_from([0, 3])),
    st.builds(lambda s, h: f"{s} shutdown {h}", SIDE, st.sampled_from(["rd", "wr", "rdwr"])),
    st.builds(lambda s: f"{s} close", SIDE),
    st.builds(lambda s: f"{s} error", SIDE),
    st.builds(lambda s: f"{s} select", st.sampled_from("cadL")),
    st.builds(lambda s: f"{s} peer", SIDE),
    st.just("d connect {host} 5700"),
    st.builds(lambda s, n: f"{s} sendto {'x*' + str(n) if n else chr(39) * 2} fastopen {{host}} 5700",
              st.sampled_from("cd"), st.sampled_from([0, 2])),
    st.just("d send f fastopen"),
    st.just("ns sysctl net.ipv4.tcp_fastopen 0"),
    st.just("L close"),
    st.just("L recv 1"),
)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(HOSTS)), st.lists(STEP, min_size=1, max_size=14))
def test_stream_programs_agree(kind: str, steps: list[str]) -> None:
    script = (HEAD + "\n".join(steps) + TAIL).format(kind=kind, host=HOSTS[kind])
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
