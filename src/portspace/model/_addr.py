"""Addresses: parsing the stdlib's address tuples, and the kernel's view of a binding.

Theory of operation
-------------------
The kernel keeps, per socket, an IPv4 receive address (``sk_rcv_saddr``), an IPv6
receive address (``sk_v6_rcv_saddr``, AF_INET6 only) and the ``v6only`` flag.  From those
three the port manager derives which local addresses a binding *claims* (spec §2.1):

==================  ======  =======  =============  ============
bound address       family  v6only   claims IPv4    claims IPv6
==================  ======  =======  =============  ============
0.0.0.0             INET    -        all            none
A                   INET    -        {A}            none
::                  INET6   0        all            all
::                  INET6   1        none           all
::ffff:0.0.0.0      INET6   0        all            none
::ffff:A            INET6   0        {A}            none
any other X         INET6   1 forced none           {X}
==================  ======  =======  =============  ============

A claim is encoded as ``None`` (nothing), ``ANY`` (all) or one address as an ``int``
(IPv4: 32 bits, IPv6: 128 bits).  ``overlap`` is then two set intersections.

Rule 1: this module knows addresses only -- no sockets, no tables, no errno choice.
Rule 2: host-name resolution never happens here (the model does no I/O): numeric forms,
``''``, ``'<broadcast>'`` and ``'localhost'`` are understood; any other name is reported to
the caller as "not numeric" and the socket layer raises ``socket.gaierror`` (EAI_NONAME).
"""
from __future__ import annotations

from typing import Final

# Linux address-family numbers (include/linux/socket.h); the model does not import the
# stdlib ``socket`` module, but these equal its constants on Linux.
AF_UNSPEC: Final = 0
AF_INET: Final = 2
AF_INET6: Final = 10

ANY: Final = -1
"""Claim marker: every address of the family (a wildcard binding)."""

V4MAPPED_PREFIX: Final = 0xFFFF << 32
"""``::ffff:0.0.0.0`` as a 128-bit int; ``::ffff:A`` is ``V4MAPPED_PREFIX | A``."""

LOOPBACK4_IPV6: Final = 0x7F000006
"""127.0.0.6: the IPv4 receive address the kernel stores for a socket bound to a specific,
non-mapped IPv6 address (``include/net/ipv6.h: LOOPBACK4_IPV6``).  It never matches anything
because such a socket is always v6only."""


# ---------------------------------------------------------------------------------------
# Text <-> int
# ---------------------------------------------------------------------------------------

def _aton_part(text: str) -> int | None:
    """One component of an inet_aton() address: decimal, 0-octal or 0x-hex."""
    if not text:
        return None
    try:
        if text[:2] in ("0x", "0X"):
            return int(text[2:], 16) if text[2:] else 0
        if text[0] == "0" and len(text) > 1:
            return int(text[1:], 8)
        if not text.isdigit():
            return None
        return int(text, 10)
    except ValueError:
        return None


def parse_ipv4(text: str) -> int | None:
    """Parse an IPv4 address the way glibc's getaddrinfo() does for a numeric host.

    Accepts the classic ``inet_aton`` forms (``a``, ``a.b``, ``a.b.c``, ``a.b.c.d``, each part
    decimal, octal or hex), so ``"127.1"`` is 127.0.0.1 and ``"1.2.3"`` is 1.2.0.3, exactly as the
    stdlib's ``bind()`` accepts them.  Returns ``None`` when the text is not numeric.

    >>> hex(parse_ipv4("127.1"))
    '0x7f000001'
    """
    parts = text.split(".")
    if len(parts) > 4:
        return None
    vals = [_aton_part(p) for p in parts]
    if any(v is None for v in vals):
        return None
    *head, last = vals
    if any(v > 255 for v in head):  # type: ignore[operator]
        return None
    if last >= 1 << (8 * (4 - len(head))):  # type: ignore[operator]
        return None
    value = 0
    for v in head:
        value = (value << 8) | v  # type: ignore[operator]
    return (value << (8 * (4 - len(head)))) | last  # type: ignore[operator]


