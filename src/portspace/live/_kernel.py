"""The kernel side of the differential harness: real sockets in a private network namespace.

Theory of operation
-------------------
:class:`KernelNamespace` has the same API as the model's ``portspace.Namespace``, but every
call is carried out by the running Linux kernel, so one test script can be run against both
and the outcomes (return values, exception class, errno, ``str(exc)``) compared.

Each namespace is a *forked child process*::

    parent (pytest, the model, ...)                child (one per KernelNamespace)
    ------------------------------                 ---------------------------------
    a, b = socketpair(AF_UNIX, SOCK_STREAM)
    os.fork() -------------------------------------> close every inherited fd except b
                                                     unshare(CLONE_NEWNET)   # private netns
                                                     ioctl(SIOCSIFFLAGS, lo, IFF_UP)
    <-------------------------- ("ready", netns id)
    request  = pickle((op, euid, payload)) --------> switch euid/egid, run op, switch back
    <--------- ("ok", result) | ("err", exception) -  (the exception object itself, pickled)

Why a process and not just ``setns()`` in the parent: the network namespace is a property of
a *thread* and of every socket created while it is current; keeping the whole namespace in a
separate process means the parent (pytest, the model, the host's network) is never inside
it, and tearing the namespace down is just killing the process: the kernel closes its
sockets and frees the netns (and its addresses, devices and sysctls) once the last reference
is gone.  Python 3.11 has no ``os.unshare``, hence the ctypes call.  fork + unshare + ``lo``
up costs ~3.4 ms, cheap enough for one namespace per test.

Safety: everything that changes network state (addresses, devices, sysctl writes) runs only
in the child, after ``unshare`` succeeded *and* after the parent checked that the child's
``/proc/self/ns/net`` differs from its own.  Sysctl writes are further restricted to
``net.*`` because ``kernel.*``, ``vm.*``, ... are global and would change the host.

Sockets never leave the child.  The parent gets :class:`KernelSocket` proxies that hold an
integer *handle*; the child keeps ``handle -> socket.socket``.  The translation is done by
pickle's persistent-id hook in both directions, so a socket can appear anywhere in a result
(``accept()`` returns ``(sock, addr)``, ``dup()`` a socket, ``run(fn)`` whatever ``fn``
returns) and a proxy anywhere in the arguments.  A closed socket stays in the child's table
so that a call on a closed proxy meets the real closed ``socket.socket`` and fails exactly as
the stdlib does (``[Errno 9] Bad file descriptor``; ``fileno()`` is -1; ``close()`` twice is
fine).

Exceptions raised by a request are pickled back and re-raised in the parent with the same
class, args, errno, strerror and ``str()``.  Builtin ``OSError`` pickles as ``(cls, args)`` and
``OSError.__new__`` re-derives errno/strerror/filename from args, so kernel errors round-trip
exactly.  The child verifies that each exception survives a dumps/loads round-trip before
sending it: an exception class whose ``__init__`` does not accept its own ``args`` (e.g.
``__init__(self, a, *, b)``) pickles *fine* but fails to *unpickle*, which would otherwise
surface in the parent as an unrelated ``TypeError``.  Such exceptions are replaced by their
nearest builtin base class with the same message and a note naming the original class and
the child's traceback.  Harness failures (child died, closed namespace) are
``RuntimeError``/``ValueError``, never ``OSError``, so they cannot be mistaken for a kernel
outcome -- except the request timeout, which is a ``TimeoutError`` (errno ``None``).

Identities: ``user(uid)`` makes every request inside the block run with effective uid and
gid ``uid`` in the child.  Dropping euid from 0 clears the effective capability set (no
CAP_NET_BIND_SERVICE -> EACCES below ``ip_unprivileged_port_start``), and the kernel stamps
each new socket with the creator's fsuid (``sk->sk_uid``), which is what the SO_REUSEPORT
"same owner" check compares.  Supplementary groups are left alone (ports don't look at them).

Blocking calls: the child is single-threaded, so a blocking ``accept()``/``recv()`` with
nothing to return blocks it forever.  The parent waits at most :attr:`request_timeout`
seconds per request, then kills the child (the request/reply stream is out of step from
then on) and raises ``TimeoutError``.  Use non-blocking sockets or ``settimeout()``.

Lifetime: the child exits when the parent closes its end of the socketpair (EOF).  ``close()``
SIGKILLs it and reaps it with ``waitpid``; a ``weakref.finalize`` (which also runs at
interpreter exit) does the same for a namespace that was never closed.  The child uses
``os._exit`` on every path, so nothing of the parent's (pytest teardown, atexit handlers,
buffered output) ever runs in it.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import gc
import io
import os
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["KernelNamespace", "KernelSocket", "Unavailable", "probe"]

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
PR_SET_PDEATHSIG = 1
# struct ifreq: char ifr_name[IFNAMSIZ=16]; union {...; short ifr_flags; ...}  (40 bytes on LP64)
_IFREQ = struct.Struct("16sH22x")
# Frames on the socketpair: 8-byte big-endian length, then a pickle.
_HDR = struct.Struct("!Q")
_PROTO = pickle.HIGHEST_PROTOCOL
_IP_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"


class Unavailable(Exception):
    """Raised when a private netns cannot be made (not root, no unshare, ...); str() is the reason."""


# --------------------------------------------------------------------------------------------
# framing (shared by both sides)


def _send_frame(sock: socket.socket, data: bytes) -> None:
    sock.sendall(_HDR.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("timed out")
            sock.settimeout(remaining)
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("peer closed the pipe")
        buf += chunk
    return bytes(buf)


def _recv_frame(sock: socket.socket, deadline: float | None = None) -> bytes:
    (n,) = _HDR.unpack(_recv_exact(sock, _HDR.size, deadline))
    return _recv_exact(sock, n, deadline)


# --------------------------------------------------------------------------------------------
# helpers


def _sysctl_path(name: str) -> str:
    """``net.ipv4.ip_local_port_range`` -> ``/proc/sys/net/ipv4/ip_local_port_range``.

    As with sysctl(8), a name containing ``/`` is taken as a path relative to /proc/sys (that
    is how a component with a dot in it, e.g. an interface ``eth0.5``, is written)."""
    if not isinstance(name, str):
        raise TypeError(f"sysctl name must be str, not {type(name).__name__}")
    parts = name.strip("/").split("/") if "/" in name else name.split(".")
    if not name or "\0" in name or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid sysctl name {name!r}")
    return "/proc/sys/" + "/".join(parts)


def _sysctl_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, (tuple, list)):
        if not all(isinstance(v, int) for v in value):
            raise TypeError("sysctl tuple/list values must be ints")
        return " ".join(str(int(v)) for v in value)
    raise TypeError(f"sysctl value must be str, int or a tuple/list of ints, not {type(value).__name__}")


def _check_uid(uid: Any) -> int:
    if isinstance(uid, bool) or not isinstance(uid, int):
        raise TypeError(f"uid must be int, not {type(uid).__name__}")
    if not 0 <= uid < 2**32 - 1:  # (uid_t)-1 means "unchanged" to the kernel
        raise ValueError(f"uid out of range: {uid}")
    return uid


def _builtin_base(cls: type) -> type:
    for c in cls.__mro__:
        if c.__module__ == "builtins":
            return c
    return BaseException  # pragma: no cover - every exception derives from it


# --------------------------------------------------------------------------------------------
# the child


class _ChildPickler(pickle.Pickler):
    """Turns every socket.socket in a reply into a handle (registering it)."""

    def __init__(self, file: io.BytesIO, server: _ChildServer) -> None:
        super().__init__(file, _PROTO)
        self._server = server

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, socket.socket):
            return ("sock", self._server.register(obj), obj.family, obj.type, obj.proto)
        return None


class _ChildUnpickler(pickle.Unpickler):
    """Turns every handle in a request back into the child's socket.socket."""

    def __init__(self, file: io.BytesIO, server: _ChildServer) -> None:
        super().__init__(file)
        self._server = server

    def persistent_load(self, pid: Any) -> Any:
        kind, handle = pid
        if kind != "ks":
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return self._server.socks[handle]


