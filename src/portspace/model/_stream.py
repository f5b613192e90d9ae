"""TCP data on the model: byte streams between the two ends of a loopback connection.

Theory of operation
-------------------
Rule 1: these are methods of ``NetNS`` (a mixin, like ``ConnectOps``); state changes only
through syscall-named methods.  ``NetNS.sendmsg`` / ``recvmsg`` / ``poll`` dispatch TCP
sockets here.
Rule 2: each call answers at once: a byte count, ``(data, None)``, or ``None`` for "would
block"; the facade (``portspace._socket``) turns a would-block into EAGAIN, a timeout or a
clear ``Deadlock``, as CPython's ``sock_call`` would wait.

A connection is two :class:`~._sock.Sock` s joined by ``peer``.  Loopback delivers a segment
inside the sending call (the softirq runs before send() returns), so ``tcp_sendmsg`` appends
the bytes to the peer's ``rcv_buf`` at once and the peer's answer (a reset, say) is processed
before the call returns.  ``shut`` is ``sk_shutdown`` (RCV_SHUTDOWN = 1, SEND_SHUTDOWN = 2) and
``rcv_done`` is ``SOCK_DONE`` (the peer's FIN arrived); ``err`` is ``sk_err``, reported once.

The kernel's order of checks, each probed on Linux 6.18 in a private netns (kept as the step
tables of tests/model/test_stream.py, run on model and kernel):

* send (``tcp_sendmsg_locked``): MSG_FASTOPEN first (below); then a socket that is neither
  ESTABLISHED nor CLOSE_WAIT waits for its connection (``sk_stream_wait_connect``): a pending
  error is reported, SYN_SENT would block, anything else (never connected, listening, reset,
  closed) is EPIPE -- spec §5.6; CPython ignores SIGPIPE, so the caller sees BrokenPipeError.
  Then ``sk_err`` or SEND_SHUTDOWN is EPIPE (a pending error is reported in its place,
  ``sk_stream_error``): a send after shutdown(SHUT_WR) is EPIPE even for zero bytes.
* data reaching a peer that is gone (its close left an orphaned FIN_WAIT2 remnant, or nothing)
  or a FIN_WAIT2 peer that shut its reading side is answered by a reset: the send itself
  succeeds, the sender then holds ECONNRESET, or EPIPE if it was in CLOSE_WAIT (``tcp_reset``),
  goes to CLOSE without TIME_WAIT, and the remnant dies.
* recv (``tcp_recvmsg_locked``): MSG_ERRQUEUE reads the (always empty) error queue: EAGAIN; a
  listener is ENOTCONN; MSG_OOB is EINVAL (there is never urgent data); then queued bytes are
  returned first -- even after a reset or SHUT_RD; with none queued: after the peer's FIN b'',
  a pending error is reported (ECONNRESET once, then b''), after shutdown b'', a socket that
  never connected ENOTCONN, else it would block.  MSG_PEEK leaves the bytes queued;
  MSG_WAITALL on a blocking socket waits for ``bufsize`` bytes (a Deadlock in this model unless
  they are there, or the stream ends); on a non-blocking one it returns what is there.
* close() with unread bytes in the receive queue sends a reset instead of a FIN
  (``tcp_close``: "Unread data was tossed, zap the connection"), in ESTABLISHED, CLOSE_WAIT and
  FIN_WAIT2 alike: the closing socket goes straight to CLOSE, the peer gets ECONNRESET (EPIPE in
  CLOSE_WAIT) and neither side keeps a TIME_WAIT remnant [V: ss shows nothing afterwards].

Buffer sizes are not modelled: the kernel lets a loopback sender queue about 4 MB unread
(measured 4,004,946 to 4,252,779 bytes with default tcp_wmem/tcp_rmem, depending on the chunk
size, because of send-buffer autotuning), so the exact point where a non-blocking send gets
EAGAIN cannot be matched.  The model accepts up to :data:`UNREAD_LIMIT` unread bytes per
direction -- less than the kernel always accepts -- and raises ``OutOfScope`` for a send that
would queue more.  So a send in the model never blocks for want of buffer space.

TCP Fast Open, client side (``tcp_sendmsg_fastopen``): ``sendto(data, MSG_FASTOPEN, addr)``
is an implicit connect() when bit 1 of ``net.ipv4.tcp_fastopen`` is set (the default, 1);
without it EOPNOTSUPP, before any other check.  Without a cookie (a loopback server never
hands one out unless it enables TFO itself) the SYN carries no data: a blocking call completes
the handshake and then sends the data as send() would; a non-blocking one (or one with a
timeout: CPython's fd is non-blocking then) reports EINPROGRESS with nothing sent.  Connect's
own errors follow (EISCONN on a connected or listening socket, ECONNREFUSED, ENETUNREACH,
...); MSG_FASTOPEN without an address is EINVAL on an unconnected socket.  The no-cookie client
mode (bit 4) and the server side are out of scope.
"""
from __future__ import annotations

