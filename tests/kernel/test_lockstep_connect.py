"""Random connection programs, stepped on the model and on the live kernel in lockstep.

The bind/listen lockstep (test_lockstep.py) never connects.  This machine does: TCP sockets
(IPv4, and IPv6 reaching IPv4 listeners through v4-mapped addresses) are created with
SO_REUSEADDR / SO_REUSEPORT / SO_LINGER {1, 0}, bound to fixed ports, listen with small
backlogs, connect (to listeners, to nothing, to themselves), accept, shut down, close, and are
asked getsockname / getpeername / SO_ERROR -- the same program on both sides, every outcome
compared.  Programs run well under a second of real time and ``tcp_tw_reuse`` is 0, so no
outcome depends on how much time passes on the kernel while the model's clock stands still.

Ports the kernel chooses by itself (connect() autobind) come from its secret hash, so they are
compared by properties: in the range, and even while the even half has room (spec §5.3).

Every socket has a 0.3 s timeout, so a connect() whose SYN the kernel drops (a full accept
queue) ends in ``TimeoutError`` on both sides instead of hanging; accept() is called
non-blocking (EAGAIN when nothing is queued).
"""
from __future__ import annotations

import os
import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, precondition, rule, run_state_machine_as_test

from portspace.diff import outcome
from portspace.live import probe

from ..conftest import make_ns
from .test_lockstep import Lockstep, Pair, Program, Step, kernel_ns

pytestmark = pytest.mark.kernel

PORTS = (5000, 5001, 5002)  # 5002 mostly has nobody listening
HOSTS = {"tcp4": ("127.0.0.1", "127.0.0.2", "0.0.0.0"),
         "tcp6": ("::ffff:127.0.0.1", "::ffff:127.0.0.2", "::", "::1")}
TARGETS = {"tcp4": ("127.0.0.1", "127.0.0.2", "0.0.0.0"),
           "tcp6": ("::ffff:127.0.0.1", "::ffff:127.0.0.2", "::1")}
CREATE_OPTS = st.lists(st.sampled_from(("reuseaddr", "reuseport", "linger")), max_size=2, unique=True)
LINGER = (socket.SOL_SOCKET, socket.SO_LINGER, (1).to_bytes(4, "little") + (0).to_bytes(4, "little"))
MAX_SOCKETS = 8
# 60 programs in the CI profile (about 40 s with the kernel); HYPOTHESIS_PROFILE=long runs thousands
SETTINGS = settings(settings.default, max_examples=60 if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci" else settings.default.max_examples, stateful_step_count=30,
                    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


class PairMachine(RuleBasedStateMachine):
    """What the connect and UDP lockstep machines share: a model and a kernel namespace with the
    standard setup, sockets in pairs (one per side), each step run on both and compared, and
    the rules every socket takes (close, SO_ERROR)."""

    socks = Bundle("socks")

    def __init__(self) -> None:
        super().__init__()
        self.kernel = kernel_ns()
        self.model = make_ns("model")
        self.pairs: list[Pair] = []
        self.program = Program()

    def teardown(self) -> None:
        self.kernel.close()

    def both(self, line: str, fn: Any, pair: Pair | None = None, exact: bool = True) -> tuple[str, str]:
        results = [outcome(lambda side=side, ns=ns: fn(ns, pair, side))
                   for side, ns in (("model", self.model), ("kernel", self.kernel))]
        (mo, me), (ko, _) = results
        self.program.steps.append(Step(line, mo, ko if exact else None, me))
        # the model refuses to guess (a corner it does not model, such as a socket connected to
        # itself being torn down): the program is not comparable from here on
        assume(not mo.startswith("OutOfScope"))
        if exact:
            self.expect(mo == ko, line, mo, ko, me)
        return mo, ko

    expect = Lockstep.expect  # the same (-model, +kernel) report with the whole program
    consistent = Lockstep.consistent  # invariant: model invariants, same open-socket count

    def live(self) -> list[Pair]:
        return [p for p in self.pairs if not p.closed]

    @rule(pair=socks)
    def close(self, pair: Pair) -> None:
        self.both(f"{pair.name} close", lambda ns, p, side: getattr(p, side).close(), pair)
        pair.closed = True

    @rule(pair=socks)
    def error(self, pair: Pair) -> None:
        self.both(f"{pair.name} error",
                  lambda ns, p, side: getattr(p, side).getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), pair)


def run_pair_machine(machine: type[RuleBasedStateMachine]) -> None:
    reason = probe()
    if reason is not None:
        pytest.skip(f"live kernel namespace unavailable: {reason}")
    run_state_machine_as_test(machine, settings=SETTINGS)


