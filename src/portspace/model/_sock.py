"""Socket records and the kernel tables that hold them (spec §1.1, §1.2, §1.4, §1.6).

Theory of operation
-------------------
:class:`Sock` is the part of ``struct sock`` the port manager reads: family, protocol, owner
uid, state, local address and port, device, the reuse flags and the table memberships.  The
tables are plain dicts keyed like the kernel's hashes, minus the hashing:

* ``BindBucket`` (``inet_bind_bucket``, bhash): one per TCP port in use, with the §3.3 fast
  flags and its per-address ``Bind2Bucket`` s (bhash2) holding the owners.
* listener chains (lhash2): ``chain_key -> [Sock]`` in kernel chain order.
* UDP: ``port -> [Sock]`` (the primary hash slot, newest first) and hash2 chains.
* ``ReuseportGroup`` (``struct sock_reuseport``): ordered members, swap-with-last removal.

Only ``_netns.NetNS`` mutates these (style rule: state changes only through syscall-named
methods).  :class:`SockView` is an immutable snapshot with the same field names, used by
explanations so that a refusal can be explained later, after the table has changed.
"""
from __future__ import annotations

from operator import attrgetter
from typing import Any, NamedTuple

from ._addr import AF_INET, ANY, format_addr, format_ipv4
from ._rules import CLOSE, STATE_NAMES


class Sock:
    """A socket as the port manager sees it.  Invariants: ``num == 0`` iff the socket holds no
    port; a TCP socket with ``num`` is an owner of exactly one Bind2Bucket (``tb2``); ``cov4``/
    ``cov6`` are the claims of its current local address (spec §2.1)."""

    __slots__ = ("fd", "family", "tcp", "uid", "state", "num", "rcv_saddr", "v6_rcv_saddr", "v6only",
                 "bound_dev", "reuseaddr", "reuseport", "freebind", "transparent", "no_port",
                 "port_range", "bindaddr_lock", "bindport_lock", "cov4", "cov6", "tb", "tb2", "group",
                 "closed", "backlog", "is_tw", "connect_bind", "opts", "chain", "bind_seq",
                 "sport", "daddr", "v6_daddr", "dport", "sock_state", "err", "peer", "accept_queue",
                 "listener", "in_ehash", "expires", "tw_entry", "tw_ts", "timer_seq", "shut")

    def __init__(self, fd: int, family: int, tcp: bool, uid: int, v6only: bool) -> None:
        self.fd = fd
        self.family = family
        self.tcp = tcp
        self.uid = uid
        self.state = CLOSE
        self.num = 0
        self.rcv_saddr = 0
        self.v6_rcv_saddr = 0
        self.v6only = v6only
        self.bound_dev = 0
        self.reuseaddr = False
        self.reuseport = False
        self.freebind = False
        self.transparent = False
        self.no_port = False
        self.port_range = 0
        self.bindaddr_lock = False
        self.bindport_lock = False
        self.cov4: int | None = None
        self.cov6: int | None = None
        self.tb: Any = None
        self.tb2: Any = None
        self.group: Any = None
        self.closed = False
        self.backlog = 0
        self.is_tw = False
        self.connect_bind = False
        self.opts: dict[tuple[int, int], int] = {}
        self.chain: Any = None
        self.bind_seq = 0
        self.sport = 0          # inet_sport: what getsockname() shows (may outlive the port)
        self.daddr = 0          # peer, IPv4 form
        self.v6_daddr = 0       # peer, IPv6 form (AF_INET6 sockets)
        self.dport = 0
        self.sock_state = 1     # SS_UNCONNECTED
        self.err = 0            # sk_err (an errno number, reported once)
        self.peer: Any = None   # the other end of a loopback connection
        self.accept_queue: list[Any] = []
        self.listener: Any = None
        self.in_ehash = False
        self.expires = 0.0      # TIME_WAIT / FIN_WAIT2 remnants: when the timer fires
        self.tw_entry = 0.0     # when the remnant was created (tw_entry_stamp)
        self.tw_ts = True       # the connection used TCP timestamps (tw_ts_recent_stamp != 0)
        self.timer_seq = 0
        self.shut = 0           # shutdown() bits: 1 = RD, 2 = WR

    @property
    def proto(self) -> str:
        return "tcp" if self.tcp else "udp"

    def local_text(self) -> str:
        return addr_text(self.family, self.rcv_saddr, self.v6_rcv_saddr)

    def view(self) -> "SockView":
        return SockView._make(snapshot(self))

    def __repr__(self) -> str:
        return f"<Sock #{self.fd} {self.proto}{'6' if self.family != AF_INET else ''} {self.local_text()}:{self.num} {STATE_NAMES[self.state]}>"


