"""Demultiplexing: which socket receives an incoming TCP segment or UDP datagram (spec §7).

Theory of operation
-------------------
Rule 1: nothing here changes state.  Every function takes the namespace (``NetNS``) and a
:class:`Packet` and returns socket(s); the caller (``_connect._deliver_syn`` for a SYN,
``_datagram.udp_sendmsg`` for a datagram, the ``who_receives`` query) acts on the answer.
Rule 2: the same code answers the real delivery and the query.  With ``trace`` (a list) each
decision is appended as one readable line -- chain walked, score of each candidate, group and
member index -- so that a query explains exactly what delivery does; without it nothing is
formatted (delivery is a hot path, benchmarks/bench_delivery.py).

The kernel functions followed, each cited at its use:

* TCP: ``__inet_lookup_established`` (ehash, exact 4-tuple, TIME_WAIT included) then
  ``__inet_lookup_listener`` = two passes of ``inet_lhash2_lookup`` (exact address chain, then
  the wildcard chain); the first candidate that raises the score and has a reuseport group
  answers at once with a member (spec §7.1).
* UDP unicast: hash4 (connected sockets, exact 4-tuple, newest connect first; 6.13+), then two
  passes of ``udp4_lib_lookup2`` / ``udp6_lib_lookup2`` with ``compute_score`` (spec §7.2).
* Reuseport member selection: ``reuseport_select_sock_by_hash`` -- ``(hash * n) >> 32``, then
  cyclically the first member not ESTABLISHED, preferring one whose ``sk_incoming_cpu`` is the
  current CPU when some member set SO_INCOMING_CPU (spec §7.3).  The hash is the namespace's
  injected keyed hash of the 4-tuple (the kernel's key is a boot secret).
* UDP broadcast and multicast: ``__udp4_lib_mcast_deliver`` -- every matching socket on the
  port gets a copy, groups are not consulted; multicast needs the input device to have joined
  the group and each socket to pass ``ip_mc_sf_allow`` (spec §7.4).
"""
from __future__ import annotations

from typing import Any, NamedTuple

from ._addr import AF_INET, AF_INET6, V4MAPPED_PREFIX, format_addr
from ._rules import ESTABLISHED

_MCAST_EXCLUDE, _MCAST_INCLUDE = 0, 1


class Packet(NamedTuple):
    """An incoming segment or datagram as the receive path sees it.  Addresses are ints of the
    packet's own family (an IPv4 packet to a dual-stack socket is still IPv4)."""

    tcp: bool
    v6: bool
    saddr: int
    sport: int
    daddr: int
    dport: int
    dev: int = 1          # input device (lo: loopback traffic)

    def key(self) -> tuple[int, int, int, int]:
        """(local, local port, remote, remote port) in the IPv6 form the established hashes use."""
        if self.v6:
            return (self.daddr, self.dport, self.saddr, self.sport)
        return (V4MAPPED_PREFIX | self.daddr, self.dport, V4MAPPED_PREFIX | self.saddr, self.sport)

    def text(self) -> str:
        fam = 10 if self.v6 else AF_INET

        def hp(a: int, p: int) -> str:
            h = format_addr(fam, a)
            return f"[{h}]:{p}" if self.v6 else f"{h}:{p}"
        return f"{'tcp' if self.tcp else 'udp'}{'6' if self.v6 else ''} {hp(self.saddr, self.sport)} -> {hp(self.daddr, self.dport)}"


class Membership:
    """One IPv4 multicast membership of a socket (``struct ip_mc_socklist``): group, device,
    the address given at join, and the source filter (EXCLUDE with no sources after a plain
    IP_ADD_MEMBERSHIP)."""

    __slots__ = ("group", "ifindex", "address", "mode", "sources")

    def __init__(self, group: int, ifindex: int, address: int) -> None:
        self.group, self.ifindex, self.address = group, ifindex, address
        self.mode = _MCAST_EXCLUDE
        self.sources: set[int] = set()

    def allows(self, src: int) -> bool:
        if self.mode == _MCAST_EXCLUDE:
            return src not in self.sources
        return src in self.sources


