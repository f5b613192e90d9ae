"""Random socket programs on the model alone, checked by its invariants and by properties.

A Hypothesis ``RuleBasedStateMachine`` drives one model ``portspace.Namespace`` (a random RNG
seed, the standard setup of conftest.py) through socket creation (as uid 0 or 1000, with
creation options as step scripts write them: ``tcp6 reuseport dev=d0``),
setsockopt of SO_REUSEADDR / SO_REUSEPORT / IPV6_V6ONLY / IP_FREEBIND / SO_BINDTODEVICE,
bind (fixed ports and port 0, local, non-local, wildcard and v4-mapped addresses), listen,
getsockname, close and sysctl writes, with small ephemeral ranges so that automatic ports run
out and meet the fixed ones.

After every step ``check_invariants()`` must pass, and the model must hold exactly the
sockets the program left open.  Properties:

* an automatic port (bind to port 0, listen() on an unbound TCP socket) lies in
  ``ip_local_port_range``;
* TCP picks odd offsets from the range start first ("bind(0) picks odd ports first", spec
  §5.2): when the range starts even, holds two ports or more, and no odd port of it has a bind
  bucket yet, the port is odd;
* a port, once taken, is the socket's for good (``getsockname`` keeps answering it, also
  after a failed listen or a second bind);
* close releases: once every socket is closed, no TCP bind bucket and no UDP port slot is
  left (``ns._kernel.bhash``, ``ns._kernel.udp_ports``, and ``ns.tables()`` shows none).
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
from dataclasses import dataclass
from typing import Any, Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, initialize, invariant, multiple, precondition,
                                 rule, run_state_machine_as_test)

import portspace
from portspace.diff import failures, outcome, run_script
from portspace.diff._script import OPTIONS, _opt_value

from ..conftest import STANDARD_SETUP

KINDS = {"tcp4": (socket.AF_INET, socket.SOCK_STREAM), "tcp6": (socket.AF_INET6, socket.SOCK_STREAM),
         "udp4": (socket.AF_INET, socket.SOCK_DGRAM), "udp6": (socket.AF_INET6, socket.SOCK_DGRAM)}
KIND_NAMES = sorted(KINDS)
HOSTS4 = ("0.0.0.0", "127.0.0.1", "127.0.0.2", "192.168.1.100", "10.9.9.9")
HOSTS6 = ("::", "::1", "::ffff:0.0.0.0", "::ffff:127.0.0.1", "2001:db8::1")
CROSS = {socket.AF_INET: "::1", socket.AF_INET6: "127.0.0.1"}  # the other family's host
PORTS = (5000, 0, 5001, 80, 40001)
UIDS = (0, 1000)
SETOPTS = tuple([(o, v) for o in ("reuseaddr", "reuseport", "v6only", "freebind") for v in ("1", "0")]
                + [("dev", d) for d in ("lo", "d0", "-")])
# options set at creation, as the step scripts write them ("tcp6 reuseport dev=d0")
CREATE_OPTS = st.lists(st.sampled_from(("reuseaddr", "reuseport", "v6only", "v6only=0", "dev=d0", "dev=lo",
                                        "freebind")), max_size=3, unique=True)
RANGE = "net.ipv4.ip_local_port_range"
UNPRIV = "net.ipv4.ip_unprivileged_port_start"
SYSCTLS = ((RANGE, "40000 40007"), (RANGE, "40000 40001"), (RANGE, "40000 40002"), (RANGE, "40001 40004"),
           (RANGE, "40000 40000"), (RANGE, "32768 60999"), (RANGE, "4998 5003"), (RANGE, "1000 2000"),
           (RANGE, "5000 4000"),
           (UNPRIV, "0"), (UNPRIV, "80"), (UNPRIV, "1024"), (UNPRIV, "5001"), (UNPRIV, "50000"),
           ("net.ipv4.ip_autobind_reuse", "1"), ("net.ipv4.ip_autobind_reuse", "0"),
           ("net.ipv4.ip_nonlocal_bind", "1"), ("net.ipv4.ip_nonlocal_bind", "0"),
           ("net.ipv6.ip_nonlocal_bind", "1"), ("net.ipv6.ip_nonlocal_bind", "0"))
START_RANGES = ("40000 40007", "40000 40001", "40000 40002", "40001 40004", "4998 5003", "32768 60999")
MAX_SOCKETS = 10


def _examples() -> int:
    """At least 500 programs under the "ci" profile (the default); "dev" and "long" keep their
    own counts."""
    profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    n = settings.default.max_examples
    return max(n, 500) if profile == "ci" else n


SETTINGS = settings(settings.default, max_examples=_examples(), stateful_step_count=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _as(ns: Any, uid: int) -> Any:
    return ns.user(uid) if uid else contextlib.nullcontext()


@dataclass
class Sock:
    name: str
    kind: str
    sock: Any
    port: int | None = None  # the port it holds, once it has one
    closed: bool = False

    @property
    def family(self) -> int:
        return KINDS[self.kind][0]

    @property
    def tcp(self) -> bool:
        return self.kind.startswith("tcp")


class ModelMachine(RuleBasedStateMachine):
    socks = Bundle("socks")

    def __init__(self) -> None:
        super().__init__()
        self.ns = self.fresh(0)
        self.all: list[Sock] = []
        self.proto = "tcp"
        self.log: list[str] = []

    @staticmethod
    def fresh(seed: int) -> portspace.Namespace:
        ns = portspace.Namespace(seed=seed)
        bad = failures(run_script(ns, STANDARD_SETUP))
        assert not bad, bad
        return ns

    def run(self, line: str, uid: int, fn: Callable[[], Any], show_uid: bool = True
            ) -> tuple[str, BaseException | None]:
        """``fn()`` as ``uid``, normalised by ``outcome``, logged as a step-script line."""
        def call() -> Any:
            with _as(self.ns, uid):
                return fn()
        text, err = outcome(call)
        self.log.append(f"{line}{f' as={uid}' if uid and show_uid else ''} -> {text}")
        return text, err

    def fail(self, what: str) -> None:
        raise AssertionError(what + "\nthe program (after the standard setup):\n    " + "\n    ".join(self.log))

    def range(self) -> tuple[int, int]:
        lo, hi = self.ns.sysctl(RANGE).split()
        return int(lo), int(hi)

    def open_socks(self) -> list[Sock]:
        return [s for s in self.all if not s.closed]

    # -- creation ------------------------------------------------------------------------
    def new(self, kind: str, uid: int, opts: list[str]) -> Sock:
        """``NAME = KIND OPTS uid=UID``: the socket, then each creation option set by its owner
        (an option may be refused, e.g. a second SO_BINDTODEVICE by uid 1000; the socket stays)."""
        name = f"s{len(self.all)}"
        made: list[Any] = []

        def create() -> None:
            made.append(self.ns.socket(*KINDS[kind]))
            for opt in opts:
                key, _eq, text = opt.partition("=")
                level, optname = OPTIONS[key]
                made[0].setsockopt(level, optname, _opt_value(key, text or "1"))

        text, _ = self.run(" ".join([f"{name} = {kind}", *opts] + ([f"uid={uid}"] if uid else [])), uid, create,
                           show_uid=False)
        if not made:
            self.fail(f"creating a {kind} socket failed: {text}")
        s = Sock(name, kind, made[0])
        self.all.append(s)
        return s

    @initialize(target=socks, seed=st.integers(0, 2**32 - 1), port_range=st.sampled_from(START_RANGES),
                proto=st.sampled_from(("tcp", "udp")),
                first=st.lists(st.tuples(st.sampled_from("46"), CREATE_OPTS), min_size=1, max_size=3),
                uid=st.sampled_from(UIDS))
    def start(self, seed: int, port_range: str, proto: str, first: list[tuple[str, list[str]]], uid: int) -> Any:
        """A seeded namespace with a (mostly small) ephemeral range; one to three sockets of
        the program's main protocol."""
        self.ns = self.fresh(seed)
        self.sysctl((RANGE, port_range), 0)
        self.proto = proto
        return multiple(*[self.new(proto + f, uid, o) for f, o in first])

    @precondition(lambda self: len(self.open_socks()) < MAX_SOCKETS)
    @rule(target=socks, kind=st.sampled_from(KIND_NAMES), opts=CREATE_OPTS, uid=st.sampled_from(UIDS))
    def new_socket(self, kind: str, opts: list[str], uid: int) -> Any:
        return self.new(kind, uid, opts)

    @precondition(lambda self: len(self.open_socks()) < MAX_SOCKETS)
    @rule(target=socks, family=st.sampled_from("46"), opts=CREATE_OPTS, uid=st.sampled_from(UIDS))
    def new_peer(self, family: str, opts: list[str], uid: int) -> Any:
        """A socket of the program's main protocol: more weight on same-protocol conflicts."""
        return self.new(self.proto + family, uid, opts)

    # -- options -------------------------------------------------------------------------
    @rule(s=socks, opt=st.sampled_from(SETOPTS), uid=st.sampled_from(UIDS))
    def setsockopt(self, s: Sock, opt: tuple[str, str], uid: int) -> None:
        name, text = opt
        level, optname = OPTIONS[name]
        value = _opt_value(name, text)
        self.run(f"{s.name} set {name} {text}", uid, lambda: s.sock.setsockopt(level, optname, value))

    @rule(s=socks, opt=st.sampled_from(SETOPTS[:4]))
    def set_reuse(self, s: Sock, opt: tuple[str, str]) -> None:
        self.setsockopt(s, opt, 0)

    # -- ports ---------------------------------------------------------------------------
    def odd_first_applies(self, lo: int, hi: int) -> bool:
        """TCP's search would meet a free odd port first: the range starts even, holds two
        ports or more, and no odd port of it has a bind bucket."""
        bhash = self.ns._kernel.bhash
        return lo % 2 == 0 and hi > lo and not any(p in bhash for p in range(lo + 1, hi + 1, 2))

    def after_auto(self, s: Sock, what: str, lo: int, hi: int, odd_first: bool) -> None:
        port = s.sock.getsockname()[1]
        if not lo <= port <= hi:
            self.fail(f"{s.name}: {what} chose port {port}, outside ip_local_port_range {lo}-{hi}")
        if s.tcp and odd_first and port % 2 == 0:
            self.fail(f"{s.name}: TCP {what} chose the even port {port} although the range {lo}-{hi} "
                      "starts even and none of its odd ports has a bind bucket (odd ports first)")
        s.port = port

    @rule(s=socks, host=st.integers(0, 5), port=st.sampled_from(PORTS), uid=st.sampled_from(UIDS))
    def bind(self, s: Sock, host: int, port: int, uid: int) -> None:
        hosts = HOSTS4 if s.family == socket.AF_INET else HOSTS6
        addr = hosts[host] if host < len(hosts) else CROSS[s.family]
        sockaddr = (addr, port) if s.family == socket.AF_INET else (addr, port, 0, 0)
        lo, hi = self.range()
        odd_first = self.odd_first_applies(lo, hi)
        had = s.port
        text, _ = self.run(f"{s.name} bind {addr} {port}", uid, lambda: s.sock.bind(sockaddr))
        if text != "OK":
            self.check_port_kept(s)
            return
        if had is not None:
            self.fail(f"{s.name}: a second bind() succeeded although the socket had port {had}")
        if port == 0:
            self.after_auto(s, "bind(port 0)", lo, hi, odd_first)
        else:
            s.port = port
            self.check_port_kept(s)

    def unbound(self) -> list[Sock]:
        return [s for s in self.open_socks() if s.port is None]

    @precondition(lambda self: self.unbound())
    @rule(which=st.integers(0, MAX_SOCKETS - 1), host=st.integers(0, 4), port=st.sampled_from((5000, 0, 5001)))
    def bind_unbound(self, which: int, host: int, port: int) -> None:
        choices = self.unbound()
        self.bind(choices[which % len(choices)], host, port, 0)

    @rule(s=socks, uid=st.sampled_from(UIDS))
    def listen(self, s: Sock, uid: int) -> None:
        autobind = s.tcp and s.port is None and not s.closed
        lo, hi = self.range()
        odd_first = self.odd_first_applies(lo, hi)
        text, _ = self.run(f"{s.name} listen", uid, lambda: s.sock.listen())
        if autobind and text == "OK":
            self.after_auto(s, "listen()", lo, hi, odd_first)
        else:
            self.check_port_kept(s)

    def check_port_kept(self, s: Sock) -> None:
        if s.closed:
            return
        port = s.sock.getsockname()[1]
        if port != (s.port or 0):
            self.fail(f"{s.name}: getsockname() port {port}, but the socket's port is {s.port or 0}")

    @rule(s=socks, uid=st.sampled_from(UIDS))
    def getsockname(self, s: Sock, uid: int) -> None:
        text, _ = self.run(f"{s.name} getsockname", uid, lambda: s.sock.getsockname())
        if s.closed != (text == "EBADF"):
            self.fail(f"{s.name}: getsockname() -> {text} on a {'closed' if s.closed else 'open'} socket")
        self.check_port_kept(s)

    @rule(s=socks, uid=st.sampled_from(UIDS))
    def close(self, s: Sock, uid: int) -> None:
        text, _ = self.run(f"{s.name} close", uid, lambda: s.sock.close())
        if text != "OK":
            self.fail(f"{s.name}: close() -> {text}")
        s.closed = True

    @precondition(lambda self: self.open_socks())
    @rule()
    def close_everything(self) -> None:
        """Close releases: with every socket closed, no bucket and no UDP slot is left."""
        for s in self.open_socks():
            self.close(s, 0)
        self.check_released()

    def check_released(self) -> None:
        k = self.ns._kernel
        if k.bhash or k.udp_ports or self.ns.socket_count():
            self.fail(f"every socket is closed, but the model keeps TCP buckets {sorted(k.bhash)}, "
                      f"UDP slots {sorted(k.udp_ports)} and {self.ns.socket_count()} sockets:\n"
                      f"{self.ns.tables()}")
        tables = self.ns.tables()
        assert not tables.tcp_bhash and not tables.udp_ports and not tables.tcp_listeners, str(tables)

    @rule(setting=st.sampled_from(SYSCTLS), uid=st.sampled_from((0, 0, 1000)))
    def sysctl(self, setting: tuple[str, str], uid: int) -> None:
        name, value = setting
        before = self.ns.sysctl(name)
        shown = f'"{value}"' if " " in value else value
        text, _ = self.run(f"ns sysctl {name} {shown}", uid, lambda: self.ns.sysctl(name, value))
        after = self.ns.sysctl(name)
        if text == "OK" and after.split() != value.split():
            self.fail(f"sysctl {name} {value!r} succeeded but reads {after!r}")
        if text != "OK" and after != before:
            self.fail(f"sysctl {name} {value!r} failed ({text}) but changed {before!r} to {after!r}")

    # -- after every step ----------------------------------------------------------------
    @invariant()
    def invariants(self) -> None:
        self.ns.check_invariants()
        n = len(self.open_socks())
        if self.ns.socket_count() != n:
            self.fail(f"the program holds {n} open sockets, the model {self.ns.socket_count()}")

    def teardown(self) -> None:
        if sys.exc_info()[1] is not None:
            return  # a step failed: its report is the one to show
        for s in self.open_socks():
            s.sock.close()
            s.closed = True
        self.ns.check_invariants()
        self.check_released()


def test_model_stateful() -> None:
    run_state_machine_as_test(ModelMachine, settings=SETTINGS)
