"""Step scripts: one small vocabulary for scenarios, run on the model or on the live kernel.

Theory of operation
-------------------
A script is text, one step per line, with the expected outcome after ``->``::

    a = tcp4 reuseaddr                  # a TCP/IPv4 socket with SO_REUSEADDR
    b = tcp4 reuseaddr uid=1000         # created by uid 1000
    a bind 0.0.0.0 8888        -> OK
    b bind 192.168.1.100 8888  -> OK
    a listen                   -> OK
    b listen                   -> EADDRINUSE
    ns sysctl net.ipv4.ip_local_port_range "1000 2000" -> EINVAL

Socket kinds are ``tcp4 tcp6 udp4 udp6``; creation options ``reuseaddr reuseport v6only
v6only=0 dev=NAME freebind nonblock no_port range=LO-HI linger2=SECONDS uid=N``.  Socket steps: ``bind HOST PORT [SCOPE]``,
``listen [BACKLOG]``, ``close``, ``getsockname``, ``name`` / ``peer`` (getsockname() /
getpeername() as ``host:port`` with a default-range ephemeral port shown as ``eph``),
``connect HOST PORT``, ``disconnect``, ``shutdown rd|wr|rdwr``, ``timeout SECONDS|none``, ``error`` (SO_ERROR),
``set OPTION VALUE`` (``reuseaddr``, ``reuseport``, ``v6only``, ``dev``, ``freebind``,
``broadcast``, ``incoming_cpu``, ``mcast_all`` (alias ``multicast_all``), ``mcast_loop``, ``mcast_if ADDR``
(alias ``multicast_if``)), ``get OPTION``; ``x = L accept`` accepts on L and names the new socket x; data
(``_data_step``): ``send [DATA [FLAGS]]``, ``sendall``, ``sendto HOST PORT [DATA]`` or ``sendto DATA
[FLAGS] HOST PORT`` (DATA defaults to ``x``; the outcome is the byte count), ``recv [N [FLAGS]]``,
``recvfrom [N [FLAGS]]`` (-> ``b'..' from host:port``, or ``(b'..', None)`` on TCP), ``select``,
``drain`` (receive all queued datagrams of this socket without blocking -> how many); IPv4
multicast: ``join GROUP [IFADDR]`` / ``join mreqn GROUP IFINDEX`` / ``leave ...``
(IP_ADD/DROP_MEMBERSHIP), ``srcjoin|srcleave|block|unblock GROUP IFADDR SOURCE`` (source
filters); ``ns cpu N`` (the CPU the next calls run on).  Namespace steps: ``ns addr
CIDR [DEV]``, ``ns deladdr CIDR [DEV]`` (``ip addr del``: bound sockets stay bound), ``ns device
NAME``, ``ns sysctl NAME [VALUE]``, ``ns sleep SECONDS`` (alias ``ns advance``: the model's
virtual clock; real time on the kernel), ``ns drain S1 S2 ...`` (read every
queued datagram of the named sockets without blocking; the outcome ``K of N sockets, D
datagram(s)`` says how many of them received any, independent of which one: the reuseport hash key
differs between runs).  A trailing ``as=UID`` runs the
step as that uid.  Hosts may be written ``[::1]``.

Outcomes are normalised the same way on both sides (style §5.5): ``OK``; an errno name
(``EADDRINUSE``); ``Type: message`` for exceptions without errno; the ``repr`` of a returned
value.  :func:`run_script` runs a script on any namespace with the portspace API (the model's
``Namespace`` or ``live.KernelNamespace``) and returns one :class:`StepResult` per step.
"""
from __future__ import annotations

import errno
import shlex
import socket
from dataclasses import dataclass
from typing import Any, Callable, Iterable

KINDS = {"tcp4": (socket.AF_INET, socket.SOCK_STREAM), "tcp6": (socket.AF_INET6, socket.SOCK_STREAM),
         "udp4": (socket.AF_INET, socket.SOCK_DGRAM), "udp6": (socket.AF_INET6, socket.SOCK_DGRAM)}
