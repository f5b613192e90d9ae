"""UDP data on the model: datagrams delivered where the kernel would deliver them.

Theory of operation
-------------------
Rule 1: these are methods of ``NetNS`` (a mixin, like ``ConnectOps``); state changes only
through syscall-named methods (``udp_sendmsg``, ``udp_recvmsg``, the IP-level ``setsockopt``
options of multicast).  ``NetNS.sendmsg`` / ``recvmsg`` / ``poll`` dispatch UDP sockets here.
Rule 2: each call answers at once: a byte count, ``(data, source)``, or ``None`` for "would
block"; the facade (``portspace._socket``) turns a would-block into EAGAIN, a timeout or a
clear ``Deadlock``.  A datagram on loopback is delivered inside the sendto() call (on Linux the
softirq runs before the syscall returns).
Rule 3: who receives is decided by ``_demux.py`` (the same code answers ``who_receives``).

sendto()/send() follows ``inet_sendmsg`` -> ``udp_sendmsg`` / ``udpv6_sendmsg`` in kernel
order [V probes kept as tests in tests/model/test_udp_data.py, each run on the kernel too]:
autobind (EAGAIN when the range is exhausted, spec §5.6); payload above 65535 EMSGSIZE; an
address with port 0 EINVAL; no address on an unconnected socket EDESTADDRREQ (an address on a
connected socket is allowed); routing (ENETUNREACH: 255.255.255.255 and multicast without an
output device in a loopback-only namespace); a broadcast destination without SO_BROADCAST
EACCES; a payload above 65507 (IPv4) / 65527 (IPv6) EMSGSIZE; a pending error (ECONNREFUSED
from an earlier datagram) is reported once and the datagram is not sent.

Delivery: unicast to the socket chosen by ``_demux.udp_lookup``; nobody there means an ICMP
port unreachable, which sets ECONNREFUSED on the sending socket only when it is connected to
that destination (``__udp4_lib_err`` finds it by the reversed 4-tuple, and an unconnected
socket ignores the error without IP_RECVERR).  The kernel's global ICMP rate limit
(``icmp_msgs_burst`` 50) is not modelled: a burst of more than 50 refused datagrams per
second can lose errors on Linux, never on the model.

Receive buffers: a datagram is queued when ``rmem + charge <= rcvbuf`` (212992, the
``net.core.rmem_default`` of a fresh namespace), else dropped
(``__udp_enqueue_schedule_skb``).  The charge stands in for ``skb->truesize``: measured on
6.18 by filling a socket with datagrams of one size, the number that fit is a step function
of the payload (:data:`_FIT_V4` / :data:`_FIT_V6`, binary-searched boundaries), and the
charge of a size is ``rcvbuf // count``, so a queue of one size holds exactly the kernel's
count; a mix of sizes is an approximation.  Changing SO_RCVBUF is out of scope.
"""
from __future__ import annotations

import bisect
from collections import deque
from typing import Any

from ._addr import AF_INET, AF_INET6, V4MAPPED_PREFIX, v4_is_multicast, v6_is_mapped, v6_is_multicast
from ._demux import Membership, Packet, mcast_targets, udp_lookup
from ._errors import Cause, Op, OutOfScope, Proto, refuse
from ._rules import CLOSE, ESTABLISHED
from ._sock import Sock

MSG_PEEK = 0x2
MSG_TRUNC = 0x20
MSG_DONTWAIT = 0x40
_FLAG_NAMES = {0x1: "MSG_OOB", 0x4: "MSG_DONTROUTE", 0x8: "MSG_CTRUNC", 0x20: "MSG_TRUNC", 0x80: "MSG_EOR",
               0x100: "MSG_WAITALL", 0x800: "MSG_CONFIRM", 0x2000: "MSG_ERRQUEUE", 0x4000: "MSG_NOSIGNAL",
               0x8000: "MSG_MORE", 0x10000: "MSG_WAITFORONE", 0x40000000: "MSG_CMSG_CLOEXEC"}

