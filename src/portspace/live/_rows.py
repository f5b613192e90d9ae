"""One row of the host's socket table, as both readers (sock_diag and /proc/net) produce it.

Theory of operation
-------------------
:class:`SockRow` is the common currency of ``live/``: :mod:`._sockdiag` decodes netlink
messages into rows, :mod:`._procnet` parses ``/proc/net/{tcp,tcp6,udp,udp6}`` lines into the same
rows, and :mod:`._snapshot` joins them with processes and loads them into the model.  A row holds
what the kernel reports and nothing inferred: a field the source does not carry is ``None``
(``v6only`` from /proc/net) or 0 with a documented meaning (``ifindex``).

Addresses are ints (32 bits for AF_INET, 128 for AF_INET6) as in ``model._addr``; states are the
kernel's numbers (``include/net/tcp_states.h``, ``model._rules``).  UDP uses TCP_CLOSE (7) for an
unconnected socket and TCP_ESTABLISHED (1) for a connected one, as the kernel does.
"""
from __future__ import annotations

from typing import NamedTuple

from ..model._addr import AF_INET, AF_INET6, format_ipv4, format_ipv6, v6_needs_scope
from ..model._rules import CLOSE, ESTABLISHED, STATE_NAMES

__all__ = ["SockRow", "state_name", "addr_text", "endpoint_text", "printable", "TCP_BOUND_INACTIVE", "TIMER_NAMES"]

TCP_NEW_SYN_RECV = 12
TCP_BOUND_INACTIVE = 13
"""Not a socket state: the ``idiag_states`` bit that asks inet_diag to walk bhash2 for TCP sockets
that hold a port while neither listening nor connected (kernel commit 91051f003948, 6.8).  They
are reported with state TCP_CLOSE."""

# idiag_timer / the "tr" column of /proc/net/tcp (net/ipv4/tcp_ipv4.c: get_tcp4_sock)
TIMER_NAMES = {0: None, 1: "retransmit", 2: "keepalive", 3: "timewait", 4: "probe"}


class SockRow(NamedTuple):
    """One TCP or UDP socket (or TIME_WAIT remnant) that holds a local port."""

    proto: str            # "tcp" | "udp"
    family: int           # AF_INET | AF_INET6
    state: int            # kernel state number; a remnant's is its substate (TIME_WAIT or FIN_WAIT2)
    laddr: int            # local (receive) address
    lport: int
    raddr: int
    rport: int
    ifindex: int          # sk_bound_dev_if (0: none; /proc/net cannot tell, also 0)
    uid: int              # sk_uid: the socket's owner, compared by the SO_REUSEPORT rule
    inode: int            # the socket's inode (0 for a remnant: no file, no process)
    v6only: bool | None   # IPV6_V6ONLY when reported (sock_diag: AF_INET6 in LISTEN/CLOSE only)
    timer: int            # 0 none, 1 retransmit, 2 keepalive, 3 timewait, 4 zero-window probe
    expires_ms: int | None  # time left on the timer, when one runs
    tw: bool              # a TIME_WAIT (or FIN_WAIT2) remnant: no socket, no fd, no process
    cookie: int = 0       # sock_diag socket cookie (0 from /proc/net)

    @property
    def state_text(self) -> str:
        return state_name(self.proto, self.state)

    @property
    def bound_only(self) -> bool:
        """A TCP socket holding a port while neither listening nor connected."""
        return self.proto == "tcp" and self.state == CLOSE


def state_name(proto: str, state: int) -> str:
    """``LISTEN``, ``ESTABLISHED``, ``TIME_WAIT``...; a bound-only TCP socket is ``BOUND`` (ss -B
    calls the state bound-inactive); UDP is ``UNCONN`` or ``ESTAB`` as in ss."""
    if proto == "udp":
        return "ESTAB" if state == ESTABLISHED else "UNCONN"
    if state == CLOSE:
        return "BOUND"
    if state == TCP_NEW_SYN_RECV:
        return "SYN_RECV"
    return STATE_NAMES.get(state, f"STATE_{state}")


def printable(text: str) -> str:
    """``text`` safe to show on a terminal: every character that is not printable (newline,
    tab, the ESC of a terminal control sequence, other control and format characters) as its
    Python escape (``\\n``, ``\\x1b``).  Command lines and device names are chosen by other users
    (``prctl``, ``ip link set name``); shown raw they could break the table or drive the
    terminal of whoever runs ``portspace``, often root.  JSON carries the raw text (escaped by
    JSON itself)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def addr_text(family: int, addr: int, scope: str | None = None) -> str:
    """``127.0.0.1``, ``::ffff:127.0.0.1``, ``fe80::1%eth0`` (scope added to link-local only)."""
    if family == AF_INET:
        return format_ipv4(addr)
    text = format_ipv6(addr)
    if scope and v6_needs_scope(addr):
        text += "%" + printable(scope)
    return text


def endpoint_text(family: int, addr: int, port: int, scope: str | None = None) -> str:
    """``127.0.0.1:80``, ``[::]:80``, ``[fe80::1%eth0]:80``; port 0 as ``*``."""
    a = addr_text(family, addr, scope)
    p = str(port) if port else "*"
    return f"[{a}]:{p}" if family == AF_INET6 else f"{a}:{p}"