from typing import Any

from ._errors import SK_ERR_CAUSE, Cause, Op, OutOfScope, Proto, refuse
from ._rules import CLOSE, CLOSE_WAIT, ESTABLISHED, FIN_WAIT2, LISTEN, SYN_SENT
from ._sock import Sock

# linux/socket.h message flags
MSG_OOB = 0x1
MSG_PEEK = 0x2
MSG_TRUNC = 0x20
MSG_DONTWAIT = 0x40
MSG_WAITALL = 0x100
MSG_ERRQUEUE = 0x2000
MSG_MORE = 0x8000
MSG_FASTOPEN = 0x20000000

UNREAD_LIMIT = 1 << 20
"""Unread bytes one direction of a model connection may hold (see module header)."""

RCV_SHUTDOWN, SEND_SHUTDOWN = 1, 2
TFO_CLIENT_ENABLE, TFO_CLIENT_NO_COOKIE = 1, 4


class StreamOps:
    """send/recv/poll for TCP sockets (see module header)."""

    # -- send ------------------------------------------------------------------------------

    def tcp_sendmsg(self, sk: Sock, data: bytes, flags: int, dest: Any, nonblock: bool) -> int | None:
        """``tcp_sendmsg_locked``: the bytes sent, or None where the call would block.  ``dest``
        is ignored unless MSG_FASTOPEN is given (TCP takes no address per send)."""
        nonblock = nonblock or bool(flags & MSG_DONTWAIT)
        if flags & MSG_FASTOPEN:
            self._fastopen_connect(sk, dest, nonblock)
        state = sk.state
        if state != ESTABLISHED and state != CLOSE_WAIT:
            # sk_stream_wait_connect
            self._report_error(sk, Op.SEND)
            if state == SYN_SENT:
                return None
            raise refuse(Op.SEND, Proto.TCP, Cause.BROKEN_PIPE)
        if sk.err or sk.shut & SEND_SHUTDOWN:
            self._report_error(sk, Op.SEND)
            raise refuse(Op.SEND, Proto.TCP, Cause.BROKEN_PIPE)
        if not data:
            return 0
        if flags & MSG_OOB:
            raise OutOfScope("send() with MSG_OOB (TCP urgent data)")
        if flags & MSG_MORE:
            raise OutOfScope("send() with MSG_MORE (corked data is held back from the peer)")
        peer = sk.peer
        if peer is None or peer.is_tw or (peer.state == FIN_WAIT2 and peer.shut & RCV_SHUTDOWN):
            # nobody reads this direction any more: the segment is answered by a reset
            # (tcp_timewait_state_process / tcp_rcv_state_process "abort on data")
            if peer is not None:
                sk.peer = None
                peer.peer = None
                self._reset_arrives(peer)
            self._reset_arrives(sk)
            return len(data)
        buf = peer.rcv_buf
        if len(buf) + len(data) > UNREAD_LIMIT:
            raise OutOfScope(f"more than {UNREAD_LIMIT} unread bytes on one TCP connection: the kernel's "
                             "send-buffer limit depends on autotuning and is not modelled")
        if type(buf) is not bytearray:
            buf = peer.rcv_buf = bytearray()
        buf += data
        return len(data)

    def _fastopen_connect(self, sk: Sock, dest: Any, nonblock: bool) -> None:
        """``tcp_sendmsg_fastopen``: the implicit connect() of a client Fast Open (module header).
        Returns when the connection is established; raises otherwise."""
        mode = self.sysctls.ints["net.ipv4.tcp_fastopen"]  # type: ignore[attr-defined]
        if not mode & TFO_CLIENT_ENABLE:
            raise refuse(Op.SEND, Proto.TCP, Cause.TFO_DISABLED)
        if mode & TFO_CLIENT_NO_COOKIE:
            raise OutOfScope("TCP Fast Open without a cookie (net.ipv4.tcp_fastopen bit 4): data in the SYN")
        if dest is None:
            # __inet_stream_connect with no address: the socket-state switch, then
            # tcp_v4_connect's address-length check
            if sk.sock_state == 3 or (sk.sock_state == 1 and sk.state != CLOSE):
                raise refuse(Op.SEND, Proto.TCP, Cause.IS_CONNECTED)
            if sk.sock_state == 1:
                raise refuse(Op.SEND, Proto.TCP, Cause.INVALID)
        addr, port, _flow, scope = dest if dest is not None else (0, 0, 0, 0)
        outcome = self.tcp_connect(sk, addr, port, scope, nonblock)  # type: ignore[attr-defined]
        if outcome != "done":
            raise refuse(Op.SEND, Proto.TCP, Cause.IN_PROGRESS)

    # -- recv ------------------------------------------------------------------------------

    def tcp_recvmsg(self, sk: Sock, bufsize: int, flags: int, nonblock: bool) -> tuple[bytes, Any] | None:
        """``tcp_recvmsg_locked``: ``(data, None)`` -- TCP reports no source address -- or None
        where the call would block."""
        if flags & MSG_ERRQUEUE:
            raise refuse(Op.RECV, Proto.TCP, Cause.WOULD_BLOCK)  # the error queue is empty
        state = sk.state
        if state == LISTEN:
            raise refuse(Op.RECV, Proto.TCP, Cause.NOT_CONNECTED)
        if flags & MSG_OOB:
            raise refuse(Op.RECV, Proto.TCP, Cause.INVALID)  # tcp_recv_urg: no urgent data
        if flags & MSG_TRUNC:
            raise OutOfScope("recv() with MSG_TRUNC on TCP (discards the bytes instead of copying them)")
        nonblock = nonblock or bool(flags & MSG_DONTWAIT)
        buf = sk.rcv_buf
        if buf:
            ended = sk.rcv_done or sk.err or sk.shut & RCV_SHUTDOWN or state == CLOSE
            if flags & MSG_WAITALL and len(buf) < bufsize and not nonblock and not ended:
                return None  # waits for more bytes than there are
            data = bytes(buf[:bufsize])
            if not flags & MSG_PEEK:
                del buf[:bufsize]
            return data, None
        if sk.rcv_done:
            return b"", None
        if sk.err:
            self._report_error(sk, Op.RECV)
        if sk.shut & RCV_SHUTDOWN:
            return b"", None
        if state == CLOSE:
            raise refuse(Op.RECV, Proto.TCP, Cause.NOT_CONNECTED)
        return None

    # -- poll ------------------------------------------------------------------------------

    def tcp_poll(self, sk: Sock) -> tuple[bool, bool, bool]:
        """``tcp_poll`` folded into select()'s three sets: readable = EPOLLIN | EPOLLHUP |
        EPOLLERR, writable = EPOLLOUT | EPOLLERR, exceptional = EPOLLPRI (urgent data: never).
        A listener is readable with a connection queued; anything but SYN_SENT is writable
        (buffer space never runs out in the model); a socket in CLOSE (also a fresh one) is
        readable through EPOLLHUP [V select on fresh, bound, refused and reset sockets]."""
        state = sk.state
        if state == LISTEN:
            return bool(sk.accept_queue), False, False
        shut = sk.shut
        readable = state == CLOSE or bool(shut & RCV_SHUTDOWN)  # EPOLLHUP / EPOLLIN|EPOLLRDHUP
        writable = False
        if state != SYN_SENT:
            if sk.rcv_buf:
                readable = True
            writable = True
        if sk.err:
            readable = writable = True
        return readable, writable, False

    # -- resets and FINs arriving (called from the teardown code) --------------------------

    def _report_error(self, sk: Sock, op: Op) -> None:
        """``sock_error``: raise the pending ``sk_err`` once, clearing it."""
        code = sk.err
        if code:
            sk.err = 0
            cause = SK_ERR_CAUSE.get(code)
            if cause is None:
                raise OutOfScope(f"reporting pending socket error {code}")
            raise refuse(op, Proto.TCP, cause)

    def _fin_arrives(self, sk: Sock) -> None:
        """``tcp_fin``: the peer's FIN ends the incoming stream (RCV_SHUTDOWN, SOCK_DONE)."""
        sk.shut |= RCV_SHUTDOWN
        sk.rcv_done = True

    def _reset_arrives(self, sk: Sock) -> None:
        """``tcp_reset``: a remnant dies (spec §6.5, ``_abort``); a live socket records the
        error its state calls for -- ECONNREFUSED in SYN_SENT, EPIPE in CLOSE_WAIT, none in
        CLOSE, ECONNRESET otherwise -- and ``tcp_done`` closes both directions.  Bytes already
        queued stay readable."""
        if not sk.is_tw:
            state = sk.state
            if state == CLOSE:
                return
            sk.err = 111 if state == SYN_SENT else 32 if state == CLOSE_WAIT else 104
            sk.shut = RCV_SHUTDOWN | SEND_SHUTDOWN
        self._abort(sk)  # type: ignore[attr-defined]

    def _close_unread(self, sk: Sock) -> bool:
        """close() with unread bytes (module header): reset instead of FIN.  Returns False when
        the normal close applies (no unread bytes, or no connection left to reset)."""
        if not sk.rcv_buf or sk.state not in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT2):
            return False
        peer = sk.peer
        sk.peer = None
        self._ehash_del(sk)  # type: ignore[attr-defined]
        self._group_leave(sk)  # type: ignore[attr-defined]
        if sk.tb is not None:
            self._tcp_put_port(sk)  # type: ignore[attr-defined]
        sk.state = CLOSE
        sk.rcv_buf = b""
        if peer is not None and peer is not sk:
            peer.peer = None
            self._reset_arrives(peer)
        return True