class ConnectLockstep(PairMachine):
    socks = PairMachine.socks

    def __init__(self) -> None:
        super().__init__()
        for ns in (self.model, self.kernel):
            ns.sysctl("net.ipv4.tcp_tw_reuse", "0")
        self.program.steps.append(Step("ns sysctl net.ipv4.tcp_tw_reuse 0", "OK", "OK"))

    # -- sockets -------------------------------------------------------------------------------
    def new_pair(self, kind: str, opts: list[str]) -> Pair | None:
        name = f"s{len(self.pairs)}"
        made: dict[str, Any] = {}

        def create(ns: Any, _: Any, side: str) -> None:
            s = made[side] = ns.socket(socket.AF_INET if kind == "tcp4" else socket.AF_INET6, socket.SOCK_STREAM)
            s.settimeout(0.3)
            for opt in opts:
                if opt == "linger":
                    s.setsockopt(*LINGER)
                else:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR if opt == "reuseaddr" else socket.SO_REUSEPORT, 1)

        words = [f"{name} = {kind}", *("linger=1,0" if o == "linger" else o for o in opts), "timeout=0.3"]
        self.both(" ".join(words), create)
        if len(made) != 2:
            return None
        pair = Pair(name, kind, made["model"], made["kernel"])
        self.pairs.append(pair)
        return pair

    @initialize(target=socks, kind=st.sampled_from(("tcp4", "tcp4", "tcp6")), opts=CREATE_OPTS,
                port=st.sampled_from(PORTS[:2]), backlog=st.integers(0, 2))
    def a_listener(self, kind: str, opts: list[str], port: int, backlog: int) -> Any:
        """Every program starts with a listener on 0.0.0.0 (or ::) and a fixed port."""
        pair = self.new_pair(kind, opts)
        assert pair is not None
        self.bind(pair, 2, port)
        self.listen(pair, backlog)
        return pair

    @precondition(lambda self: len(self.pairs) < MAX_SOCKETS)
    @rule(target=socks, kind=st.sampled_from(("tcp4", "tcp4", "tcp6")), opts=CREATE_OPTS)
    def new_socket(self, kind: str, opts: list[str]) -> Any:
        from hypothesis.stateful import multiple
        pair = self.new_pair(kind, opts)
        return multiple() if pair is None else pair

    # -- calls ---------------------------------------------------------------------------------
    @rule(pair=socks, host=st.integers(0, 3), port=st.sampled_from(PORTS))
    def bind(self, pair: Pair, host: int, port: int) -> None:
        hosts = HOSTS[pair.kind]
        addr = hosts[host % len(hosts)]
        mo, ko = self.both(f"{pair.name} bind {addr} {port}", lambda ns, p, side: getattr(p, side).bind((addr, port)),
                           pair)
        if mo == ko == "OK":
            pair.bound = True

    @rule(pair=socks, backlog=st.integers(0, 2))
    def listen(self, pair: Pair, backlog: int) -> None:
        autobind = not pair.bound
        mo, ko = self.both(f"{pair.name} listen {backlog}", lambda ns, p, side: getattr(p, side).listen(backlog), pair)
        if mo == ko == "OK" and autobind:
            pair.bound = True
            self.check_auto(pair, "listen()", odd=True)

    @rule(pair=socks, host=st.integers(0, 2), port=st.sampled_from(PORTS))
    def connect(self, pair: Pair, host: int, port: int) -> None:
        targets = TARGETS[pair.kind]
        addr = targets[host % len(targets)]
        autobind = not pair.bound
        mo, ko = self.both(f"{pair.name} connect {addr} {port}",
                           lambda ns, p, side: getattr(p, side).connect((addr, port)), pair)
        if autobind and mo == ko and mo in ("OK", "ECONNREFUSED", "TimeoutError: timed out"):
            self.check_auto(pair, "connect()", odd=False)

    @precondition(lambda self: self.live())
    @rule(which=st.integers(0, MAX_SOCKETS - 1), self_port=st.booleans())
    def connect_to_self_or_listener(self, which: int, self_port: bool) -> None:
        """connect() to a port that exists in the program: its own (self-connect) or that of
        another socket, which makes refusals and connections likelier than random ports."""
        live = self.live()
        pair = live[which % len(live)]
        target = pair if self_port else live[(which + 1) % len(live)]
        if not self_port and target is pair:
            return
        got: dict[str, Any] = {}

        def name(ns: Any, p: Pair, side: str) -> Any:
            got[side] = getattr(target, side).getsockname()
            return got[side]

        mo, ko = self.both(f"{target.name} getsockname  # connect target", name, target, exact=False)
        if not (mo.startswith("(") and ko.startswith("(")):
            return
        if got["model"][1] == 0 or got["kernel"][1] == 0:
            return
        if target.auto is None:
            self.expect(got["model"] == got["kernel"], f"{target.name} getsockname", mo, ko)
        autobind = not pair.bound

        def call(ns: Any, p: Pair, side: str) -> None:
            host, port = got[side][0], got[side][1]
            if host in ("0.0.0.0", "::"):
                host = "127.0.0.1" if p.kind == "tcp4" else "::1"
            if p.kind == "tcp6" and ":" not in host:
                host = "::ffff:" + host
            if p.kind == "tcp4" and host.startswith("::ffff:"):
                host = host[7:]
            return getattr(p, side).connect((host, port))

        mo, ko = self.both(f"{pair.name} connect {target.name}'s address", call, pair)
        if autobind and mo == ko and mo in ("OK", "ECONNREFUSED", "TimeoutError: timed out"):
            self.check_auto(pair, "connect()", odd=False)

    @rule(target=socks, pair=socks)
    def accept(self, pair: Pair) -> Any:
        from hypothesis.stateful import multiple
        made: dict[str, Any] = {}

        def call(ns: Any, p: Pair, side: str) -> Any:
            s = getattr(p, side)
            s.setblocking(False)
            try:
                child, peer = s.accept()
            finally:
                try:
                    s.settimeout(0.3)
                except OSError:  # closed: settimeout answers EBADF, on both sides
                    pass
            child.settimeout(0.3)
            made[side] = child
            return None

        name = f"s{len(self.pairs)}"
        mo, ko = self.both(f"{name} = {pair.name} accept", call, pair)
        if len(made) != 2:
            for child in made.values():
                child.close()
            return multiple()
        child = Pair(name, pair.kind, made["model"], made["kernel"], bound=True)
        child.auto = pair.auto   # an accepted socket has its listener's port, automatic or not
        self.pairs.append(child)
        self.peer(child)
        return child

    @rule(pair=socks, how=st.sampled_from((socket.SHUT_RD, socket.SHUT_WR, socket.SHUT_RDWR)))
    def shutdown(self, pair: Pair, how: int) -> None:
        self.both(f"{pair.name} shutdown {('rd', 'wr', 'rdwr')[how]}",
                  lambda ns, p, side: getattr(p, side).shutdown(how), pair)

    @rule(pair=socks)
    def peer(self, pair: Pair) -> None:
        got: dict[str, Any] = {}

        def call(ns: Any, p: Pair, side: str) -> Any:
            got[side] = getattr(p, side).getpeername()
            return got[side]

        mo, ko = self.both(f"{pair.name} peer", call, pair, exact=False)
        if mo.startswith("(") and ko.startswith("("):
            m, k = got["model"], got["kernel"]
            # the peer's port may be an automatic one, chosen differently on each side
            self.expect(m[0] == k[0] and m[2:] == k[2:], f"{pair.name} peer", mo, ko, note="peer addresses differ")
            self.expect((m[1] in PORTS) == (k[1] in PORTS) and (m[1] not in PORTS or m[1] == k[1]),
                        f"{pair.name} peer", mo, ko, note="peer ports differ")
        else:
            self.expect(mo == ko, f"{pair.name} peer", mo, ko)

    @rule(pair=socks)
    def name(self, pair: Pair) -> None:
        got: dict[str, Any] = {}

        def call(ns: Any, p: Pair, side: str) -> Any:
            got[side] = getattr(p, side).getsockname()
            return got[side]

        mo, ko = self.both(f"{pair.name} name", call, pair, exact=pair.auto is None)
        if pair.auto is not None and mo.startswith("(") and ko.startswith("("):
            m, k = got["model"], got["kernel"]
            self.expect(m[0] == k[0] and m[2:] == k[2:], f"{pair.name} name", mo, ko, note="addresses differ")
            self.expect((m[1], k[1]) == pair.auto or (m[1] == 0) == (k[1] == 0), f"{pair.name} name", mo, ko,
                        note=f"the automatic ports were {pair.auto}")
        elif pair.auto is not None:
            self.expect(mo == ko, f"{pair.name} name", mo, ko)

    def check_auto(self, pair: Pair, what: str, odd: bool) -> None:
        """An automatic port on both sides: in the default range, TCP bind/listen odd offsets
        first, connect() even ports first (this program never fills a half)."""
        m, k = pair.model.getsockname(), pair.kernel.getsockname()
        line = f"{pair.name} getsockname  # port chosen by {what}"
        self.program.steps.append(Step(line, repr(m), None))
        for side, nm in (("model", m), ("kernel", k)):
            port = nm[1]
            if port == 0:  # a refused connect() released its port (getsockname still shows it on Linux)
                continue
            parity = (port - 32768) % 2 == 1 if odd else port % 2 == 0
            self.expect(32768 <= port <= 60999 and parity, line, repr(m), repr(k),
                        note=f"{side}'s port {port} is not a {what} automatic port")
        self.expect(m[0] == k[0] and m[2:] == k[2:], line, repr(m), repr(k), note="addresses differ")
        pair.auto = (m[1], k[1])
        pair.bound = True



def test_connect_lockstep_model_vs_kernel() -> None:
    run_pair_machine(ConnectLockstep)
