"""UDP data on the model: datagrams delivered where the kernel would deliver them.

Theory of operation
-------------------
Rule 1: these are methods of ``NetNS`` (a mixin, like ``ConnectOps``); state changes only
through syscall-named methods.  ``NetNS.sendmsg`` / ``recvmsg`` / ``poll`` dispatch UDP
sockets here.
Rule 2: each call answers at once: a byte count, ``(data, source)``, or ``None`` for "would
block"; the facade (``portspace._socket``) turns a would-block into EAGAIN, a timeout or a
clear ``Deadlock``.

Not built yet: every entry point raises ``OutOfScope`` naming the call.
"""
from __future__ import annotations

from typing import Any

from ._errors import OutOfScope
from ._sock import Sock


class DatagramOps:
    """sendto/recvfrom/poll for UDP sockets (see module header)."""

    def udp_sendmsg(self, sk: Sock, data: bytes, flags: int, dest: Any, nonblock: bool) -> int | None:
        raise OutOfScope("sending on a UDP socket is not modelled yet (no UDP delivery in this version)")

    def udp_recvmsg(self, sk: Sock, bufsize: int, flags: int, nonblock: bool) -> tuple[bytes, Any] | None:
        raise OutOfScope("receiving on a UDP socket is not modelled yet (no UDP delivery in this version)")

    def udp_poll(self, sk: Sock) -> tuple[bool, bool, bool]:
        raise OutOfScope("select()/poll() on a UDP socket is not modelled yet")
