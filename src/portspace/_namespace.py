"""``portspace.Namespace``: one model Linux network namespace with a socket-module-shaped API.

Theory of operation
-------------------
A :class:`Namespace` owns a pure kernel model (``model._netns.NetNS``: tables, sysctls,
devices) and hands out :class:`~portspace.Socket` objects whose methods have the stdlib's names,
signatures and exceptions.  It adds what ``ip``, ``sysctl`` and ``seteuid`` do on a real host:
``add_address``, ``del_address``, ``add_device``, ``sysctl`` and ``user``.  Nothing here does I/O, reads a clock
or draws randomness: the RNG is injected (``rng=`` or ``seed=``).

The same surface is offered by :class:`portspace.live.KernelNamespace` on real sockets in a
private network namespace, which is how the test suite checks the model against the kernel.
"""
from __future__ import annotations

import contextlib
import copy
import operator
import socket as _stdsocket
from dataclasses import dataclass
from typing import Any, Iterator

from ._hostaddr import sockaddr
from ._socket import Socket
from .model._addr import AF_INET, AF_INET6, parse_ipv4, parse_ipv6
from .model._env import Rng, SeededRng
from .model._errors import Cause, Deadlock, Op, OutOfScope, Proto, refuse
from .model._explain import Reason, explain_success
from .model._netns import NetNS

_NONBLOCK = _stdsocket.SOCK_NONBLOCK
_CLOEXEC = _stdsocket.SOCK_CLOEXEC
_type = type
_INT_TYPES = {int, bool, _stdsocket.AddressFamily, _stdsocket.SocketKind}
# (family, type, proto) -> (family, is_tcp, type, proto) for the combinations that need no checks
_FAST_KINDS: dict[tuple[int, int, int], tuple[int, bool, int, int]] = {}
for _fam in (AF_INET, AF_INET6):
    for _base, _tcp, _protos in ((_stdsocket.SOCK_STREAM, True, (0, _stdsocket.IPPROTO_TCP)),
                                 (_stdsocket.SOCK_DGRAM, False, (0, _stdsocket.IPPROTO_UDP))):
        for _flags in (0, _NONBLOCK, _CLOEXEC, _NONBLOCK | _CLOEXEC):
            for _p in _protos:
                _FAST_KINDS[(_fam, _base | _flags, _p)] = (_fam, _tcp, int(_base | _flags), int(_p))