class SockView(NamedTuple):
    """Frozen snapshot of the fields the rules read (same names as :class:`Sock`)."""

    fd: int
    family: int
    tcp: bool
    uid: int
    state: int
    num: int
    rcv_saddr: int
    v6_rcv_saddr: int
    v6only: bool
    bound_dev: int
    reuseaddr: bool
    reuseport: bool
    cov4: int | None
    cov6: int | None
    group: Any
    is_tw: bool

    @property
    def proto(self) -> str:
        return "tcp" if self.tcp else "udp"

    def local_text(self) -> str:
        return addr_text(self.family, self.rcv_saddr, self.v6_rcv_saddr)


snapshot = attrgetter(*SockView._fields)
"""The fields of a SockView as a plain tuple, in C: what a refusal records (cheap)."""


def addr_text(family: int, rcv_saddr: int, v6_rcv_saddr: int) -> str:
    if family == AF_INET:
        return format_ipv4(rcv_saddr)
    return "[" + format_addr(10, v6_rcv_saddr) + "]"


class Bind2Bucket:
    """``struct inet_bind2_bucket`` (bhash2): (port, address) -> owners.  The address is stored
    in IPv6 form, so AF_INET ``A`` and AF_INET6 ``::ffff:A`` share one bucket (spec §1.2).
    Invariant: never empty -- removed from its BindBucket when its last owner leaves."""

    __slots__ = ("key", "owners", "fastreuse", "fastreuseport")

    def __init__(self, key: int) -> None:
        self.key = key
        self.owners: list[Any] = []
        self.fastreuse = 0
        self.fastreuseport = 0


class BindBucket:
    """``struct inet_bind_bucket`` (bhash): one per TCP port in use, with the fast-path flags of
    spec §3.3.  Invariant: never empty -- removed when its last Bind2Bucket goes; a port is "in
    use" for TCP iff its BindBucket exists."""

    __slots__ = ("port", "fastreuse", "fastreuseport", "fastuid", "fast_rcv_saddr", "fast_v6_rcv_saddr",
                 "fast_ipv6_only", "fast_family", "tb2s")

    def __init__(self, port: int, flags: int = 0) -> None:
        self.port = port
        self.fastreuse = flags
        self.fastreuseport = flags
        self.fastuid = 0
        self.fast_rcv_saddr = 0
        self.fast_v6_rcv_saddr = 0
        self.fast_ipv6_only = False
        self.fast_family = AF_INET
        self.tb2s: dict[int, Bind2Bucket] = {}

    def owners(self) -> list[Any]:
        out: list[Any] = []
        for tb2 in self.tb2s.values():
            out.extend(tb2.owners)
        return out


class ReuseportGroup:
    """``struct sock_reuseport``: members in join order; a leaving member's slot is filled by
    the last member (``__reuseport_detach_sock``).  Invariant: never empty (freed with its last
    member)."""

    __slots__ = ("socks", "bind_inany", "gid")

    def __init__(self, gid: int, first: Any, bind_inany: bool) -> None:
        self.gid = gid
        self.socks: list[Any] = [first]
        self.bind_inany = bind_inany

    def add(self, sk: Any) -> None:
        self.socks.append(sk)

    def detach(self, sk: Any) -> None:
        i = self.socks.index(sk)
        last = self.socks.pop()
        if last is not sk:
            self.socks[i] = last


def chain_key(sk: Any) -> tuple[int, int]:
    """The lhash2 / UDP hash2 chain a socket lives on: ``ipv6_portaddr_hash`` hashes ``::`` like
    0.0.0.0 and ``::ffff:A`` like ``A`` (spec §1.2), so those share the IPv4 chain."""
    if sk.family == AF_INET:
        return (AF_INET, sk.rcv_saddr)
    v6 = sk.v6_rcv_saddr
    if v6 == 0:
        return (AF_INET, 0)
    if v6 >> 32 == 0xFFFF:
        return (AF_INET, v6 & 0xFFFFFFFF)
    return (10, v6)


def claim_text(c: int | None, v6: bool) -> str:
    if c is None:
        return "none"
    if c == ANY:
        return "all"
    return format_addr(10 if v6 else AF_INET, c)
