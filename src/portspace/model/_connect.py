"""connect(), accept() and disconnect on the model: routes, the established hash, TCP
connect() autobind, loopback handshakes, UDP connect.

Theory of operation
-------------------
Rule 1: these are methods of ``NetNS`` (a mixin), so state still changes only through
syscall-named methods: ``connect``, ``accept``, ``disconnect``.
Rule 2: decisions are the kernel's, each cited: routing (``route.c:
ip_route_output_key_hash_rcu``, only the local table and loopback matter here), TCP connect
(``tcp_ipv4.c: tcp_v4_connect``, ``af_inet.c: __inet_stream_connect``), the port choice
(``inet_hashtables.c: __inet_hash_connect``, spec §5.3), the 4-tuple rule
(``__inet_check_established``, spec §6.1), the listener lookup (``inet_lhash2_lookup``, spec
§7.1) and UDP (``datagram.c: __ip4_datagram_connect``, spec §6.6).

A loopback handshake completes inside the connect() call, as it does on Linux: the SYN, SYN-ACK
and ACK are processed before connect() returns (a non-blocking connect() still reports
EINPROGRESS, and the next connect() reports success).  What the model cannot do without a
clock and packets -- retransmit a SYN that a full accept queue dropped, or wait for a peer
that never answers -- leaves the client in SYN_SENT (non-blocking) or raises a clear error
(blocking), never a silent guess.

Facts probed on the live kernel (6.18.44, private netns) and kept as tests in
tests/kernel/test_connect.py: connect() to 0.0.0.0 / :: reaches 127.0.0.1 / ::1; a socket may
connect to its own address and port (simultaneous open); TCP to broadcast, multicast or an
unrouted address is ENETUNREACH before any autobind; UDP autobinds before routing; a refused
connect() keeps showing its old port in getsockname() although the port is released.
"""
from __future__ import annotations

import hashlib
from typing import Any

from . import _rules
from ._addr import AF_INET, AF_INET6, V4MAPPED_PREFIX, coverage, v4_is_multicast, \
    v6_is_mapped, v6_is_multicast, v6_needs_scope
from ._errors import SK_ERR_CAUSE, Cause, Deadlock, Op, OutOfScope, Proto, refuse
from ._rules import CLOSE, ESTABLISHED, FIN_WAIT2, LISTEN, SYN_SENT
from ._demux import Packet, listener_lookup
from ._sock import Bind2Bucket, BindBucket, Sock, chain_key

# socket-layer states (include/uapi/linux/net.h: socket_state)
SS_UNCONNECTED, SS_CONNECTING, SS_CONNECTED, SS_DISCONNECTING = 1, 2, 3, 4

# outcomes of a connect() attempt, for the socket layer
DONE, IN_PROGRESS = "done", "in progress"


_ALL_PORTS = (1 << 65536) - 1
_EVERY_OTHER = int.from_bytes(b"\x55" * 8192, "little")  # bits 0, 2, 4, ...


def _mask_of(ports: Any) -> int:
    """A set of ports as a 65536-bit int."""
    buf = bytearray(8192)
    for p in ports:
        buf[p >> 3] |= 1 << (p & 7)
    return int.from_bytes(buf, "little")


def _next_free(free: int, base: int, step: int, j: int, jend: int) -> int:
    """The smallest ``k`` in ``[j, jend)`` with bit ``base + k*step`` set in ``free``, or
    ``jend``: one shift, one mask and a lowest-set-bit, whatever the distance."""
    lo_port = base + j * step
    span = (jend - j - 1) * step + 1
    window = (free >> lo_port) & ((1 << span) - 1)
    if step == 2:
        window &= _EVERY_OTHER
    if not window:
        return jend
    return j + ((window & -window).bit_length() - 1) // step


def _v6key(family: int, v4: int, v6: int) -> int:
    return (V4MAPPED_PREFIX | v4) if family == AF_INET else v6


