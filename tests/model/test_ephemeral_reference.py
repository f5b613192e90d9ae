"""The model's automatic ports against a second, slow, obviously-correct implementation of
the spec's algorithms (spec §5.2 bind(0), §5.3 connect(), §5.5 UDP), fed the same injected
RNG draws and keyed hash.  Random programs (Hypothesis) fill small ranges with a mix of
explicit binds, automatic binds, connects and closes; before every automatic choice the
reference predicts the port (or the failure) from a copy of the RNG and the model's tables."""
from __future__ import annotations

import copy
import errno
import socket

from hypothesis import given, settings
from hypothesis import strategies as st

import portspace
from portspace.model import _rules


def _owners(kernel, port):
    tb = kernel.bhash.get(port)
    return [] if tb is None else [o for t2 in tb.tb2s.values() for o in t2.owners]


def ref_tcp_bind0(kernel, sk, rng):
    """spec §5.2, line by line."""
    relax = False
    lo0, hi0 = kernel.sysctls.port_range
    while True:
        half_mode = 1 if sk.reuseaddr else 0
        while True:
            lo, hi = lo0, hi0 + 1
            if hi - lo < 4:
                half_mode = 0
            if half_mode:
                half = lo + ((hi - lo) // 4) * 2
                if half_mode == 1:
                    hi = half
                else:
                    lo = half
            remaining = hi - lo
            if remaining > 1:
                remaining &= ~1
            offset = rng.below(remaining) | 1
            for _ in (1, 2):
                port = lo + offset
                for _i in range(0, remaining, 2):
                    if port >= hi:
                        port -= remaining
                    if port not in kernel.sysctls.reserved:
                        if not any(_rules.tcp_conflict(sk, o, relax, False) for o in _owners(kernel, port)):
                            return port
                    port += 2
                offset -= 1
            if half_mode == 1:
                half_mode = 2
                continue
            break
        if kernel.sysctls.ints["net.ipv4.ip_autobind_reuse"] and not relax:
            relax = True
            continue
        return None


def ref_udp_bind0(kernel, sk, rng):
    """spec §5.5, line by line."""
    lo, hi = kernel.sysctls.port_range
    remaining = hi - lo + 1
    size = kernel.udp_table_size
    r = rng.u32()
    first = lo + ((r * remaining) >> 32)
    stride = ((r | 1) * size) % 65536 or size
    for k in range(size):
        f = (first + k) % 65536
        used = {p for p, holders in kernel.udp_ports.items() if p % size == f % size
                and any(_rules.udp_conflict(sk, o) for o in holders)}
        snum = f
        while True:
            if lo <= snum <= hi and snum not in used and snum not in kernel.sysctls.reserved:
                return snum
            snum = (snum + stride) % 65536
            if snum == f:
                break
    return None


def ref_tcp_connect(kernel, saddr, daddr, dport, rng):
    """spec §5.3, line by line (netns range, no per-socket range)."""
    lo, hi = kernel.sysctls.port_range
    hi += 1
    remaining = hi - lo
    if remaining > 1:
        remaining &= ~1
    mapped = lambda a: (0xFFFF << 32) | a  # noqa: E731
    h = kernel.keyed_hash64(mapped(saddr), mapped(daddr), dport, int(kernel.clock_seconds() // 10))
    index = h & 0xFFFF
    offset = ((kernel.perturb(index) + (h >> 32)) % 2 ** 32) % remaining
    offset &= ~1
    while True:
        port = lo + offset
        for _ in range(0, remaining, 2):
            if port >= hi:
                port -= remaining
            if port not in kernel.sysctls.reserved:
                tb = kernel.bhash.get(port)
                if tb is None:
                    return port
                # the 4-tuple must be free; no time passes in these programs, so a TIME_WAIT
                # remnant is never old enough to recycle (spec §6.4) and FIN_WAIT2 never is
                if tb.fastreuse < 0 and tb.fastreuseport < 0 and not any(
                        o.daddr == daddr and o.dport == dport and o.rcv_saddr == saddr
                        for o in _owners(kernel, port)):
                    return port
            port += 2
        offset += 1
        if offset % 2 == 1 and remaining > 1:
            continue
        return None


ops = st.lists(st.tuples(st.sampled_from(["bind0", "bind0_ra", "bindfix", "udp0", "connect", "close"]),
                         st.integers(0, 7)), min_size=5, max_size=40)


@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 2 ** 32), lo=st.integers(40000, 40010), size=st.integers(1, 12),
       autobind_reuse=st.booleans(), program=ops)
def test_model_equals_reference(seed, lo, size, autobind_reuse, program):
    ns = portspace.Namespace(seed=seed, udp_table_size=256)
    k = ns._kernel
    ns.sysctl("net.ipv4.ip_local_port_range", f"{lo} {lo + size - 1}")
    ns.sysctl("net.ipv4.ip_autobind_reuse", int(autobind_reuse))
    listener = ns.socket()
    listener.bind(("127.0.0.1", 5000))
    listener.listen(4096)
    socks = []
    for op, arg in program:
        if op == "close":
            if socks:
                socks.pop(arg % len(socks)).close()
            continue
        kind = socket.SOCK_DGRAM if op == "udp0" else socket.SOCK_STREAM
        s = ns.socket(socket.AF_INET, kind)
        if op == "bind0_ra":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        socks.append(s)
        rng = copy.deepcopy(k.rng)
        sk = s._sk
        try:
            if op == "bindfix":
                s.bind(("127.0.0.1", lo + arg % size))
                continue
            if op == "connect":
                kh = copy.deepcopy(k)
                want = ref_tcp_connect(kh, 0x7F000001, 0x7F000001, 5000, rng)
                s.connect(("127.0.0.1", 5000))
            else:
                probe = copy.copy(sk)
                probe.cov4, probe.cov6 = -1, None  # 0.0.0.0 claims all IPv4
                want = (ref_tcp_bind0 if kind == socket.SOCK_STREAM else ref_udp_bind0)(k, probe, rng)
                s.bind(("0.0.0.0", 0))
            got = s.getsockname()[1]
        except OSError as e:
            if op == "bindfix":
                continue
            assert e.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EAGAIN)
            got = None
        assert got == want, (op, got, want)
        ns.check_invariants()
    for s in socks:
        s.close()
    listener.close()
