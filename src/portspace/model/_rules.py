"""The port-conflict rules of Linux 6.18, one function per kernel decision.

Theory of operation
-------------------
Rule 1: every decision "may socket ``new`` take a port that socket ``old`` already holds?"
lives in this file, with the spec section and the kernel function it mirrors.
Rule 2: this file does not know which syscall asked, which errno results, or how the tables
are stored; it reads the fields of socket records (``_sock.Sock`` or a frozen
``_sock.SockView``) and of bind buckets, and answers True/False.

Argument order is always ``(new, old)``: ``new`` is the socket asking, ``old`` the owner
already in the table (a live socket or a TIME_WAIT remnant).

The fields read are: ``family``, ``cov4``/``cov6`` (the claims of spec §2.1, see
``_addr.coverage``), ``rcv_saddr``/``v6_rcv_saddr``/``v6only`` (raw kernel addresses, for the
exact-equality checks of the fast path and of reuseport groups), ``bound_dev``, ``reuseaddr``,
``reuseport``, ``uid``, ``state``, ``is_tw`` and ``group``.
"""
from __future__ import annotations

from typing import Any, Final

from ._addr import AF_INET6, _meet, v6_is_mapped

# TCP states, with the kernel's numbers (include/net/tcp_states.h).
ESTABLISHED: Final = 1
SYN_SENT: Final = 2
SYN_RECV: Final = 3
FIN_WAIT1: Final = 4
FIN_WAIT2: Final = 5
TIME_WAIT: Final = 6
CLOSE: Final = 7
CLOSE_WAIT: Final = 8
LAST_ACK: Final = 9
LISTEN: Final = 10
CLOSING: Final = 11
STATE_NAMES: Final = {ESTABLISHED: "ESTABLISHED", SYN_SENT: "SYN_SENT", SYN_RECV: "SYN_RECV",
                      FIN_WAIT1: "FIN_WAIT1", FIN_WAIT2: "FIN_WAIT2", TIME_WAIT: "TIME_WAIT",
                      CLOSE: "CLOSE", CLOSE_WAIT: "CLOSE_WAIT", LAST_ACK: "LAST_ACK", LISTEN: "LISTEN",
                      CLOSING: "CLOSING"}

# tb->fastreuseport values (include/net/inet_hashtables.h)
FASTREUSEPORT_ANY: Final = 1
FASTREUSEPORT_STRICT: Final = 2


def dev_compatible(new_dev: int, old_dev: int) -> bool:
    """Spec §2.1 ``dev_compatible``: unbound (0) is compatible with every device
    (``inet_bind_conflict``, ``udp_lib_lport_inuse``) [V bind:D]."""
    return not new_dev or not old_dev or new_dev == old_dev


def overlaps(new: Any, old: Any) -> bool:
    """Spec §2.1 ``overlap``: the two bindings claim a common local address [V bind_matrix]."""
    return _meet(new.cov4, old.cov4) or _meet(new.cov6, old.cov6)


def reuseport_share(new: Any, old: Any) -> bool:
    """Spec §3.2 ``reuseport_share``: both have SO_REUSEPORT, ``new`` is in no reuseport group
    yet, and both have the same owner uid -- waived when ``old`` is a TIME_WAIT remnant.
    (``inet_connection_sock.c: inet_bind_conflict``; ``udp.c: udp_lib_lport_inuse``)"""
    return (new.reuseport and old.reuseport and new.group is None
            and (old.is_tw or new.uid == old.uid))


def tcp_conflict(new: Any, old: Any, relax: bool, reuseport_ok: bool) -> bool:
    """Spec §3.2 ``tcp_conflict`` (``inet_connection_sock.c: inet_bind_conflict`` reached through
    ``inet_csk_bind_conflict`` / ``inet_bhash2_conflict``).

    ``relax``/``reuseport_ok`` are True for an explicit bind(port) and the listen() re-check,
    False/False for the first pass of automatic selection (spec §3.2 table).
    SO_REUSEADDR relaxes only against a non-listening ``old``, and only if both have it
    [V bind_matrix mode=reuseaddr, ra1-only, ra2-only]."""
    if not dev_compatible(new.bound_dev, old.bound_dev) or not overlaps(new, old):
        return False
    if new.reuseaddr and old.reuseaddr and old.state != LISTEN:
        if not relax:
            return True
        return (not reuseport_ok) and reuseport_share(new, old)
    return not (reuseport_ok and reuseport_share(new, old))


def udp_conflict(new: Any, old: Any) -> bool:
    """Spec §3.4 ``udp_conflict`` (``udp.c: udp_lib_lport_inuse``): SO_REUSEADDR on both
    disables the check entirely (any uid, address or device) [V bind:Q]; otherwise an
    overlapping, device-compatible pair conflicts unless SO_REUSEPORT is shared."""
    if new.reuseaddr and old.reuseaddr:
        return False
    if not dev_compatible(new.bound_dev, old.bound_dev) or not overlaps(new, old):
        return False
    return not (new.reuseport and old.reuseport and new.group is None and new.uid == old.uid)


# ---------------------------------------------------------------------------------------
# Exact address equality, the kernel's two helpers (spec §2.1 exactly_same, §3.3 covers)
# ---------------------------------------------------------------------------------------