def parse_ipv6(text: str) -> int | None:
    """Parse a numeric IPv6 address (``inet_pton(AF_INET6)``) into a 128-bit int, or ``None``."""
    if not text or any(c not in "0123456789abcdefABCDEF:." for c in text):
        return None
    if "." in text:
        # an embedded dotted quad fills the last 32 bits (strict a.b.c.d form)
        cut = text.rfind(":")
        if cut < 0:
            return None
        parts = text[cut + 1:].split(".")
        if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
            return None
        if any(len(p) > 1 and p[0] == "0" for p in parts):
            return None  # inet_pton rejects leading zeros
        quad = (int(parts[0]) << 24) | (int(parts[1]) << 16) | (int(parts[2]) << 8) | int(parts[3])
        text = text[:cut + 1] + f"{quad >> 16:x}:{quad & 0xFFFF:x}"
    groups_needed = 8
    if text.count("::") > 1:
        return None
    if "::" in text:
        left, right = text.split("::")
        lg = left.split(":") if left else []
        rg = right.split(":") if right else []
        missing = groups_needed - len(lg) - len(rg)
        if missing < 1:
            return None
        groups = lg + ["0"] * missing + rg
    else:
        groups = text.split(":")
    if len(groups) != groups_needed:
        return None
    value = 0
    for g in groups:
        if not g or len(g) > 4:
            return None
        value = (value << 16) | int(g, 16)
    return value


def format_ipv4(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def format_ipv6(value: int) -> str:
    """RFC 5952 text, as ``inet_ntop`` (glibc) prints it, incl. ``::ffff:a.b.c.d``."""
    if value >> 32 == 0xFFFF:
        return "::ffff:" + format_ipv4(value & 0xFFFFFFFF)
    groups = [(value >> (16 * (7 - i))) & 0xFFFF for i in range(8)]
    # longest run (>= 2) of zero groups, first one on ties
    best_start, best_len, i = -1, 0, 0
    while i < 8:
        if groups[i] == 0:
            j = i
            while j < 8 and groups[j] == 0:
                j += 1
            if j - i > best_len and j - i >= 2:
                best_start, best_len = i, j - i
            i = j
        else:
            i += 1
    if best_start == 0 and (best_len == 6 or (best_len == 5 and groups[5] == 0xFFFF)):
        return "::" + format_ipv4(value & 0xFFFFFFFF)  # glibc prints IPv4-compatible this way
    if best_start < 0:
        return ":".join(f"{g:x}" for g in groups)
    left = ":".join(f"{g:x}" for g in groups[:best_start])
    right = ":".join(f"{g:x}" for g in groups[best_start + best_len:])
    return left + "::" + right


def format_addr(family: int, value: int) -> str:
    return format_ipv4(value) if family == AF_INET else format_ipv6(value)


# ---------------------------------------------------------------------------------------
# IPv6 address types (include/net/ipv6.h: ipv6_addr_type, simplified to what binds need)
# ---------------------------------------------------------------------------------------

def v6_is_any(a: int) -> bool:
    return a == 0


def v6_is_mapped(a: int) -> bool:
    return a >> 32 == 0xFFFF


def v6_is_multicast(a: int) -> bool:
    return a >> 120 == 0xFF


def v6_needs_scope(a: int) -> bool:
    """Link-local unicast (fe80::/10) and link/interface-local multicast need a device
    (``__ipv6_addr_needs_scope_id``)."""
    if a >> 118 == 0x3FA:  # fe80::/10
        return True
    if v6_is_multicast(a):
        scope = (a >> 112) & 0xF
        return scope in (0x1, 0x2)
    return False


def v4_is_multicast(a: int) -> bool:
    return a >> 28 == 0xE


def v4_is_loopback(a: int) -> bool:
    return a >> 24 == 127


# ---------------------------------------------------------------------------------------
# Coverage (spec §2.1)
# ---------------------------------------------------------------------------------------

def coverage(family: int, rcv_saddr: int, v6_rcv_saddr: int, v6only: bool) -> tuple[int | None, int | None]:
    """The (IPv4 claim, IPv6 claim) of a binding; see the table in the module header."""
    if family == AF_INET:
        return (ANY if rcv_saddr == 0 else rcv_saddr), None
    if v6_rcv_saddr == 0:
        return (None if v6only else ANY), ANY
    if v6_is_mapped(v6_rcv_saddr):
        v4 = v6_rcv_saddr & 0xFFFFFFFF
        return (ANY if v4 == 0 else v4), None
    return None, v6_rcv_saddr


def _meet(x: int | None, y: int | None) -> bool:
    return x is not None and y is not None and (x == y or x == ANY or y == ANY)


def overlap(a4: int | None, a6: int | None, b4: int | None, b6: int | None) -> bool:
    """Do two claims share an address?  ``inet_rcv_saddr_equal(.., match_wildcard=true)`` plus
    the bhash2 filters, as one set rule (spec §2.1) [V bind_matrix]."""
    return _meet(a4, b4) or _meet(a6, b6)