class ConnectOps:
    """connect()/accept()/disconnect for :class:`~._netns.NetNS` (see module header)."""

    # the attributes below belong to NetNS; declared for readers and type checkers
    ehash: dict[tuple[int, int, int, int], list[Sock]]

    # ------------------------------------------------------------------------------------
    # keyed hashes (injected key; the kernel's are secret per boot)
    # ------------------------------------------------------------------------------------

    def keyed_hash64(self, *parts: int) -> int:
        """A deterministic, uniform 64-bit keyed hash standing in for the kernel's siphash /
        jhash with a boot secret (spec §5.3, §7.3, §9.3)."""
        h = hashlib.blake2b(digest_size=8, key=self.hash_key)  # type: ignore[attr-defined]
        for p in parts:
            h.update(p.to_bytes(17, "little", signed=True))
        return int.from_bytes(h.digest(), "little")

    def perturb(self, index: int) -> int:
        """``table_perturb[index]``: random initial contents (here a keyed hash of the index,
        so nothing is drawn from the RNG), plus the increments of earlier connects."""
        v = self.table_perturb.get(index)  # type: ignore[attr-defined]
        if v is None:
            v = self.keyed_hash64(0x7E57, index) & 0xFFFFFFFF
        return v

    # ------------------------------------------------------------------------------------
    # routing: the destination, the source address, or an error
    # ------------------------------------------------------------------------------------

    def route_v4(self, daddr: int, saddr: int, oif: int, tcp: bool) -> tuple[int, int, str]:
        """Returns (daddr, saddr, kind) with kind "local", "broadcast" or "remote-silent" (a
        route exists but nothing answers: a SYN stays unanswered).  Raises ENETUNREACH.

        * daddr 0.0.0.0 means the host itself: daddr = saddr, or 127.0.0.1 for both
          (``ip_route_output_key_hash_rcu``) [V probe: connect 0.0.0.0 -> 127.0.0.1].
        * A local destination takes the route's preferred source: 127.0.0.1 for 127/8 (also for
          secondary 127.x addresses), the address itself for a primary /32 [V probe].
        * A socket bound to a device other than lo sends through it: out of scope (on the
          reference host a SYN out of a port-less bridge stayed in SYN_SENT).
        """
        if daddr == 0:
            if saddr:
                daddr = saddr
            else:
                daddr = saddr = 0x7F000001
            return daddr, saddr, "local"
        if daddr == 0xFFFFFFFF or v4_is_multicast(daddr):
            raise refuse(Op.CONNECT, Proto.TCP if tcp else Proto.UDP, Cause.NET_UNREACHABLE)
        route = self._lookup_local_route(daddr)  # type: ignore[attr-defined]
        proto = Proto.TCP if tcp else Proto.UDP
        if oif and oif != 1:
            dev = self.dev_by_index.get(oif)  # type: ignore[attr-defined]
            raise OutOfScope(f"connect() through device {dev.name if dev else oif}: only loopback "
                             f"traffic is modelled")
        if route is None:
            for r in self.main_routes:  # type: ignore[attr-defined]
                if daddr & ((0xFFFFFFFF << (32 - r.plen)) & 0xFFFFFFFF) == r.prefix:
                    dev = self.dev_by_index.get(r.ifindex)  # type: ignore[attr-defined]
                    raise OutOfScope(f"connect() to a remote address through {dev.name if dev else r.ifindex}: "
                                     f"remote hosts are not modelled")
            raise refuse(Op.CONNECT, proto, Cause.NET_UNREACHABLE)
        kind = route.kind
        if kind == "broadcast":
            if tcp:
                raise refuse(Op.CONNECT, Proto.TCP, Cause.NET_UNREACHABLE)
            return daddr, saddr or route.prefsrc, "broadcast"
        return daddr, saddr or route.prefsrc, "local"

    @staticmethod
    def _v6_unspecified_dest(sk: Sock, daddr: int) -> int:
        """``tcp_v6_connect`` / ``__ip6_datagram_connect``: a destination of ``::`` is the host
        itself -- ``::ffff:127.0.0.1`` for a socket bound to a v4-mapped address (then the IPv4
        path runs), ``::1`` otherwise [V probe: src ::ffff:0.0.0.0, dst :: -> ::ffff:127.0.0.1]."""
        if daddr == 0 and sk.family == AF_INET6 and v6_is_mapped(sk.v6_rcv_saddr):
            return V4MAPPED_PREFIX | 0x7F000001
        return daddr

    def _v6_source_family(self, sk: Sock, proto: Proto, op: Op = Op.CONNECT) -> None:
        """``ip6_dst_lookup_tail``, after the route was found: a v4-mapped source (including
        ``::ffff:0.0.0.0``) cannot send to a native IPv6 destination: EAFNOSUPPORT [V probe]."""
        if v6_is_mapped(sk.v6_rcv_saddr):
            raise refuse(op, proto, Cause.MAPPED_SOURCE_NATIVE_DEST)

    def route_v6(self, daddr: int, saddr: int, oif: int, tcp: bool, scope_id: int) -> tuple[int, int, str]:
        """IPv6 routing for connect(): ``::`` means ``::1``; a configured address is local and is
        its own source; a link-local destination needs a scope (EINVAL); anything else is
        unreachable in a namespace without routes (ENETUNREACH) [V probe]."""
        proto = Proto.TCP if tcp else Proto.UDP
        if daddr == 0:
            return (saddr or 1), (saddr or 1), "local"
        if tcp and v6_is_multicast(daddr):  # tcp_v6_connect refuses multicast before any scope check
            raise refuse(Op.CONNECT, proto, Cause.NET_UNREACHABLE)
        if v6_needs_scope(daddr):
            if not (scope_id or oif):
                raise refuse(Op.CONNECT, proto, Cause.INVALID)
            raise OutOfScope("connect() to a link-local IPv6 address (no link-local traffic in the model)")
        if v6_is_multicast(daddr):
            raise refuse(Op.CONNECT, proto, Cause.NET_UNREACHABLE)
        if oif and oif != 1:
            raise OutOfScope("connect() through a device other than lo: only loopback traffic is modelled")
        for a, plen, i in self.v6_addrs:  # type: ignore[attr-defined]
            if a == daddr:
                return daddr, saddr or daddr, "local"
        for a, plen, i in self.v6_addrs:  # type: ignore[attr-defined]
            if plen < 128 and (a >> (128 - plen)) == (daddr >> (128 - plen)):
                raise OutOfScope("connect() to an on-link IPv6 address that is not local: other hosts are "
                                 "not modelled")
        raise refuse(Op.CONNECT, proto, Cause.NET_UNREACHABLE)

    # ------------------------------------------------------------------------------------
    # established hash (ehash)
    # ------------------------------------------------------------------------------------

    def _ekey(self, sk: Sock) -> tuple[int, int, int, int]:
        return (_v6key(sk.family, sk.rcv_saddr, sk.v6_rcv_saddr), sk.num,
                _v6key(sk.family, sk.daddr, sk.v6_daddr), sk.dport)

    def _ehash_add(self, sk: Sock) -> None:
        key = self._ekey(sk)
        self.ehash.setdefault(key, []).append(sk)
        sk.in_ehash = True
        if not sk.is_tw:
            self._dest_add(key)

    def _ehash_del(self, sk: Sock) -> None:
        if sk.in_ehash:
            key = self._ekey(sk)
            lst = self.ehash[key]
            lst.remove(sk)
            if not lst:
                del self.ehash[key]
            sk.in_ehash = False
            if not sk.is_tw:
                self._dest_del(key)

    # -- the per-destination index behind the fast port search --------------------------
    # dest_ports: (local addr, remote addr, remote port) -> {local port: live sockets on that
    # 4-tuple}.  TIME_WAIT remnants are not in it (they may be recyclable; the exact check
    # decides).  _dest_masks caches the same as a 65536-bit int per destination.

    def _dest_add(self, key: tuple[int, int, int, int]) -> None:
        dkey = (key[0], key[2], key[3])
        ports = self.dest_ports.get(dkey)  # type: ignore[attr-defined]
        if ports is None:
            ports = self.dest_ports[dkey] = {}  # type: ignore[attr-defined]
        n = ports.get(key[1], 0)
        ports[key[1]] = n + 1
        if n == 0:
            m = self._dest_masks.get(dkey)  # type: ignore[attr-defined]
            if m is not None:
                self._dest_masks[dkey] = m | (1 << key[1])  # type: ignore[attr-defined]

    def _dest_del(self, key: tuple[int, int, int, int]) -> None:
        dkey = (key[0], key[2], key[3])
        ports = self.dest_ports[dkey]  # type: ignore[attr-defined]
        n = ports[key[1]] - 1
        if n:
            ports[key[1]] = n
            return
        del ports[key[1]]
        if not ports:
            del self.dest_ports[dkey]  # type: ignore[attr-defined]
        self._dest_masks.pop(dkey, None)  # type: ignore[attr-defined]

    def _blocked_mask(self, lk: int, rk: int, dport: int) -> int:
        """Ports that connect() autobind can rule out cheaply for this destination: a bucket
        that is not connect()-only (flags -1/-1), a reserved port, or a live socket on the
        4-tuple.  A port outside the mask still gets the exact check."""
        ns = self
        if ns._bound_mask is None:  # type: ignore[attr-defined]
            ns._bound_mask = _mask_of(ns.bound_ports)  # type: ignore[attr-defined]
        reserved = ns.sysctls.reserved  # type: ignore[attr-defined]
        if ns._reserved_src is not reserved:  # type: ignore[attr-defined]
            ns._reserved_src, ns._reserved_mask = reserved, _mask_of(reserved)  # type: ignore[attr-defined]
        dkey = (lk, rk, dport)
        m = ns._dest_masks.get(dkey)  # type: ignore[attr-defined]
        if m is None:
            m = ns._dest_masks[dkey] = _mask_of(ns.dest_ports.get(dkey, ()))  # type: ignore[attr-defined]
        return ns._bound_mask | ns._reserved_mask | m  # type: ignore[attr-defined]

    def _tuple_taken(self, sk: Sock, lkey: int, lport: int, rkey: int, rport: int,
                     via_autobind: bool = False, recycle: list[Sock] | None = None) -> bool:
        """``__inet_check_established`` (spec §6.1): a live socket on this 4-tuple with a
        compatible device refuses it; a TIME_WAIT remnant refuses it unless ``tcp_twsk_unique``
        lets the new connection recycle it (spec §6.4).  Recyclable remnants are appended to
        ``recycle``: the caller kills them after the new socket holds the port, as the kernel
        does (``inet_twsk_deschedule_put`` after hashing), so the bucket never empties between."""
        found: list[Sock] = []
        for o in self.ehash.get((lkey, lport, rkey, rport), ()):
            if o is sk or not _rules.dev_compatible(sk.bound_dev, o.bound_dev):
                continue
            if o.is_tw and self.tw_recyclable(o, via_autobind):
                found.append(o)
                continue
            return True
        if recycle is not None:
            recycle.extend(found)
        return False

    def tw_recyclable(self, tw: Sock, via_autobind: bool) -> bool:
        """``tcp_ipv4.c: tcp_twsk_unique`` (spec §6.4): never a FIN_WAIT2 remnant; needs TCP
        timestamps on the old connection; an explicit bind(port)+connect() recycles at once,
        whatever ``tcp_tw_reuse`` says; connect() autobind needs ``tcp_tw_reuse`` (2 = loopback
        only: 127/8, ::1, or bound to lo) and more than ``tcp_tw_reuse_delay`` ms since the
        remnant was made [V tw:W, tw:X]."""
        ints = self.sysctls.ints  # type: ignore[attr-defined]
        reuse = ints["net.ipv4.tcp_tw_reuse"]
        if tw.state == FIN_WAIT2:
            reuse = 0
        if reuse == 2:
            if tw.family == AF_INET:
                loop = (tw.daddr >> 24) == 127 or (tw.rcv_saddr >> 24) == 127
            else:
                loop = any(a == 1 or (v6_is_mapped(a) and (a >> 24) & 0xFF == 127)
                           for a in (tw.v6_daddr, tw.v6_rcv_saddr))
            if not (tw.bound_dev == 1 or loop):
                reuse = 0
        if not tw.tw_ts:
            return False
        if not via_autobind:
            return True
        elapsed_ms = (self.clock_seconds() - tw.tw_entry) * 1000.0  # type: ignore[attr-defined]
        return reuse != 0 and elapsed_ms > ints["net.ipv4.tcp_tw_reuse_delay"]

    # ------------------------------------------------------------------------------------
    # connect()
    # ------------------------------------------------------------------------------------

    def connect(self, sk: Sock, daddr: int, dport: int, scope_id: int = 0, nonblock: bool = False) -> str:
        """``connect(2)`` on a TCP or UDP socket; returns DONE or IN_PROGRESS (a handshake that
        has not completed: the caller reports EINPROGRESS / EALREADY)."""
        if not sk.tcp:
            self.udp_connect(sk, daddr, dport, scope_id)
            return DONE
        return self.tcp_connect(sk, daddr, dport, scope_id, nonblock)

    def tcp_connect(self, sk: Sock, daddr: int, dport: int, scope_id: int, nonblock: bool) -> str:
        """``af_inet.c: __inet_stream_connect`` + ``tcp_v4_connect`` / ``tcp_v6_connect``."""
        if sk.sock_state == SS_CONNECTED:
            raise refuse(Op.CONNECT, Proto.TCP, Cause.IS_CONNECTED)
        if sk.sock_state == SS_DISCONNECTING:
            raise refuse(Op.CONNECT, Proto.TCP, Cause.INVALID)  # __inet_stream_connect: default
        if sk.sock_state == SS_CONNECTING:
            if sk.state == SYN_SENT:
                raise refuse(Op.CONNECT, Proto.TCP, Cause.ALREADY_CONNECTING)
            if sk.state == CLOSE:
                return self._sock_error(sk)
            sk.sock_state = SS_CONNECTED
            return DONE
        if sk.state != CLOSE:
            raise refuse(Op.CONNECT, Proto.TCP, Cause.IS_CONNECTED)
        daddr = self._v6_unspecified_dest(sk, daddr)
        mapped = sk.family == AF_INET6 and v6_is_mapped(daddr)
        if sk.family == AF_INET or mapped:
            if mapped and sk.v6only:
                raise refuse(Op.CONNECT, Proto.TCP, Cause.NET_UNREACHABLE)
            d4 = daddr & 0xFFFFFFFF if mapped else daddr
            s4 = sk.rcv_saddr
            d4, s4, kind = self.route_v4(d4, s4, sk.bound_dev, True)
            new_saddr, new_v6 = s4, (V4MAPPED_PREFIX | s4) if sk.family == AF_INET6 else 0
            new_daddr, new_v6d = d4, (V4MAPPED_PREFIX | d4) if sk.family == AF_INET6 else 0
        else:
            s6 = sk.v6_rcv_saddr
            d6, s6, kind = self.route_v6(daddr, s6, sk.bound_dev, True, scope_id)
            self._v6_source_family(sk, Proto.TCP)
            if sk.v4_ops:
                # tcp_v6_connect switched this socket to the IPv4 transmit path (ipv6_mapped) for
                # an earlier SYN to a v4-mapped address and only switches back when that connect
                # fails synchronously; on 6.18 a later SYN to a native IPv6 address then goes
                # nowhere and connect() times out [V probe].  The model does not guess the rest.
                raise OutOfScope("connect() to a native IPv6 address from a TCP/IPv6 socket that already sent a "
                                 "SYN to a v4-mapped address (Linux keeps the IPv4 transmit path; the SYN is lost)")
            new_saddr, new_v6, new_daddr, new_v6d = 0x7F000006, s6, 0, d6
        if sk.shut & 2 and sk.num == dport and (new_saddr, new_v6) == (new_daddr, new_v6d):
            # a self-connect (simultaneous open with itself) after shutdown(SHUT_WR): on 6.18
            # connect() under a timeout returns at once and the socket never gets a peer; the
            # model does not guess that handshake [found by the connect lockstep]
            raise OutOfScope("connect() of a socket to its own address and port after shutdown(SHUT_WR)")
        # narrow a wildcard binding to the route's source (inet_bhash2_update_saddr, spec §2.2)
        old_addr = (sk.rcv_saddr, sk.v6_rcv_saddr)
        self._set_saddr(sk, new_saddr, new_v6)
        sk.daddr, sk.v6_daddr, sk.dport = new_daddr, new_v6d, dport
        sk.state = SYN_SENT
        try:
            if sk.listened:
                raise refuse(Op.CONNECT, Proto.TCP, Cause.FORMER_LISTENER)
            if sk.num:
                lk = _v6key(sk.family, sk.rcv_saddr, sk.v6_rcv_saddr)
                rk = _v6key(sk.family, sk.daddr, sk.v6_daddr)
                recycle: list[Sock] = []
                if self._tuple_taken(sk, lk, sk.num, rk, dport, False, recycle):
                    raise refuse(Op.CONNECT, Proto.TCP, Cause.TUPLE_IN_USE)
                for tw in recycle:
                    self._kill_remnant(tw)  # type: ignore[attr-defined]
            else:
                self._tcp_connect_autobind(sk)
        except OSError:
            sk.state = CLOSE
            sk.daddr = sk.v6_daddr = sk.dport = 0
            if not sk.bindaddr_lock:
                self._set_saddr(sk, *old_addr) if sk.num else self._reset_saddr(sk)
            raise
        self._ehash_add(sk)
        sk.sock_state = SS_CONNECTING
        sk.syn_sent = True
        if mapped:
            sk.v4_ops = True
        self._deliver_syn(sk)
        if sk.state == SYN_SENT:
            if not nonblock:
                raise Deadlock("a blocking connect() to a listener whose accept queue is full would wait "
                               "for a retransmitted SYN; use a timeout or a non-blocking socket")
            return IN_PROGRESS
        if nonblock:
            return IN_PROGRESS  # EINPROGRESS although the handshake is done (loopback)
        if sk.state == CLOSE:
            return self._sock_error(sk)
        sk.sock_state = SS_CONNECTED
        return DONE

    def _sock_error(self, sk: Sock) -> str:
        """The ``sock_error`` tail of ``__inet_stream_connect``: report and clear ``sk_err``
        (ECONNABORTED when it was already read), then disconnect (address reset)."""
        err = sk.err
        sk.err = 0
        sk.shut = 0  # the disconnect of the sock_error tail (tcp_disconnect)
        sk.sock_state = SS_UNCONNECTED
        sk.daddr = sk.v6_daddr = sk.dport = 0
        if not sk.bindaddr_lock:
            self._reset_saddr(sk)
        # sock_error(sk) ?: -ECONNABORTED: the pending error itself (ECONNREFUSED, or ECONNRESET
        # for a queued connection its listener's close reset), else ECONNABORTED
        raise refuse(Op.CONNECT, Proto.TCP, SK_ERR_CAUSE.get(err, Cause.CONN_ABORTED))

    def _set_saddr(self, sk: Sock, v4: int, v6: int) -> None:
        """Change the local address, moving the socket to the bind2 bucket of the new address
        if it holds a port (``inet_bhash2_update_saddr``)."""
        if (sk.rcv_saddr, sk.v6_rcv_saddr) == (v4, v6):
            return
        sk.rcv_saddr, sk.v6_rcv_saddr = v4, v6
        sk.cov4, sk.cov6 = coverage(sk.family, v4, v6, sk.v6only)
        if sk.tcp and sk.tb is not None:
            tb, old = sk.tb, sk.tb2
            old.owners.remove(sk)
            if not old.owners:
                del tb.tb2s[old.key]
            key = v6 if sk.family == AF_INET6 else (V4MAPPED_PREFIX | v4)
            tb2 = tb.tb2s.get(key)
            if tb2 is None:
                tb2 = tb.tb2s[key] = Bind2Bucket(key)
                tb2.fastreuse, tb2.fastreuseport = tb.fastreuse, tb.fastreuseport
            tb2.owners.append(sk)
            sk.tb2 = tb2
        elif not sk.tcp and sk.num:
            self._udp_rehash(sk)  # type: ignore[attr-defined]

    def _reset_saddr(self, sk: Sock) -> None:
        """``inet_reset_saddr``: back to the wildcard (0.0.0.0, or :: for AF_INET6)."""
        self._set_saddr(sk, 0, 0)

    # ------------------------------------------------------------------------------------
    # TCP connect() autobind (spec §5.3)
    # ------------------------------------------------------------------------------------

    def _tcp_connect_autobind(self, sk: Sock) -> None:
        """``inet_hashtables.c: __inet_hash_connect``: even ports first from a per-destination
        offset (keyed hash + ``table_perturb``), a port is usable if it has no bucket, or a
        connect()-only bucket (flags -1/-1) and the 4-tuple is free."""
        lo, hi, per_socket = self._effective_range(sk)  # type: ignore[attr-defined]
        step = 1 if per_socket else 2
        hi += 1
        remaining = hi - lo
        if not per_socket and remaining > 1:
            remaining &= ~1
        lk = _v6key(sk.family, sk.rcv_saddr, sk.v6_rcv_saddr)
        rk = _v6key(sk.family, sk.daddr, sk.v6_daddr)
        h = self.keyed_hash64(lk, rk, sk.dport, int(self.clock_seconds() // 10))  # type: ignore[attr-defined]
        index = h & 0xFFFF
        offset = ((self.perturb(index) + (h >> 32)) & 0xFFFFFFFF) % remaining
        if not per_socket:
            offset &= ~1
        bhash = self.bhash  # type: ignore[attr-defined]
        # The kernel walks the candidates one by one (linear when the range is nearly full for
        # this destination, peers.md item 22).  The model visits the same candidates in the same
        # order but jumps over the ones a bitmask rules out (see _blocked_mask); every port it
        # stops at gets the kernel's exact test, so the chosen port and ``i`` (which feeds
        # table_perturb) are the kernel's.
        if sk.bound_dev == 0:
            free = _ALL_PORTS ^ self._blocked_mask(lk, rk, sk.dport)
        else:
            free = _ALL_PORTS  # device-bound: 4-tuple checks depend on devices; test every port
        count = len(range(0, remaining, step))
        while True:
            a = lo + offset
            j1 = min(count, max(0, -((a - hi) // step)))  # candidates before the wrap
            for jstart, jend, base in ((0, j1, a), (j1, count, a - remaining)):
                j = jstart
                while j < jend:
                    j = _next_free(free, base, step, j, jend)
                    if j >= jend:
                        break
                    port = base + j * step
                    tb = bhash.get(port)
                    recycle: list[Sock] = []
                    if tb is None or (tb.fastreuse < 0 and tb.fastreuseport < 0
                                      and not self._tuple_taken(sk, lk, port, rk, sk.dport, True, recycle)):
                        self._take_connect_port(sk, port, tb)
                        for tw in recycle:
                            self._kill_remnant(tw)  # type: ignore[attr-defined]
                        i = j * step
                        inc = max(i, self.rng.below(8) * step) + step  # type: ignore[attr-defined]
                        self.table_perturb[index] = (self.perturb(index) + inc) & 0xFFFFFFFF  # type: ignore[attr-defined]
                        return
                    j += 1
            if per_socket:
                break
            offset += 1
            if offset & 1 and remaining > 1:
                continue
            break
        raise refuse(Op.CONNECT, Proto.TCP, Cause.NO_EPHEMERAL_PORT)

    def _take_connect_port(self, sk: Sock, port: int, tb: BindBucket | None) -> None:
        if tb is None:
            tb = self.bhash[port] = BindBucket(port, -1)  # type: ignore[attr-defined]
        key = sk.v6_rcv_saddr if sk.family == AF_INET6 else (V4MAPPED_PREFIX | sk.rcv_saddr)
        tb2 = tb.tb2s.get(key)
        if tb2 is None:
            tb2 = tb.tb2s[key] = Bind2Bucket(key)
            tb2.fastreuse, tb2.fastreuseport = tb.fastreuse, tb.fastreuseport
        tb2.owners.append(sk)
        sk.tb, sk.tb2, sk.num, sk.sport = tb, tb2, port, port
        sk.connect_bind = True

    # ------------------------------------------------------------------------------------
    # the SYN on loopback: listener lookup (spec §7.1), handshake, refusal
    # ------------------------------------------------------------------------------------

    def _deliver_syn(self, sk: Sock) -> None:
        """Process the SYN of ``sk`` as the receiving side would, synchronously."""
        rev = (_v6key(sk.family, sk.daddr, sk.v6_daddr), sk.dport,
               _v6key(sk.family, sk.rcv_saddr, sk.v6_rcv_saddr), sk.num)
        for o in list(self.ehash.get(rev, ())):
            if o.is_tw:
                if o.state == FIN_WAIT2:
                    raise OutOfScope("a SYN arriving on a FIN_WAIT2 remnant (answered by RST or ACK "
                                     "depending on the sequence window)")
                # tcp_timewait_state_process: on loopback the new SYN's timestamp is newer, so
                # the remnant is removed and the SYN goes to the listener (spec §6.5) [V tw:Y]
                self._kill_remnant(o)  # type: ignore[attr-defined]
                continue
            if o is sk or o.state == SYN_SENT:
                # simultaneous open; connecting to itself is the common case [V probe]
                sk.state = ESTABLISHED
                if o is not sk:
                    o.state = ESTABLISHED
                    o.peer, sk.peer = sk, o
                else:
                    sk.peer = sk
                return
            if o.state != LISTEN:
                self._refused(sk)
                return
        lsk = self.lookup_listener(sk)
        if lsk is None:
            self._refused(sk)
            return
        if len(lsk.accept_queue) > lsk.backlog:
            return  # sk_acceptq_is_full: the SYN is dropped, the client stays in SYN_SENT
        child = self._make_child(lsk, sk)
        lsk.accept_queue.append(child)
        sk.state = ESTABLISHED
        sk.peer, child.peer = child, sk

    def _refused(self, sk: Sock) -> None:
        """The RST answer: the client goes to CLOSE with ECONNREFUSED and releases a port it
        did not bind explicitly (``tcp_done`` -> ``tcp_set_state(CLOSE)``); getsockname() keeps
        showing the old port (``inet_sport`` is not cleared) [V probe]."""
        self._ehash_del(sk)
        sk.state = CLOSE
        sk.err = 111
        sk.shut = 3  # tcp_done: both directions shut (a recv after the error is read: b'')
        if sk.tb is not None and not sk.bindport_lock:
            self._tcp_put_port(sk)  # type: ignore[attr-defined]
            sk.num = 0
            sk.connect_bind = False

    def lookup_listener(self, sk: Sock) -> Sock | None:
        """The listener a SYN from ``sk`` reaches: ``_demux.listener_lookup`` (spec §7.1) on
        the packet the SYN is."""
        return listener_lookup(self, self._syn_packet(sk))

    @staticmethod
    def _syn_packet(sk: Sock) -> Packet:
        if sk.family == AF_INET6 and not v6_is_mapped(sk.v6_daddr):
            return Packet(True, True, sk.v6_rcv_saddr, sk.num, sk.v6_daddr, sk.dport, 1)
        if sk.family == AF_INET6:
            return Packet(True, False, sk.v6_rcv_saddr & 0xFFFFFFFF, sk.num, sk.v6_daddr & 0xFFFFFFFF, sk.dport, 1)
        return Packet(True, False, sk.rcv_saddr, sk.num, sk.daddr, sk.dport, 1)

    def _make_child(self, lsk: Sock, client: Sock) -> Sock:
        """The accepted child (``inet_csk_clone_lock`` + ``__inet_inherit_port``): it inherits
        the listener's uid, options and device, takes the listener's port, and joins the bind2
        bucket of its own local address (the SYN's destination) without touching the fast
        flags (spec §1.2)."""
        child = Sock(-1, lsk.family, True, lsk.uid, False)
        child.reuseaddr, child.reuseport, child.bound_dev = lsk.reuseaddr, lsk.reuseport, lsk.bound_dev
        child.state = ESTABLISHED
        child.sock_state = SS_CONNECTED
        if lsk.family == AF_INET6:
            if client.family == AF_INET or v6_is_mapped(client.v6_daddr):
                child.v6_rcv_saddr = V4MAPPED_PREFIX | client.daddr if client.family == AF_INET else client.v6_daddr
                child.rcv_saddr = child.v6_rcv_saddr & 0xFFFFFFFF
                child.v6_daddr = (V4MAPPED_PREFIX | client.rcv_saddr) if client.family == AF_INET else client.v6_rcv_saddr
                child.daddr = child.v6_daddr & 0xFFFFFFFF
            else:
                child.v6_rcv_saddr, child.rcv_saddr = client.v6_daddr, 0x7F000006
                child.v6_daddr, child.v6only = client.v6_rcv_saddr, True
        else:
            child.rcv_saddr = client.daddr if client.family == AF_INET else client.v6_daddr & 0xFFFFFFFF
            child.daddr = client.rcv_saddr if client.family == AF_INET else client.v6_rcv_saddr & 0xFFFFFFFF
        child.dport = client.num
        child.cov4, child.cov6 = coverage(child.family, child.rcv_saddr, child.v6_rcv_saddr, child.v6only)
        tb = lsk.tb
        key = child.v6_rcv_saddr if child.family == AF_INET6 else (V4MAPPED_PREFIX | child.rcv_saddr)
        tb2 = tb.tb2s.get(key)
        if tb2 is None:
            tb2 = tb.tb2s[key] = Bind2Bucket(key)
            tb2.fastreuse, tb2.fastreuseport = tb.fastreuse, tb.fastreuseport
        tb2.owners.append(child)
        child.tb, child.tb2, child.num, child.sport = tb, tb2, lsk.num, lsk.num
        child.bindport_lock = False  # sk_clone_lock drops SOCK_BINDPORT_LOCK: a reset child releases the port
        child.listener = lsk
        # the SYN and the ACK were processed on the current CPU: both ends record it [V probe]
        child.incoming_cpu = client.incoming_cpu = self.cpu  # type: ignore[attr-defined]
        self._ehash_add(child)
        return child

    # ------------------------------------------------------------------------------------
    # accept()
    # ------------------------------------------------------------------------------------

    def accept(self, lsk: Sock) -> Sock | None:
        """``inet_csk_accept``: EINVAL unless listening; the oldest queued child, given the
        lowest free fd; None when the queue is empty (the caller reports EAGAIN or raises)."""
        if not lsk.tcp:
            raise refuse(Op.ACCEPT, Proto.UDP, Cause.NOT_STREAM)
        if lsk.state != LISTEN:
            raise refuse(Op.ACCEPT, Proto.TCP, Cause.INVALID)
        if not lsk.accept_queue:
            return None
        child = lsk.accept_queue.pop(0)
        child.listener = None
        child.fd = self._alloc_fd()  # type: ignore[attr-defined]
        self.socks[child.fd] = child  # type: ignore[attr-defined]
        return child

    # ------------------------------------------------------------------------------------
    # UDP connect / disconnect (spec §6.6, §2.2)
    # ------------------------------------------------------------------------------------

    def udp_connect(self, sk: Sock, daddr: int, dport: int, scope_id: int) -> None:
        """``inet_dgram_connect`` (autobind first: EAGAIN when no port is free) then
        ``__ip4_datagram_connect`` / ``__ip6_datagram_connect``: route (ENETUNREACH), broadcast
        needs SO_BROADCAST (EACCES), the wildcard local address narrows to the route's source
        (rehash), the peer is recorded, state ESTABLISHED, and (6.13+) the socket leaves its
        reuseport group (spec §1.4)."""
        if not sk.num:
            # inet_autobind: get_port(sk, 0) with the current (wildcard) address
            sk.cov4, sk.cov6 = coverage(sk.family, sk.rcv_saddr, sk.v6_rcv_saddr, sk.v6only)
            self._udp_get_port(sk, 0, Op.CONNECT)  # type: ignore[attr-defined]
        daddr = self._v6_unspecified_dest(sk, daddr)
        mapped = sk.family == AF_INET6 and v6_is_mapped(daddr)
        if sk.family == AF_INET or mapped:
            if mapped and sk.v6only:
                raise refuse(Op.CONNECT, Proto.UDP, Cause.NET_UNREACHABLE)
            d4 = daddr & 0xFFFFFFFF if mapped else daddr
            d4, s4, kind = self.route_v4(d4, sk.rcv_saddr, sk.bound_dev, False)
            if kind == "broadcast" and not sk.opts.get((1, 6)):
                raise refuse(Op.CONNECT, Proto.UDP, Cause.BROADCAST_NEEDS_OPTION)
            v6s = (V4MAPPED_PREFIX | s4) if sk.family == AF_INET6 else 0
            if not sk.rcv_saddr:
                self._set_saddr(sk, s4, v6s)
            sk.daddr, sk.v6_daddr = d4, (V4MAPPED_PREFIX | d4) if sk.family == AF_INET6 else 0
        else:
            d6, s6, kind = self.route_v6(daddr, sk.v6_rcv_saddr, sk.bound_dev, False, scope_id)
            self._v6_source_family(sk, Proto.UDP)
            if not sk.v6_rcv_saddr:
                self._set_saddr(sk, 0x7F000006, s6)
            sk.daddr, sk.v6_daddr = 0, d6
        sk.dport = dport
        sk.state = ESTABLISHED
        self._udp_unhash4(sk)  # type: ignore[attr-defined]  # a second connect() re-hashes
        self._udp_hash4(sk)  # type: ignore[attr-defined]
        if sk.group is not None:
            sk.group.has_conns = True  # reuseport_has_conns_set (sticky)
            self._group_leave(sk)  # type: ignore[attr-defined]

    def disconnect(self, sk: Sock) -> None:
        """``connect(AF_UNSPEC)``.  UDP (``__udp_disconnect``): forget the peer, unbind the
        device, reset a non-explicit address, release a non-explicit port (getsockname then
        shows port 0) [V eph:G].  TCP (``tcp_disconnect``): abort the connection (the peer sees
        a reset), reset a non-explicit address, release a non-explicit port."""
        if not sk.tcp:
            self._udp_unhash4(sk)  # type: ignore[attr-defined]
            sk.state = CLOSE
            sk.daddr = sk.v6_daddr = sk.dport = 0
            sk.bound_dev = 0
            if not sk.bindaddr_lock:
                self._reset_saddr(sk)
            if not sk.bindport_lock and sk.num:
                self._udp_unhash(sk)  # type: ignore[attr-defined]
                sk.sport = 0
            return
        if sk.state == LISTEN:
            self._listen_stop(sk)  # type: ignore[attr-defined]
        elif sk.state != CLOSE:
            peer = sk.peer
            self._ehash_del(sk)
            if peer is not None and peer is not sk:
                peer.peer = None
                self._reset_arrives(peer)  # type: ignore[attr-defined]  # ECONNRESET (EPIPE in CLOSE_WAIT)
            sk.peer = None
        sk.state = CLOSE
        sk.sock_state = SS_UNCONNECTED
        sk.shut, sk.rcv_done, sk.rcv_buf = 0, False, b""  # tcp_disconnect: queues purged
        sk.daddr = sk.v6_daddr = sk.dport = 0
        if not sk.bindaddr_lock:
            self._reset_saddr(sk)
        if sk.tb is not None and not sk.bindport_lock:
            self._tcp_put_port(sk)  # type: ignore[attr-defined]
            sk.num = 0
            sk.connect_bind = False

    def _abort(self, sk: Sock) -> None:
        """A reset received: the socket goes to CLOSE and releases a non-explicit port; a
        remnant dies (``tcp_rfc1337`` = 0: an RST kills TIME_WAIT, spec §6.5)."""
        if sk.is_tw:
            if self.sysctls.ints["net.ipv4.tcp_rfc1337"] and sk.state != FIN_WAIT2:  # type: ignore[attr-defined]
                return
            self._kill_remnant(sk)  # type: ignore[attr-defined]
            return
        self._ehash_del(sk)
        sk.state = CLOSE
        if sk.tb is not None and not sk.bindport_lock:
            self._tcp_put_port(sk)  # type: ignore[attr-defined]
            sk.num = 0

    _ = (Any, chain_key)