RCVBUF_DEFAULT = 212992
# (largest payload, datagrams that fit in the default receive buffer), measured on Linux 6.18
# in a private namespace: 400 datagrams of one size sent to a socket on 127.0.0.1 / ::1 that
# does not read, then counted; boundaries found by binary search over the size.
# tests/model/test_udp_data.py::test_receive_buffer_capacity re-checks sizes on both sides of
# several boundaries against the kernel.
_FIT_V4 = ((197, 256), (645, 166), (1669, 92), (3717, 48), (7813, 25), (16917, 12), (18530, 11), (20467, 10),
           (22833, 9), (25792, 8), (29595, 7), (34666, 6), (41766, 5), (52416, 4), (65507, 3))
_FIT_V6 = ((184, 256), (632, 166), (1656, 92), (3704, 48), (7800, 25), (16917, 12), (18530, 11), (20467, 10),
           (22833, 9), (25792, 8), (29595, 7), (34666, 6), (41766, 5), (52416, 4), (65527, 3))
_BOUNDS_V4 = [b for b, _ in _FIT_V4]
_BOUNDS_V6 = [b for b, _ in _FIT_V6]

# IPPROTO_IP multicast options (include/uapi/linux/in.h)
IP_MULTICAST_IF = 32
IP_MULTICAST_TTL = 33
IP_MULTICAST_LOOP = 34
IP_ADD_MEMBERSHIP = 35
IP_DROP_MEMBERSHIP = 36
IP_UNBLOCK_SOURCE = 37
IP_BLOCK_SOURCE = 38
IP_ADD_SOURCE_MEMBERSHIP = 39
IP_DROP_SOURCE_MEMBERSHIP = 40
IP_MULTICAST_ALL = 49
MCAST_OPTS = frozenset({IP_MULTICAST_IF, IP_MULTICAST_TTL, IP_MULTICAST_LOOP, IP_ADD_MEMBERSHIP, IP_DROP_MEMBERSHIP,
                        IP_UNBLOCK_SOURCE, IP_BLOCK_SOURCE, IP_ADD_SOURCE_MEMBERSHIP, IP_DROP_SOURCE_MEMBERSHIP,
                        IP_MULTICAST_ALL})
IGMP_MAX_MEMBERSHIPS = 20  # net.ipv4.igmp_max_memberships default
SO_INCOMING_CPU = 49


def charge(size: int, v6: bool) -> int:
    """The receive-buffer charge of a datagram of ``size`` payload bytes (module header)."""
    c = _CHARGE_CACHE.get((size, v6))
    if c is None:
        table, bounds = (_FIT_V6, _BOUNDS_V6) if v6 else (_FIT_V4, _BOUNDS_V4)
        i = bisect.bisect_left(bounds, size)
        c = _CHARGE_CACHE[(size, v6)] = RCVBUF_DEFAULT // table[min(i, len(table) - 1)][1]
    return c


_CHARGE_CACHE: dict[tuple[int, bool], int] = {}


def _flag_name(flags: int) -> str:
    for bit, name in _FLAG_NAMES.items():
        if flags & bit:
            return name
    return hex(flags)


