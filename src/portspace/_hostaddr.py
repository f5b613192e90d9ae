"""Address-tuple parsing exactly as CPython's ``socketmodule.c: getsockaddrarg`` and
``setipaddr`` do it, minus the I/O: numeric hosts, ``''``, ``'<broadcast>'`` and ``'localhost'``
are understood; any other name raises ``socket.gaierror`` (EAI_NONAME) without a lookup.

Also the argument converters of getargs.c and Argument Clinic that the facade needs (``"i"``,
``"I"``, ``PyLong_AsLong``, clinic ``int``), with their messages.

Messages are CPython 3.11's, checked against the real stdlib on the live kernel by the
bad-calls table (tests/kernel/test_bad_calls.py).  Divergence, on purpose: ``'localhost'``
for AF_INET6 is ``::1`` here; the stdlib asks /etc/hosts, which may lack ``::1``.
"""
from __future__ import annotations

import operator
import socket as _stdsocket
from typing import Any

from .model._addr import AF_INET, parse_ipv4, parse_ipv6, v6_is_mapped, v6_needs_scope

_INT_MAX = (1 << 31) - 1
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1


def _gaierror(code: int, text: str) -> _stdsocket.gaierror:
    return _stdsocket.gaierror(code, text)


def host_text(host: Any) -> str:
    """``idna_converter``: bytes and bytearray as they are; a str as is when it is a plain
    (compact) ASCII str, else encoded with the ``idna`` codec (any failure is
    ``TypeError("encoding of hostname failed")``); then no NUL (C's ``strlen`` must agree)."""
    if isinstance(host, (bytes, bytearray)):
        text = bytes(host).decode("latin-1")
    elif isinstance(host, str):
        if type(host) is str and host.isascii():
            text = host
        else:  # a non-ASCII str, or a str subclass (never "compact" in CPython)
            try:
                text = str.encode(host, "idna").decode("latin-1")
            except Exception:  # noqa: BLE001 - CPython replaces whatever the codec raised
                raise TypeError("encoding of hostname failed") from None
    else:
        raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
    if "\0" in text:
        raise TypeError("host name must not contain null character")
    return text


def c_long(value: Any) -> int:
    """``PyLong_AsLong``: an object with ``__index__``, within C long (64 bits)."""
    v = operator.index(value)
    if not _LONG_MIN <= v <= _LONG_MAX:
        raise OverflowError("Python int too large to convert to C long")
    return v


def c_int(value: Any) -> int:
    """The ``PyArg_ParseTuple`` ``"i"`` format: ``PyLong_AsLong``, then within C int."""
    v = c_long(value)
    if v > _INT_MAX:
        raise OverflowError("signed integer is greater than maximum")
    if v < -_INT_MAX - 1:
        raise OverflowError("signed integer is less than minimum")
    return v


def c_int_clinic(value: Any) -> int:
    """Argument Clinic's ``int`` converter (``_PyLong_AsInt``), e.g. ``socket.socket(family,
    type, proto)``: one message for both directions."""
    v = operator.index(value)
    if not -_INT_MAX - 1 <= v <= _INT_MAX:
        raise OverflowError("Python int too large to convert to C int")
    return v


def c_uint_nocheck(value: Any) -> int:
    """The ``"I"`` format: no overflow check, the value is taken modulo 2**32."""
    return operator.index(value) & 0xFFFFFFFF


def _scope_ok(addr: int, scope: str, device_names: Any) -> bool:
    """glibc ``__inet6_scopeid_pton``: an interface name for a link-local or link/interface-local
    multicast address, else a decimal number (ASCII digits only) that fits in 32 bits."""
    if v6_needs_scope(addr) and scope in device_names:
        return True
    return bool(scope) and all(c in "0123456789" for c in scope) and int(scope) <= 0xFFFFFFFF


def resolve(family: int, text: str, device_names: Any) -> int:
    """``setipaddr`` for one family, returning the address as an int.

    CPython tries ``inet_pton`` itself (strict dotted quad; IPv6 without ``%``) and otherwise
    asks glibc's ``getaddrinfo``, which accepts the ``inet_aton`` forms (``127.1``,
    ``0x7f000001``), IPv6 text with a ``%scope`` (the scope is checked, then overridden by the
    tuple's scope id), and, for AF_INET, a v4-mapped IPv6 text as its IPv4 address.  A numeric
    address of the other family is EAI_ADDRFAMILY."""
    if text == "":
        return 0
    if text in ("255.255.255.255", "<broadcast>"):
        if family != AF_INET:
            raise OSError("address family mismatched")
        return 0xFFFFFFFF
    v4 = parse_ipv4(text)
    if v4 is not None:
        if family == AF_INET:
            return v4
        raise _gaierror(_stdsocket.EAI_ADDRFAMILY, "Address family for hostname not supported")
    addr_text, pct, scope = text.partition("%")
    v6 = parse_ipv6(addr_text)
    if v6 is not None:
        if family == AF_INET:
            if not v6_is_mapped(v6):
                raise _gaierror(_stdsocket.EAI_ADDRFAMILY, "Address family for hostname not supported")
            # gaih_inet: addr[0] = addr[3], and the scope is then checked on that address
            v6 = ((v6 & 0xFFFFFFFF) << 96) | (v6 & ((1 << 96) - 1))
        if pct and not _scope_ok(v6, scope, device_names):
            raise _gaierror(_stdsocket.EAI_NONAME, "Name or service not known")
        return v6 >> 96 if family == AF_INET else v6
    if text.lower() == "localhost":
        return 0x7F000001 if family == AF_INET else 1
    raise _gaierror(_stdsocket.EAI_NONAME, "Name or service not known")


def sockaddr(family: int, address: Any, caller: str, device_names: Any) -> tuple[int, int, int, int]:
    """``getsockaddrarg`` for AF_INET/AF_INET6: returns (addr int, port, flowinfo, scope_id).

    Order as in CPython: tuple check, item count, the items converted left to right (host,
    port ``"i"``, flowinfo and scope id ``"I"``, i.e. modulo 2**32) -- any OverflowError there
    becomes "port must be 0-65535." -- then ``setipaddr``, then the port and flowinfo ranges."""
    v4 = family == AF_INET
    name = "AF_INET" if v4 else "AF_INET6"
    if not isinstance(address, tuple):
        raise TypeError(f"{caller}(): {name} address must be tuple, not {type(address).__name__}")
    if v4 and len(address) != 2:
        raise TypeError("AF_INET address must be a pair (host, port)")
    if not v4 and not 2 <= len(address) <= 4:
        raise TypeError("AF_INET6 address must be a tuple (host, port[, flowinfo[, scopeid]])")
    try:
        text = host_text(address[0])
        port = c_int(address[1])
        flowinfo = c_uint_nocheck(address[2]) if len(address) > 2 else 0
        scope_id = c_uint_nocheck(address[3]) if len(address) > 3 else 0
    except OverflowError:
        raise OverflowError(f"{caller}(): port must be 0-65535.") from None
    addr = resolve(family, text, device_names)
    if not 0 <= port <= 0xFFFF:
        raise OverflowError(f"{caller}(): port must be 0-65535.")
    if flowinfo > 0xFFFFF:
        raise OverflowError(f"{caller}(): flowinfo must be 0-1048575.")
    return addr, port, flowinfo, scope_id
