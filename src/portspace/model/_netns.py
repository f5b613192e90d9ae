"""NetNS: one Linux network namespace, its tables, and the syscall-shaped operations.

Theory of operation
-------------------
Rule 1: this class is the ONLY place model state changes, and only through methods named after
the syscall (or netlink / sysctl call) they model: ``socket``, ``setsockopt``, ``bind``,
``listen``, ``close``, ``add_address``, ``del_address``, ``add_device``, ``sysctl_write``.  Helpers that only
read are nouns or ``is_``/``has_`` questions.
Rule 2: decisions come from ``_rules.py``; errnos from ``_errors.py``; explanations from
``_explain.py``.  This file sequences the checks in kernel order (spec §3.1, §4) and keeps the
tables consistent.

The caller passes parsed, typed arguments (ints for addresses, bytes for option values); the
socket-shaped facade (``portspace._socket``) does the stdlib's argument parsing, so that a
``TypeError`` or ``OverflowError`` comes from the same layer as in CPython.

What it does not know: time and randomness (injected ``Rng``), host names, the host.
"""
from __future__ import annotations

import heapq
from typing import Any, Callable, Iterator

from . import _rules
from ._addr import (AF_INET, AF_INET6, ANY, LOOPBACK4_IPV6, V4MAPPED_PREFIX, coverage, v4_is_multicast,
                    v6_is_mapped, v6_is_multicast, v6_needs_scope)
from ._env import Rng
from ._errors import Cause, Op, OutOfScope, Proto, refuse
from ._rules import CLOSE, CLOSE_WAIT, ESTABLISHED, FIN_WAIT2, LISTEN, STATE_NAMES, SYN_SENT, TIME_WAIT
from ._connect import ConnectOps
from ._datagram import MCAST_OPTS, DatagramOps
from ._stream import StreamOps
from ._explain import LazyReasons
from ._sock import Bind2Bucket, BindBucket, ReuseportGroup, Sock, chain_key, snapshot
from ._sysctl import RANGE, SysctlError, Sysctls

# Option numbers (Linux asm-generic/socket.h, in.h, in6.h, tcp.h); the model does not import
# the stdlib socket module, the facade checks these equal its constants.
SOL_SOCKET = 1
IPPROTO_IP = 0
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
SO_REUSEADDR = 2
SO_KEEPALIVE = 9
SO_BROADCAST = 6
SO_REUSEPORT = 15
SO_BINDTODEVICE = 25
SO_TYPE = 3
SO_ERROR = 4
SO_DOMAIN = 39
SO_PROTOCOL = 38
SO_ACCEPTCONN = 30
SO_BINDTOIFINDEX = 62
SO_LINGER = 13
SO_INCOMING_CPU = 49
IP_FREEBIND = 15
IP_TRANSPARENT = 19
IP_BIND_ADDRESS_NO_PORT = 24
IP_LOCAL_PORT_RANGE = 51
IPV6_V6ONLY = 26
IPV6_FREEBIND = 78
IPV6_TRANSPARENT = 75
TCP_NODELAY = 1
TCP_LINGER2 = 8
IFNAMSIZ = 16
SOCK_STREAM = 1
SOCK_DGRAM = 2

_IPV6_MCAST_OPTS = {17, 18, 19, 20, 21, 42, 43, 44, 45, 46, 47, 48, 29}  # IPV6_MULTICAST_*, JOIN/LEAVE_GROUP, MCAST_*

RTN_LOCAL, RTN_BROADCAST, RTN_MULTICAST, RTN_UNICAST = "local", "broadcast", "multicast", "unicast"

# Boolean options that have no effect on port management: stored and read back, nothing more.
_PLAIN_BOOL_OPTS = {(SOL_SOCKET, SO_KEEPALIVE), (SOL_SOCKET, SO_BROADCAST), (IPPROTO_TCP, TCP_NODELAY)}

# The orphaned FIN_WAIT2 lifetime (``tcp.h: tcp_fin_time``): TCP_LINGER2, else tcp_fin_timeout,
# but never below 3.5 RTOs.  A loopback connection's RTO is the 200 ms minimum (plus a few
# jiffies), so the floor is taken as 0.7 s [V linger2 table: tcp_fin_timeout 0 or -1 freed the
# port after 0.7-0.8 s].  TCP_LINGER2 is clamped to TCP_FIN_TIMEOUT_MAX = 120 s.
FIN_TIME_FLOOR = 0.7
TCP_FIN_TIMEOUT_MAX = 120
TCP_TIMEWAIT_LEN = 60.0


_MODELLED_OPTS = {(SOL_SOCKET, SO_LINGER), (SOL_SOCKET, SO_REUSEADDR), (SOL_SOCKET, SO_REUSEPORT), (SOL_SOCKET, SO_BINDTODEVICE),
                  (SOL_SOCKET, SO_BINDTOIFINDEX), (IPPROTO_IP, IP_FREEBIND), (IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT),
                  (IPPROTO_IP, IP_LOCAL_PORT_RANGE), (IPPROTO_IPV6, IPV6_V6ONLY), (IPPROTO_IPV6, IPV6_FREEBIND)}


class Device:
    """A network device: name, ifindex, loopback or not."""

    __slots__ = ("name", "ifindex", "loopback")

    def __init__(self, name: str, ifindex: int, loopback: bool) -> None:
        self.name, self.ifindex, self.loopback = name, ifindex, loopback


class Route:
    """An entry of the IPv4 local routing table: prefix, type, device and preferred source
    (``fib_magic`` gives every route of an address the *primary* address of its subnet as
    source, so 127.0.0.2 added to lo still has source 127.0.0.1) [V ip route show table local]."""

    __slots__ = ("prefix", "plen", "kind", "ifindex", "prefsrc")

    def __init__(self, prefix: int, plen: int, kind: str, ifindex: int, prefsrc: int = 0) -> None:
        self.prefix, self.plen, self.kind, self.ifindex, self.prefsrc = prefix, plen, kind, ifindex, prefsrc