class DatagramOps:
    """sendto/recvfrom/poll and multicast options for UDP sockets (see module header)."""

    # -- sendto() / send() ----------------------------------------------------------------

    def udp_sendmsg(self, sk: Sock, data: bytes, flags: int, dest: Any, nonblock: bool) -> int | None:
        if flags & ~MSG_DONTWAIT:
            raise OutOfScope(f"send flag {_flag_name(flags & ~MSG_DONTWAIT)} on a UDP socket is not modelled")
        if not sk.num:
            # inet_send_prepare -> inet_autobind: get_port(sk, 0) with the current address
            from ._addr import coverage
            sk.cov4, sk.cov6 = coverage(sk.family, sk.rcv_saddr, sk.v6_rcv_saddr, sk.v6only)
            self._udp_get_port(sk, 0, Op.SENDTO)  # type: ignore[attr-defined]
        n = len(data)
        if n > 0xFFFF:
            raise refuse(Op.SENDTO, Proto.UDP, Cause.MESSAGE_TOO_LONG)
        if dest is not None:
            daddr, dport, _flow, scope = dest
            if sk.family == AF_INET6 and sk.v6only and v6_is_mapped(daddr):
                # udpv6_sendmsg: a v4-mapped destination on an IPv6-only socket (IPV6_V6ONLY, or
                # bound to a native address) is ENETUNREACH before udp_sendmsg looks at the port
                raise refuse(Op.SENDTO, Proto.UDP, Cause.NET_UNREACHABLE)
            if dport == 0:
                raise refuse(Op.SENDTO, Proto.UDP, Cause.INVALID)
        else:
            if sk.state != ESTABLISHED:
                raise refuse(Op.SENDTO, Proto.UDP, Cause.DEST_ADDR_REQUIRED)
            daddr = sk.daddr if sk.family == AF_INET else sk.v6_daddr
            dport, scope = sk.dport, 0
            if dport == 0 and sk.family == AF_INET6 and v6_is_mapped(daddr):
                # udpv6_sendmsg hands a v4-mapped peer to udp_sendmsg as an explicit address,
                # and udp_sendmsg refuses port 0 there [V udp lockstep]
                raise refuse(Op.SENDTO, Proto.UDP, Cause.INVALID)
        if sk.shut & 2:
            raise refuse(Op.SENDTO, Proto.UDP, Cause.SEND_SHUTDOWN)
        v6 = sk.family == AF_INET6 and not v6_is_mapped(daddr)
        multicast = False
        if v6:
            if v6_is_multicast(daddr):
                # a loopback-only namespace has no route to ff00::/8 [V probe]; with another
                # device up the kernel routes there (and fails on the source address)
                if len(self.devices) > 1:  # type: ignore[attr-defined]
                    raise OutOfScope("sending to an IPv6 multicast address with devices other than lo")
                raise refuse(Op.SENDTO, Proto.UDP, Cause.NET_UNREACHABLE)
            daddr, saddr, kind = self.route_v6(daddr, sk.v6_rcv_saddr, sk.bound_dev, False, scope)  # type: ignore[attr-defined]
            self._v6_source_family(sk, Proto.UDP, Op.SENDTO)  # type: ignore[attr-defined]  # [V udp lockstep]
            limit = 65527
        else:
            if sk.family == AF_INET6:
                if sk.v6only:
                    raise refuse(Op.SENDTO, Proto.UDP, Cause.NET_UNREACHABLE)
                daddr &= 0xFFFFFFFF
            if v4_is_multicast(daddr):
                # udp_sendmsg: the output device is the bound device or IP_MULTICAST_IF; with
                # neither, a loopback-only namespace has no multicast route (ENETUNREACH)
                oif = sk.bound_dev or sk.mc_index
                if not oif:
                    raise refuse(Op.SENDTO, Proto.UDP, Cause.NET_UNREACHABLE)
                if oif != 1:
                    dev = self.dev_by_index.get(oif)  # type: ignore[attr-defined]
                    raise OutOfScope(f"multicast out of device {dev.name if dev else oif}: only loopback "
                                     "traffic is modelled")
                saddr = sk.rcv_saddr or sk.mc_addr or 0x7F000001   # inet_select_addr(lo)
                kind, multicast = "multicast", True
            else:
                daddr, saddr, kind = self.route_v4(daddr, sk.rcv_saddr, sk.bound_dev, False)  # type: ignore[attr-defined]
                if kind == "broadcast" and not sk.opts.get((1, 6)):
                    raise refuse(Op.SENDTO, Proto.UDP, Cause.BROADCAST_NEEDS_OPTION)
            limit = 65507
        if n > limit:
            raise refuse(Op.SENDTO, Proto.UDP, Cause.MESSAGE_TOO_LONG)
        if sk.err:
            # sock_alloc_send_pskb -> sock_error: the pending error, reported once
            raise self._udp_pending_error(sk, Op.SENDTO)
        pkt = Packet(False, v6, saddr, sk.num, daddr, dport, 1)
        if kind in ("broadcast", "multicast"):
            for target in mcast_targets(self, pkt, multicast):
                self._udp_queue(target, data, pkt)
            return n
        target = udp_lookup(self, pkt)
        if target is None:
            # ICMP port unreachable back to the sender's 4-tuple (__udp4_lib_err)
            back = udp_lookup(self, Packet(False, v6, daddr, dport, saddr, sk.num, 1))
            if back is not None and back.state == ESTABLISHED:
                back.err = 111  # ECONNREFUSED
            return n
        self._udp_queue(target, data, pkt)
        return n

    @staticmethod
    def _udp_pending_error(sk: Sock, op: Op) -> OSError:
        # the only asynchronous UDP error the model produces is the ICMP port unreachable
        sk.err = 0
        return refuse(op, Proto.UDP, Cause.CONN_REFUSED)

    def _udp_queue(self, sk: Sock, data: bytes, pkt: Packet) -> None:
        """``__udp_enqueue_schedule_skb``: queue or drop by the receive buffer."""
        c = charge(len(data), pkt.v6)
        if sk.rmem + c > RCVBUF_DEFAULT:
            return
        if pkt.v6:
            src = (pkt.saddr, pkt.sport, 0, 0)
        elif sk.family == AF_INET6:
            src = (V4MAPPED_PREFIX | pkt.saddr, pkt.sport, 0, 0)
        else:
            src = (pkt.saddr, pkt.sport, 0, 0)
        q = sk.rcv_queue
        if type(q) is not deque:
            q = sk.rcv_queue = deque()
        q.append((data, src, c))
        sk.rmem += c
        if sk.state == ESTABLISHED:
            sk.incoming_cpu = self.cpu  # type: ignore[attr-defined]  # connected sockets record the CPU

    # -- recvfrom() / recv() --------------------------------------------------------------

    def udp_recvmsg(self, sk: Sock, bufsize: int, flags: int, nonblock: bool) -> tuple[bytes, Any] | None:
        rest = flags & ~(MSG_PEEK | MSG_DONTWAIT)
        if rest:
            raise OutOfScope(f"recv flag {_flag_name(rest)} on a UDP socket is not modelled"
                             + (" (CPython's recv() returns bytes past the buffer with it)" if rest & MSG_TRUNC else ""))
        if sk.err:
            # __skb_recv_udp: sock_error() before the queue
            raise self._udp_pending_error(sk, Op.RECV)
        q = sk.rcv_queue
        if not q:
            # __skb_wait_for_more_packets: only a call that would wait sees RCV_SHUTDOWN (0 bytes,
            # no address); a non-blocking one gets EAGAIN first [V udp lockstep]
            if sk.shut & 1 and not (nonblock or flags & MSG_DONTWAIT):
                return b"", None
            return None
        if flags & MSG_PEEK:
            data, src, _ = q[0]
        else:
            data, src, c = q.popleft()
            sk.rmem -= c
        return data[:bufsize], src

    def udp_poll(self, sk: Sock) -> tuple[bool, bool, bool]:
        """``udp_poll`` -> ``datagram_poll``: readable with a datagram queued, a pending error or
        the receive side shut down; always writable on loopback; never exceptional."""
        return (bool(sk.rcv_queue) or bool(sk.err) or bool(sk.shut & 1), True, False)

    def _udp_drop_queue(self, sk: Sock) -> None:
        sk.rcv_queue = ()
        sk.rmem = 0

    # -- IPPROTO_IP multicast options (ip_sockglue.c: do_ip_setsockopt) -------------------

    def mcast_setsockopt(self, sk: Sock, opt: int, val: bytes) -> None:
        proto = Proto.TCP if sk.tcp else Proto.UDP
        n = len(val)
        if opt in (IP_MULTICAST_ALL, IP_MULTICAST_LOOP, IP_MULTICAST_TTL):
            v = int.from_bytes(val[:4], "little", signed=True) if n >= 4 else (val[0] if n >= 1 else 0)
            if n < 1:
                raise refuse(Op.SETSOCKOPT, proto, Cause.INVALID)
            if opt == IP_MULTICAST_TTL:
                if v == -1:
                    v = 1
                if not 0 <= v <= 255:
                    raise refuse(Op.SETSOCKOPT, proto, Cause.INVALID)
                sk.mc_ttl = v
            elif opt == IP_MULTICAST_LOOP:
                sk.mc_loop = v != 0
            else:
                sk.mc_all = v != 0
            return
        if opt == IP_MULTICAST_IF:
            if sk.tcp or n < 4:
                raise refuse(Op.SETSOCKOPT, proto, Cause.INVALID)
            ifindex = int.from_bytes(val[8:12], "little", signed=True) if n >= 12 else 0
            addr = int.from_bytes(val[4:8] if 8 <= n else val[:4], "big")
            if n >= 8 and n < 12:
                addr = int.from_bytes(val[4:8], "big")
            elif n < 8:
                addr = int.from_bytes(val[:4], "big")
            if not ifindex:
                if addr == 0:
                    sk.mc_index = sk.mc_addr = 0
                    return
                ifindex = self._v4_addr_dev(addr)
                if not ifindex:
                    raise refuse(Op.SETSOCKOPT, proto, Cause.ADDR_NOT_LOCAL)
            elif ifindex not in self.dev_by_index:  # type: ignore[attr-defined]
                raise refuse(Op.SETSOCKOPT, proto, Cause.ADDR_NOT_LOCAL)
            if sk.bound_dev and ifindex != sk.bound_dev:
                raise refuse(Op.SETSOCKOPT, proto, Cause.INVALID)
            sk.mc_index, sk.mc_addr = ifindex, addr
            return
        if opt in (IP_ADD_MEMBERSHIP, IP_DROP_MEMBERSHIP):
            if sk.tcp:
                raise refuse(Op.SETSOCKOPT, proto, Cause.PROTOCOL_ERROR)
            if n < 8:
                raise refuse(Op.SETSOCKOPT, proto, Cause.INVALID)
            group = int.from_bytes(val[:4], "big")
            addr = int.from_bytes(val[4:8], "big")
            ifindex = int.from_bytes(val[8:12], "little", signed=True) if n >= 12 else 0
            if opt == IP_ADD_MEMBERSHIP:
                self._mc_join(sk, group, addr, ifindex)
            else:
                self._mc_leave(sk, group, addr, ifindex)
            return
        # the source-filter options take a struct ip_mreq_source (group, interface, source)
        if n < 12:
            raise refuse(Op.SETSOCKOPT, proto, Cause.INVALID)
        group = int.from_bytes(val[:4], "big")
        addr = int.from_bytes(val[4:8], "big")
        src = int.from_bytes(val[8:12], "big")
        if opt == IP_ADD_SOURCE_MEMBERSHIP:
            # do_mcast_group_source: join in INCLUDE mode first, an existing membership is fine
            try:
                self._mc_join(sk, group, addr, 0, include=True)
            except OSError as e:
                if getattr(e, "cause", None) is not Cause.ADDR_IN_USE:
                    raise
        add = opt in (IP_ADD_SOURCE_MEMBERSHIP, IP_BLOCK_SOURCE)
        include = opt in (IP_ADD_SOURCE_MEMBERSHIP, IP_DROP_SOURCE_MEMBERSHIP)
        self._mc_source(sk, proto, group, addr, src, add, include)

    def _v4_addr_dev(self, addr: int) -> int:
        """``ip_dev_find``: the device holding a local address, 0 if none."""
        for a, _plen, ifindex, _sec in self.v4_addrs:  # type: ignore[attr-defined]
            if a == addr:
                return ifindex
        return 0

    def _mc_find_dev(self, addr: int, ifindex: int) -> int:
        """``ip_mc_find_dev``: by index, else by the address, else by a route to the group
        (none in a loopback-only namespace)."""
        if ifindex:
            return ifindex if ifindex in self.dev_by_index else 0  # type: ignore[attr-defined]
        if addr:
            return self._v4_addr_dev(addr)
        return 0

    def _mc_join(self, sk: Sock, group: int, addr: int, ifindex: int, include: bool = False) -> None:
        """``__ip_mc_join_group``: MCAST_EXCLUDE (or INCLUDE) with no sources."""
        if not v4_is_multicast(group):
            raise refuse(Op.SETSOCKOPT, Proto.UDP, Cause.INVALID)
        dev = self._mc_find_dev(addr, ifindex)
        if not dev:
            raise refuse(Op.SETSOCKOPT, Proto.UDP, Cause.NO_DEVICE)
        lst = sk.mc_list
        for m in lst:
            if m.group == group and m.ifindex == dev:
                raise refuse(Op.SETSOCKOPT, Proto.UDP, Cause.ADDR_IN_USE)
        if len(lst) >= IGMP_MAX_MEMBERSHIPS:
            raise refuse(Op.SETSOCKOPT, Proto.UDP, Cause.NO_BUFFERS)
        if type(lst) is not list:
            lst = sk.mc_list = []
        m = Membership(group, dev, addr)
        if include:
            m.mode = 1
        lst.append(m)
        self.mc_members.add(sk)  # type: ignore[attr-defined]

    def _mc_source(self, sk: Sock, proto: Proto, group: int, addr: int, src: int, add: bool, include: bool) -> None:
        """``igmp.c: ip_mc_source`` [V probes in tests/model/test_demux.py]: the membership must
        exist (EINVAL); a filter with sources keeps its mode (EINVAL), an empty one switches to
        the option's mode; adding a source already there or removing one that is not is
        EADDRNOTAVAIL; removing the last source of an INCLUDE filter leaves the group."""
        dev = self._mc_find_dev(addr, 0)
        if not dev:
            raise refuse(Op.SETSOCKOPT, proto, Cause.NO_DEVICE)
        mode = 1 if include else 0
        for m in sk.mc_list:
            if m.group == group and m.ifindex == dev:
                break
        else:
            raise refuse(Op.SETSOCKOPT, proto, Cause.INVALID)
        if m.sources and m.mode != mode:
            raise refuse(Op.SETSOCKOPT, proto, Cause.INVALID)
        m.mode = mode
        if add:
            if src in m.sources:
                raise refuse(Op.SETSOCKOPT, proto, Cause.ADDR_NOT_LOCAL)
            m.sources.add(src)
            return
        if src not in m.sources:
            raise refuse(Op.SETSOCKOPT, proto, Cause.ADDR_NOT_LOCAL)
        if len(m.sources) == 1 and include:
            self._mc_leave(sk, group, addr, 0)
            return
        m.sources.discard(src)

    def _mc_leave(self, sk: Sock, group: int, addr: int, ifindex: int) -> None:
        """``ip_mc_leave_group``."""
        dev = self._mc_find_dev(addr, ifindex)
        if not ifindex and not addr and not dev:
            raise refuse(Op.SETSOCKOPT, Proto.UDP, Cause.NO_DEVICE)
        ifindex = ifindex or dev
        for i, m in enumerate(sk.mc_list):
            if m.group != group:
                continue
            if ifindex:
                if m.ifindex != ifindex:
                    continue
            elif addr and addr != m.address:
                continue
            del sk.mc_list[i]
            if not sk.mc_list:
                self.mc_members.discard(sk)  # type: ignore[attr-defined]
            return
        raise refuse(Op.SETSOCKOPT, Proto.UDP, Cause.ADDR_NOT_LOCAL)

    def mcast_getsockopt(self, sk: Sock, opt: int, buflen: int) -> bytes:
        if opt == IP_MULTICAST_IF:
            return sk.mc_addr.to_bytes(4, "big")[:max(buflen, 0)]
        if opt == IP_MULTICAST_TTL:
            v = sk.mc_ttl
        elif opt == IP_MULTICAST_LOOP:
            v = int(sk.mc_loop)
        elif opt == IP_MULTICAST_ALL:
            v = int(sk.mc_all)
        else:
            raise OutOfScope(f"getsockopt(IPPROTO_IP, {opt}) (multicast source filters) is not modelled")
        if 0 < buflen < 4 and 0 <= v <= 255:
            return bytes([v])
        return v.to_bytes(4, "little", signed=True)[:max(buflen, 0)]

    def _mc_drop_socket(self, sk: Sock) -> None:
        """``ip_mc_drop_socket`` at close."""
        if sk.mc_list:
            sk.mc_list = ()
            self.mc_members.discard(sk)  # type: ignore[attr-defined]

    _ = CLOSE