def _name(sk: Any) -> str:
    who = f"socket #{sk.fd}" if sk.fd >= 0 else ("a TIME_WAIT remnant" if sk.is_tw else "an unaccepted child")
    remote = sk.remote_text()
    local = f"{sk.local_text()}:{sk.num}"
    dev = f" dev {sk.bound_dev}" if sk.bound_dev else ""
    return f"{who} ({sk.proto}{'6' if sk.family == AF_INET6 else ''} {local}{' -> ' + remote if remote else ''}{dev})"


# ----------------------------------------------------------------------------------------
# reuseport member selection (spec §7.3)
# ----------------------------------------------------------------------------------------

def flow_hash(ns: Any, pkt: Packet) -> int:
    """The 32-bit flow hash: ``inet_ehashfn`` (TCP) / ``udp_ehashfn`` (UDP) of the 4-tuple,
    keyed by the namespace's injected key.  The TCP form is the one ``_connect`` always used."""
    lk, lp, rk, rp = pkt.key()
    if pkt.tcp:
        return ns.keyed_hash64(rk, rp, lk, lp, 0xE4) & 0xFFFFFFFF
    return ns.keyed_hash64(0x0D, lk, lp, rk, rp) & 0xFFFFFFFF


def select_member(ns: Any, group: Any, h: int, trace: list[str] | None = None) -> tuple[Any, int]:
    """``reuseport_select_sock_by_hash``: member index ``(h * n) >> 32``, then cyclically the
    first member not ESTABLISHED; with members that set SO_INCOMING_CPU, the first one on the
    current CPU, else the first valid one.  Returns (member or None, index)."""
    socks = group.socks
    n = len(socks)
    i = j = (h * n) >> 32
    first, first_i = None, -1
    cpu = ns.cpu
    while True:
        sk = socks[i]
        if sk.state != ESTABLISHED:
            if not group.incoming_cpu:
                break
            if sk.incoming_cpu == cpu:
                break
            if first is None:
                first, first_i = sk, i
        i += 1
        if i >= n:
            i = 0
        if i == j:
            sk, i = first, first_i
            break
    if trace is not None:
        note = f"hash {h:#010x} * {n} members >> 32 = index {j}"
        if sk is None:
            note += ": every member is connected, none selected"
        elif i != j:
            note += f", moved on to index {i}" + (" (on the current CPU)" if group.incoming_cpu and sk.incoming_cpu == cpu
                                                  else "")
        trace.append(f"  reuseport group {group.gid}: {note} -> {_name(sk) if sk is not None else 'nothing'}")
    return sk, i


# ----------------------------------------------------------------------------------------
# TCP (spec §7.1)
# ----------------------------------------------------------------------------------------

def tcp_lookup(ns: Any, pkt: Packet, trace: list[str] | None = None) -> Any:
    """``__inet_lookup``: the established hash, then the listeners."""
    lst = ns.ehash.get(pkt.key())
    if lst:
        for sk in lst:
            if not sk.bound_dev or sk.bound_dev == pkt.dev:
                if trace is not None:
                    trace.append(f"established hash: exact 4-tuple match -> {_name(sk)}")
                return sk
    if trace is not None:
        trace.append("established hash: no socket with this 4-tuple")
    return listener_lookup(ns, pkt, trace)


