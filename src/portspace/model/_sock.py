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
from types import MappingProxyType
from typing import Any, NamedTuple

from ._addr import AF_INET, ANY, format_addr, format_ipv4
from ._rules import CLOSE, STATE_NAMES


class Sock:
    """A socket as the port manager sees it.  Invariants: ``num == 0`` iff the socket holds no
    port; a TCP socket with ``num`` is an owner of exactly one Bind2Bucket (``tb2``); ``cov4``/
    ``cov6`` are the claims of its current local address (spec §2.1).

    Defaults live on the class and ``__init__`` sets only what differs per socket: creating a
    socket is the model's hottest path (benchmarks/bench_ports.py), and most fields keep their
    default for a socket's whole life."""

    # identity and ownership
    fd = -1
    family = 2
    tcp = True
    uid = 0
    # state (kernel numbers, _rules.py) and the socket layer's SS_* state
    state = CLOSE
    sock_state = 1          # SS_UNCONNECTED
    closed = False
    err = 0                 # sk_err (an errno number, reported once)
    listened = False        # has been a listener (a former listener never connects: EINVAL)
    syn_sent = False        # has sent a SYN (such a socket never listens: EINVAL)
    addr_gone = False       # connected over an address that was deleted (sendmsg: OutOfScope)
    v4_ops = False          # a TCP/IPv6 socket that sent a SYN to a v4-mapped address (ipv6_mapped ops)
    # local binding
    num = 0                 # inet_num: the port held (0: none)
    sport = 0               # inet_sport: what getsockname() shows (may outlive the port)
    rcv_saddr = 0
    v6_rcv_saddr = 0
    v6only = False
    bound_dev = 0
    cov4: int | None = None
    cov6: int | None = None
    bindaddr_lock = False
    bindport_lock = False
    connect_bind = False
    # options
    reuseaddr = False
    reuseport = False
    freebind = False
    transparent = False
    no_port = False
    port_range = 0
    opts: Any = MappingProxyType({})   # other options; replaced by a dict on first write
    # peer
    daddr = 0
    v6_daddr = 0
    dport = 0
    peer: Any = None
    shut = 0
    # table memberships
    tb: Any = None
    tb2: Any = None
    group: Any = None
    chain: Any = None
    in_ehash = False
    bind_seq = 0
    backlog = 0
    accept_queue: Any = ()             # a list once listening
    listener: Any = None
    # TIME_WAIT / FIN_WAIT2 remnants
    is_tw = False
    expires = 0.0
    tw_entry = 0.0
    tw_ts = True
    timer_seq = 0
    # UDP data (model/_datagram.py) and delivery (model/_demux.py)
    incoming_cpu = -1       # sk_incoming_cpu: SO_INCOMING_CPU, or the CPU of the last delivery
    rcv_queue: Any = ()     # a deque of (data, source, charge) once a datagram arrived
    rmem = 0                # sk_rmem_alloc: the charges of the queued datagrams
    conn_seq: Any = 0       # the hash4 key of a connected UDP socket (0: not in hash4)
    mc_list: Any = ()       # IPv4 memberships: a list of Membership once joined
    mc_all = True           # IP_MULTICAST_ALL
    mc_loop = True          # IP_MULTICAST_LOOP (no effect when the output device is lo)
    mc_index = 0            # IP_MULTICAST_IF: output device index
    mc_addr = 0             # IP_MULTICAST_IF: source address
    mc_ttl = 1              # IP_MULTICAST_TTL
    # TCP data (model/_stream.py)
    rcv_buf: Any = b""      # bytes received, not yet read (a bytearray once data has arrived)
    rcv_done = False        # the peer's FIN has arrived (SOCK_DONE); ``shut`` is sk_shutdown

    def __init__(self, fd: int, family: int, tcp: bool, uid: int, v6only: bool) -> None:
        self.fd = fd
        self.family = family
        self.tcp = tcp
        self.uid = uid
        if v6only:
            self.v6only = True

    def set_opt(self, key: tuple[int, int], value: Any) -> None:
        if type(self.opts) is not dict:
            self.opts = {}
        self.opts[key] = value

    @property
    def proto(self) -> str:
        return "tcp" if self.tcp else "udp"

    def local_text(self) -> str:
        return addr_text(self.family, self.rcv_saddr, self.v6_rcv_saddr)

    def remote_text(self) -> str | None:
        return SockView.remote_text(self)  # type: ignore[arg-type]

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
    expires: float
    daddr: int
    v6_daddr: int
    dport: int

    @property
    def proto(self) -> str:
        return "tcp" if self.tcp else "udp"

    def remote_text(self) -> str | None:
        if not self.dport and not self.daddr and not self.v6_daddr:
            return None
        return f"{addr_text(self.family, self.daddr, self.v6_daddr)}:{self.dport}"

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

    __slots__ = ("socks", "bind_inany", "gid", "incoming_cpu", "has_conns")

    # sock_reuseport.c: the array starts at 128 and doubles; reuseport_grow refuses to go past
    # U16_MAX, so 32768 members is the most a group can hold (spec §1.4)
    CAPACITY = 32768

    def __init__(self, gid: int, first: Any, bind_inany: bool) -> None:
        self.gid = gid
        self.socks: list[Any] = [first]
        self.bind_inany = bind_inany
        # members with SO_INCOMING_CPU >= 0 (``reuse->incoming_cpu``): only then does the
        # selection prefer a member on the current CPU (spec §7.3)
        self.incoming_cpu = 1 if first.incoming_cpu >= 0 else 0
        self.has_conns = False   # a member connect()ed once (sticky, ``reuseport_has_conns_set``)

    def add(self, sk: Any) -> None:
        self.socks.append(sk)
        if sk.incoming_cpu >= 0:
            self.incoming_cpu += 1

    def detach(self, sk: Any) -> None:
        i = self.socks.index(sk)
        last = self.socks.pop()
        if last is not sk:
            self.socks[i] = last
        if sk.incoming_cpu >= 0:
            self.incoming_cpu -= 1


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