def _select_timeout(value: Any) -> int | None:
    """select()'s timeout: None, or nanoseconds as ``_PyTime_FromSecondsObject`` rounds them
    (away from zero), with select's own messages."""
    if value is None:
        return None
    if isinstance(value, float):
        if value != value:
            raise ValueError("Invalid value NaN (not a number)")
        d = value * 1e9
        if d >= 0:
            d = float(-(-d // 1))
        else:
            d = float(d // 1)
        if not -9223372036854775808.0 <= d < 9223372036854775808.0:
            raise OverflowError("timestamp out of range for platform time_t")
        ns = int(d)
    else:
        try:
            sec = operator.index(value)
        except TypeError:
            raise TypeError("timeout must be a float or None") from None
        if not -(1 << 63) <= sec < (1 << 63):
            raise OverflowError("timestamp too large to convert to C _PyTime_t")
        ns = sec * 10**9
        if not -(1 << 63) <= ns < (1 << 63):
            raise OverflowError("timestamp too large to convert to C _PyTime_t")
    if ns < 0:
        raise ValueError("timeout must be non-negative")
    return ns


def _parse_cidr(cidr: str) -> tuple[int | None, int | None, int]:
    """``"A[/plen]"`` -> (IPv4 int or None, IPv6 int or None, plen); no plen means a host
    address (/32, /128).  ValueError for malformed text, TypeError for a non-str."""
    if not isinstance(cidr, str):
        raise TypeError(f"cidr must be str, not {type(cidr).__name__}")
    text, _, plen_text = cidr.partition("/")
    v4 = parse_ipv4(text) if text.count(".") == 3 else None
    if v4 is not None:
        plen = int(plen_text) if plen_text else 32
        if not 0 <= plen <= 32:
            raise ValueError(f"bad prefix length in {cidr!r}")
        return v4, None, plen
    v6 = parse_ipv6(text)
    if v6 is None:
        raise ValueError(f"not an IPv4 or IPv6 address: {cidr!r}")
    plen = int(plen_text) if plen_text else 128
    if not 0 <= plen <= 128:
        raise ValueError(f"bad prefix length in {cidr!r}")
    return None, v6, plen


@dataclass(frozen=True)
class Explanation:
    """The answer of :meth:`Namespace.explain`: would the call succeed, with which errno if not,
    and why (a list of :class:`~portspace.model.Reason`)."""

    call: str
    ok: bool
    error: str | None
    reasons: tuple[Reason, ...]

    def __str__(self) -> str:
        head = f"{self.call}: " + ("would succeed" if self.ok else f"would fail with {self.error}")
        return "\n".join([head] + ["  " + str(r).replace("\n", "\n  ") for r in self.reasons])

    def as_dict(self) -> dict[str, Any]:
        return {"call": self.call, "ok": self.ok, "error": self.error,
                "reasons": [r.as_dict() for r in self.reasons]}


class Namespace:
    """A model Linux 6.18 network namespace (spec §1).

    Args:
        seed: shortcut for ``rng=SeededRng(seed)``.
        rng: the random source (``u32()``, ``below(n)``); automatic ports depend on it only.
        udp_table_size: slots of the UDP hash table (a power of two; the kernel sizes it from
            RAM, 16384 on a 24 GiB machine) -- it shapes UDP automatic port selection (spec §5.5).

    Fresh state: ``lo`` up with 127.0.0.1/8 and ::1, the sysctl defaults of spec §1.7, the
    caller is uid 0 (root, all capabilities).
    """

    def __init__(self, seed: int = 0, *, rng: Rng | None = None, udp_table_size: int = 16384) -> None:
        if udp_table_size < 256 or udp_table_size > 65536 or udp_table_size & (udp_table_size - 1):
            raise ValueError("udp_table_size must be a power of two between 256 and 65536")
        self._kernel = NetNS(rng if rng is not None else SeededRng(seed), udp_table_size)
        self._handles: dict[int, Socket] = {}

    # -- sockets ---------------------------------------------------------------------
    def socket(self, family: int = _stdsocket.AF_INET, type: int = _stdsocket.SOCK_STREAM,
               proto: int = 0) -> Socket:
        """Like ``socket.socket(family, type, proto)`` (AF_INET/AF_INET6, SOCK_STREAM/SOCK_DGRAM,
        optionally ``| SOCK_NONBLOCK``).

        Raises:
            OSError: EAFNOSUPPORT (unknown family), EINVAL (unknown type), EPROTONOSUPPORT
                (protocol does not match the type).
            NotImplementedError: families and types the model does not cover (AF_UNIX, raw...).
        """
        if _type(family) in _INT_TYPES and _type(type) in _INT_TYPES and _type(proto) in _INT_TYPES:
            fast = _FAST_KINDS.get((family, type, proto))
            if fast is not None:  # the common, valid combinations: no further checks needed
                return Socket(self, self._kernel.socket(fast[0], fast[1]), fast[0], fast[2], fast[3])
        return self._socket_checked(family, type, proto)

    def _socket_checked(self, family: Any, type: Any, proto: Any) -> Socket:
        from ._hostaddr import c_int_clinic
        family, type, proto = c_int_clinic(family), c_int_clinic(type), c_int_clinic(proto)
        # CPython 3.11 (sock_initobj): -1 means "the default" for each of the three
        if family == -1:
            family = AF_INET
        if type == -1:
            type = _stdsocket.SOCK_STREAM
        if proto == -1:
            proto = 0
        base = type & ~(_NONBLOCK | _CLOEXEC)
        if family not in (AF_INET, AF_INET6):
            if family < 0 or family >= 46:  # AF_MAX on 6.18
                raise refuse(Op.SOCKET, Proto.ANY, Cause.BAD_FAMILY)
            raise OutOfScope(f"socket family {family} is not modelled (AF_INET and AF_INET6 only)")
        if base == _stdsocket.SOCK_STREAM:
            tcp = True
            if proto not in (0, _stdsocket.IPPROTO_TCP):
                if proto == 262:
                    raise OutOfScope("MPTCP sockets are outside the model")
                raise refuse(Op.SOCKET, Proto.TCP, Cause.PROTO_NOT_SUPPORTED)
        elif base == _stdsocket.SOCK_DGRAM:
            tcp = False
            if proto not in (0, _stdsocket.IPPROTO_UDP):
                if proto == _stdsocket.IPPROTO_UDPLITE:
                    raise OutOfScope("UDP-Lite sockets are outside the model")
                if proto == _stdsocket.IPPROTO_ICMP or proto == 58:
                    raise OutOfScope("ICMP datagram sockets are outside the model")
                raise refuse(Op.SOCKET, Proto.UDP, Cause.PROTO_NOT_SUPPORTED)
        elif base in (_stdsocket.SOCK_RAW, _stdsocket.SOCK_SEQPACKET, _stdsocket.SOCK_RDM):
            raise OutOfScope(f"socket type {base} is not modelled (SOCK_STREAM and SOCK_DGRAM only)")
        else:
            raise refuse(Op.SOCKET, Proto.ANY, Cause.INVALID)
        sk = self._kernel.socket(family, tcp)
        s = Socket(self, sk, family, type, proto)
        return s

    # -- configuration (ip addr / ip link / sysctl / seteuid) ------------------------------
    def add_address(self, cidr: str, dev: str = "lo") -> None:
        """Like ``ip addr add CIDR dev DEV`` (IPv6 addresses are usable at once, as with
        ``nodad``).  Raises ValueError for malformed text, OSError ENODEV / EEXIST."""
        v4, v6, plen = _parse_cidr(cidr)
        if v4 is not None:
            self._kernel.add_address_v4(v4, plen, dev)
        else:
            self._kernel.add_address_v6(v6, plen, dev)

    def del_address(self, cidr: str, dev: str = "lo") -> None:
        """Like ``ip addr del CIDR dev DEV`` (no prefix length: /32 or /128, as for
        ``add_address``): the address and its local/broadcast routes go; sockets bound to it
        stay bound, as on Linux.  Raises ValueError for malformed text, OSError ENODEV, or
        EADDRNOTAVAIL when that address/prefix is not on the device; ``OutOfScope`` for a
        primary IPv4 address that has secondaries (promote_secondaries)."""
        v4, v6, plen = _parse_cidr(cidr)
        if v4 is not None:
            self._kernel.del_address_v4(v4, plen, dev)
        else:
            self._kernel.del_address_v6(v6, plen, dev)

    def add_device(self, name: str) -> None:
        """Like ``ip link add NAME type dummy; ip link set NAME up``: a device to bind to."""
        self._kernel.add_device(name)

    def sysctl(self, name: str, value: Any = None) -> str | None:
        """Read (``value`` None) or write a ``net.*`` sysctl, with the kernel's text format.

        ``value`` may be text (written as is), an int, or a sequence of ints (joined by a
        space).  Reading returns the text ``/proc/sys`` shows, without the newline, e.g.
        ``ns.sysctl("net.ipv4.ip_local_port_range") == "32768\\t60999"``.

        Raises:
            OSError: EINVAL for a value the kernel refuses; FileNotFoundError for an unknown
                name; PermissionError (EPERM... as the kernel's EACCES on open) for a non-root
                writer.
            NotImplementedError: a real Linux sysctl the model does not cover.
        """
        if value is None:
            return self._kernel.sysctl_read(name)
        if isinstance(value, (list, tuple)):
            text = " ".join(str(int(v)) for v in value)
        else:
            text = str(value)
        self._kernel.sysctl_write(name, text)
        return None

    @contextlib.contextmanager
    def user(self, uid: int, caps: Any = None) -> Iterator[None]:
        """Run the block as ``uid`` (like ``seteuid``): sockets created inside are owned by it,
        and calls made inside are checked as it.  ``caps`` (names such as
        ``"CAP_NET_BIND_SERVICE"``, ``"CAP_NET_RAW"``) gives the capabilities the caller holds;
        by default uid 0 holds all and any other uid none."""
        if not isinstance(uid, int) or uid < 0 or uid > 0xFFFFFFFE:
            raise ValueError(f"bad uid {uid!r}")
        if caps is not None:
            caps = frozenset(caps)
            unknown = {c for c in caps if not (isinstance(c, str) and c.startswith("CAP_"))}
            if unknown:
                raise ValueError(f"not capability names: {sorted(map(str, unknown))}")
        k = self._kernel
        saved = (k.uid, k.caps)
        k.uid, k.caps = uid, caps
        try:
            yield
        finally:
            k.uid, k.caps = saved

    def add_local_route(self, cidr: str, dev: str = "lo") -> None:
        """Like ``ip route add local CIDR dev DEV`` (AnyIP, IPv4): every address of the prefix
        becomes local."""
        text, _, plen_text = cidr.partition("/")
        addr = parse_ipv4(text) if text.count(".") == 3 else None
        if addr is None:
            raise ValueError(f"not an IPv4 prefix: {cidr!r}")
        plen = int(plen_text) if plen_text else 32
        if not 0 <= plen <= 32:
            raise ValueError(f"bad prefix length in {cidr!r}")
        self._kernel.add_local_route(addr, plen, dev)

    # -- time ------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        """Move the namespace's virtual clock forward by ``seconds``; timers (TIME_WAIT and
        FIN_WAIT2 remnants) fire in order.  Nothing in the model reads the wall clock."""
        self._kernel.advance(float(seconds))

    @property
    def now(self) -> float:
        """The virtual clock, in seconds since the namespace was made."""
        return self._kernel.clock_seconds()

    # -- waiting (select.select for model sockets) -----------------------------------
    def select(self, *args: Any, **kwargs: Any) -> tuple[list, list, list]:
        """``select(rlist, wlist, xlist[, timeout])``: like ``select.select`` for this
        namespace's sockets (positional arguments only, as in CPython).

        Readiness is the kernel's poll answer (``NetNS.poll``; TCP in model/_stream.py, UDP in
        model/_datagram.py): readable with data, an end of stream, a queued connection on a
        listener, a pending error or a hang-up (an unconnected socket is readable and writable,
        as on Linux); writable unless connecting; exceptional with urgent data (never).  The
        three lists keep the objects given, in their order.

        Arguments are checked as CPython does, with its messages: any iterables, of ints (this
        namespace's descriptors) or objects with ``fileno()``; a negative descriptor is
        ValueError; a descriptor that is not one of this namespace's open sockets is EBADF;
        a ``timeout`` that is not a number is TypeError, a negative one ValueError.  An object
        whose descriptor is valid but which is not a socket of this namespace (a real socket,
        a file, another namespace's socket) cannot be waited on: ``OutOfScope``.

        Nothing ready: with ``timeout=None`` the call could never return in a single-threaded
        model, so it raises ``Deadlock``; with a timeout it models the wait -- the virtual
        clock advances by ``timeout`` (timers such as TIME_WAIT expiry fire; with an injected
        clock nothing advances) -- and returns three empty lists, as select() does.
        """
        if kwargs:
            raise TypeError("select.select() takes no keyword arguments")
        if not 3 <= len(args) <= 4:
            raise TypeError(f"select expected at {'least 3' if len(args) < 3 else 'most 4'} arguments, "
                            f"got {len(args)}")
        rlist, wlist, xlist = args[:3]
        tmo = _select_timeout(args[3] if len(args) > 3 else None)
        k = self._kernel
        picked: list[list[Any]] = []
        for seq in (rlist, wlist, xlist):
            try:
                items = list(seq)
            except TypeError:
                raise TypeError("arguments 1-3 must be sequences") from None
            picked.append([(o, self._select_sock(o)) for o in items])
        ready: dict[int, tuple[bool, bool, bool]] = {}
        out: tuple[list, list, list] = ([], [], [])
        for which, pairs in enumerate(picked):
            for o, sk in pairs:
                r = ready.get(id(sk))
                if r is None:
                    r = ready[id(sk)] = k.poll(sk)
                if r[which]:
                    out[which].append(o)
        if out[0] or out[1] or out[2] or tmo == 0:
            return out
        if tmo is None:
            fds = sorted({sk.fd for pairs in picked for _, sk in pairs})
            raise Deadlock(f"select() with nothing ready (descriptors {fds}) and no timeout would wait "
                           "forever: nothing else can run while this single-threaded model waits")
        if k.clock is None:
            k.advance(tmo / 1e9)
        else:
            k.expire()
        return out

    def _select_sock(self, o: Any) -> Any:
        """``PyObject_AsFileDescriptor`` + the descriptor checks of select(), then the model
        socket behind the descriptor."""
        if isinstance(o, int):
            if not -(1 << 31) <= o < (1 << 31):
                raise OverflowError("Python int too large to convert to C int")
            fd = int(o)
        else:
            meth = getattr(o, "fileno", None)
            if meth is None:
                raise TypeError("argument must be an int, or have a fileno() method.")
            fd = meth()
            if not isinstance(fd, int):
                raise TypeError("fileno() returned a non-integer")
            if not -(1 << 31) <= fd < (1 << 31):
                raise OverflowError("Python int too large to convert to C int")
        if fd < 0:
            raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
        if fd >= 1024:  # FD_SETSIZE
            raise ValueError("filedescriptor out of range in select()")
        sk = self._kernel.socks.get(fd)
        if not isinstance(o, int) and not (isinstance(o, Socket) and o._ns is self and o._sk is sk):
            raise OutOfScope(f"select() on {type(o).__name__} object with descriptor {fd}: only this "
                             "namespace's model sockets can be waited on")
        if sk is None:
            raise refuse(Op.SELECT, Proto.ANY, Cause.BAD_FD)
        return sk

    # -- queries ---------------------------------------------------------------------
    def explain(self, sock: Socket, op: str, address: Any = None, backlog: int = 0) -> Explanation:
        """Would ``sock.bind(address)`` / ``sock.listen()`` succeed now, and why?

        Runs the call on a scratch copy of the namespace, so nothing changes here (not even the
        RNG state).  Refusals carry the same reasons as the raised error's ``.reasons``.
        """
        if op not in ("bind", "listen"):
            raise ValueError("explain() covers 'bind' and 'listen'")
        scratch = copy.deepcopy(self)
        twin = scratch._find(sock.fileno())
        if twin is None:
            raise ValueError("socket is closed or not from this namespace")
        call = f"{op}({address!r})" if op == "bind" else "listen()"
        call = f"socket #{sock.fileno()} {call}"
        try:
            if op == "bind":
                twin.bind(address)
            else:
                twin.listen(backlog) if backlog else twin.listen()
        except OSError as e:
            import errno as _errno
            name = _errno.errorcode.get(e.errno, str(e.errno)) if e.errno is not None else str(e)
            return Explanation(call, False, name, tuple(getattr(e, "reasons", ())))
        return Explanation(call, True, None, tuple(explain_success(scratch._kernel, twin._sk, Op.BIND)))

    def _find(self, fd: int) -> Socket | None:
        sk = self._kernel.socks.get(fd)
        if sk is None:
            return None
        s = Socket(self, sk, sk.family, _stdsocket.SOCK_STREAM if sk.tcp else _stdsocket.SOCK_DGRAM, 0)
        return s

    def tables(self) -> Any:
        """A read-only, printable view of the kernel tables (bind buckets, listener chains,
        UDP slots, reuseport groups)."""
        from ._tables import Tables
        return Tables.of(self._kernel)

    def check_invariants(self) -> None:
        self._kernel.check_invariants()

    @property
    def uid(self) -> int:
        """The calling uid (changed by :meth:`user`)."""
        return self._kernel.uid

    def socket_count(self) -> int:
        return len(self._kernel.socks)

    # -- delivery (model/_demux.py; issue 6, D) --------------------------------------------
    def set_cpu(self, cpu: int) -> None:
        """Run as if on CPU ``cpu`` from now on (``sched_setaffinity`` to one CPU on the kernel):
        what SO_INCOMING_CPU scoring and reuseport selection compare with (spec §7.1, §7.3)."""
        if type(cpu) is not int or cpu < 0:
            raise ValueError(f"cpu must be a non-negative int, not {cpu!r}")
        self._kernel.cpu = cpu

    def who_receives(self, proto: str, src: Any, dst: Any, dev: str | None = None) -> Any:
        """Which socket(s) would receive a ``proto`` ("tcp": a segment or SYN, "udp": a datagram)
        from ``src`` to ``dst`` (``(host, port)`` tuples) arriving on ``dev`` (default lo), and
        why.  Changes nothing.  Returns a :class:`portspace._delivery.Delivery`."""
        from ._delivery import who_receives
        return who_receives(self._kernel, proto, src, dst, dev)

    def flow_report(self, proto: str, dst: Any, sources: Any) -> Any:
        """Where flows from each of ``sources`` to ``dst`` land (spec §7.3 distribution); compare
        two reports with ``.moved()`` to count the flows a leave or join moved."""
        from ._delivery import flow_report
        return flow_report(self._kernel, proto, dst, sources)

    _ = (sockaddr, AF_INET6)