def listener_lookup(ns: Any, pkt: Packet, trace: list[str] | None = None) -> Any:
    """``__inet_lookup_listener`` / ``inet6_lookup_listener``: pass A on the chain of the
    destination address, pass B on the wildcard chain only when A found nothing."""
    port = pkt.dport
    cpu = ns.cpu
    v6 = pkt.v6
    d = pkt.daddr
    if v6:
        passes = (((AF_INET6, d, port), d), ((AF_INET, 0, port), 0))
    else:
        passes = (((AF_INET, d, port), d), ((AF_INET, 0, port), 0))
    for n, (key, target) in enumerate(passes):
        chain = ns.lhash2.get(key, ())
        if trace is not None:
            where = format_addr(10 if v6 and target else AF_INET, target) if target else ("::" if v6 else "0.0.0.0")
            trace.append(f"listener pass {'AB'[n]}: chain {where}:{port}, {len(chain)} listener(s) in chain order")
        best, best_score = None, 0
        for cand in chain:
            # compute_score (inet_hashtables.c / inet6_hashtables.c)
            if v6:
                ok = cand.family == AF_INET6 and cand.v6_rcv_saddr == target
            else:
                ok = not cand.v6only and cand.rcv_saddr == target
            if ok and cand.bound_dev and cand.bound_dev != pkt.dev:
                ok = False
            if not ok:
                if trace is not None:
                    trace.append(f"  {_name(cand)}: not eligible (address, v6only or device)")
                continue
            score = 2 if cand.bound_dev else 1
            if not v6 and cand.family == AF_INET:
                score += 1
            if cand.incoming_cpu == cpu:
                score += 1
            if trace is not None:
                trace.append(f"  {_name(cand)}: score {score}" + (" (higher)" if score > best_score else ""))
            if score > best_score:
                if cand.reuseport and cand.group is not None:
                    member, _ = select_member(ns, cand.group, flow_hash(ns, pkt), trace)
                    if member is not None:
                        if trace is not None:
                            trace.append("  a reuseport group raised the score: the lookup returns at once")
                        return member
                best, best_score = cand, score
        if best is not None:
            if trace is not None:
                trace.append(f"  best score {best_score} -> {_name(best)}")
            return best
    if trace is not None:
        trace.append("no listener: the SYN is answered by a reset")
    return None


# ----------------------------------------------------------------------------------------
# UDP unicast (spec §7.2)
# ----------------------------------------------------------------------------------------

def _udp_score4(sk: Any, pkt: Packet, cpu: int) -> int:
    """``udp.c: compute_score``."""
    if sk.v6only or sk.rcv_saddr != pkt.daddr:
        return -1
    score = 2 if sk.family == AF_INET else 1
    if sk.daddr:
        if sk.daddr != pkt.saddr:
            return -1
        score += 4
    if sk.dport:
        if sk.dport != pkt.sport:
            return -1
        score += 4
    if sk.bound_dev:
        if sk.bound_dev != pkt.dev:
            return -1
        score += 4
    if sk.incoming_cpu == cpu:
        score += 1
    return score


def _udp_score6(sk: Any, pkt: Packet, cpu: int) -> int:
    """``net/ipv6/udp.c: compute_score`` (no family term; each match adds 1)."""
    if sk.family != AF_INET6 or sk.v6_rcv_saddr != pkt.daddr:
        return -1
    score = 0
    if sk.dport:
        if sk.dport != pkt.sport:
            return -1
        score += 1
    if sk.v6_daddr:
        if sk.v6_daddr != pkt.saddr:
            return -1
        score += 1
    if sk.bound_dev:
        if sk.bound_dev != pkt.dev:
            return -1
        score += 1
    if sk.incoming_cpu == cpu:
        score += 1
    return score


def udp_lookup(ns: Any, pkt: Packet, trace: list[str] | None = None) -> Any:
    """``__udp4_lib_lookup`` / ``__udp6_lib_lookup``: hash4, then pass A (destination address
    chain), then pass B (wildcard chain) when A found nothing."""
    conn = ns.udp_hash4.get(pkt.key())
    if conn:
        for sk in conn:
            if not sk.bound_dev or sk.bound_dev == pkt.dev:
                if trace is not None:
                    trace.append(f"hash4 (connected sockets): exact 4-tuple match, newest connect first -> {_name(sk)}")
                return sk
    elif trace is not None:
        trace.append("hash4 (connected sockets): no exact 4-tuple match")
    port = pkt.dport
    d = pkt.daddr
    if pkt.v6:
        passes = (((AF_INET6, d, port), d), ((AF_INET, 0, port), 0))
    else:
        passes = (((AF_INET, d, port), d), ((AF_INET, 0, port), 0))
    for n, (key, target) in enumerate(passes):
        chain = ns.udp_hash2.get(key)
        if trace is not None:
            where = format_addr(10 if pkt.v6 and target else AF_INET, target) if target else ("::" if pkt.v6 else "0.0.0.0")
            trace.append(f"pass {'AB'[n]}: hash2 chain {where}:{port}, {len(chain or ())} socket(s) in chain order")
        if not chain:
            continue
        result = _lookup2(ns, chain, pkt if target == d else pkt._replace(daddr=target), trace)
        if result is not None:
            return result
    if trace is not None:
        trace.append("no socket: the datagram is dropped (ICMP port unreachable)")
    return None