class _ProbeUnpickler(pickle.Unpickler):
    """Used by the child to check that an exception it is about to send will unpickle."""

    def persistent_load(self, pid: Any) -> Any:
        return None


class _ChildServer:
    """Request dispatcher; lives only in the child process."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.socks: dict[int, socket.socket] = {}
        self._ids: dict[int, int] = {}  # id(sock) -> handle; sockets are kept alive, so ids are stable
        self._next = 1
        self.euid = os.geteuid()
        self.egid = os.getegid()

    def register(self, sock: socket.socket) -> int:
        handle = self._ids.get(id(sock))
        if handle is None:
            handle = self._next
            self._next += 1
            self.socks[handle] = sock
            self._ids[id(sock)] = handle
        return handle

    # ---- ops (names are the first element of a request) ----

    def op_socket(self, family: int, type: int, proto: int) -> socket.socket:
        return socket.socket(family, type, proto)

    def op_call(self, sock: socket.socket, name: str, args: tuple, kwargs: dict) -> Any:
        return getattr(sock, name)(*args, **kwargs)

    def op_getattr(self, sock: socket.socket, name: str) -> Any:
        return getattr(sock, name)

    def op_repr(self, sock: socket.socket) -> str:
        return repr(sock)

    def op_count(self) -> int:
        return sum(1 for s in self.socks.values() if s.fileno() != -1)

    def op_sysctl(self, name: str, value: str | None) -> str | None:
        path = _sysctl_path(name)
        if value is None:
            fd = os.open(path, os.O_RDONLY)
            try:
                chunks = []
                while chunk := os.read(fd, 65536):
                    chunks.append(chunk)
            finally:
                os.close(fd)
            return b"".join(chunks).decode().removesuffix("\n")
        if not path.startswith("/proc/sys/net/"):  # re-checked here: never write a global knob
            raise ValueError(f"refusing to write {name!r}: only net.* sysctls are per-namespace")
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value.encode())  # the kernel's verdict (EINVAL, ...) is raised here
        finally:
            os.close(fd)
        return None

    def _ip(self, *args: str) -> None:
        exe = shutil.which("ip", path=_IP_PATH + ":" + os.environ.get("PATH", ""))
        if exe is None:
            raise FileNotFoundError(errno.ENOENT, "the `ip` program (iproute2) is not installed", "ip")
        env = {"PATH": _IP_PATH, "LC_ALL": "C"}
        proc = subprocess.run([exe, *args], env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=10)
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip()
            raise RuntimeError(f"`ip {' '.join(args)}` failed (exit {proc.returncode}): {msg}")

    def op_add_address(self, cidr: str, dev: str) -> None:
        args = ["addr", "add", cidr, "dev", dev]
        if ":" in cidr:
            args.append("nodad")  # skip duplicate address detection: usable at once, not "tentative"
        self._ip(*args)

    def op_del_address(self, cidr: str, dev: str) -> None:
        # no prefix length: a host address, as the model reads it (`ip addr del` alone would do
        # a "wildcard deletion" of any prefix length)
        if "/" not in cidr:
            cidr += "/128" if ":" in cidr else "/32"
        try:
            self._ip("addr", "del", cidr, "dev", dev)
        except RuntimeError as e:
            # the errno behind iproute2's messages: inet_rtm_deladdr / inet6_addr_del answer
            # EADDRNOTAVAIL ("Address not found"); an unknown device is ENODEV (ip checks first)
            text = str(e)
            for needle, code in (("ddress not found", errno.EADDRNOTAVAIL),
                                 ("Cannot assign requested address", errno.EADDRNOTAVAIL),
                                 ("Cannot find device", errno.ENODEV),
                                 ("No such device", errno.ENODEV)):
                if needle in text:
                    raise OSError(code, os.strerror(code)) from None
            raise

    def op_add_device(self, name: str) -> None:
        self._ip("link", "add", name, "type", "bridge")
        self._ip("link", "set", name, "up")

    def op_run(self, fn: Callable[..., Any], args: tuple) -> Any:
        return fn(*args)

    # ---- plumbing ----

    def _dumps(self, obj: Any) -> bytes:
        f = io.BytesIO()
        _ChildPickler(f, self).dump(obj)
        return f.getvalue()

    def _dump_exception(self, exc: BaseException) -> bytes:
        try:
            data = self._dumps(("err", exc))
            back = _ProbeUnpickler(io.BytesIO(data)).load()[1]
            if type(back) is type(exc) and str(back) == str(exc):
                return data
            why = f"round-trips as {type(back).__name__}: {back}"
        except Exception as e:  # noqa: BLE001 - anything that breaks pickling
            why = f"{type(e).__name__}: {e}"
        # Not transportable as is: send the nearest builtin class with the same message.
        base = _builtin_base(type(exc))
        sub: BaseException
        try:
            sub = base(*exc.args)
            if str(sub) != str(exc):
                sub = base(str(exc))
        except Exception:  # noqa: BLE001
            sub = RuntimeError(str(exc))
        tb = "".join(traceback.format_exception(exc))
        sub.add_note(f"raised in the kernel child as {type(exc).__module__}.{type(exc).__qualname__} "
                     f"(not picklable: {why})\n{tb}")
        try:
            return self._dumps(("err", sub))
        except Exception:  # noqa: BLE001 - e.g. unpicklable args
            plain = RuntimeError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")
            plain.add_note(tb)
            return self._dumps(("err", plain))

    def handle(self, frame: bytes) -> bytes:
        try:
            op, euid, payload = _ChildUnpickler(io.BytesIO(frame), self).load()
            method = getattr(self, "op_" + op)
            if euid is not None:
                # gid first: once euid != 0 we may no longer change it.
                os.setegid(euid)
                try:
                    os.seteuid(euid)
                except BaseException:
                    os.setegid(self.egid)
                    raise
            try:
                result = method(*payload)
            finally:
                if euid is not None:
                    os.seteuid(self.euid)  # uid first, to regain the right to set the gid
                    os.setegid(self.egid)
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            return self._dump_exception(exc)
        try:
            return self._dumps(("ok", result))
        except BaseException as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled
            return self._dump_exception(exc)

    def serve(self) -> None:
        while True:
            try:
                frame = _recv_frame(self.conn)
            except (EOFError, ConnectionError):
                return
            _send_frame(self.conn, self.handle(frame))


def _bring_lo_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        res = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, _IFREQ.pack(b"lo", 0))
        flags = _IFREQ.unpack(res)[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | IFF_UP))


def _child_main(conn: socket.socket, parent_pid: int, pdeathsig: bool) -> int:
    """Runs in the forked child; returns the exit status (the caller os._exit()s with it)."""
    # Ctrl-C goes to the whole foreground process group; the parent decides when we die.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Everything inherited from the parent is frozen: the GC must never finalize a parent
    # object here (a socket.socket of the parent's whose fd we are about to close would, on
    # collection, close() whatever fd of ours now has that number).
    gc.freeze()
    # Close every inherited fd except stdio and our end of the pipe.  Crucially this
    # includes the parent's ends of *other* namespaces' pipes: if we kept a copy, those
    # children would never see EOF when the parent closes them.
    keep = conn.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 30)
    libc = ctypes.CDLL(None, use_errno=True)
    if pdeathsig:
        # Die with the parent even if it is SIGKILLed while we sit in a blocking call.
        # (PDEATHSIG fires when the forking *thread* exits, so only used from the main thread.)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            return 1
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            hint = " (needs root / CAP_SYS_ADMIN; seccomp may forbid it)" if e == errno.EPERM else ""
            raise Unavailable(f"unshare(CLONE_NEWNET) failed: [Errno {e}] {os.strerror(e)}{hint}")
        try:
            _bring_lo_up()
        except OSError as e:
            raise Unavailable(f"cannot bring lo up in the new netns: {e}") from None
        hello = ("ready", os.readlink("/proc/self/ns/net"))
    except Unavailable as e:
        _send_frame(conn, pickle.dumps(("fail", str(e))))
        return 1
    _send_frame(conn, pickle.dumps(hello))
    _ChildServer(conn).serve()
    return 0


def _reap(conn: socket.socket, pid: int, owner: int) -> int | None:
    """Tear a child down: close the pipe, SIGKILL, waitpid.  Returns the wait status.

    Used by close() and by weakref.finalize (hence no reference to the namespace)."""
    conn.close()
    if os.getpid() != owner:  # a forked copy of the parent: not our child to kill
        return None
    try:
        # Only kill a pid that is still our unreaped child: a pid that somebody else reaped
        # may already belong to an unrelated process.
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if done == 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return None
    return status


# --------------------------------------------------------------------------------------------
# the parent


class _ParentPickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, ns: KernelNamespace) -> None:
        super().__init__(file, _PROTO)
        self._ns = ns

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, KernelSocket):
            if obj._ns is not self._ns:
                raise ValueError(f"{obj!r} belongs to another KernelNamespace")
            return ("ks", obj._handle)
        if isinstance(obj, _HandleRef):
            return ("ks", obj.handle)
        return None

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, memoryview):  # send(memoryview(...)) is legal for the stdlib
            return bytes, (obj.tobytes(),)
        return NotImplemented


class _ParentUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, ns: KernelNamespace) -> None:
        super().__init__(file)
        self._ns = ns

    def persistent_load(self, pid: Any) -> Any:
        kind, handle, family, type_, proto = pid
        if kind != "sock":
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return self._ns._proxy(handle, family, type_, proto)


class KernelNamespace:
    """A private Linux network namespace, driven through a forked child process."""

    #: Seconds to wait for the child to answer one request (None: forever).  When exceeded
    #: the child is killed and TimeoutError raised.
    request_timeout: float | None = 10.0

    def __init__(self) -> None:
        self._pid = -1
        self._exit_status: int | None = None
        self._lock = threading.Lock()
        self._uids: list[int] = []
        self._proxies: weakref.WeakValueDictionary[int, KernelSocket] = weakref.WeakValueDictionary()
        if not sys.platform.startswith("linux"):
            raise Unavailable(f"network namespaces are Linux-only (this is {sys.platform})")
        if not hasattr(os, "fork"):
            raise Unavailable("os.fork() is not available")
        try:
            if not hasattr(ctypes.CDLL(None, use_errno=True), "unshare"):
                raise Unavailable("the C library has no unshare()")
        except OSError as e:
            raise Unavailable(f"cannot load the C library: {e}") from None
        my_netns = os.readlink("/proc/self/ns/net")
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        parent_pid = os.getpid()
        pdeathsig = threading.current_thread() is threading.main_thread()
        with warnings.catch_warnings():
            # Python >= 3.12 warns (DeprecationWarning) when forking a multi-threaded process;
            # the child only runs code of this module, which takes no lock another thread holds.
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                pid = os.fork()
            except BaseException:
                parent_end.close()
                child_end.close()
                raise
        if pid == 0:  # ---- child: never returns, never runs the parent's cleanup code
            status = 3
            try:
                parent_end.close()
                status = _child_main(child_end, parent_pid, pdeathsig)
            except BaseException:  # noqa: BLE001
                with contextlib.suppress(BaseException):
                    # fd 2 directly: sys.stderr may be a pytest capture object whose file
                    # we closed along with the other inherited fds.
                    os.write(2, traceback.format_exc().encode())
            finally:
                os._exit(status)
        # ---- parent
        child_end.close()
        self._pid = pid
        self._conn = parent_end
        self._finalizer = weakref.finalize(self, _reap, parent_end, pid, parent_pid)
        try:
            deadline = None if self.request_timeout is None else time.monotonic() + self.request_timeout
            kind, info = pickle.loads(_recv_frame(parent_end, deadline))
        except (EOFError, OSError) as e:
            status = self._finalizer()
            raise Unavailable(f"the namespace child failed to start ({type(e).__name__}: {e}; "
                              f"wait status {status})") from None
        except BaseException:
            self._finalizer()
            raise
        if kind != "ready":
            self._finalizer()
            raise Unavailable(info)
        if info == my_netns:  # paranoia: never operate on the host's namespace
            self._finalizer()
            raise Unavailable(f"unshare() returned but the child is still in {my_netns}")
        self._netns = info

    # ---- lifecycle

    @property
    def pid(self) -> int:
        """The child's pid (for debugging)."""
        return self._pid

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Kill the child (closing all its sockets and freeing the netns) and reap it."""
        if self._finalizer.alive:
            self._exit_status = self._finalizer()

    def __enter__(self) -> KernelNamespace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"pid={self._pid}"
        return f"<KernelNamespace {state}>"

    # ---- transport

    def _proxy(self, handle: int, family: Any, type_: Any, proto: int) -> KernelSocket:
        proxy = self._proxies.get(handle)
        if proxy is None:
            proxy = KernelSocket(self, handle, family, type_, proto)
            self._proxies[handle] = proxy
        return proxy

    def _request(self, op: str, *payload: Any) -> Any:
        with self._lock:
            if self.closed:
                raise ValueError(f"{op} on a closed KernelNamespace")
            f = io.BytesIO()
            _ParentPickler(f, self).dump((op, self._uids[-1] if self._uids else None, payload))
            timeout = self.request_timeout
            try:
                self._conn.settimeout(timeout)
                _send_frame(self._conn, f.getvalue())
                deadline = None if timeout is None else time.monotonic() + timeout
                reply = _recv_frame(self._conn, deadline)
            except socket.timeout:
                # The child is stuck (a blocking socket call?) and the stream is out of step.
                self.close()
                raise TimeoutError(f"kernel child did not answer {op!r} within {timeout} s "
                                   "(a blocking socket call?); the namespace has been killed") from None
            except (EOFError, OSError) as e:
                self.close()
                raise RuntimeError(f"kernel child {self._pid} died ({type(e).__name__}: {e}; "
                                   f"wait status {self._exit_status})") from None
            except BaseException:  # KeyboardInterrupt mid-request: the stream is out of step
                self.close()
                raise
            status, value = _ParentUnpickler(io.BytesIO(reply), self).load()
        if status == "ok":
            return value
        raise value

    def _call(self, handle: int, method_name: str, args: tuple = (), kwargs: dict | None = None) -> Any:
        """Run ``sock.<method_name>(*args, **kwargs)`` on the child's socket ``handle``."""
        return self._request("call", _HandleRef(handle), method_name, tuple(args), dict(kwargs or {}))

    # ---- the Namespace API

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM,
               proto: int = 0) -> KernelSocket:
        return self._request("socket", family, type, proto)

    def add_address(self, cidr: str, dev: str = "lo") -> None:
        """Like ``ip addr add CIDR dev DEV`` (``nodad`` added for IPv6), inside the namespace."""
        if not isinstance(cidr, str) or not isinstance(dev, str):
            raise TypeError("cidr and dev must be str")
        self._request("add_address", cidr, dev)

    def del_address(self, cidr: str, dev: str = "lo") -> None:
        """Like ``ip addr del CIDR dev DEV`` inside the namespace (no prefix length: /32 or
        /128).  OSError EADDRNOTAVAIL / ENODEV as the kernel answers (iproute2's message
        mapped back to the errno)."""
        if not isinstance(cidr, str) or not isinstance(dev, str):
            raise TypeError("cidr and dev must be str")
        self._request("del_address", cidr, dev)

    def add_device(self, name: str) -> None:
        """Like ``ip link add NAME type bridge; ip link set NAME up``: a port-less bridge,
        good for SO_BINDTODEVICE (no traffic flows through it)."""
        if not isinstance(name, str):
            raise TypeError("name must be str")
        self._request("add_device", name)

    def sysctl(self, name: str, value: Any = None) -> str | None:
        """Read (value None) or write a per-namespace sysctl through /proc/sys.

        Reads return the text without the trailing newline.  Writes send ``value`` (str, int,
        or a tuple/list of ints joined by one space) with a single write(2), so the kernel's
        own error (e.g. ``OSError(EINVAL)``) propagates.  Only ``net.*`` may be written."""
        path = _sysctl_path(name)
        if value is None:
            return self._request("sysctl", name, None)
        text = _sysctl_text(value)
        if not path.startswith("/proc/sys/net/"):
            raise ValueError(f"refusing to write {name!r}: only net.* sysctls are per-namespace "
                             "(anything else would change the host)")
        return self._request("sysctl", name, text)

    @contextlib.contextmanager
    def user(self, uid: int) -> Iterator[None]:
        """Inside the block every request runs with euid = egid = uid (innermost block wins)."""
        self._uids.append(_check_uid(uid))
        try:
            yield
        finally:
            self._uids.pop()

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run the picklable top-level function ``fn(*args)`` in the child; return its result.
        KernelSockets among the args arrive as the real sockets, sockets in the result come
        back as KernelSockets."""
        return self._request("run", fn, args)

    def set_cpu(self, cpu: int) -> None:
        """The model's ``set_cpu``: pin the child (where the sockets send and receive) to ``cpu``."""
        self.run(_pin_cpu, int(cpu))
    def select(self, *args: Any, **kwargs: Any) -> Any:
        """``select.select`` run in the child on the real sockets (the model's ``ns.select``).
        KernelSockets in the lists arrive there as the child's sockets and come back as the
        same proxies; arguments are passed as given, so the stdlib checks them.  A select that
        waits longer than :attr:`request_timeout` kills the namespace, like any stuck call."""
        return self._request("run", _select, (args, kwargs))

    def advance(self, seconds: float) -> None:
        """The model's ``advance``: on the kernel, time passes for real (``time.sleep``)."""
        import time as _time
        _time.sleep(float(seconds))

    def socket_count(self) -> int:
        """How many sockets the child still holds open (for leak checks)."""
        return self._request("count")


