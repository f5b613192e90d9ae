"""Parsers of ``/proc/net/{tcp,tcp6,udp,udp6}``: the fallback when sock_diag is unavailable.

Theory of operation
-------------------
The kernel prints one line per socket (``net/ipv4/tcp_ipv4.c: get_tcp4_sock``,
``get_timewait4_sock``, ``get_openreq4``; ``net/ipv6/tcp_ipv6.c``; ``net/ipv4/udp.c:
udp4_format_sock``)::

      sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ...
       0: 0100007F:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 186978 1 ...
       1: 0100007F:9076 0100007F:1388 06 00000000:00000000 03:00001770 00000000     0        0 0 3 ...

* Addresses are the raw ``__be32`` words printed with ``%08X`` *as host integers*: on a
  little-endian host 127.0.0.1 prints as ``0100007F``.  IPv6 addresses are four such words.
  :func:`decode_address` undoes this for a given byte order (the host's by default).
* Ports are host integers (``%04X`` of ``ntohs(port)``): ``1388`` is 5000.
* ``st`` is the kernel state number (UDP: 07 unconnected, 01 connected); a TIME_WAIT remnant
  prints its substate (06 TIME_WAIT or 05 FIN_WAIT2) with ``tr`` 3 and inode 0.
* ``tm->when`` is the time left on the timer in clock ticks (``jiffies_delta_to_clock_t``, i.e.
  USER_HZ, 100 per second on Linux).

What these files cannot show (the reason sock_diag is preferred): TCP sockets that are bound
but neither listening nor connected (they are in no table these files walk; peers note §4.6),
the bound device, and IPV6_V6ONLY.  Rows carry ifindex 0 and v6only None accordingly.

Rule 1: :func:`parse` and :func:`decode_address` are pure and never raise on bad input: a line
that cannot be parsed is skipped and reported in ``Parsed.errors`` ("tcp6 line 7: ...").  Only
:func:`read` touches the file system, under a configurable procfs root.
"""
from __future__ import annotations

import os
import sys

from ._rows import SockRow
from ..model._addr import AF_INET, AF_INET6

__all__ = ["Parsed", "decode_address", "parse", "read", "FILES"]

FILES = {("tcp", AF_INET): "net/tcp", ("tcp", AF_INET6): "net/tcp6",
         ("udp", AF_INET): "net/udp", ("udp", AF_INET6): "net/udp6"}

USER_HZ = 100


class Parsed:
    """Rows parsed from one or more files, and one message per line that could not be parsed
    (or file that could not be read)."""

    __slots__ = ("rows", "errors")

    def __init__(self, rows: list[SockRow] | None = None, errors: list[str] | None = None) -> None:
        self.rows: list[SockRow] = [] if rows is None else rows
        self.errors: list[str] = [] if errors is None else errors

    def __repr__(self) -> str:
        return f"Parsed(rows={self.rows!r}, errors={self.errors!r})"


def _word(text: str, byteorder: str) -> int:
    """One ``%08X`` word of a raw ``__be32`` back to its network-order value."""
    return int.from_bytes(int(text, 16).to_bytes(4, byteorder), "big")  # type: ignore[arg-type]


def decode_address(text: str, family: int, byteorder: str = sys.byteorder) -> tuple[int, int]:
    """``"ADDR:PORT"`` of /proc/net/* to ``(address int, port)``.

    >>> decode_address("0100007F:1388", AF_INET, "little")
    (2130706433, 5000)
    >>> hex(decode_address("0000000000000000FFFF00000100007F:9E49", AF_INET6, "little")[0])
    '0xffff7f000001'
    >>> decode_address("00000000000000000000000001000000:0050", AF_INET6, "little")
    (1, 80)

    (the last one is ``[::1]:80``; the middle one ``[::ffff:127.0.0.1]:40521``).

    Raises:
        ValueError: not of that form (wrong length, not hex, no colon).
    """
    addr_text, sep, port_text = text.partition(":")
    if not sep or len(port_text) != 4:
        raise ValueError(f"bad address {text!r}")
    port = int(port_text, 16)
    if family == AF_INET:
        if len(addr_text) != 8:
            raise ValueError(f"bad IPv4 address {addr_text!r}")
        return _word(addr_text, byteorder), port
    if len(addr_text) != 32:
        raise ValueError(f"bad IPv6 address {addr_text!r}")
    value = 0
    for i in range(0, 32, 8):
        value = (value << 32) | _word(addr_text[i:i + 8], byteorder)
    return value, port


def parse(text: str, proto: str, family: int, *, byteorder: str = sys.byteorder, clk_tck: int = USER_HZ,
          name: str | None = None, out: Parsed | None = None) -> Parsed:
    """Parse the text of one ``/proc/net/{tcp,tcp6,udp,udp6}`` file.

    Args:
        text: the file's content (the header line is recognised and skipped).
        proto, family: which file it is ("tcp"/"udp", AF_INET/AF_INET6).
        byteorder: the byte order of the host that printed it.
        clk_tck: its USER_HZ (``tm->when`` is in these ticks).
        name: used in error messages (default "tcp6" etc.).
        out: append to these results instead of new ones.
    """
    out = out if out is not None else Parsed()
    label = name or (proto + ("6" if family == AF_INET6 else ""))
    rows = out.rows
    for lineno, line in enumerate(text.split("\n"), 1):
        fields = line.split()
        if not fields:
            continue
        if lineno == 1 and fields[0] == "sl":
            continue
        try:
            if len(fields) < 10:
                raise ValueError(f"{len(fields)} fields, at least 10 expected")
            if not fields[0].endswith(":") or not fields[0][:-1].isdigit():
                raise ValueError(f"bad slot {fields[0]!r}")
            laddr, lport = decode_address(fields[1], family, byteorder)
            raddr, rport = decode_address(fields[2], family, byteorder)
            if len(fields[3]) != 2:
                raise ValueError(f"bad state {fields[3]!r}")
            state = int(fields[3], 16)
            tr_text, sep, when_text = fields[5].partition(":")
            if not sep:
                raise ValueError(f"bad timer {fields[5]!r}")
            timer, when = int(tr_text, 16), int(when_text, 16)
            uid, inode = int(fields[7]), int(fields[9])
            if uid < 0 or inode < 0:
                raise ValueError("negative uid or inode")
        except ValueError as e:
            out.errors.append(f"{label} line {lineno}: {e}: {line.strip()[:100]!r}")
            continue
        expires = (when * 1000 // clk_tck) if timer else None
        tw = timer == 3 and inode == 0
        rows.append(SockRow(proto, family, state, laddr, lport, raddr, rport, 0, uid, inode, None,
                            timer, expires, tw))
    return out


def read(root: str = "/proc", protos: tuple[str, ...] = ("tcp", "udp"),
         families: tuple[int, ...] = (AF_INET, AF_INET6)) -> Parsed:
    """Read and parse the files under ``root`` (``/proc`` or a fixture tree).  A file that
    cannot be read (no IPv6, hardened /proc) is reported in ``errors``, not raised."""
    out = Parsed()
    try:
        clk_tck = os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):  # pragma: no cover - Linux always has it
        clk_tck = USER_HZ
    for proto in protos:
        for family in families:
            rel = FILES[(proto, family)]
            path = os.path.join(root, rel)
            try:
                with open(path, encoding="ascii", errors="replace") as f:
                    text = f.read()
            except OSError as e:
                out.errors.append(f"cannot read {path}: {e.strerror or e}")
                continue
            parse(text, proto, family, clk_tck=clk_tck, out=out)
    return out
