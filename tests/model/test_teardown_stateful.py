"""Random connection programs on the model (Hypothesis): sockets, binds, listens, connects,
accepts, shutdowns, closes and clock advances, with the table invariants checked after every
step -- no remnant outlives its timer, no bucket without owners, no live 4-tuple twice, the
destination index and bound-port filter in step with the tables.  The CI profile runs at
least 10,000 steps (160 programs of up to 100 steps)."""
from __future__ import annotations

import socket

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import portspace
from portspace.model._errors import Deadlock

STEPS = [0]
PORTS = [5000, 5001, 40000, 40001, 0]
HOSTS = ["127.0.0.1", "127.0.0.2", "0.0.0.0"]


class Teardown(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ns = portspace.Namespace(seed=3)
        self.ns.sysctl("net.ipv4.ip_local_port_range", "40000 40003")
        self.socks: list[portspace.Socket] = []
        self.steps = 0

    def _pick(self, i: int) -> portspace.Socket | None:
        return self.socks[i % len(self.socks)] if self.socks else None

    @rule(reuse=st.booleans(), nonblock=st.booleans())
    def make(self, reuse: bool, nonblock: bool) -> None:
        s = self.ns.socket(socket.AF_INET, socket.SOCK_STREAM | (socket.SOCK_NONBLOCK if nonblock else 0))
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socks.append(s)

    def _try(self, fn) -> None:
        try:
            fn()
        except OSError as e:
            assert e.errno is not None
        except (portspace.OutOfScope, Deadlock):
            pass  # a corner the model refuses to guess, or a wait it cannot simulate: fine here

    @precondition(lambda self: self.socks)
    @rule(i=st.integers(0, 50), host=st.sampled_from(HOSTS), port=st.sampled_from(PORTS))
    def bind(self, i: int, host: str, port: int) -> None:
        self._try(lambda: self._pick(i).bind((host, port)))

    @precondition(lambda self: self.socks)
    @rule(i=st.integers(0, 50), backlog=st.integers(0, 3))
    def listen(self, i: int, backlog: int) -> None:
        self._try(lambda: self._pick(i).listen(backlog))

    @precondition(lambda self: self.socks)
    @rule(i=st.integers(0, 50), host=st.sampled_from(["127.0.0.1", "127.0.0.2"]), port=st.sampled_from(PORTS[:4]))
    def connect(self, i: int, host: str, port: int) -> None:
        self._try(lambda: self._pick(i).connect((host, port)))

    @precondition(lambda self: self.socks)
    @rule(i=st.integers(0, 50))
    def accept(self, i: int) -> None:
        s = self._pick(i)
        s.setblocking(False)
        try:
            child, _ = s.accept()
            self.socks.append(child)
        except OSError:
            pass

    @precondition(lambda self: self.socks)
    @rule(i=st.integers(0, 50), how=st.sampled_from([socket.SHUT_RD, socket.SHUT_WR, socket.SHUT_RDWR]))
    def shutdown(self, i: int, how: int) -> None:
        self._try(lambda: self._pick(i).shutdown(how))

    @precondition(lambda self: self.socks)
    @rule(i=st.integers(0, 50))
    def close(self, i: int) -> None:
        s = self.socks.pop(i % len(self.socks))
        self._try(s.close)

    @rule(seconds=st.sampled_from([0.5, 1.5, 30.0, 59.0, 61.0]))
    def advance(self, seconds: float) -> None:
        self.ns.advance(seconds)

    @invariant()
    def tables_consistent(self) -> None:
        STEPS[0] += 1
        self.ns.check_invariants()
        k = self.ns._kernel
        now = k.clock_seconds()
        assert all(r.expires > now for r in k.remnants), "a remnant outlived its timer"
        assert len(k.remnants) == k.tw_count

    def teardown(self) -> None:
        for s in self.socks:
            try:
                s.close()
            except portspace.OutOfScope:
                pass
        self.ns.advance(200)
        self.ns.check_invariants()
        k = self.ns._kernel
        assert not k.remnants and not k.ehash and not k.dest_ports and not k.socks, "state left after everything closed"
        assert all(tb.tb2s for tb in k.bhash.values())


Teardown.TestCase.settings = settings(max_examples=160, stateful_step_count=100, deadline=None)


def test_teardown_programs_reach_10000_steps():
    """Runs the machine and checks it really took the steps the acceptance asks for."""
    STEPS[0] = 0
    Teardown.TestCase().runTest()
    assert STEPS[0] >= 10_000, STEPS[0]