def _pin_cpu(cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})


class _HandleRef:
    """A handle in a request, resolved to the child's socket by the persistent-id hook."""

    __slots__ = ("handle",)

    def __init__(self, handle: int) -> None:
        self.handle = handle


def _select(args: tuple, kwargs: dict) -> Any:
    """Runs in the child: ``select.select`` on the real sockets, with the caller's arguments."""
    import select
    return select.select(*args, **kwargs)


def _disconnect(sock: socket.socket) -> None:
    """``connect(fd, {AF_UNSPEC}, ...)``: the kernel's disconnect, which the stdlib cannot
    express (it builds the sockaddr from the socket's own family).  Runs in the child."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    sa = bytes(28)  # sa_family = AF_UNSPEC (0); long enough for either family's address length
    length = 16 if sock.family == socket.AF_INET else 28
    if libc.connect(sock.fileno(), ctypes.c_char_p(sa), length) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


class KernelSocket:
    """A proxy for a socket.socket living in a KernelNamespace's child.

    Every method runs on the real socket in the child; results and exceptions are the real
    ones.  Methods not spelled out below are forwarded by ``__getattr__``."""

    __slots__ = ("_ns", "_handle", "_family", "_type", "_proto", "__weakref__")

    def __init__(self, ns: KernelNamespace, handle: int, family: Any, type_: Any, proto: int) -> None:
        self._ns = ns
        self._handle = handle
        self._family = family
        self._type = type_
        self._proto = proto

    # family/type/proto never change over a socket's life, so they travel with the handle.
    @property
    def family(self) -> socket.AddressFamily | int:
        return self._family

    @property
    def type(self) -> socket.SocketKind | int:
        return self._type

    @property
    def proto(self) -> int:
        return self._proto

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self._ns.closed:
            # The namespace is gone, and with it every socket: behave like a closed socket.
            if name == "close":
                return None
            if name == "fileno":
                return -1
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return self._ns._request("call", self, name, args, kwargs)

    def disconnect(self) -> None:
        """``connect(AF_UNSPEC)`` on the real socket (portspace's ``Socket.disconnect``)."""
        if self._ns.closed:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        self._ns.run(_disconnect, self)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or not hasattr(socket.socket, name):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        if callable(getattr(socket.socket, name)):
            return functools.partial(self._call, name)
        if self._ns.closed:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return self._ns._request("getattr", self, name)

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("a KernelSocket can only be passed to its own KernelNamespace")

    def __repr__(self) -> str:
        if self._ns.closed:
            return (f"<KernelSocket [closed] fd=-1, family={self._family}, type={self._type}, "
                    f"proto={self._proto}>")
        text = self._ns._request("repr", self)
        return "<KernelSocket" + text.removeprefix("<socket.socket")

    def __enter__(self) -> KernelSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- the socket API (stdlib argument rules; the child's socket enforces them)

    def fileno(self) -> int:
        return self._call("fileno")

    def close(self) -> None:
        return self._call("close")

    def setsockopt(self, level: int, optname: int, value: Any, optlen: int | None = None) -> None:
        if optlen is None:
            return self._call("setsockopt", level, optname, value)
        return self._call("setsockopt", level, optname, value, optlen)

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> Any:
        if buflen is None:
            return self._call("getsockopt", level, optname)
        return self._call("getsockopt", level, optname, buflen)

    def bind(self, address: Any) -> None:
        return self._call("bind", address)

    def listen(self, backlog: int | None = None) -> None:
        if backlog is None:
            return self._call("listen")
        return self._call("listen", backlog)

    def connect(self, address: Any) -> None:
        return self._call("connect", address)

    def connect_ex(self, address: Any) -> int:
        return self._call("connect_ex", address)

    def accept(self) -> tuple[KernelSocket, Any]:
        return self._call("accept")

    def getsockname(self) -> Any:
        return self._call("getsockname")

    def getpeername(self) -> Any:
        return self._call("getpeername")

    def send(self, data: Any, flags: int = 0) -> int:
        return self._call("send", data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        return self._call("sendall", data, flags)

    def sendto(self, *args: Any) -> int:  # sendto(data, address) or sendto(data, flags, address)
        return self._call("sendto", *args)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return self._call("recv", bufsize, flags)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        return self._call("recvfrom", bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        # The buffer lives in the parent: receive in the child, copy here.
        view = memoryview(buffer).cast("B")
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        if nbytes > len(view):
            raise ValueError("buffer too small for requested bytes")
        data = self._call("recv", nbytes or len(view), flags)
        view[: len(data)] = data
        return len(data)

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        view = memoryview(buffer).cast("B")
        if nbytes < 0:
            raise ValueError("negative buffersize in recvfrom_into")
        if nbytes > len(view):
            raise ValueError("nbytes is greater than the length of the buffer")
        data, addr = self._call("recvfrom", nbytes or len(view), flags)
        view[: len(data)] = data
        return len(data), addr

    def recvmsg_into(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("recvmsg_into() cannot fill parent buffers; use recvmsg()")

    def shutdown(self, how: int) -> None:
        return self._call("shutdown", how)

    def setblocking(self, flag: bool) -> None:
        return self._call("setblocking", flag)

    def getblocking(self) -> bool:
        return self._call("getblocking")

    def settimeout(self, value: float | None) -> None:
        return self._call("settimeout", value)

    def gettimeout(self) -> float | None:
        return self._call("gettimeout")


_probe_result: tuple[str | None] | None = None
_probe_lock = threading.Lock()


def probe() -> str | None:
    """None if a KernelNamespace can be created here, else a human-readable reason (cached)."""
    global _probe_result
    with _probe_lock:
        if _probe_result is None:
            try:
                KernelNamespace().close()
                reason = None
            except Unavailable as e:
                reason = str(e)
            except Exception as e:  # noqa: BLE001 - any failure means "not here"
                reason = f"{type(e).__name__}: {e}"
            _probe_result = (reason,)
        return _probe_result[0]