IP_FREEBIND = 15
IP_BIND_ADDRESS_NO_PORT = 24
OPTIONS = {
    "reuseaddr": (socket.SOL_SOCKET, socket.SO_REUSEADDR),
    "reuseport": (socket.SOL_SOCKET, socket.SO_REUSEPORT),
    "v6only": (socket.IPPROTO_IPV6, socket.IPV6_V6ONLY),
    "freebind": (socket.IPPROTO_IP, IP_FREEBIND),
    "no_port": (socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT),
    "dev": (socket.SOL_SOCKET, socket.SO_BINDTODEVICE),
    "broadcast": (socket.SOL_SOCKET, socket.SO_BROADCAST),
    "range": (socket.IPPROTO_IP, 51),  # IP_LOCAL_PORT_RANGE
    "multicast_if": (socket.IPPROTO_IP, socket.IP_MULTICAST_IF),   # value: an IPv4 address
    "multicast_all": (socket.IPPROTO_IP, 49),                      # IP_MULTICAST_ALL
    "linger2": (socket.IPPROTO_TCP, socket.TCP_LINGER2),
    "incoming_cpu": (socket.SOL_SOCKET, 49),  # SO_INCOMING_CPU
    "mcast_all": (socket.IPPROTO_IP, 49),     # IP_MULTICAST_ALL
    "mcast_loop": (socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP),
    "mcast_if": (socket.IPPROTO_IP, socket.IP_MULTICAST_IF),
}
TEXT_OPTIONS = ("dev", "multicast_if", "mcast_if")   # options whose value is text, not a number


@dataclass(frozen=True)
class Step:
    line: str
    target: str
    op: str
    args: tuple[str, ...]
    want: str | None
    uid: int | None


@dataclass(frozen=True)
class StepResult:
    step: Step
    outcome: str
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.step.want is None or self.step.want == self.outcome


def parse(script: str) -> list[Step]:
    steps: list[Step] = []
    for raw in script.splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.strip().startswith("ns sysctl") else raw.strip()
        if not line:
            continue
        body, arrow, want = line.partition("->")
        want_s = want.strip() if arrow else None
        if want_s and want_s.startswith(("'", '"')) and want_s[0] == want_s[-1]:
            want_s = want_s[1:-1].encode().decode("unicode_escape")
        words = shlex.split(body)
        uid = None
        for w in list(words):
            if w.startswith("as="):
                uid = int(w[3:])
                words.remove(w)
        if len(words) >= 4 and words[1] == "=" and words[3] == "accept":
            # "x = L accept": accept a connection on L, name the new socket x
            target, op, args = words[2], "accept", (words[0],)
        elif len(words) >= 3 and words[1] == "=":
            target, op, args = words[0], "socket", tuple(words[2:])
        else:
            target, op, args = words[0], words[1], tuple(words[2:])
        steps.append(Step(line, target, op, args, want_s, uid))
    return steps


def outcome(fn: Callable[[], Any]) -> tuple[str, BaseException | None]:
    """Run ``fn`` and normalise its result (see module header)."""
    try:
        value = fn()
    except OSError as e:
        if e.errno is None:
            return f"{type(e).__name__}: {e}", e
        if isinstance(e, socket.gaierror):
            return f"gaierror({e.errno})", e
        return errno.errorcode.get(e.errno, str(e.errno)), e
    except (TypeError, ValueError, OverflowError, NotImplementedError) as e:
        return f"{type(e).__name__}: {e}", e
    if value is None:
        return "OK", None
    if isinstance(value, str):
        return value, None
    return repr(value), None


def _host(text: str) -> str:
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def _as(ns: Any, uid: int | None) -> Any:
    import contextlib
    return ns.user(uid) if uid is not None else contextlib.nullcontext()


