"""TCP data on the model: byte streams between the two ends of a loopback connection.

Theory of operation
-------------------
Rule 1: these are methods of ``NetNS`` (a mixin, like ``ConnectOps``); state changes only
through syscall-named methods.  ``NetNS.sendmsg`` / ``recvmsg`` / ``poll`` dispatch TCP
sockets here.
Rule 2: each call answers at once: a byte count, ``(data, None)``, or ``None`` for "would
block"; the facade (``portspace._socket``) turns a would-block into EAGAIN, a timeout or a
clear ``Deadlock``, as CPython's ``sock_call`` would wait.

Not built yet: every entry point raises ``OutOfScope`` naming the call.
"""
from __future__ import annotations

from typing import Any

from ._errors import OutOfScope
from ._sock import Sock


class StreamOps:
    """send/recv/poll for TCP sockets (see module header)."""

    def tcp_sendmsg(self, sk: Sock, data: bytes, flags: int, dest: Any, nonblock: bool) -> int | None:
        raise OutOfScope("send() on a TCP socket is not modelled yet (no TCP data in this version)")

    def tcp_recvmsg(self, sk: Sock, bufsize: int, flags: int, nonblock: bool) -> tuple[bytes, Any] | None:
        raise OutOfScope("recv() on a TCP socket is not modelled yet (no TCP data in this version)")

    def tcp_poll(self, sk: Sock) -> tuple[bool, bool, bool]:
        raise OutOfScope("select()/poll() on a TCP socket is not modelled yet")