def _mask(plen: int) -> int:
    return (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0


class Refusal:
    """Everything needed to explain a refused call later: frozen views of the socket asking
    and of the owners it met, plus the decision inputs.  Built only on refusal."""

    __slots__ = ("op", "proto", "cause", "new", "port", "owners", "detail", "ns", "extra")

    def __init__(self, op: Op, proto: Proto, cause: Cause, new: Any, port: int, owners: tuple,
                 detail: str, ns: "NetNS", extra: Any = None) -> None:
        self.op, self.proto, self.cause, self.new, self.port = op, proto, cause, new, port
        self.owners, self.detail, self.ns, self.extra = owners, detail, ns, extra


class NetNS(ConnectOps, StreamOps, DatagramOps):
    """The state of one network namespace (spec §1): devices and addresses, sysctls, sockets
    and the TCP/UDP port tables.  See the module header for the rules of this class."""

    def __init__(self, rng: Rng, udp_table_size: int = 16384, hash_key: bytes = b"portspace",
                 clock: Any = None) -> None:
        self.rng = rng
        self.hash_key = hash_key[:64]
        self.clock = clock            # None: the namespace's own virtual time (self.now)
        self.now = 0.0
        self.table_perturb: dict[int, int] = {}
        self.ehash: dict[tuple[int, int, int, int], list[Sock]] = {}
        self.dest_ports: dict[tuple[int, int, int], dict[int, int]] = {}
        self._dest_masks: dict[tuple[int, int, int], int] = {}
        self.bound_ports: set[int] = set()   # TCP ports whose bucket is not connect()-only
        self._bound_mask: int | None = None
        self._reserved_src: Any = None
        self._reserved_mask = 0
        self.timers: list[tuple[float, int, Sock]] = []
        self._timer_seq = 0
        self.tw_count = 0
        self.remnants: set[Sock] = set()
        self.sysctls = Sysctls()
        self.uid = 0
        self.caps: frozenset[str] | None = None   # None: all capabilities iff uid 0
        self.devices: dict[str, Device] = {"lo": Device("lo", 1, True)}
        self.dev_by_index: dict[int, Device] = {1: self.devices["lo"]}
        self._next_ifindex = 2
        # IPv4 addresses: (addr, plen, ifindex, secondary); IPv6: (addr, plen, ifindex)
        self.v4_addrs: list[tuple[int, int, int, bool]] = []
        self.v6_addrs: list[tuple[int, int, int]] = []
        self.routes: list[Route] = []
        self.main_routes: list[Route] = []
        self._type_cache: dict[int, str] = {}
        self.socks: dict[int, Sock] = {}
        self._free_fds: list[int] = []
        self._next_fd = 3
        self.bhash: dict[int, BindBucket] = {}
        self.lhash2: dict[tuple[int, int, int], list[Sock]] = {}
        self.udp_ports: dict[int, list[Sock]] = {}
        self.udp_hash2: dict[tuple[int, int, int], list[Sock]] = {}
        self.udp_table_size = udp_table_size
        self._group_seq = 0
        self._bind_seq = 0
        # delivery (model/_demux.py, model/_datagram.py)
        self.cpu = 0                     # the CPU the caller runs on (ns.set_cpu)
        self.udp_hash4: dict[tuple[int, int, int, int], list[Sock]] = {}
        self.mc_members: set[Sock] = set()   # sockets with IPv4 multicast memberships
        self._conn_seq = 0
        # what `ip link set lo up` configures in a fresh namespace
        self.add_address_v4(0x7F000001, 8, "lo")
        self.add_address_v6(1, 128, "lo")

    # ------------------------------------------------------------------------------------
    # Devices, addresses, routes  (ip link / ip addr)
    # ------------------------------------------------------------------------------------

    def add_device(self, name: str, ifindex: int | None = None, loopback: bool = False) -> Device:
        """``ip link add NAME type dummy`` + up: a device sockets can be bound to.  ``ifindex``
        pins the index (used when a host's devices are loaded); by default the next free one,
        as the kernel assigns them (lo is 1)."""
        if not name or len(name) >= IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
            raise refuse(Op.NETLINK, Proto.ANY, Cause.INVALID)
        if name in self.devices or (ifindex is not None and ifindex in self.dev_by_index):
            raise refuse(Op.NETLINK, Proto.ANY, Cause.DEVICE_EXISTS)
        if ifindex is None:
            ifindex = self._next_ifindex
        self._next_ifindex = max(self._next_ifindex, ifindex + 1)
        dev = Device(name, ifindex, loopback)
        self.devices[name] = dev
        self.dev_by_index[dev.ifindex] = dev
        return dev

    def _device(self, name: str) -> Device:
        dev = self.devices.get(name)
        if dev is None:
            raise refuse(Op.NETLINK, Proto.ANY, Cause.NO_DEVICE)
        return dev

    def add_address_v4(self, addr: int, plen: int, devname: str) -> None:
        """``ip addr add A/plen dev D`` (``devinet.c: inet_insert_ifa`` + ``fib_frontend.c:
        fib_add_ifaddr``): a local route for A; for a primary address with plen < 32 the prefix
        route (RTN_LOCAL on a loopback device, so every address of 127.0.0.0/8 is local) and,
        for plen < 31, the subnet broadcast."""
        dev = self._device(devname)
        if any(a == addr and p == plen and i == dev.ifindex for a, p, i, _ in self.v4_addrs):
            raise refuse(Op.NETLINK, Proto.ANY, Cause.ADDR_EXISTS)
        mask = _mask(plen)
        prefix = addr & mask
        primary = next((a for a, p, i, _ in self.v4_addrs
                        if i == dev.ifindex and p == plen and (a & mask) == prefix), None)
        secondary = primary is not None
        src = primary if primary is not None else addr
        self.v4_addrs.append((addr, plen, dev.ifindex, secondary))
        self.routes.append(Route(addr, 32, RTN_LOCAL, dev.ifindex, src))
        if prefix != 0 and not secondary and (prefix != addr or plen < 32):
            if dev.loopback:
                self.routes.append(Route(prefix, plen, RTN_LOCAL, dev.ifindex, src))
            else:
                # a main-table route: bind() never consults it; connect() treats it as remote
                self.main_routes.append(Route(prefix, plen, RTN_UNICAST, dev.ifindex, src))
            if plen < 31:
                self.routes.append(Route(prefix | (~mask & 0xFFFFFFFF), 32, RTN_BROADCAST, dev.ifindex, src))
        self.routes.sort(key=lambda r: -r.plen)
        self._type_cache.clear()

    def del_address_v4(self, addr: int, plen: int, devname: str) -> None:
        """``ip addr del A/plen dev D`` (``devinet.c: inet_rtm_deladdr`` + ``fib_frontend.c:
        fib_del_ifaddr``): the address and exactly the routes ``add_address_v4`` made for it go
        away.  Sockets bound to A stay bound (Linux never revisits them) [V probe on 6.18:
        getsockname of a bound, a listening and a connected socket unchanged after the
        delete; bind() to A then fails EADDRNOTAVAIL, connect() to A ENETUNREACH].

        An address that is not there (same address, prefix length and device) gives
        EADDRNOTAVAIL [V `ip addr del`: "ipv4: Address not found"].  Deleting a primary that
        has secondaries (promoted or deleted with it, per ``promote_secondaries``) and deleting
        one of two entries of the same address (the kernel keeps routes still used by the
        other) raise OutOfScope.  Not modelled: data on a connection over A (the kernel
        accepts a send() and never delivers it, no route, probed on 6.18): such sockets raise
        OutOfScope on send (``_mark_addr_gone``)."""
        dev = self._device(devname)
        entry = next((e for e in self.v4_addrs if e[0] == addr and e[1] == plen and e[2] == dev.ifindex), None)
        if entry is None:
            raise refuse(Op.NETLINK, Proto.ANY, Cause.ADDR_NOT_LOCAL)
        mask = _mask(plen)
        prefix = addr & mask
        secondary = entry[3]
        if not secondary and any(e[3] and e[2] == dev.ifindex and e[1] == plen and (e[0] & mask) == prefix
                                 for e in self.v4_addrs):
            raise OutOfScope("deleting a primary IPv4 address that has secondaries "
                             "(promote_secondaries) is not modelled")
        if any(e is not entry and e[0] == addr for e in self.v4_addrs):
            raise OutOfScope("deleting one of two configured entries of the same IPv4 address is not modelled")
        src = addr
        if secondary:
            src = next(a for a, p, i, sec in self.v4_addrs
                       if not sec and i == dev.ifindex and p == plen and (a & mask) == prefix)
        # the routes add_address_v4 appended for this entry, same formula
        made: list[tuple[list[Route], tuple[int, int, str, int, int]]] = [
            (self.routes, (addr, 32, RTN_LOCAL, dev.ifindex, src))]
        if prefix != 0 and not secondary and (prefix != addr or plen < 32):
            if dev.loopback:
                made.append((self.routes, (prefix, plen, RTN_LOCAL, dev.ifindex, src)))
            else:
                made.append((self.main_routes, (prefix, plen, RTN_UNICAST, dev.ifindex, src)))
            if plen < 31:
                made.append((self.routes, (prefix | (~mask & 0xFFFFFFFF), 32, RTN_BROADCAST, dev.ifindex, src)))
        self.v4_addrs.remove(entry)
        for table, key in made:
            for k, r in enumerate(table):
                if (r.prefix, r.plen, r.kind, r.ifindex, r.prefsrc) == key:
                    del table[k]
                    break
        self._type_cache.clear()
        self._mark_addr_gone(lambda sk: (sk.family == AF_INET or v6_is_mapped(sk.v6_rcv_saddr))
                             and addr in (sk.rcv_saddr, sk.daddr) and (sk.dport or sk.tcp and sk.state != CLOSE))

    def _mark_addr_gone(self, uses: Callable[[Sock], bool]) -> None:
        """Connected sockets over a deleted address: on 6.18 a send() there is accepted but its
        data never arrives (no route) [V probe]; the model refuses to guess what follows
        (``sendmsg`` raises OutOfScope for them)."""
        for sk in self.socks.values():
            if uses(sk):
                sk.addr_gone = True

    def del_address_v6(self, addr: int, plen: int, devname: str) -> None:
        """``ip addr del X/plen dev D``: EADDRNOTAVAIL if X/plen is not on D [V `ip addr del`:
        "ipv6: address not found"]; sockets bound to X stay bound."""
        dev = self._device(devname)
        entry = next((e for e in self.v6_addrs if e[0] == addr and e[1] == plen and e[2] == dev.ifindex), None)
        if entry is None:
            raise refuse(Op.NETLINK, Proto.ANY, Cause.ADDR_NOT_LOCAL)
        self.v6_addrs.remove(entry)
        self._mark_addr_gone(lambda sk: sk.family == AF_INET6 and addr in (sk.v6_rcv_saddr, sk.v6_daddr)
                             and (sk.dport or sk.tcp and sk.state != CLOSE))

    def add_address_v6(self, addr: int, plen: int, devname: str) -> None:
        """``ip addr add X/plen dev D nodad``."""
        dev = self._device(devname)
        if any(a == addr and i == dev.ifindex for a, _, i in self.v6_addrs):
            raise refuse(Op.NETLINK, Proto.ANY, Cause.ADDR_EXISTS)
        self.v6_addrs.append((addr, plen, dev.ifindex))

    def v4_addr_type(self, addr: int, ifindex: int = 0) -> str:
        """``fib_frontend.c: __inet_dev_addr_type`` on the local table: 0.0.0.0/8 and
        255.255.255.255 are "broadcast", 224/4 "multicast"; otherwise the longest matching local
        route's type, or "unicast" (not local).  With a device, a route through another device
        gives "unicast"."""
        if ifindex == 0:
            t = self._type_cache.get(addr)
            if t is not None:
                return t
        if addr >> 24 == 0 or addr == 0xFFFFFFFF:
            t = RTN_BROADCAST
        elif v4_is_multicast(addr):
            t = RTN_MULTICAST
        else:
            t = RTN_UNICAST
            r = self._lookup_local_route(addr)
            if r is not None and (not ifindex or ifindex == r.ifindex):
                t = r.kind
        if ifindex == 0:
            self._type_cache[addr] = t
        return t

    def add_local_route(self, prefix: int, plen: int, devname: str = "lo") -> None:
        """``ip route add local PREFIX/PLEN dev DEV`` (AnyIP): every address of the prefix is
        local for bind() and connect()."""
        dev = self._device(devname)
        self.routes.append(Route(prefix & _mask(plen), plen, RTN_LOCAL, dev.ifindex, prefix & _mask(plen)))
        self.routes.sort(key=lambda r: -r.plen)
        self._type_cache.clear()

    def _lookup_local_route(self, addr: int) -> Route | None:
        """Longest-prefix match in the local table (routes are kept sorted, longest first)."""
        for r in self.routes:
            if addr & _mask(r.plen) == r.prefix:
                return r
        return None

    def has_v6_addr(self, addr: int, ifindex: int) -> bool:
        """``addrconf.c: ipv6_chk_addr(net, addr, dev, strict=0)``: configured on ``dev``, or, for
        an unbound socket, anywhere; a global address on another device also counts when a
        device is given (only link- and host-scoped ones are tied to their device)."""
        for a, _, i in self.v6_addrs:
            if a != addr:
                continue
            if not ifindex or i == ifindex:
                return True
            if not (a == 1 or v6_needs_scope(a)):
                return True
        return False

    # ------------------------------------------------------------------------------------
    # sysctl
    # ------------------------------------------------------------------------------------

    def sysctl_read(self, name: str) -> str:
        try:
            return self.sysctls.read(name)
        except SysctlError as e:
            raise self._sysctl_error(e) from None

    def sysctl_write(self, name: str, text: str) -> None:
        if self.uid != 0:
            # open(O_WRONLY) of a 0644 root file by another uid [V lockstep: EACCES]
            try:
                self.sysctls.check_name(name)
            except SysctlError as e:
                raise self._sysctl_error(e) from None
            raise refuse(Op.SYSCTL, Proto.ANY, Cause.SYSCTL_DENIED, filename=_proc_path(name))
        try:
            self.sysctls.write(name, text)
        except SysctlError as e:
            raise self._sysctl_error(e) from None

    @staticmethod
    def _sysctl_error(e: SysctlError) -> Exception:
        if e.cause == "unmodelled":
            return OutOfScope(e.detail)
        if e.cause == "unknown":
            return refuse(Op.SYSCTL, Proto.ANY, Cause.SYSCTL_UNKNOWN, filename=_proc_path(e.name))
        err = refuse(Op.SYSCTL, Proto.ANY, Cause.SYSCTL_INVALID)
        err.reasons = (e.detail,)  # type: ignore[attr-defined]
        return err

    # ------------------------------------------------------------------------------------
    # socket()
    # ------------------------------------------------------------------------------------

    def socket(self, family: int, tcp: bool) -> Sock:
        """``socket(2)``: a new socket owned by the calling uid (``sock_init_data`` records the
        creator's fsuid, spec §1.1), v6only from ``net.ipv6.bindv6only``, lowest free fd."""
        fd = self._alloc_fd()
        v6only = family == AF_INET6 and self.sysctls.ints["net.ipv6.bindv6only"] != 0
        sk = Sock(fd, family, tcp, self.uid, v6only)
        self.socks[fd] = sk
        return sk

    def _alloc_fd(self) -> int:
        """The lowest free descriptor number, as the kernel allocates fds."""
        if self._free_fds:
            return heapq.heappop(self._free_fds)
        fd = self._next_fd
        self._next_fd += 1
        return fd

    def clock_seconds(self) -> float:
        return self.clock.now() if self.clock is not None else self.now

    # ------------------------------------------------------------------------------------
    # setsockopt / getsockopt (kernel side: option bytes in, bytes out)
    # ------------------------------------------------------------------------------------

    def setsockopt(self, sk: Sock, level: int, opt: int, val: bytes) -> None:
        """``setsockopt(2)`` for the options that matter to the port manager (spec §1.1).
        ``val`` is the option buffer exactly as passed (its length is optlen)."""
        proto = Proto.TCP if sk.tcp else Proto.UDP
        n = len(val)
        if level == SOL_SOCKET:
            if opt == SO_BINDTODEVICE:
                name = val[:IFNAMSIZ - 1].split(b"\0", 1)[0]
                ifindex = 0
                if name:
                    dev = self.devices.get(name.decode("latin-1"))
                    if dev is None:
                        raise refuse(Op.SETSOCKOPT, proto, Cause.NO_DEVICE)
                    ifindex = dev.ifindex
                self._bind_to_index(sk, ifindex, proto)
                return
            if opt == SO_LINGER:
                if n < 8:  # struct linger
                    raise refuse(Op.SETSOCKOPT, proto, Cause.BAD_OPTLEN)
                onoff = int.from_bytes(val[:4], "little", signed=True)
                secs = int.from_bytes(val[4:8], "little", signed=True)
                sk.set_opt((SOL_SOCKET, SO_LINGER), (1 if onoff else 0, max(secs, 0)))
                return
            if n < 4:  # sk_setsockopt: int options need sizeof(int)
                raise refuse(Op.SETSOCKOPT, proto, Cause.BAD_OPTLEN)
            v = int.from_bytes(val[:4], "little", signed=True)
            if opt == SO_REUSEADDR:
                sk.reuseaddr = v != 0
            elif opt == SO_REUSEPORT:
                sk.reuseport = v != 0
            elif opt == SO_INCOMING_CPU:
                self._set_incoming_cpu(sk, v)
            elif opt == SO_BINDTOIFINDEX:
                if v and v not in self.dev_by_index:
                    raise refuse(Op.SETSOCKOPT, proto, Cause.NO_DEVICE)
                if v < 0:
                    raise refuse(Op.SETSOCKOPT, proto, Cause.INVALID)
                self._bind_to_index(sk, v, proto)
            elif (level, opt) in _PLAIN_BOOL_OPTS:
                sk.set_opt((level, opt), int(v != 0))
            elif opt in (SO_TYPE, SO_ERROR, SO_DOMAIN, SO_PROTOCOL, SO_ACCEPTCONN):
                raise refuse(Op.SETSOCKOPT, proto, Cause.NO_PROTOOPT)
            else:
                raise OutOfScope(f"setsockopt(SOL_SOCKET, {opt}) is not modelled by portspace")
            return
        if level == IPPROTO_IP:
            # do_ip_setsockopt: an int, or a single byte when optlen < 4; optlen 0 means 0
            v = int.from_bytes(val[:4], "little", signed=True) if n >= 4 else (val[0] if n >= 1 else 0)
            if opt == IP_FREEBIND:
                if n < 1:
                    raise refuse(Op.SETSOCKOPT, proto, Cause.BAD_OPTLEN)
                sk.freebind = v != 0
            elif opt == IP_BIND_ADDRESS_NO_PORT:
                sk.no_port = v != 0
            elif opt == IP_LOCAL_PORT_RANGE:
                if n != 4:
                    raise refuse(Op.SETSOCKOPT, proto, Cause.BAD_OPTLEN)
                uv = v & 0xFFFFFFFF
                lo, hi = uv & 0xFFFF, uv >> 16
                if lo and hi and lo > hi:
                    raise refuse(Op.SETSOCKOPT, proto, Cause.INVALID)
                sk.port_range = uv
            elif opt in MCAST_OPTS:
                self.mcast_setsockopt(sk, opt, val)
            elif opt == IP_TRANSPARENT:
                raise OutOfScope("IP_TRANSPARENT (tproxy) is outside the model (spec scope)")
            else:
                raise OutOfScope(f"setsockopt(IPPROTO_IP, {opt}) is not modelled by portspace")
            return
        if level == IPPROTO_IPV6:
            if sk.family != AF_INET6:
                raise refuse(Op.SETSOCKOPT, proto, Cause.NO_PROTOOPT)
            v = int.from_bytes(val[:4], "little", signed=True) if n >= 4 else 0
            if opt == IPV6_V6ONLY:
                if n < 4 or sk.num:
                    raise refuse(Op.SETSOCKOPT, proto, Cause.V6ONLY_AFTER_BIND if n >= 4 else Cause.BAD_OPTLEN)
                sk.v6only = v != 0
            elif opt == IPV6_FREEBIND:
                if n < 4:
                    raise refuse(Op.SETSOCKOPT, proto, Cause.BAD_OPTLEN)
                sk.freebind = v != 0
            elif opt == IPV6_TRANSPARENT:
                raise OutOfScope("IPV6_TRANSPARENT (tproxy) is outside the model (spec scope)")
            elif opt in _IPV6_MCAST_OPTS:
                raise OutOfScope("IPv6 multicast (IPV6_JOIN_GROUP, IPV6_MULTICAST_IF and the other IPV6_MULTICAST_* "
                                 "options) is not modelled")
            else:
                raise OutOfScope(f"setsockopt(IPPROTO_IPV6, {opt}) is not modelled by portspace")
            return
        if level == IPPROTO_TCP and sk.tcp:
            if opt == TCP_LINGER2:
                # do_tcp_setsockopt: negative -> -1 (abort at FIN_WAIT2), above the maximum
                # -> TCP_FIN_TIMEOUT_MAX, 0 -> "use tcp_fin_timeout" [V linger2 table]
                if n < 4:
                    raise refuse(Op.SETSOCKOPT, proto, Cause.BAD_OPTLEN)
                v = int.from_bytes(val[:4], "little", signed=True)
                sk.set_opt((level, opt), -1 if v < 0 else min(v, TCP_FIN_TIMEOUT_MAX))
                return
            if (level, opt) in _PLAIN_BOOL_OPTS:
                if n < 4:
                    raise refuse(Op.SETSOCKOPT, proto, Cause.BAD_OPTLEN)
                sk.set_opt((level, opt), int(int.from_bytes(val[:4], "little", signed=True) != 0))
                return
            raise OutOfScope(f"setsockopt(IPPROTO_TCP, {opt}) is not modelled by portspace")
        if level == IPPROTO_TCP and opt == TCP_LINGER2:
            # udp_setsockopt -> ip_setsockopt / ipv6_setsockopt: not their level [V linger2 table]
            raise refuse(Op.SETSOCKOPT, proto, Cause.NO_PROTOOPT)
        if level in (IPPROTO_TCP, IPPROTO_UDP):
            raise OutOfScope(f"setsockopt(level {level}, {opt}) on a {sk.proto} socket is not modelled")
        raise OutOfScope(f"setsockopt(level {level}, {opt}) is not modelled by portspace")

    def setsockopt_null(self, sk: Sock, level: int, opt: int, optlen: int) -> None:
        """``setsockopt(level, opt, NULL, optlen > 0)``: every modelled option copies from the
        buffer first, so the kernel answers EFAULT; unmodelled options stay out of scope."""
        proto = Proto.TCP if sk.tcp else Proto.UDP
        if (level, opt) == (IPPROTO_TCP, TCP_LINGER2):
            # do_tcp_setsockopt checks optlen before it copies; UDP refuses the level first
            if not sk.tcp:
                raise refuse(Op.SETSOCKOPT, proto, Cause.NO_PROTOOPT)
            if optlen < 4:
                raise refuse(Op.SETSOCKOPT, proto, Cause.BAD_OPTLEN)
            raise refuse(Op.SETSOCKOPT, proto, Cause.FAULT)
        if (level, opt) not in _MODELLED_OPTS and (level, opt) not in _PLAIN_BOOL_OPTS:
            raise OutOfScope(f"setsockopt(level {level}, {opt}) is not modelled by portspace")
        raise refuse(Op.SETSOCKOPT, proto, Cause.FAULT)

    def _bind_to_index(self, sk: Sock, ifindex: int, proto: Proto) -> None:
        """``sock.c: sock_bindtoindex_locked``: changing an existing binding needs CAP_NET_RAW."""
        if sk.bound_dev and not self.has_cap("CAP_NET_RAW"):
            raise refuse(Op.SETSOCKOPT, proto, Cause.NOT_PERMITTED)
        sk.bound_dev = ifindex

    def getsockopt(self, sk: Sock, level: int, opt: int, buflen: int) -> bytes:
        """``getsockopt(2)``: returns the bytes the kernel copies out for a ``buflen`` buffer."""
        proto = Proto.TCP if sk.tcp else Proto.UDP
        if level == SOL_SOCKET:
            if opt == SO_BINDTODEVICE:
                if not sk.bound_dev:
                    return b""
                if buflen < IFNAMSIZ:
                    raise refuse(Op.GETSOCKOPT, proto, Cause.INVALID)
                return self.dev_by_index[sk.bound_dev].name.encode() + b"\0"
            if opt == SO_LINGER:
                onoff, secs = sk.opts.get((SOL_SOCKET, SO_LINGER), (0, 0))
                raw = onoff.to_bytes(4, "little") + secs.to_bytes(4, "little")
                return raw[:max(buflen, 0)]
            if opt == SO_REUSEADDR:
                v = int(sk.reuseaddr)
            elif opt == SO_REUSEPORT:
                v = int(sk.reuseport)
            elif opt == SO_BINDTOIFINDEX:
                v = sk.bound_dev
            elif opt == SO_TYPE:
                v = SOCK_STREAM if sk.tcp else SOCK_DGRAM
            elif opt == SO_DOMAIN:
                v = sk.family
            elif opt == SO_PROTOCOL:
                v = IPPROTO_TCP if sk.tcp else IPPROTO_UDP
            elif opt == SO_ACCEPTCONN:
                v = int(sk.state == LISTEN)
            elif opt == SO_ERROR:
                v, sk.err = sk.err, 0  # sock_error(): reported once, then cleared
            elif opt == SO_INCOMING_CPU:
                v = sk.incoming_cpu
            elif (level, opt) in _PLAIN_BOOL_OPTS:
                v = sk.opts.get((level, opt), 0)
            else:
                raise OutOfScope(f"getsockopt(SOL_SOCKET, {opt}) is not modelled by portspace")
            return v.to_bytes(4, "little", signed=True)[:max(buflen, 0)]
        if level == IPPROTO_IP:
            if opt == IP_FREEBIND:
                v = int(sk.freebind)
            elif opt == IP_BIND_ADDRESS_NO_PORT:
                v = int(sk.no_port)
            elif opt in MCAST_OPTS:
                return self.mcast_getsockopt(sk, opt, buflen)
            elif opt == IP_LOCAL_PORT_RANGE:
                v = sk.port_range  # an int like the others [V probe: buflen 1-3 as below]
            else:
                raise OutOfScope(f"getsockopt(IPPROTO_IP, {opt}) is not modelled by portspace")
            # do_ip_getsockopt: a short buffer gets one byte when the value fits in a char
            if 0 < buflen < 4 and 0 <= v <= 255:
                return bytes([v])
            return (v & 0xFFFFFFFF).to_bytes(4, "little")[:max(buflen, 0)]
        if level == IPPROTO_IPV6:
            if sk.family != AF_INET6:
                # tcp/udp_getsockopt -> ip_getsockopt: a level other than SOL_IP is EOPNOTSUPP
                # (setsockopt answers ENOPROTOOPT instead) [V bad calls table]
                raise refuse(Op.GETSOCKOPT, proto, Cause.OPT_NOT_SUPPORTED)
            if opt == IPV6_V6ONLY:
                v = int(sk.v6only)
            elif opt == IPV6_FREEBIND:
                v = int(sk.freebind)
            else:
                raise OutOfScope(f"getsockopt(IPPROTO_IPV6, {opt}) is not modelled by portspace")
            return v.to_bytes(4, "little", signed=True)[:max(buflen, 0)]
        if level == IPPROTO_TCP and sk.tcp and (level, opt) in _PLAIN_BOOL_OPTS:
            return sk.opts.get((level, opt), 0).to_bytes(4, "little", signed=True)[:max(buflen, 0)]
        if level == IPPROTO_TCP and opt == TCP_LINGER2:
            if not sk.tcp:
                # udp_getsockopt -> ip_getsockopt (EOPNOTSUPP) / ipv6_getsockopt (ENOPROTOOPT)
                raise refuse(Op.GETSOCKOPT, proto,
                             Cause.NO_PROTOOPT if sk.family == AF_INET6 else Cause.OPT_NOT_SUPPORTED)
            # do_tcp_getsockopt: 0 reads back as the current tcp_fin_timeout, -1 as -1
            v = sk.opts.get((level, opt), 0)
            if v >= 0:
                v = v or self.sysctls.ints["net.ipv4.tcp_fin_timeout"]
            return v.to_bytes(4, "little", signed=True)[:max(buflen, 0)]
        raise OutOfScope(f"getsockopt(level {level}, {opt}) is not modelled by portspace")

    # ------------------------------------------------------------------------------------
    # bind()
    # ------------------------------------------------------------------------------------

    def has_cap(self, cap: str) -> bool:
        """Does the caller hold ``cap`` in the namespace's user namespace?  By default uid 0 has
        every capability and other uids none; ``Namespace.user(uid, caps=...)`` says otherwise."""
        if self.caps is None:
            return self.uid == 0
        return cap in self.caps

    def _may_bind_service(self, port: int) -> bool:
        """``ip.h: inet_port_requires_bind_service`` + the caller's CAP_NET_BIND_SERVICE: the
        model gives every capability to uid 0 and none to other uids."""
        return (not port or port >= self.sysctls.ints["net.ipv4.ip_unprivileged_port_start"]
                or self.has_cap("CAP_NET_BIND_SERVICE"))

    def bind_v4(self, sk: Sock, addr: int, port: int) -> None:
        """``af_inet.c: __inet_bind`` (spec §3.1, IPv4 table, in kernel order)."""
        proto = Proto.TCP if sk.tcp else Proto.UDP
        if addr:
            t = self.v4_addr_type(addr)
            if t == RTN_UNICAST and not (self.sysctls.ints["net.ipv4.ip_nonlocal_bind"] or sk.freebind
                                         or sk.transparent):
                raise refuse(Op.BIND, proto, Cause.ADDR_NOT_LOCAL, self._simple_reasons(
                    sk, Op.BIND, Cause.ADDR_NOT_LOCAL, port, addr=addr))
        if not self._may_bind_service(port):
            raise refuse(Op.BIND, proto, Cause.PRIVILEGED_PORT, self._simple_reasons(
                sk, Op.BIND, Cause.PRIVILEGED_PORT, port))
        if sk.state != CLOSE or sk.num:
            raise refuse(Op.BIND, proto, Cause.ALREADY_BOUND, self._simple_reasons(
                sk, Op.BIND, Cause.ALREADY_BOUND, port))
        sk.rcv_saddr = addr
        sk.v6_rcv_saddr = 0
        self._bind_finish(sk, port, proto, addr != 0, None)

    def bind_v6(self, sk: Sock, addr: int, port: int, scope_id: int) -> None:
        """``af_inet6.c: __inet6_bind`` (spec §3.1, IPv6 table, in kernel order)."""
        proto = Proto.TCP if sk.tcp else Proto.UDP
        if v6_is_multicast(addr) and sk.tcp:
            raise refuse(Op.BIND, proto, Cause.MULTICAST_STREAM)
        if not self._may_bind_service(port):
            raise refuse(Op.BIND, proto, Cause.PRIVILEGED_PORT, self._simple_reasons(
                sk, Op.BIND, Cause.PRIVILEGED_PORT, port))
        if sk.state != CLOSE or sk.num:
            raise refuse(Op.BIND, proto, Cause.ALREADY_BOUND, self._simple_reasons(
                sk, Op.BIND, Cause.ALREADY_BOUND, port))
        v4addr = 0
        if v6_is_mapped(addr):
            if sk.v6only:
                raise refuse(Op.BIND, proto, Cause.MAPPED_ON_V6ONLY)
            v4addr = addr & 0xFFFFFFFF
            # inet_addr_type_dev_table: the device only picks the (VRF) table, the lookup itself
            # is device-blind [V lockstep: d0-bound ::ffff:127.0.0.1 binds]
            t = self.v4_addr_type(v4addr) if v4addr else RTN_BROADCAST
            if t == RTN_UNICAST and not (self.sysctls.ints["net.ipv4.ip_nonlocal_bind"] or sk.freebind
                                         or sk.transparent):
                raise refuse(Op.BIND, proto, Cause.ADDR_NOT_LOCAL, self._simple_reasons(
                    sk, Op.BIND, Cause.ADDR_NOT_LOCAL, port, addr=v4addr))
        elif addr != 0:
            if v6_needs_scope(addr):
                if scope_id:
                    # the scope id overrides the bound device, and stays even if bind fails
                    sk.bound_dev = scope_id
                if not sk.bound_dev:
                    raise refuse(Op.BIND, proto, Cause.SCOPE_REQUIRED)
            if sk.bound_dev and sk.bound_dev not in self.dev_by_index:
                raise refuse(Op.BIND, proto, Cause.NO_DEVICE)
            v4addr = LOOPBACK4_IPV6
            if not v6_is_multicast(addr):
                if not (self.sysctls.ints["net.ipv6.ip_nonlocal_bind"] or sk.freebind or sk.transparent) \
                        and not self.has_v6_addr(addr, sk.bound_dev):
                    raise refuse(Op.BIND, proto, Cause.ADDR_NOT_LOCAL, self._simple_reasons(
                        sk, Op.BIND, Cause.ADDR_NOT_LOCAL, port, addr6=addr))
        sk.rcv_saddr = v4addr
        sk.v6_rcv_saddr = addr
        saved_v6only = sk.v6only
        if addr != 0 and not v6_is_mapped(addr):
            sk.v6only = True  # forced for a specific non-mapped address [V bind:Q]
        try:
            self._bind_finish(sk, port, proto, addr != 0, saved_v6only)
        except OSError:
            sk.v6only = saved_v6only
            raise

    def _bind_finish(self, sk: Sock, port: int, proto: Proto, has_addr: bool, saved_v6only: bool | None) -> None:
        """Common tail of bind(): coverage, then get_port unless IP_BIND_ADDRESS_NO_PORT with
        port 0 (spec §5.4), then the userlocks.  On failure the address is reset
        (``inet_reset_saddr``)."""
        sk.cov4, sk.cov6 = coverage(sk.family, sk.rcv_saddr, sk.v6_rcv_saddr, sk.v6only)
        if port or not sk.no_port:
            try:
                if sk.tcp:
                    self._tcp_get_port(sk, port, Op.BIND)
                else:
                    self._udp_get_port(sk, port, Op.BIND)
            except OSError:
                sk.rcv_saddr = 0
                sk.v6_rcv_saddr = 0
                sk.cov4 = sk.cov6 = None
                raise
        sk.bindaddr_lock = has_addr
        sk.bindport_lock = port != 0

    # ------------------------------------------------------------------------------------
    # TCP port allocation (inet_csk_get_port)
    # ------------------------------------------------------------------------------------

    def _tcp_get_port(self, sk: Sock, port: int, op: Op) -> None:
        """``inet_connection_sock.c: inet_csk_get_port``: an explicit port is checked against
        its bucket (fast path of spec §3.3, then the pairwise rule of §3.2 with relax =
        reuseport_ok = True); port 0 searches (§5.2).  On success the socket joins the bucket
        and the fast flags are updated."""
        searched = port == 0
        if searched:
            port = self._tcp_find_open_port(sk, op)  # already checked by the search
        tb = self.bhash.get(port)
        if not searched and tb is not None and tb.tb2s and not _rules.fast_path_admits(tb, sk):
            tcp_conflict = _rules.tcp_conflict
            for tb2 in self._tb2s_to_check(tb, sk):
                for old in tb2.owners:
                    if old is not sk and tcp_conflict(sk, old, True, True):
                        raise self._conflict(sk, port, op, tb)
        if tb is None:
            tb = self.bhash[port] = BindBucket(port)
        if sk.tb is None:
            key = sk.v6_rcv_saddr if sk.family == AF_INET6 else (V4MAPPED_PREFIX | sk.rcv_saddr)
            tb2 = tb.tb2s.get(key)
            if tb2 is None:
                tb2 = tb.tb2s[key] = Bind2Bucket(key)
            tb2.owners.append(sk)
            sk.tb, sk.tb2, sk.num, sk.sport = tb, tb2, port, port
        _rules.update_fastreuse(tb, sk)
        tb2 = sk.tb2
        tb2.fastreuse, tb2.fastreuseport = tb.fastreuse, tb.fastreuseport
        if port not in self.bound_ports:  # fastreuseport is now >= 0: not connect()-only
            self.bound_ports.add(port)
            self._bound_mask = None

    @staticmethod
    def _tb2s_to_check(tb: BindBucket, sk: Sock) -> Any:
        """The bind2 buckets whose owners can overlap ``sk`` (``inet_csk_bind_conflict`` +
        ``inet_bhash2_addr_any_conflict``): all of them for a wildcard binding; otherwise its
        own address and the wildcard ones (``::`` and 0.0.0.0 / ``::ffff:0.0.0.0``).  Only an
        optimisation: the pairwise rule decides, and owners elsewhere cannot overlap
        (spec §1.2, §2.1).  It keeps bind() O(1) when a port is shared by many addresses."""
        if sk.cov4 == ANY or sk.cov6 == ANY:
            return tb.tb2s.values()
        key = sk.v6_rcv_saddr if sk.family == AF_INET6 else (V4MAPPED_PREFIX | sk.rcv_saddr)
        get = tb.tb2s.get
        return [b for b in (get(key), get(0), get(V4MAPPED_PREFIX)) if b is not None]

    def _effective_range(self, sk: Sock) -> tuple[int, int, bool]:
        """``inet_connection_sock.c: inet_sk_get_local_port_range`` (spec §5.1): the netns range,
        each half replaced by IP_LOCAL_PORT_RANGE's when it lies inside; the flag says whether a
        per-socket range is set at all."""
        lo, hi = self.sysctls.port_range
        pr = sk.port_range
        if not pr:
            return lo, hi, False
        slo, shi = pr & 0xFFFF, pr >> 16
        nlo, nhi = lo, hi
        if slo and lo <= slo <= hi:
            nlo = slo
        if shi and nlo <= shi <= hi:
            nhi = shi
        return nlo, nhi, True

    def _tcp_find_open_port(self, sk: Sock, op: Op) -> int:
        """``inet_connection_sock.c: inet_csk_find_open_port`` (spec §5.2): odd offsets first, the
        lower half first for SO_REUSEADDR sockets, every overlapping owner a conflict in the
        first pass, the relaxed second pass only with ``ip_autobind_reuse``."""
        reserved = self.sysctls.reserved
        tcp_conflict = _rules.tcp_conflict
        relax = False
        while True:
            half_mode = 1 if sk.reuseaddr else 0
            while True:
                lo, hi, _ = self._effective_range(sk)
                hi += 1
                if hi - lo < 4:
                    half_mode = 0
                if half_mode:
                    half = lo + ((hi - lo) >> 2) * 2
                    if half_mode == 1:
                        hi = half
                    else:
                        lo = half
                remaining = hi - lo
                if remaining > 1:
                    remaining &= ~1
                offset = self.rng.below(remaining) | 1 if remaining else 0
                for _pass in (1, 2):
                    port = lo + offset
                    for _ in range(0, remaining, 2):
                        if port >= hi:
                            port -= remaining
                        if port not in reserved:
                            tb = self.bhash.get(port)
                            if tb is None:
                                return port
                            if not any(tcp_conflict(sk, o, relax, False) for o in tb.owners() if o is not sk):
                                return port
                        port += 2
                    offset -= 1
                if half_mode == 1:
                    half_mode = 2
                    continue
                break
            if self.sysctls.ints["net.ipv4.ip_autobind_reuse"] and not relax:
                relax = True
                continue
            raise refuse(op, Proto.TCP, Cause.NO_EPHEMERAL_PORT, self._simple_reasons(
                sk, op, Cause.NO_EPHEMERAL_PORT, 0))

    # ------------------------------------------------------------------------------------
    # UDP port allocation (udp_lib_get_port)
    # ------------------------------------------------------------------------------------

    def _udp_get_port(self, sk: Sock, port: int, op: Op) -> None:
        """``udp.c: udp_lib_get_port`` (spec §3.4, §5.5): an explicit port conflicts per
        ``udp_conflict``; port 0 searches; then the socket is hashed (head of the port slot;
        hash2 head, or tail for AF_INET6 + SO_REUSEPORT) and joins a reuseport group."""
        if port == 0:
            port = self._udp_find_port(sk, op)
        else:
            socks = self.udp_ports.get(port)
            if socks:
                udp_conflict = _rules.udp_conflict
                for old in socks:
                    if udp_conflict(sk, old):
                        raise self._conflict(sk, port, op, None)
        sk.num = sk.sport = port
        self._bind_seq += 1
        sk.bind_seq = self._bind_seq
        slot = self.udp_ports.get(port)
        if slot is None:
            slot = self.udp_ports[port] = []
        if sk.reuseport:
            for old in slot:
                if _rules.reuseport_group_match(sk, old):
                    if old.group is not None and len(old.group.socks) >= ReuseportGroup.CAPACITY:
                        sk.num = sk.sport = 0
                        if not slot:
                            del self.udp_ports[port]
                        raise refuse(op, Proto.UDP, Cause.GROUP_FULL)
                    self._group_join(sk, old)
                    break
            else:
                self._group_new(sk)
        slot.insert(0, sk)
        key = chain_key(sk) + (port,)
        chain = self.udp_hash2.get(key)
        if chain is None:
            chain = self.udp_hash2[key] = []
        if sk.reuseport and sk.family == AF_INET6:
            chain.append(sk)
        else:
            chain.insert(0, sk)
        sk.chain = chain

    def _udp_find_port(self, sk: Sock, op: Op) -> int:
        """``udp_lib_get_port`` with port 0 (spec §5.5): a random start and an odd stride that
        is a multiple of the table size, visiting each primary slot once."""
        lo, hi, _ = self._effective_range(sk)
        remaining = hi - lo + 1
        reserved = self.sysctls.reserved
        size = self.udp_table_size
        r = self.rng.u32()
        first = lo + ((r * remaining) >> 32)
        stride = (((r | 1) * size) & 0xFFFF) or size
        udp_conflict = _rules.udp_conflict
        udp_ports = self.udp_ports
        for k in range(size):
            # one primary slot per k; its ports are f, f + stride, ... (stride is an odd multiple
            # of the table size), checked lazily instead of through the kernel's bitmap
            f = (first + k) & 0xFFFF
            snum = f
            while True:
                if lo <= snum <= hi and snum not in reserved:
                    holders = udp_ports.get(snum)
                    if not holders or not any(udp_conflict(sk, o) for o in holders):
                        return snum
                snum = (snum + stride) & 0xFFFF
                if snum == f:
                    break
        raise refuse(op, Proto.UDP, Cause.NO_EPHEMERAL_PORT, self._simple_reasons(
            sk, op, Cause.NO_EPHEMERAL_PORT, 0))

    # ------------------------------------------------------------------------------------
    # reuseport groups (spec §1.4)
    # ------------------------------------------------------------------------------------

    def _group_new(self, sk: Sock) -> None:
        self._group_seq += 1
        sk.group = ReuseportGroup(self._group_seq, sk, sk.cov4 == ANY or sk.cov6 == ANY)

    def _group_join(self, sk: Sock, old: Sock) -> None:
        if old.group is None:
            self._group_new(old)
        if len(old.group.socks) >= ReuseportGroup.CAPACITY:
            raise OutOfScope(f"a reuseport group of more than {ReuseportGroup.CAPACITY} members (reuseport_grow "
                             "fails; the errno on this path is not verified)")
        old.group.add(sk)
        sk.group = old.group

    @staticmethod
    def _group_leave(sk: Sock) -> None:
        if sk.group is not None:
            sk.group.detach(sk)
            sk.group = None

    @staticmethod
    def _set_incoming_cpu(sk: Sock, cpu: int) -> None:
        """SO_INCOMING_CPU (``sk_setsockopt`` -> ``reuseport_update_incoming_cpu``): any int is
        stored; the group counts its members with a CPU >= 0 [V probe: -5 reads back]."""
        g = sk.group
        if g is not None:
            g.incoming_cpu += (cpu >= 0) - (sk.incoming_cpu >= 0)
        sk.incoming_cpu = cpu

    # ------------------------------------------------------------------------------------
    # listen()
    # ------------------------------------------------------------------------------------

    def listen(self, sk: Sock, backlog: int) -> None:
        """``af_inet.c: __inet_listen_sk`` + ``inet_csk_listen_start`` (spec §4): state LISTEN,
        then get_port again (autobind when unbound); on failure back to CLOSE, keeping the port
        [V bind:L]; on success hash into lhash2 and join a reuseport group."""
        if not sk.tcp:
            raise refuse(Op.LISTEN, Proto.UDP, Cause.NOT_STREAM)
        if sk.sock_state != 1:
            # inet_listen: only an SS_UNCONNECTED socket -- not one whose connect() was refused
            # while CPython waited (still SS_CONNECTING), nor one reset while connected
            raise refuse(Op.LISTEN, Proto.TCP, Cause.INVALID)
        if sk.state == LISTEN:
            sk.backlog = backlog
            return
        if sk.state != CLOSE:
            raise refuse(Op.LISTEN, Proto.TCP, Cause.INVALID)
        sk.state = LISTEN
        try:
            if not sk.num:
                if not sk.bindaddr_lock:
                    sk.rcv_saddr = 0
                    sk.v6_rcv_saddr = 0
                sk.cov4, sk.cov6 = coverage(sk.family, sk.rcv_saddr, sk.v6_rcv_saddr, sk.v6only)
            self._tcp_get_port(sk, sk.num, Op.LISTEN)
            if sk.syn_sent:
                # refused after get_port: the port (autobound here if need be) is kept
                # [V probe: a refused client's listen() takes an odd-offset port, keeps it, EINVAL]
                raise refuse(Op.LISTEN, Proto.TCP, Cause.FORMER_CLIENT)
        except OSError:
            sk.state = CLOSE
            raise
        sk.listened = True
        sk.backlog = backlog
        sk.accept_queue = []
        key = chain_key(sk) + (sk.num,)
        chain = self.lhash2.get(key)
        if chain is None:
            chain = self.lhash2[key] = []
        if sk.reuseport:
            for old in chain:
                if old.tb is sk.tb and _rules.reuseport_group_match(sk, old):
                    if old.group is not None and len(old.group.socks) >= ReuseportGroup.CAPACITY:
                        # inet_csk_listen_start: hashing failed, back to CLOSE (the port stays)
                        sk.state = CLOSE
                        sk.accept_queue = ()
                        if not chain:
                            del self.lhash2[key]
                        raise refuse(Op.LISTEN, Proto.TCP, Cause.GROUP_FULL)
                    self._group_join(sk, old)
                    break
            else:
                self._group_new(sk)
        if sk.reuseport and sk.family == AF_INET6:
            chain.append(sk)
        else:
            chain.insert(0, sk)
        sk.chain = chain

    # ------------------------------------------------------------------------------------
    # close()
    # ------------------------------------------------------------------------------------

    def close(self, sk: Sock) -> None:
        """``close(2)`` of the last reference (``tcp_close`` / ``udp_lib_close``), by state:

        * unconnected or SYN_SENT: release the port (``inet_put_port``), leave the tables;
        * LISTEN: unhash, leave the reuseport group, reset every connection still in the accept
          queue (their clients see ECONNRESET), release the port;
        * ESTABLISHED with a live peer: active close -- the FIN is acknowledged at once on
          loopback, so the socket becomes a FIN_WAIT2 remnant for its TCP_LINGER2 or
          ``tcp_fin_timeout`` lifetime (:meth:`_fin_time`; reset instead when TCP_LINGER2 < 0);
          the peer goes to CLOSE_WAIT (spec §6.2);
        * CLOSE_WAIT (the peer closed first): LAST_ACK, then CLOSED when the peer's remnant
          acknowledges; that remnant turns into TIME_WAIT for 60 s (spec §6.2);
        * a socket connected to itself: FIN to itself, CLOSING, then TIME_WAIT.
        The fd is freed in every case."""
        if sk.closed:
            return
        sk.closed = True
        del self.socks[sk.fd]
        heapq.heappush(self._free_fds, sk.fd)
        if not sk.tcp:
            self._udp_unhash(sk)
            self._mc_drop_socket(sk)
            self._udp_drop_queue(sk)
            sk.state = CLOSE
            return
        if sk.rcv_buf and self._close_unread(sk):  # unread bytes: a reset, no FIN (_stream.py)
            return
        state = sk.state
        linger = sk.opts.get((SOL_SOCKET, SO_LINGER))
        if linger is not None and linger == (1, 0) and state in (ESTABLISHED, CLOSE_WAIT, SYN_SENT, FIN_WAIT2):
            # SO_LINGER {on, 0}: tcp_disconnect sends a reset -- no TIME_WAIT on either side
            # [V tw_extra:K]; also after shutdown(SHUT_WR) (FIN_WAIT2, tcp_need_reset)
            self.disconnect(sk)
            self._group_leave(sk)
            if sk.tb is not None:
                self._tcp_put_port(sk)
            return
        if state == LISTEN:
            self._listen_stop(sk)
        elif state in (ESTABLISHED, FIN_WAIT2) and sk.peer is sk:
            # connected to itself: its FIN comes back to it (CLOSING), then TIME_WAIT
            self._time_wait(sk, TIME_WAIT, 60.0)
            return
        elif state == ESTABLISHED or state == FIN_WAIT2:
            if state == ESTABLISHED:
                self._send_fin(sk)       # -> FIN_WAIT2, the peer -> CLOSE_WAIT (or a reset)
            # else: after shutdown(SHUT_WR), orphaned now
            if sk.state == FIN_WAIT2:
                lifetime = self._fin_time(sk)
                if lifetime is not None:
                    self._time_wait(sk, FIN_WAIT2, lifetime)
                    return
                self._linger2_abort(sk)
        elif state == CLOSE_WAIT:
            self._send_fin(sk)           # LAST_ACK, acknowledged at once -> CLOSE
        self._ehash_del(sk)
        self._group_leave(sk)
        if sk.tb is not None:
            self._tcp_put_port(sk)
        sk.state = CLOSE

    # -- the FIN exchange on loopback (tcp_send_fin / tcp_fin / tcp_rcv_state_process) --------

    def _send_fin(self, sk: Sock) -> None:
        """``sk`` sends its FIN and, on loopback, gets the ACK at once.  From ESTABLISHED it goes
        to FIN_WAIT2 and the peer to CLOSE_WAIT; from CLOSE_WAIT it goes LAST_ACK -> CLOSE and
        the peer (FIN_WAIT2, live or a remnant) to TIME_WAIT (spec §6.2)."""
        peer = sk.peer
        if peer is sk:
            raise OutOfScope("a FIN from a socket connected to itself")
        if peer is None:
            # nobody holds the other end any more (its FIN_WAIT2 remnant expired): the FIN is
            # answered by a reset, and the socket goes to CLOSE without TIME_WAIT
            self._ehash_del(sk)
            sk.state = CLOSE
            if sk.tb is not None and not sk.bindport_lock:
                self._tcp_put_port(sk)
                sk.num = 0
            return
        if sk.state == ESTABLISHED:
            sk.state = FIN_WAIT2
            peer.state = CLOSE_WAIT
            self._fin_arrives(peer)
            return
        if sk.state == CLOSE_WAIT:
            sk.peer = None
            self._fin_arrives(peer)
            if peer.is_tw:
                peer.peer = None
                if peer.state == FIN_WAIT2:
                    peer.state = TIME_WAIT
                    self._schedule(peer, 60.0)
            elif peer.state == FIN_WAIT2:
                peer.peer = None
                self._live_to_time_wait(peer)
            self._ehash_del(sk)
            sk.state = CLOSE
            if sk.tb is not None and not sk.bindport_lock:
                self._tcp_put_port(sk)
                sk.num = 0
            return
        raise OutOfScope(f"a FIN from a TCP socket in state {STATE_NAMES[sk.state]}")

    def _live_to_time_wait(self, sk: Sock) -> None:
        """``tcp_time_wait`` on a socket the user still holds (it had shut down its sending side):
        a remnant takes its bind slot and 4-tuple (``inet_twsk_hashdance_schedule``); the socket
        itself goes to CLOSE and keeps the port only if it was bound explicitly (BINDPORT)."""
        rem = Sock(sk.fd, sk.family, True, sk.uid, sk.v6only)
        rem.__dict__.update(sk.__dict__)
        rem.closed = True
        sk.tb2.owners[sk.tb2.owners.index(sk)] = rem
        if sk.in_ehash:
            lst = self.ehash[self._ekey(sk)]
            lst[lst.index(sk)] = rem
        sk.in_ehash = False
        sk.peer = None
        sk.state = CLOSE
        self._time_wait(rem, TIME_WAIT, 60.0)
        if sk.bindport_lock:
            sk.tb2.owners.append(sk)     # held twice until close(), as on Linux
        else:
            sk.tb = sk.tb2 = None
            sk.num = 0

    # -- data: dispatched to model/_stream.py (TCP) and model/_datagram.py (UDP) ----------
    def sendmsg(self, sk: Sock, data: bytes, flags: int, dest: Any, nonblock: bool) -> int | None:
        """send()/sendto(): ``dest`` is ``(addr, port, flowinfo, scope_id)`` or None.  Returns
        the bytes sent, or None where the call would block."""
        if sk.addr_gone:
            raise OutOfScope("sending on a connection whose local or peer address was deleted (Linux accepts "
                             "the data and never delivers it)")
        if sk.tcp:
            return self.tcp_sendmsg(sk, data, flags, dest, nonblock)
        return self.udp_sendmsg(sk, data, flags, dest, nonblock)

    def recvmsg(self, sk: Sock, bufsize: int, flags: int, nonblock: bool) -> tuple[bytes, Any] | None:
        """recv()/recvfrom(): ``(data, source)`` (source None on TCP), or None where it would block."""
        if sk.tcp:
            return self.tcp_recvmsg(sk, bufsize, flags, nonblock)
        return self.udp_recvmsg(sk, bufsize, flags, nonblock)

    def poll(self, sk: Sock) -> tuple[bool, bool, bool]:
        """(readable, writable, exceptional) as select() reports them."""
        return self.tcp_poll(sk) if sk.tcp else self.udp_poll(sk)

    def shutdown(self, sk: Sock, how: int) -> None:
        """``inet_shutdown`` + ``tcp_shutdown`` (``how``: 0 = RD, 1 = WR, 2 = RDWR).  An
        unconnected socket answers ENOTCONN; SHUT_RD on a listener stops it (the port stays if it
        was bound explicitly); SHUT_WR on a connection sends the FIN (spec §6.2)."""
        proto = Proto.TCP if sk.tcp else Proto.UDP
        if not 0 <= how <= 2:
            raise refuse(Op.SHUTDOWN, proto, Cause.INVALID)
        bits = how + 1  # RCV_SHUTDOWN = 1, SEND_SHUTDOWN = 2
        if sk.sock_state == 2:  # SS_CONNECTING
            # inet_shutdown: SS_CONNECTED, or SS_DISCONNECTING (4) for a connection that never
            # completed or was reset meanwhile (connect() then answers EINVAL)
            sk.sock_state = 3 if sk.state not in (SYN_SENT, CLOSE) else 4
        state = sk.state
        if not sk.tcp:
            sk.shut |= bits
            if state == CLOSE:
                raise refuse(Op.SHUTDOWN, proto, Cause.NOT_CONNECTED)
            return
        if state == CLOSE:
            sk.shut |= bits
            raise refuse(Op.SHUTDOWN, proto, Cause.NOT_CONNECTED)
        if state == LISTEN:
            if bits & 1:
                self.disconnect(sk)
            return
        if state == SYN_SENT:
            self.disconnect(sk)
            return
        sk.shut |= bits
        if bits & 2 and state in (ESTABLISHED, CLOSE_WAIT):
            if sk.peer is sk:
                raise OutOfScope("shutdown(SHUT_WR) of a socket connected to itself")
            self._send_fin(sk)

    def _fin_time(self, sk: Sock) -> float | None:
        """How long an orphaned FIN_WAIT2 holds its port and 4-tuple (``tcp_close`` /
        ``tcp_rcv_state_process`` with ``tcp_fin_time``), or None when TCP_LINGER2 is negative
        (the socket is reset instead).  At most 60 s it is a FIN_WAIT2 remnant for that time.
        Above 60 s the orphan waits ``tmo - 60`` on its keepalive timer, which then turns it into
        a FIN_WAIT2 remnant for ``tcp_fin_time - 60`` again: ``2 * (tmo - 60)`` in all [V linger2
        table: TCP_LINGER2 61 -> 2 s, 62 -> 4 s; tcp_fin_timeout 61 -> 2 s].  The model keeps it
        a remnant for the whole time; on Linux the first phase is a full socket (its uid is
        then not waived for SO_REUSEPORT, and no tw bucket is counted yet)."""
        l2 = sk.opts.get((IPPROTO_TCP, TCP_LINGER2), 0)
        if l2 < 0:
            return None
        tmo = max(float(l2 or self.sysctls.ints["net.ipv4.tcp_fin_timeout"]), FIN_TIME_FLOOR)
        return tmo if tmo <= TCP_TIMEWAIT_LEN else 2 * (tmo - TCP_TIMEWAIT_LEN)

    def _linger2_abort(self, sk: Sock) -> None:
        """TCP_LINGER2 < 0 on an orphan in FIN_WAIT2: ``tcp_done`` + an active reset, no remnant.
        The peer (in CLOSE_WAIT, it has the FIN) gets the reset: SO_ERROR EPIPE, state CLOSE
        [V linger2 table]."""
        peer = sk.peer
        sk.peer = None
        if peer is not None and peer is not sk:
            peer.peer = None
            if not peer.is_tw:
                peer.err = 32 if peer.state == CLOSE_WAIT else 104
            self._abort(peer)  # type: ignore[attr-defined]

    def _time_wait(self, sk: Sock, substate: int, lifetime: float) -> None:
        """``tcp_time_wait``: the closed socket is replaced by a remnant that keeps its bind slot
        (with its SO_REUSEADDR/SO_REUSEPORT, device and addresses) and its 4-tuple, until the
        timer fires.  Above ``tcp_max_tw_buckets`` no remnant is made (spec §1.3, §6.2)."""
        self._group_leave(sk)
        if self.tw_count >= self.sysctls.ints["net.ipv4.tcp_max_tw_buckets"]:
            self._ehash_del(sk)
            if sk.peer is not None and sk.peer is not sk:
                sk.peer.peer = None
            sk.peer = None
            if sk.tb is not None:
                self._tcp_put_port(sk)
            sk.state = CLOSE
            return
        if sk.in_ehash:
            self._dest_del(self._ekey(sk))  # a remnant may be recycled: not in the cheap filter
        sk.is_tw = True
        sk.state = substate
        sk.tw_entry = self.clock_seconds()
        sk.tw_ts = self.sysctls.ints["net.ipv4.tcp_timestamps"] != 0
        self.tw_count += 1
        self.remnants.add(sk)
        self._schedule(sk, lifetime)

    def _schedule(self, sk: Sock, lifetime: float) -> None:
        self._timer_seq += 1
        sk.timer_seq = self._timer_seq
        sk.expires = self.clock_seconds() + lifetime
        heapq.heappush(self.timers, (sk.expires, self._timer_seq, sk))

    def _kill_remnant(self, sk: Sock) -> None:
        """``inet_twsk_kill``: the remnant leaves ehash and its bind slot."""
        if not sk.is_tw or sk not in self.remnants:
            return
        self.remnants.discard(sk)
        self.tw_count -= 1
        self._ehash_del(sk)
        if sk.peer is not None:
            sk.peer.peer = None
            sk.peer = None
        if sk.tb is not None:
            self._tcp_put_port(sk)
        sk.timer_seq = 0

    def advance(self, seconds: float) -> None:
        """Move the namespace's virtual clock forward, firing timers in order."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        if self.clock is not None:
            raise ValueError("this namespace uses an injected clock: advance that clock, then call expire()")
        self.now += seconds
        self.expire()

    def expire(self) -> None:
        now = self.clock_seconds()
        while self.timers and self.timers[0][0] <= now:
            _, seq, sk = heapq.heappop(self.timers)
            if sk.timer_seq == seq:
                self._kill_remnant(sk)

    def _listen_stop(self, sk: Sock) -> None:
        """``inet_csk_listen_stop`` + unhash: leave lhash2 and the group; queued connections are
        reset (their clients get ECONNRESET)."""
        if sk.chain is not None:
            sk.chain.remove(sk)
            if not sk.chain:
                self._drop_empty_chain(sk)
            sk.chain = None
        self._group_leave(sk)
        for child in sk.accept_queue:
            client = child.peer
            self._ehash_del(child)
            if child.tb is not None:
                self._tcp_put_port(child)
            child.state = CLOSE
            if client is not None:
                client.peer = None
                self._reset_arrives(client)   # ECONNRESET (_stream.py)
        sk.accept_queue = []
        sk.state = CLOSE

    def _udp_unhash(self, sk: Sock) -> None:
        """``udp_lib_unhash``: leave the port slot, the hash2 chain, hash4 and the reuseport group."""
        if not sk.num:
            return
        self._udp_unhash4(sk)
        if sk.chain is not None:
            sk.chain.remove(sk)
            if not sk.chain:
                self._drop_empty_chain(sk)
            sk.chain = None
        self._group_leave(sk)
        slot = self.udp_ports[sk.num]
        slot.remove(sk)
        if not slot:
            del self.udp_ports[sk.num]
        sk.num = 0

    def _udp_hash4(self, sk: Sock) -> None:
        """``udp_lib_hash4`` (6.13+): a connected socket joins the head of its 4-tuple chain."""
        key = self._ekey(sk)
        self.udp_hash4.setdefault(key, []).insert(0, sk)
        sk.conn_seq = key  # where it was hashed (the key may change later)

    def _udp_unhash4(self, sk: Sock) -> None:
        key = sk.conn_seq
        if key:
            lst = self.udp_hash4[key]  # type: ignore[index]
            lst.remove(sk)
            if not lst:
                del self.udp_hash4[key]  # type: ignore[arg-type]
            sk.conn_seq = 0

    def _udp_rehash(self, sk: Sock) -> None:
        """``udp_lib_rehash`` after the local address changed: move to the head of the new hash2
        chain; a reuseport member leaves its group (spec §1.4)."""
        self._group_leave(sk)
        if sk.chain is not None:
            old = sk.chain
            old.remove(sk)
            if not old:
                for k, v in list(self.udp_hash2.items()):
                    if v is old:
                        del self.udp_hash2[k]
                        break
        key = chain_key(sk) + (sk.num,)
        chain = self.udp_hash2.setdefault(key, [])
        chain.insert(0, sk)
        sk.chain = chain

    def _drop_empty_chain(self, sk: Sock) -> None:
        key = chain_key(sk) + (sk.num,)
        table = self.lhash2 if sk.tcp else self.udp_hash2
        if not table.get(key, True):
            del table[key]

    def _tcp_put_port(self, sk: Sock) -> None:
        """``inet_hashtables.c: __inet_put_port`` with the 6.18 bucket reset (spec §1.2): an empty
        bind2 bucket is freed, otherwise its flags become -1/-1 when every remaining owner was
        connect()-bound; an empty bucket is freed, otherwise its flags become -1/-1 when every
        bind2 bucket is -1/-1."""
        tb, tb2 = sk.tb, sk.tb2
        tb2.owners.remove(sk)
        if not tb2.owners:
            del tb.tb2s[tb2.key]
        elif all(o.connect_bind for o in tb2.owners):
            tb2.fastreuse = tb2.fastreuseport = -1
        if not tb.tb2s:
            del self.bhash[tb.port]
        elif all(b.fastreuse == -1 and b.fastreuseport == -1 for b in tb.tb2s.values()):
            tb.fastreuse = tb.fastreuseport = -1
        sk.tb = sk.tb2 = None
        self._sync_bound(tb.port)

    def _sync_bound(self, port: int) -> None:
        """Keep ``bound_ports`` (the connect() search's cheap filter) equal to the ports whose
        bucket exists and is not connect()-only."""
        tb = self.bhash.get(port)
        blocked = tb is not None and not (tb.fastreuse < 0 and tb.fastreuseport < 0)
        if blocked != (port in self.bound_ports):
            if blocked:
                self.bound_ports.add(port)
            else:
                self.bound_ports.discard(port)
            self._bound_mask = None

    # ------------------------------------------------------------------------------------
    # adopt(): load an existing socket as a fact (the live host's snapshot)
    # ------------------------------------------------------------------------------------

    def adopt(self, *, tcp: bool, family: int, rcv_saddr: int, v6_rcv_saddr: int, port: int, v6only: bool,
              bound_dev: int = 0, uid: int = 0, reuseaddr: bool = False, reuseport: bool = False,
              state: int = CLOSE, is_tw: bool = False, connect_bind: bool = False,
              expires_in: float | None = None, daddr: int = 0, v6_daddr: int = 0, dport: int = 0) -> Sock:
        """Insert a socket that already holds ``port`` -- a socket seen on a live host, say --
        into the tables without any conflict check: what exists on the host is a fact, not a
        request.  The TCP bucket's fast-path flags are set so that they never admit anything
        (0/0 for bound sockets, -1/-1 when every owner is connect()-bound): a host's real flag
        history cannot be read, and the pairwise rule is the safe answer.  Listeners are hashed
        into their lhash2 chain (newest first) and join reuseport groups as listen() would;
        UDP sockets as bind() would.  TIME_WAIT remnants are owners with ``is_tw`` and state
        TIME_WAIT (spec §1.3).  Returns the new record; its ``fd`` names it in explanations."""
        sk = self.socket(family, tcp)
        sk.uid = uid
        sk.rcv_saddr, sk.v6_rcv_saddr, sk.v6only = rcv_saddr, v6_rcv_saddr, v6only
        sk.bound_dev, sk.reuseaddr, sk.reuseport = bound_dev, reuseaddr, reuseport
        sk.state, sk.is_tw, sk.connect_bind = state, is_tw, connect_bind
        sk.daddr, sk.v6_daddr, sk.dport = daddr, v6_daddr, dport
        if is_tw and expires_in is not None:
            sk.expires = self.clock_seconds() + expires_in  # shown as "N s left"; no timer runs
        sk.cov4, sk.cov6 = coverage(family, rcv_saddr, v6_rcv_saddr, v6only)
        sk.bindaddr_lock = bool(rcv_saddr or v6_rcv_saddr)
        sk.bindport_lock = not connect_bind
        if tcp:
            tb = self.bhash.get(port)
            if tb is None:
                tb = self.bhash[port] = BindBucket(port, -1 if connect_bind else 0)
            key = v6_rcv_saddr if family == AF_INET6 else (V4MAPPED_PREFIX | rcv_saddr)
            tb2 = tb.tb2s.get(key)
            if tb2 is None:
                tb2 = tb.tb2s[key] = Bind2Bucket(key)
                tb2.fastreuse = tb2.fastreuseport = -1 if connect_bind else 0
            tb2.owners.append(sk)
            sk.tb, sk.tb2, sk.num = tb, tb2, port
            if not connect_bind:
                tb.fastreuse = tb.fastreuseport = tb2.fastreuse = tb2.fastreuseport = 0
            self._sync_bound(port)
            if state == LISTEN:
                key3 = chain_key(sk) + (port,)
                chain = self.lhash2.setdefault(key3, [])
                if reuseport:
                    for old in chain:
                        if old.tb is tb and _rules.reuseport_group_match(sk, old):
                            self._group_join(sk, old)
                            break
                    else:
                        self._group_new(sk)
                if reuseport and family == AF_INET6:
                    chain.append(sk)
                else:
                    chain.insert(0, sk)
                sk.chain = chain
        else:
            self._udp_get_port_adopted(sk, port)
        return sk

    def _udp_get_port_adopted(self, sk: Sock, port: int) -> None:
        saved = sk.state
        sk.state = CLOSE
        # same hashing as bind(); the conflict check is skipped by asking for a port no one
        # can conflict with: insert directly
        sk.num = port
        slot = self.udp_ports.setdefault(port, [])
        if sk.reuseport:
            for old in slot:
                if _rules.reuseport_group_match(sk, old):
                    self._group_join(sk, old)
                    break
            else:
                self._group_new(sk)
        slot.insert(0, sk)
        chain = self.udp_hash2.setdefault(chain_key(sk) + (port,), [])
        if sk.reuseport and sk.family == AF_INET6:
            chain.append(sk)
        else:
            chain.insert(0, sk)
        sk.chain = chain
        sk.state = saved

    # ------------------------------------------------------------------------------------
    # Refusal records (explanations are computed lazily by _explain)
    # ------------------------------------------------------------------------------------

    def _conflict(self, sk: Sock, port: int, op: Op, tb: BindBucket | None) -> OSError:
        """The EADDRINUSE of a pairwise conflict, with what explains it recorded as plain tuples
        (``_sock.snapshot``); the reasons are computed only if someone reads them."""
        proto = Proto.TCP if sk.tcp else Proto.UDP
        if tb is not None:
            owners = tuple(snapshot(o) for tb2 in tb.tb2s.values() for o in tb2.owners if o is not sk)
            extra = (tb.fastreuse, tb.fastreuseport, tb.fastuid)
        else:
            owners = tuple(snapshot(o) for o in self.udp_ports.get(port, ()) if o is not sk)
            extra = None
        return refuse(op, proto, Cause.ADDR_IN_USE,
                      LazyReasons(Refusal(op, proto, Cause.ADDR_IN_USE, snapshot(sk), port, owners, "", self, extra)))

    def _simple_reasons(self, sk: Sock, op: Op, cause: Cause, port: int, **extra: Any) -> Any:
        proto = Proto.TCP if sk.tcp else Proto.UDP
        return LazyReasons(Refusal(op, proto, cause, snapshot(sk), port, (), "", self, extra))

    # ------------------------------------------------------------------------------------
    # Read-only views
    # ------------------------------------------------------------------------------------

    def iter_socks(self) -> Iterator[Sock]:
        return iter(self.socks.values())

    def check_invariants(self) -> None:
        """Assert the table invariants stated on each table type (used by property tests)."""
        for port, tb in self.bhash.items():
            assert tb.port == port and tb.tb2s, f"bind bucket {port} empty"
            for key, tb2 in tb.tb2s.items():
                assert tb2.owners, f"bind2 bucket {port}/{key:x} empty"
                for o in tb2.owners:
                    assert o.tb is tb and o.tb2 is tb2 and o.num == port and (not o.closed or o.is_tw), o
                    if o.is_tw and o in self.remnants:
                        assert o.expires > self.clock_seconds(), f"remnant {o} outlived its timer"
        for sk in self.socks.values():
            assert not sk.closed
            if sk.tcp:
                assert (sk.tb is None) == (sk.num == 0) or sk.no_port, sk
            else:
                assert (sk.num == 0) or sk in self.udp_ports[sk.num], sk
            if sk.state == LISTEN:
                assert sk.chain is not None and sk in sk.chain, sk
            if sk.group is not None:
                assert sk in sk.group.socks, sk
        # invariant of spec §4 (holds unless the §3.3 fast path admitted a socket): listeners
        # that overlap on a port share SO_REUSEPORT and uid -- not asserted, see tables().
        for chain in list(self.lhash2.values()) + list(self.udp_hash2.values()):
            assert chain, "empty chain kept"
        assert self.bound_ports == {p for p, tb in self.bhash.items()
                                    if not (tb.fastreuse < 0 and tb.fastreuseport < 0)}, "bound_ports stale"
        live: dict[tuple[int, int, int], dict[int, int]] = {}
        for key, lst in self.ehash.items():
            for o in lst:
                if not o.is_tw:
                    d = live.setdefault((key[0], key[2], key[3]), {})
                    d[key[1]] = d.get(key[1], 0) + 1
        assert live == self.dest_ports, "destination index stale"
        for key, lst in self.ehash.items():
            assert lst, "empty ehash entry kept"
            for o in lst:
                assert o.in_ehash and self._ekey(o) == key, (o, key)
            live = [o for o in lst if not o.is_tw]
            for i, a in enumerate(live):
                for b in live[i + 1:]:
                    assert not _rules.dev_compatible(a.bound_dev, b.bound_dev), f"4-tuple twice: {a} {b}"
        # delivery (model/_demux.py): hash4 holds exactly the connected UDP sockets, under their
        # current 4-tuple; receive queues within the buffer; memberships indexed
        for key, lst in self.udp_hash4.items():
            assert lst, "empty hash4 entry kept"
            for o in lst:
                assert not o.closed and o.state == ESTABLISHED and o.conn_seq == key == self._ekey(o), (o, key)
        for sk in self.socks.values():
            if not sk.tcp:
                assert (sk.conn_seq != 0) == (sk.state == ESTABLISHED), sk
                assert sk.rmem == sum(c for _d, _s, c in sk.rcv_queue) and sk.rmem <= 212992, sk
                assert (sk in self.mc_members) == bool(sk.mc_list), sk
        seen: set[int] = set()
        for sk in self.socks.values():
            g = sk.group
            if g is not None and id(g) not in seen:
                seen.add(id(g))
                assert g.incoming_cpu == sum(1 for m in g.socks if m.incoming_cpu >= 0), g

    def listeners(self) -> list[Sock]:
        return [s for chain in self.lhash2.values() for s in chain]


def _proc_path(name: str) -> str:
    return "/proc/sys/" + name.replace(".", "/")


def for_each_owner(tb: BindBucket, fn: Callable[[Sock], None]) -> None:
    for tb2 in tb.tb2s.values():
        for o in tb2.owners:
            fn(o)
