"""Address-tuple parsing exactly as CPython's ``socketmodule.c: getsockaddrarg`` and
``setipaddr`` do it, minus the I/O: numeric hosts, ``''``, ``'<broadcast>'`` and ``'localhost'``
are understood; any other name raises ``socket.gaierror`` (EAI_NONAME) without a lookup.

Messages are CPython 3.11's, checked against the real stdlib on the live kernel by the
bad-calls table (tests/kernel/test_bad_calls.py).  Divergence, on purpose: ``'localhost'``
for AF_INET6 is ``::1`` here; the stdlib asks /etc/hosts, which may lack ``::1``.
"""
from __future__ import annotations

import operator
import socket as _stdsocket
from typing import Any

from .model._addr import AF_INET, parse_ipv4, parse_ipv6, v6_needs_scope

_EAI_NONAME = _stdsocket.gaierror(_stdsocket.EAI_NONAME, "Name or service not known")
_INT_MAX = (1 << 31) - 1


def _gaierror(code: int, text: str) -> _stdsocket.gaierror:
    return _stdsocket.gaierror(code, text)


def host_text(host: Any) -> str:
    """``idna_converter``: str, bytes or bytearray, no NUL."""
    if isinstance(host, str):
        text = host
    elif isinstance(host, (bytes, bytearray)):
        text = bytes(host).decode("latin-1")
    else:
        raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
    if "\0" in text:
        raise TypeError("host name must not contain null character")
    return text


def c_int(value: Any) -> int:
    """The ``"i"`` argument format: an object with ``__index__``, within C int."""
    if isinstance(value, float):
        raise TypeError("'float' object cannot be interpreted as an integer")
    v = operator.index(value) if not isinstance(value, int) else value
    if v > _INT_MAX:
        raise OverflowError("signed integer is greater than maximum")
    if v < -_INT_MAX - 1:
        raise OverflowError("signed integer is less than minimum")
    return int(v)


def c_uint_nocheck(value: Any) -> int:
    """The ``"I"`` format: no overflow check, the value is taken modulo 2**32."""
    if isinstance(value, float):
        raise TypeError("'float' object cannot be interpreted as an integer")
    return operator.index(value) & 0xFFFFFFFF


def resolve(family: int, text: str, device_names: Any) -> int:
    """``setipaddr`` for one family, returning the address as an int."""
    if text == "":
        return 0
    if text in ("255.255.255.255", "<broadcast>"):
        if family != AF_INET:
            raise OSError("address family mismatched")
        return 0xFFFFFFFF
    if family == AF_INET:
        v = parse_ipv4(text)
        if v is not None:
            return v
        if text.lower() == "localhost":
            return 0x7F000001
        if parse_ipv6(text.split("%", 1)[0]) is not None:
            raise _gaierror(_stdsocket.EAI_ADDRFAMILY, "Address family for hostname not supported")
        raise _gaierror(_stdsocket.EAI_NONAME, "Name or service not known")
    if "%" not in text:
        v6 = parse_ipv6(text)
        if v6 is not None:
            return v6
    else:
        addr_text, _, scope = text.partition("%")
        v6 = parse_ipv6(addr_text)
        if v6 is not None and scope and (scope.isdigit() or (v6_needs_scope(v6) and scope in device_names)):
            return v6  # the tuple's scope id overrides the parsed one, as in CPython
        raise _gaierror(_stdsocket.EAI_NONAME, "Name or service not known")
    if text.lower() == "localhost":
        return 1
    if parse_ipv4(text) is not None:
        raise _gaierror(_stdsocket.EAI_ADDRFAMILY, "Address family for hostname not supported")
    raise _gaierror(_stdsocket.EAI_NONAME, "Name or service not known")


def sockaddr(family: int, address: Any, caller: str, device_names: Any) -> tuple[int, int, int, int]:
    """Parse a bind()/connect() address: returns (addr int, port, flowinfo, scope_id)."""
    if family == AF_INET:
        if not isinstance(address, tuple):
            raise TypeError(f"{caller}(): AF_INET address must be tuple, not {type(address).__name__}")
        if len(address) != 2:
            raise TypeError("AF_INET address must be a pair (host, port)")
        text = host_text(address[0])
        port = c_int(address[1])
        addr = resolve(family, text, device_names)
        if not 0 <= port <= 0xFFFF:
            raise OverflowError(f"{caller}(): port must be 0-65535.")
        return addr, port, 0, 0
    if not isinstance(address, tuple):
        raise TypeError(f"{caller}(): AF_INET6 address must be tuple, not {type(address).__name__}")
    if not 2 <= len(address) <= 4:
        raise TypeError("AF_INET6 address must be a tuple (host, port[, flowinfo[, scopeid]])")
    text = host_text(address[0])
    port = c_int(address[1])
    flowinfo = c_uint_nocheck(address[2]) if len(address) > 2 else 0
    scope_id = c_uint_nocheck(address[3]) if len(address) > 3 else 0
    addr = resolve(family, text, device_names)
    if not 0 <= port <= 0xFFFF:
        raise OverflowError(f"{caller}(): port must be 0-65535.")
    if flowinfo > 0xFFFFF:
        raise OverflowError(f"{caller}(): flowinfo must be 0-1048575.")
    return addr, port, flowinfo, scope_id
