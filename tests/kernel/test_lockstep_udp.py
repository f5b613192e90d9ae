"""Random datagram programs, stepped on the model and on the live kernel in lockstep.

UDP sockets (IPv4, and IPv6 with v4-mapped peers) bind to fixed ports or automatic ones, set
SO_REUSEADDR (never SO_REUSEPORT: which member of a reuseport group receives depends on the
kernel's secret hash key, compared by properties in test_demux.py instead), connect,
disconnect, send datagrams to each other's addresses, receive them without blocking (the
source address compared with automatic ports masked), shut down and close -- every outcome
compared, with the model's invariants after each step.

Automatic ports differ between the sides, so a destination is named by socket ("the address
s2 has") and each side sends to its own socket's address; received sources show an automatic
port as ``eph``.
"""
from __future__ import annotations

import socket
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize, multiple, precondition, rule

from portspace.diff._script import _ephemeral_masked

from .test_lockstep import Pair
from .test_lockstep_connect import PairMachine, run_pair_machine

pytestmark = pytest.mark.kernel

PORTS = (6000, 6001, 0)
HOSTS = {"udp4": ("127.0.0.1", "127.0.0.2", "0.0.0.0"),
         "udp6": ("::ffff:127.0.0.1", "::", "::1", "::ffff:0.0.0.0")}
MAX_SOCKETS = 6  # the settings (60 programs of up to 30 steps in CI) are the connect lockstep's


def _masked(value: Any) -> str:
    """recvfrom()'s result with an automatic source port shown as ``eph``."""
    data, src = value
    return f"{data!r} from {'nobody' if src is None else _ephemeral_masked(src)}"


class UdpLockstep(PairMachine):
    socks = PairMachine.socks

    def new_pair(self, kind: str, reuse: bool) -> Pair | None:
        name = f"s{len(self.pairs)}"
        made: dict[str, Any] = {}

        def create(ns: Any, _: Any, side: str) -> None:
            s = made[side] = ns.socket(socket.AF_INET if kind == "udp4" else socket.AF_INET6, socket.SOCK_DGRAM)
            s.setblocking(False)
            if reuse:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

        self.both(f"{name} = {kind} nonblock" + (" reuseaddr" if reuse else ""), create)
        if len(made) != 2:
            return None
        pair = Pair(name, kind, made["model"], made["kernel"])
        self.pairs.append(pair)
        return pair

    @initialize(target=socks, kind=st.sampled_from(("udp4", "udp4", "udp6")), reuse=st.booleans(),
                port=st.sampled_from(PORTS[:2]))
    def a_receiver(self, kind: str, reuse: bool, port: int) -> Any:
        pair = self.new_pair(kind, reuse)
        assert pair is not None
        self.bind(pair, 0, port)
        return pair

    @precondition(lambda self: len(self.pairs) < MAX_SOCKETS)
    @rule(target=socks, kind=st.sampled_from(("udp4", "udp4", "udp6")), reuse=st.booleans())
    def new_socket(self, kind: str, reuse: bool) -> Any:
        pair = self.new_pair(kind, reuse)
        return multiple() if pair is None else pair

    @rule(pair=socks, host=st.integers(0, 3), port=st.sampled_from(PORTS))
    def bind(self, pair: Pair, host: int, port: int) -> None:
        hosts = HOSTS[pair.kind]
        addr = hosts[host % len(hosts)]
        self.both(f"{pair.name} bind {addr} {port}", lambda ns, p, side: getattr(p, side).bind((addr, port)), pair)

    def _target(self, pair: Pair, target: Pair, side: str) -> tuple:
        """``target``'s address on this side, as ``pair`` would write it."""
        host, port = getattr(target, side).getsockname()[:2]
        if host in ("0.0.0.0", "::", "::ffff:0.0.0.0"):
            host = "127.0.0.1"
        if host.startswith("::ffff:"):
            host = host[7:]
        if pair.kind == "udp6":
            host = host if ":" in host else "::ffff:" + host
            return (host, port, 0, 0)
        return (host, port) if ":" not in host else ("::1", port)

    @rule(pair=socks, dest=socks)
    def connect(self, pair: Pair, dest: Pair) -> None:
        self.both(f"{pair.name} connect {dest.name}'s address",
                  lambda ns, p, side: getattr(p, side).connect(self._target(p, dest, side)), pair)

    @rule(pair=socks)
    def disconnect(self, pair: Pair) -> None:
        self.both(f"{pair.name} disconnect", lambda ns, p, side: getattr(p, side).disconnect(), pair)

    @rule(pair=socks, dest=socks, data=st.sampled_from((b"x", b"hello", b"")))
    def sendto(self, pair: Pair, dest: Pair, data: bytes) -> None:
        self.both(f"{pair.name} sendto {dest.name}'s address {data!r}",
                  lambda ns, p, side: getattr(p, side).sendto(data, self._target(p, dest, side)), pair)

    @rule(pair=socks, data=st.sampled_from((b"y", b"")))
    def send(self, pair: Pair, data: bytes) -> None:
        self.both(f"{pair.name} send {data!r}", lambda ns, p, side: getattr(p, side).send(data), pair)

    @rule(pair=socks, n=st.sampled_from((65536, 2)))
    def recvfrom(self, pair: Pair, n: int) -> None:
        self.both(f"{pair.name} recvfrom {n}", lambda ns, p, side: _masked(getattr(p, side).recvfrom(n)), pair)

    @rule(pair=socks)
    def name(self, pair: Pair) -> None:
        self.both(f"{pair.name} name", lambda ns, p, side: _ephemeral_masked(getattr(p, side).getsockname()), pair)

    @rule(pair=socks)
    def peer(self, pair: Pair) -> None:
        self.both(f"{pair.name} peer", lambda ns, p, side: _ephemeral_masked(getattr(p, side).getpeername()), pair)

    @rule(pair=socks, how=st.sampled_from((socket.SHUT_RD, socket.SHUT_WR, socket.SHUT_RDWR)))
    def shutdown(self, pair: Pair, how: int) -> None:
        self.both(f"{pair.name} shutdown {how}", lambda ns, p, side: getattr(p, side).shutdown(how), pair)



def test_udp_lockstep_model_vs_kernel() -> None:
    run_pair_machine(UdpLockstep)
