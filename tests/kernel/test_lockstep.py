"""Random socket programs, stepped on the model and on the live kernel in lockstep.

A Hypothesis ``RuleBasedStateMachine`` drives one model ``portspace.Namespace`` and one
``KernelNamespace``, both with the standard setup of conftest.py (127.0.0.2/8 and
192.168.1.100/32 on lo, device d0), through the same random program: socket creation (as uid
0 or 1000, with creation options written as in step scripts: ``tcp6 reuseport dev=d0``),
setsockopt of SO_REUSEADDR / SO_REUSEPORT / IPV6_V6ONLY / IP_FREEBIND / SO_BINDTODEVICE
(before and after bind), bind to a small set of local, non-local, wildcard and v4-mapped
addresses on a few fixed ports (80 for EACCES) and port 0, listen, getsockname, close, and a
few sysctl writes (``ip_unprivileged_port_start``, ``ip_local_port_range``,
``ip_nonlocal_bind``), each call made as uid 0 or 1000.

Every step runs on both sides through :func:`portspace.diff.outcome` and the two outcomes must
be equal.  A divergence is reported as (-model, +kernel) with the model's ``reasons`` and the
whole program so far in the step-script vocabulary of ``portspace.diff._script`` (the
kernel's outcome after ``->``), ready for ``run_script`` on both sides.

Automatic ports (bind to port 0, listen() on an unbound TCP socket) depend on each side's RNG,
so they are compared by properties only: both succeed or both fail with the same errno, and
each side's port lies in ``ip_local_port_range`` with the parity of TCP's odd-offsets-first
search.  The ranges offered here hold >= 1000 ports and never contain a fixed port, so a
random choice can neither exhaust a range nor meet a fixed-port bind, and the rest of the
program stays comparable exactly.  Later ``getsockname`` calls on such a socket compare the
address exactly and the port against the one each side chose.

After every step the model's invariants must hold and both sides must hold the same number of
open sockets.  Each example uses a fresh pair of namespaces.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import struct
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, initialize, invariant, multiple, precondition,
                                 rule, run_state_machine_as_test)

from portspace.diff import outcome
from portspace.diff._script import OPTIONS, _opt_value, parse
from portspace.live import KernelNamespace, probe

from ..conftest import STANDARD_SETUP, make_ns

pytestmark = pytest.mark.kernel

KINDS = {"tcp4": (socket.AF_INET, socket.SOCK_STREAM), "tcp6": (socket.AF_INET6, socket.SOCK_STREAM),
         "udp4": (socket.AF_INET, socket.SOCK_DGRAM), "udp6": (socket.AF_INET6, socket.SOCK_DGRAM)}
HOSTS4 = ("0.0.0.0", "127.0.0.1", "127.0.0.2", "192.168.1.100", "10.9.9.9")
HOSTS6 = ("::", "::1", "::ffff:0.0.0.0", "::ffff:127.0.0.1", "2001:db8::1")
# index 5 picks a host of the other family (the stdlib's getaddrinfo refusal, gaierror)
CROSS = {socket.AF_INET: "::1", socket.AF_INET6: "127.0.0.1"}
PORTS = (5000, 5001, 80, 0)
UIDS = (0, 1000)
KIND_NAMES = sorted(KINDS)
# (script option name, value text): the values _script._opt_value understands ("-" is b"")
SETOPTS = tuple([(o, v) for o in ("reuseaddr", "reuseport", "v6only", "freebind") for v in ("1", "0")]
                + [("dev", d) for d in ("lo", "d0", "-")])
# options set at creation, as the step scripts write them ("tcp6 reuseport dev=d0")
CREATE_OPTS = st.lists(st.sampled_from(("reuseaddr", "reuseport", "v6only", "v6only=0", "dev=d0", "dev=lo",
                                        "freebind")), max_size=3, unique=True)
RANGE = "net.ipv4.ip_local_port_range"
UNPRIV = "net.ipv4.ip_unprivileged_port_start"
# Every valid range holds >= 1000 ports and none of PORTS (see the module header).
SYSCTLS = ((RANGE, "32768 60999"), (RANGE, "40000 40999"), (RANGE, "40001 41000"), (RANGE, "1000 2000"),
           (RANGE, "5000 4000"),
           (UNPRIV, "0"), (UNPRIV, "80"), (UNPRIV, "81"), (UNPRIV, "1024"), (UNPRIV, "5001"),
           (UNPRIV, "50000"),
           ("net.ipv4.ip_nonlocal_bind", "1"), ("net.ipv4.ip_nonlocal_bind", "0"),
           ("net.ipv6.ip_nonlocal_bind", "1"), ("net.ipv6.ip_nonlocal_bind", "0"))
MAX_SOCKETS = 7


def _examples() -> int:
    """At least 500 programs under the "ci" profile (the default); "dev" and "long" keep their
    own counts."""
    profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    n = settings.default.max_examples
    return max(n, 500) if profile == "ci" else n


SETTINGS = settings(settings.default, max_examples=_examples(), stateful_step_count=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _as(ns: Any, uid: int) -> Any:
    return ns.user(uid) if uid else contextlib.nullcontext()


def _as_text(uid: int) -> str:
    return f" as={uid}" if uid else ""


# -- the kernel side's standard setup ----------------------------------------------------------
def _standard_setup_in_child() -> None:
    """conftest's STANDARD_SETUP, run inside the namespace child (``KernelNamespace.run``) as
    the four rtnetlink requests ``ip`` would send: ``ip addr add 127.0.0.2/8 dev lo`` (scope
    host, as ``ip`` gives 127/8), ``ip addr add 192.168.1.100/32 dev lo``, ``ip link add d0 type
    bridge``, ``ip link set d0 up``.  Starting ``ip`` four times is most of a standard kernel
    namespace's cost (~27 ms against ~10 ms), and every example and every shrink step makes
    one; ``test_fast_setup_equals_standard_setup`` checks that both give the same addresses,
    routes and devices."""
    rtm_newlink, rtm_newaddr, nlmsg_error = 16, 20, 2
    request_ack, excl_create = 0x1 | 0x4, 0x200 | 0x400
    ifa_address, ifa_local, ifla_ifname, ifla_linkinfo, ifla_info_kind = 1, 2, 3, 18, 1
    rt_scope_host, iff_up = 254, 0x1

    def attr(kind: int, payload: bytes) -> bytes:
        n = 4 + len(payload)
        return struct.pack("=HH", n, kind) + payload + b"\0" * (-n % 4)

    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as nl:  # NETLINK_ROUTE
        nl.bind((0, 0))

        def request(seq: int, msg_type: int, flags: int, body: bytes) -> None:
            nl.send(struct.pack("=IHHII", 16 + len(body), msg_type, flags | request_ack, seq, 0) + body)
            reply = nl.recv(65536)
            _, kind, _, rseq, _ = struct.unpack_from("=IHHII", reply)
            (err,) = struct.unpack_from("=i", reply, 16)
            if kind != nlmsg_error or rseq != seq or err:
                raise OSError(-err, f"rtnetlink request {seq} of the standard setup failed")

        lo = socket.if_nametoindex("lo")
        for seq, (addr, plen, scope) in enumerate((("127.0.0.2", 8, rt_scope_host), ("192.168.1.100", 32, 0)), 1):
            a = socket.inet_aton(addr)
            request(seq, rtm_newaddr, excl_create, struct.pack("=BBBBi", socket.AF_INET, plen, 0, scope, lo)
                    + attr(ifa_local, a) + attr(ifa_address, a))
        request(3, rtm_newlink, excl_create, struct.pack("=BxHiII", 0, 0, 0, 0, 0)
                + attr(ifla_ifname, b"d0\0") + attr(ifla_linkinfo, attr(ifla_info_kind, b"bridge")))
        request(4, rtm_newlink, 0, struct.pack("=BxHiII", 0, 0, socket.if_nametoindex("d0"), iff_up, iff_up))


def kernel_ns() -> KernelNamespace:
    """A fresh KernelNamespace with the standard setup (see ``_standard_setup_in_child``)."""
    ns = KernelNamespace()
    try:
        ns.run(_standard_setup_in_child)
    except BaseException:
        ns.close()
        raise
    return ns


def _interfaces_in_child() -> list[str]:
    """What ``ip`` shows of addresses, devices and routes, without what is random per namespace
    or timing (MAC addresses, the EUI-64 link-local addresses made from them, DAD's tentative)."""
    exe = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin") or "ip"
    out = []
    for args in (["-o", "addr", "show"], ["-o", "link", "show"], ["route", "show", "table", "all"],
                 ["-6", "route", "show", "table", "all"]):
        text = subprocess.run([exe, *args], capture_output=True, text=True, check=True).stdout
        text = re.sub(r"fe80::[0-9a-f:]+", "fe80::EUI64", text).replace(" tentative", "")  # DAD is timing
        out.append(re.sub(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", "MAC", text))
    out.append("bridge" if "bridge" in subprocess.run([exe, "-d", "link", "show", "d0"], capture_output=True,
                                                     text=True).stdout else "d0 is not a bridge")
    return out


@dataclass
class Pair:
    """One socket, on both sides."""

    name: str
    kind: str
    model: Any
    kernel: Any
    bound: bool = False
    closed: bool = False
    # set once the port was chosen automatically: (model port, kernel port)
    auto: tuple[int, int] | None = None

    @property
    def family(self) -> int:
        return KINDS[self.kind][0]

    @property
    def tcp(self) -> bool:
        return self.kind.startswith("tcp")


@dataclass
class Step:
    """One step of the program; ``kernel`` is None for a step compared by properties only."""

    line: str
    model: str
    kernel: str | None
    error: BaseException | None = None


@dataclass
class Program:
    steps: list[Step] = field(default_factory=list)

    def text(self) -> str:
        lines = [ln.strip() for ln in STANDARD_SETUP.strip().splitlines()]
        for s in self.steps:
            lines.append(s.line if s.kernel is None else f"{s.line} -> {s.kernel}")
        return "\n".join("    " + ln for ln in lines)


class Lockstep(RuleBasedStateMachine):
    """The model and the kernel, one step each, outcomes compared."""

    socks = Bundle("socks")

    def __init__(self) -> None:
        super().__init__()
        self.kernel = kernel_ns()
        self.model = make_ns("model")
        self.pairs: list[Pair] = []
        self.program = Program()
        self.range = (32768, 60999)
        self.proto = "tcp"

    def teardown(self) -> None:
        self.kernel.close()

    # -- running one step on both sides ------------------------------------------------------
    def both(self, line: str, uid: int, fn: Callable[[Any, Pair | None, str], Any],
             pair: Pair | None = None, exact: bool = True, show_uid: bool = True) -> tuple[str, str]:
        """Run ``fn(ns, pair, side)`` on the model, then on the kernel, as ``uid``; record the
        step (with `` as=UID`` unless ``show_uid`` is false) and, when ``exact``, assert that
        the outcomes are equal."""
        results = []
        for side, ns in (("model", self.model), ("kernel", self.kernel)):
            def call(ns: Any = ns, side: str = side) -> Any:
                with _as(ns, uid):
                    return fn(ns, pair, side)
            results.append(outcome(call))
        (mo, me), (ko, _) = results
        if show_uid:
            line += _as_text(uid)
        self.program.steps.append(Step(line, mo, ko if exact else None, me))
        if exact:
            self.expect(mo == ko, line, mo, ko, me)
        return mo, ko

    def expect(self, ok: bool, line: str, mo: str, ko: str, me: BaseException | None = None,
               note: str = "") -> None:
        if ok:
            return
        msg = [f"model and kernel disagree at: {line}" + (f" ({note})" if note else ""),
               f"    - model:  {mo}", f"    + kernel: {ko}"]
        reasons = getattr(me, "reasons", None) if me is not None else None
        if reasons:
            msg.append("      model's reasons: " + str(reasons).replace("\n", "\n      "))
        msg.append("the program (standard setup first; outcomes after '->' are the kernel's):")
        msg.append(self.program.text())
        raise AssertionError("\n".join(msg))

    # -- automatic ports -----------------------------------------------------------------------
    def check_auto_port(self, pair: Pair, what: str) -> None:
        """After an automatic port choice that succeeded on both sides: same address, and each
        side's port in the range with TCP's parity (odd offsets from the range start first)."""
        m = pair.model.getsockname()
        k = pair.kernel.getsockname()
        lo, hi = self.range
        line = f"{pair.name} getsockname  # port chosen by {what}"
        self.program.steps.append(Step(line, repr(m), None))
        for side, name in (("model", m), ("kernel", k)):
            port = name[1]
            good = lo <= port <= hi and (not pair.tcp or (port - lo) % 2 == 1)
            self.expect(good, line, repr(m), repr(k),
                        note=f"{side}'s port {port} is not a {'TCP ' if pair.tcp else ''}automatic port "
                             f"of the range {lo}-{hi}" + (" (odd offset from the start)" if pair.tcp else ""))
        self.expect(m[:1] + m[2:] == k[:1] + k[2:], line, repr(m), repr(k), note="addresses differ")
        pair.auto = (m[1], k[1])

    # -- rules -----------------------------------------------------------------------------
    def new_pair(self, kind: str, uid: int, opts: list[str]) -> Pair | None:
        """``NAME = KIND OPTS uid=UID`` as a step script creates it: the socket, then each
        creation option set as its owner.  The pair is kept when both sides made the socket,
        whatever the options' outcome."""
        name = f"s{len(self.pairs)}"
        made: dict[str, Any] = {}

        def create(ns: Any, _: Any, side: str) -> None:
            s = made[side] = ns.socket(*KINDS[kind])
            for opt in opts:
                key, _eq, text = opt.partition("=")
                level, optname = OPTIONS[key]
                s.setsockopt(level, optname, _opt_value(key, text or "1"))

        self.both(" ".join([f"{name} = {kind}", *opts] + ([f"uid={uid}"] if uid else [])), uid, create,
                  show_uid=False)
        if len(made) != 2:
            return None
        pair = Pair(name, kind, made["model"], made["kernel"])
        self.pairs.append(pair)
        return pair

    @initialize(target=socks, proto=st.sampled_from(("tcp", "udp")),
                first=st.lists(st.tuples(st.sampled_from("46"), CREATE_OPTS), min_size=1, max_size=3),
                uid=st.sampled_from(UIDS))
    def first_sockets(self, proto: str, first: list[tuple[str, list[str]]], uid: int) -> Any:
        """A program starts with one to three sockets of one protocol (the program's main one,
        see ``new_peer``) and one owner."""
        self.proto = proto
        return multiple(*[p for p in (self.new_pair(proto + f, uid, o) for f, o in first) if p is not None])

    @precondition(lambda self: len(self.pairs) < MAX_SOCKETS)
    @rule(target=socks, family=st.sampled_from("46"), opts=CREATE_OPTS, uid=st.sampled_from(UIDS))
    def new_peer(self, family: str, opts: list[str], uid: int) -> Any:
        """A socket of the program's main protocol: more weight on same-protocol conflicts."""
        return self.new_socket(self.proto + family, opts, uid)

    @precondition(lambda self: len(self.pairs) < MAX_SOCKETS)
    @rule(target=socks, kind=st.sampled_from(KIND_NAMES), opts=CREATE_OPTS, uid=st.sampled_from(UIDS))
    def new_socket(self, kind: str, opts: list[str], uid: int) -> Any:
        pair = self.new_pair(kind, uid, opts)
        return multiple() if pair is None else pair

    @rule(pair=socks, opt=st.sampled_from(SETOPTS), uid=st.sampled_from(UIDS))
    def setsockopt(self, pair: Pair, opt: tuple[str, str], uid: int) -> None:
        name, text = opt
        level, optname = OPTIONS[name]
        value = _opt_value(name, text)
        self.both(f"{pair.name} set {name} {text}", uid,
                  lambda ns, p, side: getattr(p, side).setsockopt(level, optname, value), pair)

    @rule(pair=socks, opt=st.sampled_from(SETOPTS[:4]))
    def set_reuse(self, pair: Pair, opt: tuple[str, str]) -> None:
        """SO_REUSEADDR / SO_REUSEPORT only (as the owner): more weight on the options the
        conflict rules read most."""
        self.setsockopt(pair, opt, 0)

    @rule(pair=socks, dev=st.sampled_from(("d0", "lo", "-")))
    def set_device(self, pair: Pair, dev: str) -> None:
        """SO_BINDTODEVICE as root: devices change which owners overlap and which addresses
        are local."""
        self.setsockopt(pair, ("dev", dev), 0)

    @rule(pair=socks, host=st.integers(0, 5), port=st.sampled_from(PORTS), uid=st.sampled_from(UIDS))
    def bind(self, pair: Pair, host: int, port: int, uid: int) -> None:
        hosts = HOSTS4 if pair.family == socket.AF_INET else HOSTS6
        addr = hosts[host] if host < len(hosts) else CROSS[pair.family]
        sockaddr = (addr, port) if pair.family == socket.AF_INET else (addr, port, 0, 0)
        mo, ko = self.both(f"{pair.name} bind {addr} {port}", uid,
                           lambda ns, p, side: getattr(p, side).bind(sockaddr), pair)
        if mo == ko == "OK":
            pair.bound = True
            if port == 0:
                self.check_auto_port(pair, "bind(port 0)")
            else:
                self.getsockname(pair, 0)

    def unbound(self) -> list[Pair]:
        return [p for p in self.pairs if not p.bound and not p.closed]

    @precondition(lambda self: self.unbound())
    @rule(which=st.integers(0, MAX_SOCKETS - 1), host=st.integers(0, 4), port=st.sampled_from((5000, 5000, 5001, 0)))
    def bind_unbound(self, which: int, host: int, port: int) -> None:
        """bind() of a socket that has no port yet, as root, mostly to port 5000: more weight
        on the binds where conflicts happen."""
        choices = self.unbound()
        self.bind(choices[which % len(choices)], host, port, 0)

    @rule(pair=socks, uid=st.sampled_from(UIDS))
    def listen(self, pair: Pair, uid: int) -> None:
        autobind = pair.tcp and not pair.bound
        mo, ko = self.both(f"{pair.name} listen", uid, lambda ns, p, side: getattr(p, side).listen(), pair)
        if autobind and mo == ko == "OK":
            pair.bound = True
            self.check_auto_port(pair, "listen()")

    @rule(pair=socks, uid=st.sampled_from(UIDS))
    def getsockname(self, pair: Pair, uid: int) -> None:
        if pair.auto is None:
            self.both(f"{pair.name} getsockname", uid, lambda ns, p, side: getattr(p, side).getsockname(), pair)
            return
        got: dict[str, Any] = {}

        def name(ns: Any, p: Pair, side: str) -> Any:
            got[side] = getattr(p, side).getsockname()
            return got[side]
        mo, ko = self.both(f"{pair.name} getsockname  # automatic port", uid, name, pair, exact=False)
        line = f"{pair.name} getsockname"
        if mo.startswith("(") and ko.startswith("("):
            m, k = got["model"], got["kernel"]
            self.expect((m[1], k[1]) == pair.auto, line, mo, ko, note=f"the automatic ports were {pair.auto}")
            self.expect(m[:1] + m[2:] == k[:1] + k[2:], line, mo, ko, note="addresses differ")
        else:
            self.expect(mo == ko, line, mo, ko)

    @rule(pair=socks, uid=st.sampled_from(UIDS))
    def close(self, pair: Pair, uid: int) -> None:
        self.both(f"{pair.name} close", uid, lambda ns, p, side: getattr(p, side).close(), pair)
        pair.closed = True

    @rule(setting=st.sampled_from(SYSCTLS), uid=st.sampled_from(UIDS))
    def sysctl(self, setting: tuple[str, str], uid: int) -> None:
        name, value = setting
        shown = f'"{value}"' if " " in value else value
        mo, ko = self.both(f"ns sysctl {name} {shown}", uid, lambda ns, p, side: ns.sysctl(name, value))
        if name == RANGE and mo == ko == "OK":
            lo, hi = value.split()
            self.range = (int(lo), int(hi))

    # -- after every step --------------------------------------------------------------------
    @invariant()
    def consistent(self) -> None:
        self.model.check_invariants()
        m, k = self.model.socket_count(), self.kernel.socket_count()
        self.expect(m == k, "socket_count()", str(m), str(k), note="open sockets")


def test_lockstep_model_vs_kernel() -> None:
    reason = probe()
    if reason is not None:
        pytest.skip(f"live kernel namespace unavailable: {reason}")
    run_state_machine_as_test(Lockstep, settings=SETTINGS)


def test_fast_setup_equals_standard_setup() -> None:
    """The lockstep's kernel namespaces equal conftest's ``make_ns("kernel")`` ones."""
    reason = probe()
    if reason is not None:
        pytest.skip(f"live kernel namespace unavailable: {reason}")
    standard, fast = make_ns("kernel"), kernel_ns()
    try:
        want, got = standard.run(_interfaces_in_child), fast.run(_interfaces_in_child)
    finally:
        standard.close()
        fast.close()
    assert got == want
    assert "127.0.0.2/8 scope host" in want[0] and "192.168.1.100/32 scope global" in want[0]


def test_program_text_is_a_step_script() -> None:
    """The reported program parses with the step-script vocabulary (no kernel needed)."""
    prog = Program([Step("s0 = tcp6 uid=1000", "OK", "OK"), Step("s0 set dev -", "OK", "OK"),
                    Step("s0 bind ::ffff:127.0.0.1 5000 as=1000", "OK", "OK"),
                    Step('ns sysctl net.ipv4.ip_local_port_range "40000 40999"', "OK", "OK"),
                    Step("s0 getsockname  # automatic port", "x", None)])
    steps = parse(prog.text())
    assert [s.op for s in steps][-5:] == ["socket", "set", "bind", "sysctl", "getsockname"]
    assert steps[-3].uid == 1000 and steps[-3].args == ("::ffff:127.0.0.1", "5000")
    assert steps[-2].args == ("net.ipv4.ip_local_port_range", "40000 40999") and steps[-2].want == "OK"
    assert steps[-1].want is None