def _opt_value(name: str, text: str) -> Any:
    if name == "range":
        return int(text).to_bytes(4, "little")
    if name == "dev":
        return text.encode() if text not in ("-", "none") else b""
    if name in ("multicast_if", "mcast_if"):
        return socket.inet_aton(text)
    return int(text)


def run_script(ns: Any, script: str | Iterable[Step],
               after: Callable[[StepResult], None] | None = None) -> list[StepResult]:
    """Run every step on ``ns``; sockets are closed at the end.  ``after(result)`` is called
    after each step, before the next one (``portspace run --tables`` draws the tables there)."""
    steps = parse(script) if isinstance(script, str) else list(script)
    socks: dict[str, Any] = {}
    results: list[StepResult] = []
    try:
        for st in steps:
            results.append(_run_step(ns, socks, st))
            if after is not None:
                after(results[-1])
    finally:
        for s in socks.values():
            try:
                s.close()
            except Exception:  # pragma: no cover - best effort cleanup
                pass
    return results


def _run_step(ns: Any, socks: dict[str, Any], st: Step) -> StepResult:
    if st.op == "socket":
        kind, *opts = st.args
        family, stype = KINDS[kind]
        uid = st.uid
        sets: list[tuple[str, str]] = []
        nonblock = False
        for o in opts:
            key, eq, val = o.partition("=")
            if key == "uid":
                uid = int(val)
            elif key == "nonblock":
                nonblock = True
            elif key == "range":
                lo, _, hi = val.partition("-")
                sets.append(("range", str(int(lo) | (int(hi) << 16))))
            elif key in OPTIONS:
                sets.append((key, val if eq else "1"))
            else:
                raise ValueError(f"unknown socket option {o!r} in {st.line!r}")

        def make() -> None:
            with _as(ns, uid):
                s = ns.socket(family, stype | (socket.SOCK_NONBLOCK if nonblock else 0))
                socks[st.target] = s
                for key, val in sets:
                    level, opt = OPTIONS[key]
                    s.setsockopt(level, opt, _opt_value(key, val))
        text, err = outcome(make)
        return StepResult(st, text, err)
    if st.target == "ns":
        def ns_call() -> Any:
            with _as(ns, st.uid):
                if st.op == "addr":
                    return ns.add_address(st.args[0], *(st.args[1:2] or ("lo",)))
                if st.op == "deladdr":
                    return ns.del_address(st.args[0], *(st.args[1:2] or ("lo",)))
                if st.op == "device":
                    return ns.add_device(st.args[0])
                if st.op in ("sleep", "advance"):
                    return ns.advance(float(st.args[0]))
                if st.op == "drain":
                    return _drain([socks[name] for name in st.args])
                if st.op == "sysctl":
                    return ns.sysctl(st.args[0], st.args[1] if len(st.args) > 1 else None)
                if st.op == "cpu":
                    return ns.set_cpu(int(st.args[0]))
                raise ValueError(f"unknown namespace step {st.line!r}")
        text, err = outcome(ns_call)
        return StepResult(st, text, err)
    s = socks[st.target]

    def call() -> Any:
        with _as(ns, st.uid):
            a = st.args
            if st.op == "bind":
                if s.family == socket.AF_INET6:
                    addr: tuple = (_host(a[0]), int(a[1]), 0, int(a[2]) if len(a) > 2 else 0)
                else:
                    addr = (_host(a[0]), int(a[1]))
                return s.bind(addr)
            if st.op == "listen":
                return s.listen(int(a[0])) if a else s.listen()
            if st.op == "close":
                return s.close()
            if st.op == "getsockname":
                return s.getsockname()
            if st.op == "name":
                return _ephemeral_masked(s.getsockname())
            if st.op == "peer":
                return _ephemeral_masked(s.getpeername())
            if st.op == "connect":
                if s.family == socket.AF_INET6:
                    return s.connect((_host(a[0]), int(a[1]), 0, int(a[2]) if len(a) > 2 else 0))
                return s.connect((_host(a[0]), int(a[1])))
            if st.op == "accept":
                new, addr = s.accept()
                socks[a[0]] = new
                return _ephemeral_masked(addr)
            if st.op == "shutdown":
                return s.shutdown({"rd": socket.SHUT_RD, "wr": socket.SHUT_WR, "rdwr": socket.SHUT_RDWR}[a[0]])
            if st.op == "disconnect":
                return s.disconnect()
            if st.op == "timeout":
                return s.settimeout(None if a[0] == "none" else float(a[0]))
            if st.op == "error":
                return str(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
            if st.op == "port":
                return str(s.getsockname()[1])
            if st.op == "linger":
                import struct
                return s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", int(a[0]), int(a[1])))
            if st.op == "set":
                level, opt = OPTIONS[a[0]]
                return s.setsockopt(level, opt, _opt_value(a[0], a[1]))
            if st.op == "get":
                level, opt = OPTIONS[a[0]]
                if a[0] == "dev":
                    return s.getsockopt(level, opt, 16)
                return str(s.getsockopt(level, opt))
            # -- delivery steps (issue 6, D): datagrams and multicast ---------------------
            if st.op == "drain":
                return _drain_one(s)
            if st.op in ("join", "leave"):
                import struct
                opt = socket.IP_ADD_MEMBERSHIP if st.op == "join" else socket.IP_DROP_MEMBERSHIP
                group = socket.inet_aton(a[1 if a[0] == "mreqn" else 0])
                if a[0] == "mreqn":   # join mreqn GROUP IFINDEX
                    return s.setsockopt(socket.IPPROTO_IP, opt, group + bytes(4) + struct.pack("i", int(a[2])))
                return s.setsockopt(socket.IPPROTO_IP, opt, group + socket.inet_aton(a[1] if len(a) > 1 else "0.0.0.0"))
            if st.op in ("srcjoin", "srcleave", "block", "unblock"):
                # struct ip_mreq_source: GROUP IFADDR [SOURCE] (a short struct without SOURCE)
                opt = {"srcjoin": 39, "srcleave": 40, "block": 38, "unblock": 37}[st.op]
                return s.setsockopt(socket.IPPROTO_IP, opt, b"".join(socket.inet_aton(x) for x in a))
            if st.op in DATA_STEPS:
                return _data_step(ns, s, st.op, a)
            raise ValueError(f"unknown step {st.line!r}")
    text, err = outcome(call)
    return StepResult(st, text, err)


def _drain(socks: list[Any]) -> str:
    """Read every queued datagram of ``socks`` without blocking (see the module header)."""
    hit = total = 0
    for s in socks:
        before = s.gettimeout()
        s.settimeout(0)
        try:
            got = 0
            while True:
                try:
                    s.recvfrom(65536)
                except (BlockingIOError, TimeoutError):
                    break
                got += 1
        finally:
            s.settimeout(before)
        hit += got > 0
        total += got
    return f"{hit} of {len(socks)} sockets, {total} datagram{'' if total == 1 else 's'}"


def _drain_one(s: Any) -> str:
    """Receive every queued datagram without blocking; ``N`` (how many), the socket's mode kept."""
    prev = s.gettimeout()
    s.setblocking(False)
    n = 0
    try:
        while True:
            try:
                s.recvfrom(65536)
            except BlockingIOError:
                break
            n += 1
    finally:
        s.settimeout(prev)
    return str(n)


# -- data steps (issue 6) ------------------------------------------------------------------
# ``send DATA [FLAGS]`` / ``sendall DATA [FLAGS]`` (the byte count, or OK), ``sendto DATA
# [FLAGS] HOST PORT``, ``recv N [FLAGS]`` / ``recvfrom N [FLAGS]`` (the bytes' repr, or
# ``<N bytes>`` beyond 40), ``select`` (readiness as ``rwx`` with ``-`` for "not ready", from
# ``ns.select([s], [s], [s], 0)``).  DATA is a word; ``WORD*N`` repeats it N times.  FLAGS are
# MSG_* names joined by ``|``: ``peek|waitall``, ``fastopen``, ``dontwait``, ...
DATA_STEPS = frozenset({"send", "sendall", "sendto", "recv", "recvfrom", "select"})


def _msg_flags(text: str) -> int:
    flags = 0
    for name in text.split("|"):
        flags |= getattr(socket, "MSG_" + name.upper())
    return flags


def _data(text: str) -> bytes:
    word, star, count = text.rpartition("*")
    if star and count.isdigit():
        return word.encode() * int(count)
    return text.encode()


def _shown(data: bytes) -> str:
    return repr(data) if len(data) <= 40 else f"<{len(data)} bytes>"


def _data_step(ns: Any, s: Any, op: str, a: tuple[str, ...]) -> Any:
    if op == "select":
        r, w, x = ns.select([s], [s], [s], 0)
        return ("r" if r else "-") + ("w" if w else "-") + ("x" if x else "-")
    if op in ("send", "sendall"):
        flags = _msg_flags(a[1]) if len(a) > 1 else 0
        n = getattr(s, op)(_data(a[0] if a else "x"), flags)
        return None if n is None else str(n)
    if op == "sendto" and len(a) >= 2 and a[1].isdigit():  # sendto HOST PORT [DATA]
        host, port = _host(a[0]), int(a[1])
        dest: tuple = (host, port, 0, 0) if s.family == socket.AF_INET6 else (host, port)
        return str(s.sendto(_data(a[2]) if len(a) > 2 else b"x", dest))
    if op == "sendto":  # sendto DATA [FLAGS] HOST PORT
        data, rest = _data(a[0]), a[1:]
        flags = _msg_flags(rest[0]) if len(rest) == 3 else 0
        host, port = _host(rest[-2]), int(rest[-1])
        addr: tuple = (host, port, 0, 0) if s.family == socket.AF_INET6 else (host, port)
        return str(s.sendto(data, flags, addr) if flags else s.sendto(data, addr))
    flags = _msg_flags(a[1]) if len(a) > 1 else 0
    n = int(a[0]) if a else 65536
    if op == "recv":
        return _shown(s.recv(n, flags))
    data, addr = s.recvfrom(n, flags)
    if addr is None:  # TCP names no peer
        return f"({_shown(data)}, None)"
    return f"{data!r} from {_ephemeral_masked(addr)}"


def _ephemeral_masked(addr: tuple) -> str:
    """An address with a port of the default ephemeral range shown as ``eph`` (the kernel's
    choice there depends on its secret keys, so scripts compare it as a class)."""
    host, port = addr[0], addr[1]
    shown = "eph" if 32768 <= port <= 60999 else str(port)
    return f"{host}:{shown}" if ":" not in host else f"[{host}]:{shown}"


def failures(results: list[StepResult]) -> list[str]:
    """Lines whose outcome differs from the expectation, as ``line: want X, got Y``."""
    return [f"{r.step.line}: want {r.step.want}, got {r.outcome}" for r in results if not r.ok]


def compare(model: list[StepResult], kernel: list[StepResult]) -> list[str]:
    """Step-by-step differences, as ``(-model, +kernel)`` lines with the model's reasons."""
    out: list[str] = []
    for m, k in zip(model, kernel):
        if m.outcome != k.outcome:
            why = ""
            reasons = getattr(m.error, "reasons", None)
            if reasons:
                why = "\n      model's reasons: " + str(reasons).replace("\n", "\n      ")
            out.append(f"{m.step.line}\n    - model:  {m.outcome}\n    + kernel: {k.outcome}{why}")
    return out