def _lookup2(ns: Any, chain: list, pkt: Packet, trace: list[str] | None) -> Any:
    """``udp4_lib_lookup2``: the first strictly better score is kept; an unconnected reuseport
    candidate selects a member and, if its group never had connections, returns it at once."""
    cpu = ns.cpu
    score_of = _udp_score6 if pkt.v6 else _udp_score4
    result, badness = None, (-1 if pkt.v6 else 0)
    for sk in chain:
        score = score_of(sk, pkt, cpu)
        if trace is not None:
            trace.append(f"  {_name(sk)}: " + ("not eligible" if score < 0 else f"score {score}"
                                                + (" (higher)" if score > badness else "")))
        if score <= badness:
            continue
        badness = score
        if sk.state == ESTABLISHED or not sk.reuseport or sk.group is None:
            result = sk
            continue
        member, _ = select_member(ns, sk.group, flow_hash(ns, pkt), trace)
        if member is None:
            result = sk
            continue
        if not sk.group.has_conns:
            if trace is not None:
                trace.append("  the group never had connected members: the lookup returns at once")
            return member
        result = member
        badness = max(badness, score_of(member, pkt, cpu))
        if trace is not None:
            trace.append(f"  the group had connected members: keep {_name(member)} and go on scoring")
    if trace is not None and result is not None:
        trace.append(f"  best score {badness} -> {_name(result)}")
    return result


# ----------------------------------------------------------------------------------------
# UDP broadcast and multicast fan-out (spec §7.4)
# ----------------------------------------------------------------------------------------

def mc_device_accepts(ns: Any, group: int, src: int, dev: int) -> bool:
    """``ip_check_mc_rcu``: the input device takes a multicast datagram only when some socket
    joined the group on it (the device filter is the union of the sockets' filters)."""
    for sk in ns.mc_members:
        for m in sk.mc_list:
            if m.group == group and m.ifindex == dev and m.allows(src):
                return True
    return False


def mcast_targets(ns: Any, pkt: Packet, multicast: bool, trace: list[str] | None = None) -> list:
    """``__udp4_lib_mcast_deliver``: every socket on the port that matches (``__udp_is_mcast_sock``)
    gets a copy, in the order of the port's slot (newest bind first)."""
    out = []
    if multicast and not mc_device_accepts(ns, pkt.daddr, pkt.saddr, pkt.dev):
        if trace is not None:
            trace.append(f"multicast: device {pkt.dev} has not joined {format_addr(AF_INET, pkt.daddr)}: "
                         f"not delivered locally")
        return out
    if trace is not None:
        trace.append(("multicast" if multicast else "broadcast") + ": every matching socket on the port gets a copy "
                     "(reuseport groups are not consulted)")
    for sk in ns.udp_ports.get(pkt.dport, ()):
        why = None
        if sk.v6only:
            why = "v6only"
        elif sk.daddr and sk.daddr != pkt.saddr or sk.dport and sk.dport != pkt.sport:
            why = "connected to another peer"
        elif sk.rcv_saddr and sk.rcv_saddr != pkt.daddr:
            why = "bound to another address"
        elif sk.bound_dev and sk.bound_dev != pkt.dev:
            why = "bound to another device"
        elif multicast:
            # ip_mc_sf_allow: a member passes its source filter; a non-member passes iff
            # IP_MULTICAST_ALL
            for m in sk.mc_list:
                if m.group == pkt.daddr and m.ifindex == pkt.dev:
                    if not m.allows(pkt.saddr):
                        why = "source filtered"
                    break
            else:
                if not sk.mc_all:
                    why = "not a member and IP_MULTICAST_ALL is 0"
        if trace is not None:
            trace.append(f"  {_name(sk)}: " + (why or "gets a copy"))
        if why is None:
            out.append(sk)
    return out