def ipv4_rcv_saddr_equal(a1: int, a2: int, sk2_ipv6only: bool, match_wild1: bool, match_wild2: bool) -> bool:
    """``inet_connection_sock.c: ipv4_rcv_saddr_equal``."""
    if sk2_ipv6only:
        return False
    if a1 == a2:
        return True
    return (match_wild1 and a1 == 0) or (match_wild2 and a2 == 0)


def ipv6_rcv_saddr_equal(v6_1: int, v6_2: int | None, a1: int, a2: int, only1: bool, only2: bool,
                         match_wild1: bool, match_wild2: bool) -> bool:
    """``inet_connection_sock.c: ipv6_rcv_saddr_equal``; ``v6_2`` is None for an AF_INET sk2
    (treated as v4-mapped)."""
    mapped1 = v6_is_mapped(v6_1)
    mapped2 = True if v6_2 is None else v6_is_mapped(v6_2)
    any1 = v6_1 == 0
    any2 = v6_2 == 0
    if mapped1 and mapped2:
        return ipv4_rcv_saddr_equal(a1, a2, only2, match_wild1, match_wild2)
    if any1 and any2:
        return True
    if any2 and match_wild2 and not (only2 and mapped1):
        return True
    if any1 and match_wild1 and not (only1 and mapped2):
        return True
    return v6_2 is not None and v6_1 == v6_2


def rcv_saddr_equal(sk1: Any, sk2: Any, match_wildcard: bool) -> bool:
    """``inet_connection_sock.c: inet_rcv_saddr_equal``: dispatch on sk1's family."""
    if sk1.family == AF_INET6:
        return ipv6_rcv_saddr_equal(sk1.v6_rcv_saddr, sk2.v6_rcv_saddr if sk2.family == AF_INET6 else None,
                                    sk1.rcv_saddr, sk2.rcv_saddr, sk1.v6only, sk2.v6only,
                                    match_wildcard, match_wildcard)
    return ipv4_rcv_saddr_equal(sk1.rcv_saddr, sk2.rcv_saddr, sk2.v6only, match_wildcard, match_wildcard)


# ---------------------------------------------------------------------------------------
# The bucket fast path (spec §3.3)
# ---------------------------------------------------------------------------------------

def sk_reuseport_match(tb: Any, new: Any) -> bool:
    """``inet_connection_sock.c: sk_reuseport_match``: may ``new`` skip the pairwise check?
    True when the bucket is in reuseport fast mode, ``new`` has SO_REUSEPORT and no group, the
    same uid as the bucket's remembered one, and (STRICT mode) the remembered address covers
    ``new``'s (wildcard on the remembered side only) [V fastpath F2, F3, F5, F6]."""
    if tb.fastreuseport <= 0 or not new.reuseport or new.group is not None or tb.fastuid != new.uid:
        return False
    if tb.fastreuseport == FASTREUSEPORT_ANY:
        return True
    if tb.fast_family == AF_INET6:
        return ipv6_rcv_saddr_equal(tb.fast_v6_rcv_saddr, new.v6_rcv_saddr if new.family == AF_INET6 else None,
                                    tb.fast_rcv_saddr, new.rcv_saddr, tb.fast_ipv6_only, new.v6only,
                                    True, False)
    return ipv4_rcv_saddr_equal(tb.fast_rcv_saddr, new.rcv_saddr, new.v6only, True, False)


def fast_path_admits(tb: Any, new: Any) -> bool:
    """``inet_csk_get_port``, explicit port: skip the pairwise check when the bucket has owners
    and either its SO_REUSEADDR fast flag is set and ``new`` has SO_REUSEADDR and is not
    listening, or ``sk_reuseport_match`` holds (spec §3.3)."""
    if tb.fastreuse > 0 and new.reuseaddr and new.state != LISTEN:
        return True
    return sk_reuseport_match(tb, new)


def update_fastreuse(tb: Any, new: Any) -> None:
    """``inet_connection_sock.c: inet_csk_update_fastreuse`` as it behaves in 6.18, where the
    new bind2 bucket is already linked, so the "empty bucket" branch never runs (spec §3.3):
    SO_REUSEADDR can only clear ``fastreuse``; the first SO_REUSEPORT socket that does not match
    puts the bucket in STRICT mode remembering its uid and address."""
    if not (new.reuseaddr and new.state != LISTEN):
        tb.fastreuse = 0
    if new.reuseport:
        if not sk_reuseport_match(tb, new):
            tb.fastreuseport = FASTREUSEPORT_STRICT
            tb.fastuid = new.uid
            tb.fast_rcv_saddr = new.rcv_saddr
            tb.fast_v6_rcv_saddr = new.v6_rcv_saddr
            tb.fast_ipv6_only = new.v6only
            tb.fast_family = new.family
    else:
        tb.fastreuseport = 0


def reuseport_group_match(new: Any, old: Any) -> bool:
    """Criteria to join ``old``'s reuseport group (spec §1.4; TCP ``inet_reuseport_add_sock``,
    UDP ``udp_reuseport_add_sock``): same family, same v6only, same device, both SO_REUSEPORT,
    same uid and exactly the same address (no wildcard matching).  The caller checks the port."""
    return (old is not new and old.family == new.family and old.v6only == new.v6only
            and old.bound_dev == new.bound_dev and old.reuseport and new.reuseport
            and old.uid == new.uid and rcv_saddr_equal(new, old, False))
