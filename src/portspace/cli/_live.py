"""``portspace ls``, ``portspace explain``, ``portspace ports``: questions about the live host.

Theory of operation
-------------------
Each command takes one :func:`portspace.live.snapshot` of the reader's network namespace
(sock_diag, or /proc/net as a fallback; processes from /proc/<pid>/fd; reuse flags by
pidfd_getfd where permitted), then renders it.  ``explain`` loads the snapshot into a model
namespace and asks the model (see ``portspace.live._query``).  This module only parses
arguments and renders; it makes no decision of its own and never touches the host directly.

Output: aligned tables for people, ``--json`` for scripts.  Colour only on a terminal and never
when ``NO_COLOR`` is set (https://no-color.org) or ``TERM=dumb``.  Bad arguments give one line
on stderr and exit status 2, never a traceback.

Exit status of ``explain``: 0 the call would succeed, 1 it would fail, 2 bad arguments (or a
question portspace cannot answer, named), 3 the answer depends on what could not be read
(unknown flags, whether TIME_WAIT remnants used TCP timestamps; both cases are shown).  ``ls`` and ``ports``: 0, or 1 when the host cannot
be read at all, 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import operator
import os
import sys
from itertools import repeat
from typing import Any, Sequence, TextIO

try:   # the optional C accelerator (live/_speedups.c): the ls cells and the table render
    from portspace.live._speedups import ls_columns as _ls_columns_c, ls_json as _ls_json_c, render as _render_c
except ImportError:   # pragma: no cover - depends on the build
    _ls_columns_c = _ls_json_c = _render_c = None

COMMANDS = ("ls", "explain", "ports")
SHOWN = 5   # list items printed before "... and N more" in text output (JSON has them all)

EXPLAIN_EPILOG = """\
examples:
  portspace explain tcp 0.0.0.0:8080                   would my server start?
  portspace explain tcp '[::]:443' --reuseaddr --listen
  portspace explain udp 127.0.0.1:5353 --reuseport --uid 1000
  portspace explain tcp 127.0.0.1:40000 --device eth0 --json | jq .verdict
  portspace explain connect 10.0.0.5:443             a local port left for it? (EADDRNOTAVAIL)
  portspace explain connect 127.0.0.1:5432 --json | jq .ports
  portspace explain connect 10.0.0.5:443 --from 10.0.0.2 --bind-no-port

exit status: 0 would succeed, 1 would fail, 2 bad arguments,
             3 depends on what could not be read (both cases shown)"""

LS_EPILOG = """\
examples:
  portspace ls                       every socket that holds a port
  portspace ls --tcp --port 8080     who holds TCP port 8080
  portspace ls --pid 1234 --json

FLAGS: reuseaddr = SO_REUSEADDR, reuseport = SO_REUSEPORT, v6only = IPV6_V6ONLY,
dev=NAME = SO_BINDTODEVICE; a trailing '?' means it could not be read (a TIME_WAIT
remnant has no fd; other users' sockets need root).  STATE BOUND = bound, neither
listening nor connected (invisible to netstat, lsof and ss without -B)."""

PORTS_EPILOG = """\
examples:
  portspace ports
  portspace ports --json | jq '.destinations[] | select(.connections_left < 1000)'"""


# ------------------------------------------------------------------------------------------
# argument parsing
# ------------------------------------------------------------------------------------------


def wrap(text: str, width: int = 92) -> str:
    """Greedy word wrap for help descriptions (textwrap.fill without its ~1 ms import, which
    every command would pay: the parsers are built for each run)."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)


def _one_line_error(parser: argparse.ArgumentParser):
    def error(message: str) -> None:
        sys.stderr.write(f"{parser.prog}: error: {message} (see {parser.prog} --help)\n")
        raise SystemExit(2)
    return error


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r} (0-65535)")
    return int(text)


def _pid(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"invalid pid {text!r}")
    return int(text)


def _uid(text: str) -> int:
    if not text.isdigit() or int(text) > 0xFFFFFFFE:
        raise argparse.ArgumentTypeError(f"invalid uid {text!r} (a number)")
    return int(text)


def _address(text: str) -> str:
    """A numeric IPv4 or IPv6 address (no brackets, no port), in canonical form."""
    import ipaddress
    try:
        ip = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid address {text!r} (a numeric IPv4 or IPv6 address)") from None
    if ip.version == 6:
        from portspace.model._addr import format_ipv6
        return format_ipv6(int(ip))
    return str(ip)


def _device(text: str) -> str:
    if not text or len(text) > 15 or "/" in text or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"invalid device name {text!r}")
    return text


def add_parsers(sub: Any, parent: argparse.ArgumentParser | None = None) -> None:
    """Register ``ls``, ``explain`` and ``ports`` on the main parser's subparsers (and make
    argument errors one line, on ``parent`` too when given: an unknown option is reported by
    the main parser)."""
    fmt = argparse.RawDescriptionHelpFormatter
    ls = sub.add_parser("ls", help="every socket on this host that holds a port, with its processes",
                        description=wrap("List every TCP and UDP socket of this network namespace that holds "
                                    "a local port -- listening, bound-only, connected and TIME_WAIT -- with "
                                    "uid, processes, SO_REUSEADDR/SO_REUSEPORT where they can be read, and "
                                    "the time a TIME_WAIT remnant has left."),
                        epilog=LS_EPILOG, formatter_class=fmt)
    proto = ls.add_mutually_exclusive_group()
    proto.add_argument("--tcp", action="store_true", help="TCP only")
    proto.add_argument("--udp", action="store_true", help="UDP only")
    ls.add_argument("--port", type=_port, metavar="P", help="only sockets with local port P")
    ls.add_argument("--pid", type=_pid, metavar="PID", help="only sockets held by process PID")
    ls.add_argument("--all-flags", action="store_true",
                    help="also read SO_REUSEADDR/SO_REUSEPORT of connected sockets (one pidfd_getfd each)")
    _common(ls)

    ex = sub.add_parser("explain", help="would bind()/listen() of this address, or connect() to it, succeed here",
                        description=wrap("Load this host's sockets, devices, addresses and sysctls into the model "
                                    "and ask it whether a new socket could bind (and listen on) an address: "
                                    "which sockets block it (pid, command, uid, state, flags), the rule, and "
                                    "the smallest changes that would make it work.  With 'connect': whether a "
                                    "new TCP socket's connect() to ADDR:PORT would start -- the route (asked of "
                                    "the kernel, as ip route get), a local port from the ephemeral range for "
                                    "that destination (or EADDRNOTAVAIL, and who holds the ports), and for a "
                                    "local destination whether anything listens.  Nothing is bound or sent."),
                        epilog=EXPLAIN_EPILOG, formatter_class=fmt)
    ex.add_argument("proto", metavar="tcp|udp|connect",
                    help="bind() of a TCP or UDP socket, or connect() of a TCP socket")
    ex.add_argument("address", metavar="ADDR:PORT",
                    help="local address and port, e.g. 0.0.0.0:8080, [::]:443, [fe80::1%%eth0]:80, "
                         "or just 8080 (= 0.0.0.0:8080); port 0 asks for an automatic port.  With "
                         "connect: the destination, e.g. 10.0.0.5:443 or [2001:db8::1]:80")
    ex.add_argument("--reuseaddr", action="store_true", help="the new socket sets SO_REUSEADDR")
    ex.add_argument("--reuseport", action="store_true", help="the new socket sets SO_REUSEPORT")
    ex.add_argument("--v6only", action="store_true", help="the new socket sets IPV6_V6ONLY (IPv6 only)")
    ex.add_argument("--device", type=_device, metavar="DEV", help="the new socket sets SO_BINDTODEVICE=DEV")
    ex.add_argument("--uid", type=_uid, metavar="UID",
                    help="create the socket as UID (no capabilities unless 0); default: you, with your "
                         "capabilities")
    ex.add_argument("--listen", action="store_true", help="then listen() (TCP)")
    ex.add_argument("--from", type=_address, metavar="ADDR", dest="bind_source",
                    help="connect: bind(ADDR, 0) before connect() (the port is then chosen by bind(), never "
                         "shared between destinations)")
    ex.add_argument("--bind-no-port", action="store_true",
                    help="connect: with --from, set IP_BIND_ADDRESS_NO_PORT first (connect() chooses the port)")
    _common(ex)

    po = sub.add_parser("ports", help="ephemeral range, ports in use, connections left per destination",
                        description=wrap("The ephemeral port range and reserved ports, how many ports are in use "
                                    "or in TIME_WAIT per protocol and per destination, how many more "
                                    "connections each destination can take before connect() fails with "
                                    "EADDRNOTAVAIL, and fixed listening ports inside the ephemeral range."),
                        epilog=PORTS_EPILOG, formatter_class=fmt)
    _common(po)
    for p in (ls, ex, po) + ((parent,) if parent is not None else ()):
        p.error = _one_line_error(p)  # type: ignore[method-assign]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--source", choices=("auto", "sock_diag", "procnet"), default="auto",
                   help="where to read sockets: sock_diag (netlink, like ss), /proc/net (like netstat), "
                        "or auto (sock_diag, else /proc/net; the default)")


# ------------------------------------------------------------------------------------------
# colour and tables
# ------------------------------------------------------------------------------------------


class _Style:
    def __init__(self, stream: TextIO) -> None:
        self.on = (stream.isatty() if hasattr(stream, "isatty") else False) and not os.environ.get("NO_COLOR") \
            and os.environ.get("TERM") != "dumb"

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.on and text else text


_STATE_COLOURS = {"LISTEN": "32", "BOUND": "33", "TIME_WAIT": "2", "FIN_WAIT2": "2", "UNCONN": "32"}


def _table(rows: list[list[str]], header: list[str], out: TextIO, style: _Style, colour_col: int = -1) -> None:
    """Left-aligned columns two spaces apart, the last one unpadded.  One format string for
    all rows (20 000 rows in ~25 ms); colour is added after padding so widths stay right."""
    widths = [len(h) for h in header]
    for i in range(len(header)):
        col = [r[i] for r in rows]
        if col:
            widths[i] = max(widths[i], max(map(len, col)))
    last = len(header) - 1
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:last]) + "  {}"
    lines = [fmt.format(*header).rstrip()]
    if style.on and colour_col >= 0:
        w = widths[colour_col]
        for r in rows:
            r = list(r)
            r[colour_col] = style(r[colour_col], _STATE_COLOURS.get(r[colour_col], "0")) + " " * (w - len(r[colour_col]))
            lines.append(fmt.format(*r).rstrip())
    else:
        lines.extend(fmt.format(*r).rstrip() for r in rows)
    out.write("\n".join(lines))
    out.write("\n")


# ------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    # The cyclic garbage collector is paused while a command runs: a snapshot makes ~100 000
    # container objects (rows, holders, sockets, cache keys) and none of them forms a cycle;
    # the collections their allocation triggers cost ls ~60 ms of 20 000 sockets (measured).
    # Restored afterwards (main() is also called in-process, by tests and scripts).
    import gc
    paused = gc.isenabled()
    gc.disable()
    try:
        return _run(args)
    finally:
        if paused:
            gc.enable()


def _run(args: argparse.Namespace) -> int:
    from portspace.live import snapshot
    try:
        if args.command == "ls":
            return _ls(args, snapshot)
        if args.command == "ports":
            return _ports(args, snapshot)
        return _explain(args, snapshot)
    except BrokenPipeError:
        # the reader went away (``portspace ls | head``): not a failure to read the host; keep
        # the interpreter's final flush from complaining too (the Python docs' SIGPIPE recipe)
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1
    except OSError as e:
        sys.stderr.write(f"portspace {args.command}: error: cannot read the host: {e.strerror or e}\n")
        return 1


def _ls(args: argparse.Namespace, snapshot: Any) -> int:
    protos = ("tcp",) if args.tcp else ("udp",) if args.udp else ("tcp", "udp")
    ports = (args.port, args.port) if args.port is not None else None
    if args.all_flags:
        read_flags: Any = True
    else:
        # Flags of sockets that hold a port on their own (listening, bound-only, unconnected
        # UDP); connected ones only with --all-flags: one pidfd_getfd per socket adds up.
        read_flags = _unconnected
    snap = snapshot(protos, ports, source=args.source, read_flags=read_flags, ordered=True)
    socks = snap.sockets
    if args.pid is not None:
        socks = [hs for hs in socks if args.pid in hs.pids]
    # by protocol, local port, family, address, state, peer (take(ordered=True) already did)
    if not getattr(snap, "ordered", False):
        order = operator.itemgetter(0, 4, 1, 3, 2, 5, 6)
        socks.sort(key=lambda hs: order(hs.row))
    if not args.all_flags and any(hs.flags_note == "not read" for hs in socks):
        snap.notes.append("the flags of connected sockets were not read (--all-flags reads them)")
    if args.json:
        sys.stdout.write(_ls_json(snap.source, socks, snap.notes))
        sys.stdout.write("\n")
        return 0
    cols = _ls_columns(socks)
    _columns_table(cols, LS_HEADER, sys.stdout, _Style(sys.stdout), 1)
    _notes(snap.notes)
    return 0


def _json_host(family: int, addr: int, dev: str | None) -> tuple[str, str]:
    """An address's two JSON pieces: the "local"/"peer" text up to the port (``'"[::1]'``,
    unterminated) and the "local_address" string (``'"::1"'``)."""
    from json.encoder import encode_basestring_ascii as esc
    from portspace.live import endpoint_text
    host = endpoint_text(family, addr, 1, dev)[:-2]
    return esc(host)[:-1], esc(host.strip("[]"))


def _json_head(proto: str, family: int, state: int) -> str:
    from json.encoder import encode_basestring_ascii as esc
    from portspace.live import state_name
    return (f'{{"proto": {esc(proto)}, "family": "{"inet6" if family == 10 else "inet"}", '
            f'"state": {esc(state_name(proto, state))}, "local": ')


def _json_text(text: str | None) -> str:
    from json.encoder import encode_basestring_ascii as esc
    return "null" if text is None else esc(text)


def _json_proc(pid: int, command: str | None) -> tuple[str, str]:
    """A holder's JSON object around its fd: ``('{"pid": 1, "fd": ', ', "command": "x"}')``."""
    return f'{{"pid": {pid}, "fd": ', f', "command": {_json_text(command)}}}'


_LIT = {None: "null", True: "true", False: "false"}


def _json_v6only(hs: Any) -> str:
    return _LIT[hs.v6only]


def _ls_json(source: str, socks: Sequence[Any], notes: Sequence[str]) -> str:
    """``json.dumps({"source": ..., "sockets": [hs.as_dict() ...], "notes": ...})``, the same
    text, built by hand: one piece per socket over cached pieces (addresses, strings already
    escaped by the json module's C escaper), instead of a 20-key dict per socket encoded
    generically -- by the C accelerator's ``ls_json`` where built (the same loop over the same
    ``_json_*`` functions), else by :func:`_ls_json_rows`.  tests/live/test_cli_offline.py checks
    it against json.dumps, tests/live/test_speedups.py the two loops against each other."""
    from json import dumps
    body = None
    if _ls_json_c is not None:
        body = _ls_json_c(socks, _json_host, _json_head, _json_text, _json_proc, _json_v6only)
    if body is None:
        body = _ls_json_rows(socks)
    return f'{{"source": {_json_text(source)}, "sockets": [{body}], "notes": {dumps(list(notes))}}}'


def _ls_json_rows(socks: Sequence[Any]) -> str:
    """The sockets of :func:`_ls_json`, comma separated: the Python loop (the reference)."""
    lit = _LIT
    addrs: dict[tuple, tuple[str, str]] = {}     # (family, address, device) -> ('"[::1]', '"::1"')
    strs: dict[Any, str] = {None: "null"}       # text -> its JSON
    statics: dict[tuple, str] = {}              # (proto, family, state) -> '"proto": ..., "state": ...'
    procs_of: dict[tuple, tuple[str, str]] = {}  # (pid, command) -> the holder's object around its fd
    v6: dict[tuple, str] = {}
    out = []
    append = out.append
    for hs in socks:
        proto, family, state, laddr, lport, raddr, rport, ifindex, uid, inode, v6only, _t, expires, tw, _c = hs.row
        dev = hs.device
        a = addrs.get((family, laddr, dev))
        if a is None:
            a = addrs[(family, laddr, dev)] = _json_host(family, laddr, dev)
        if rport:
            b = addrs.get((family, raddr, dev))
            if b is None:
                b = addrs[(family, raddr, dev)] = _json_host(family, raddr, dev)
            peer = f'{b[0]}:{rport}"'
        else:
            peer = '"*"'
        ends = f'{a[0]}:{lport or "*"}", "peer": {peer}, "local_address": {a[1]}'
        head = statics.get((proto, family, state))
        if head is None:
            head = statics[(proto, family, state)] = _json_head(proto, family, state)
        note = hs.flags_note
        n = strs.get(note)
        if n is None:
            n = strs[note] = _json_text(note)
        d = strs.get(dev)
        if d is None:
            d = strs[dev] = _json_text(dev)
        # what HostSocket.v6only reads
        key = (family, v6only, laddr == 0, laddr >> 32 == 0xFFFF)
        v = v6.get(key)
        if v is None:
            v = v6[key] = _json_v6only(hs)
        procs = []
        for pid, fd, command in hs.holders:
            pp = procs_of.get((pid, command))
            if pp is None:
                pp = procs_of[(pid, command)] = _json_proc(pid, command)
            procs.append(f"{pp[0]}{fd}{pp[1]}")
        append(f'{head}{ends}, "local_port": {lport}, "peer_port": {rport}, '
               f'"uid": {"null" if tw else uid}, "inode": {inode or "null"}, "time_wait": {lit[tw]}, '
               f'"timer_ms": {"null" if expires is None else expires}, "device": {d}, '
               f'"ifindex": {ifindex or "null"}, "reuseaddr": {lit[hs.reuseaddr]}, '
               f'"reuseport": {lit[hs.reuseport]}, "v6only": {v}, '
               f'"flags_unknown_because": {n}, "processes": [{", ".join(procs)}]}}')
    return ", ".join(out)


LS_HEADER = ("PROTO", "STATE", "LOCAL", "PEER", "UID", "FLAGS", "TW-LEFT", "PROCESS")


def _host_cell(family: int, addr: int, dev: str | None) -> str:
    """``127.0.0.1``, ``[::1]``, ``[fe80::1%eth0]``: an address as the LOCAL and PEER cells
    show it, before ``:port``."""
    from portspace.live import endpoint_text
    return endpoint_text(family, addr, 1, dev)[:-2]


def _state_cell(proto: str, state: int) -> str:
    from portspace.live import state_name
    return state_name(proto, state)


def _flags_cell(hs: Any) -> str:
    return (hs.flags_text().replace("SO_REUSEADDR", "reuseaddr").replace("SO_REUSEPORT", "reuseport")
            .replace("IPV6_V6ONLY", "v6only"))


def _who_cell(pid: int, command: str | None) -> str:
    """``1234/nginx``."""
    from portspace.live import comm_of
    return f"{pid}/{comm_of(command)}"


def _procs_cell(hs: Any) -> str:
    """The PROCESS cell of a socket with several holders: several fds of one process as
    ``fd 6+7``, several processes comma separated."""
    fds_of: dict[tuple, list[int]] = {}
    for pid, fd, command in hs.holders:
        fds_of.setdefault((pid, command), []).append(fd)
    return ",".join(f"{_who_cell(pid, command)} fd {'+'.join(map(str, fds))}" for (pid, command), fds in fds_of.items())


def _ls_columns(socks: Sequence[Any]) -> list[list[str]]:
    """The ``ls`` table as columns (one list of cell texts per header), rows in ``socks``
    order.  The hot loop of ``ls`` (one pass per socket): each cell that depends on a few
    values -- an address, a state, the flags, a process -- is made once per distinct value by
    the ``_*_cell`` functions above and looked up after.  The C accelerator's ``ls_columns``
    runs this same loop over the same cell functions (tests/live/test_speedups.py)."""
    if _ls_columns_c is not None:
        cols = _ls_columns_c(socks, _host_cell, _state_cell, _flags_cell, _who_cell, _procs_cell)
        if cols is not None:
            return cols
    return _ls_columns_py(socks)


def _ls_columns_py(socks: Sequence[Any]) -> list[list[str]]:
    """:func:`_ls_columns` in Python: the reference, and the loop where the accelerator is
    not built or declines the input."""
    protos, states, locals_, peers, uids, flags, timers, procs = cols = [[] for _ in LS_HEADER]
    addrs: dict[tuple, str] = {}   # (family, address, device) -> "127.0.0.1" / "[::1]"; ports vary
    flag_texts: dict[tuple, str] = {}
    state_texts: dict[tuple[str, int], str] = {}
    who: dict[int, str] = {}       # pid -> "1234/nginx"
    uid_texts: dict[int, str] = {}
    for hs in socks:
        row = hs.row
        proto, family, state, laddr, lport, raddr, rport, ifindex, uid, _ino, v6only, _t, expires, tw, _c = row
        dev = hs.device
        a = addrs.get((family, laddr, dev))
        if a is None:
            a = addrs[(family, laddr, dev)] = _host_cell(family, laddr, dev)
        locals_.append(f"{a}:{lport or '*'}")
        if rport:
            a = addrs.get((family, raddr, dev))
            if a is None:
                a = addrs[(family, raddr, dev)] = _host_cell(family, raddr, dev)
            peers.append(f"{a}:{rport}")
        else:
            peers.append("*")
        st = state_texts.get((proto, state))
        if st is None:
            st = state_texts[(proto, state)] = _state_cell(proto, state)
        states.append(st)
        protos.append(proto + "6" if family == 10 else proto)
        if tw:
            timers.append(f"{expires / 1000:.1f}s" if expires is not None else "?")
            uids.append("-")
        else:
            timers.append("-")
            u = uid_texts.get(uid)
            if u is None:
                u = uid_texts[uid] = str(uid)
            uids.append(u)
        # what flags_text() reads; IPV6_V6ONLY, when not reported, follows from the address
        # (unknown for [::], off for ::ffff:a.b.c.d, on for any other)
        key = (family, hs.reuseaddr, hs.reuseport, v6only, laddr == 0, laddr >> 32 == 0xFFFF, dev, ifindex)
        f = flag_texts.get(key)
        if f is None:
            f = flag_texts[key] = _flags_cell(hs)
        flags.append(f)
        holders = hs.holders
        if not holders:
            procs.append("-" if tw else "?")
        elif len(holders) == 1:
            pid, fd, command = holders[0]
            w = who.get(pid)
            if w is None:
                w = who[pid] = _who_cell(pid, command)
            procs.append(f"{w} fd {fd}")
        else:
            procs.append(_procs_cell(hs))
    return cols


def _columns_table(cols: list[list[str]], header: Sequence[str], out: TextIO, style: _Style,
                   colour_col: int = -1) -> None:
    """:func:`_table` for a table held as columns: each column padded by ``map(str.ljust)``
    and the rows joined by ``map("  ".join, zip(...))`` -- loops in C, no per-row Python code
    and no format-string parsing per row -- then one write.  Cells of the last column are never
    empty, so no line has trailing blanks to strip."""
    if _render_c is not None and not (style.on and colour_col >= 0):
        # the uncoloured table by the C accelerator; None when it declines (a non-ASCII cell)
        text = _render_c(cols, tuple(header))
        if text is not None:
            out.write(text)
            return
    widths = [max(len(h), max(map(len, col), default=0)) for h, col in zip(header, cols)]
    last = len(header) - 1
    if style.on and colour_col >= 0:
        w = widths[colour_col]
        cols = list(cols)
        cols[colour_col] = [style(c, _STATE_COLOURS.get(c, "0")) + " " * (w - len(c)) for c in cols[colour_col]]
    padded = [list(map(str.ljust, col, repeat(w))) for col, w in zip(cols[:last], widths)] + [cols[last]]
    out.write("  ".join([*(h.ljust(w) for h, w in zip(header[:last], widths)), header[last]]).rstrip() + "\n")
    if cols[0]:
        out.write("\n".join(map("  ".join, zip(*padded))))
        out.write("\n")


def _unconnected(row: Any) -> bool:
    return not row.rport


def _notes(notes: Sequence[str]) -> None:
    sys.stdout.flush()  # keep the notes after the output they qualify
    for n in notes:
        sys.stderr.write(f"portspace: note: {n}\n")


def _explain(args: argparse.Namespace, snapshot: Any) -> int:
    from portspace.live import Question, explain, parse_endpoint, window_for
    proto = args.proto.lower()
    err = _one_line_error_text(args)
    if proto == "connect":
        return _explain_connect(args, snapshot, err)
    if proto not in ("tcp", "udp"):
        sys.stderr.write(f"{err}unknown protocol {args.proto!r}: use tcp, udp or connect\n")
        return 2
    if args.bind_source is not None or args.bind_no_port:
        sys.stderr.write(f"{err}--from and --bind-no-port apply to explain connect (the ADDR of explain "
                         f"{proto} is already the address bound)\n")
        return 2
    try:
        family, host, port = parse_endpoint(args.address)
        q = Question(proto, family, host, port, reuseaddr=args.reuseaddr, reuseport=args.reuseport,
                     v6only=args.v6only, device=args.device, uid=args.uid, listen=args.listen)
    except ValueError as e:
        sys.stderr.write(f"{err}{e}\n")
        return 2
    # flags are read by explain() itself, only for the sockets that matter
    snap = snapshot((proto,), window_for(q), source=args.source, read_flags=False)
    v = explain(snap, q)
    return _show_verdict(v, snap, args.json)


def _explain_connect(args: argparse.Namespace, snapshot: Any, err: str) -> int:
    """``explain connect DEST:PORT``: the route (asked of the kernel), the port, the listener."""
    from portspace.live import parse_endpoint
    from portspace.live._outbound import ConnectQuestion, explain_connect
    from portspace.live._netlink import NetlinkError
    from portspace.live._rtnl import route_get
    wrong = [o for o, on in (("--reuseaddr", args.reuseaddr), ("--reuseport", args.reuseport),
                             ("--v6only", args.v6only), ("--listen", args.listen)) if on]
    if wrong:
        sys.stderr.write(f"{err}{', '.join(wrong)} do{'es' if len(wrong) == 1 else ''} not apply to connect "
                         f"(explain tcp ADDR:PORT asks about bind() and listen())\n")
        return 2
    try:
        family, host, port = parse_endpoint(args.address)
        if port == 0 or args.address.strip().isdigit():
            raise ValueError(f"{args.address!r}: connect needs a destination ADDR:PORT with a port from 1 to 65535")
        q = ConnectQuestion(family, host, port, device=args.device, uid=args.uid, source=args.bind_source,
                            no_port=args.bind_no_port)
    except ValueError as e:
        sys.stderr.write(f"{err}{e}\n")
        return 2
    snap = snapshot(("tcp",), None, source=args.source, read_flags=False)
    oif = 0
    if q.device:
        oif = next((link.ifindex for link in snap.links if link.name == q.device), -1)
        if oif < 0:
            sys.stderr.write(f"{err}no device {q.device!r} in this network namespace (SO_BINDTODEVICE fails with "
                             f"ENODEV)\n")
            return 2
    try:
        route: Any = route_get(q.family, q.route_address, oif, args.uid, src=q.source_address)
    except NetlinkError as e:   # the kernel's answer: connect()'s own error for this destination
        route = e
    except OSError as e:        # the question could not be asked (no NETLINK_ROUTE here)
        sys.stderr.write(f"portspace explain: error: cannot ask the kernel for the route to {q.host}: "
                         f"{e.strerror or e}\n")
        return 1
    try:
        v = explain_connect(snap, q, route)
    except NotImplementedError as e:
        sys.stderr.write(f"{err}{e}\n")
        return 2
    return _show_verdict(v, snap, args.json)


def _show_verdict(v: Any, snap: Any, as_json: bool) -> int:
    """An explain verdict, as JSON or text, with the snapshot's notes and the verdict's; its exit status."""
    notes = list(snap.notes) + [n for n in v.notes if n not in snap.notes]
    if as_json:
        d = v.as_dict()
        d["source"] = snap.source
        d["notes"] = notes
        import json
        json.dump(d, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return v.exit_code
    _print_verdict(v, _Style(sys.stdout))
    _notes(notes)
    return v.exit_code


def _one_line_error_text(args: argparse.Namespace) -> str:
    return f"portspace {args.command}: error: "


COMMAND_SHOWN = 200   # characters of a holder's command line in text output (--json has it whole)


def _command_text(command: str | None) -> str:
    """A holder's command line for a terminal: escaped (:func:`printable`) and cut to
    COMMAND_SHOWN characters, saying how much was left out."""
    from portspace.live import printable
    text = printable(command or "?")
    if len(text) > COMMAND_SHOWN:
        text = f"{text[:COMMAND_SHOWN]}... ({len(text) - COMMAND_SHOWN} more characters; --json has it all)"
    return text


def _print_verdict(v: Any, style: _Style) -> None:
    out = sys.stdout
    call = v.question.text(v.uid)
    if v.status == "ok":
        out.write(f"{call}: {style('would succeed', '1;32')}\n")
    elif v.status == "fail":
        c = v.cases[0]
        at = f" at {c.stage}()" if c.stage not in ("bind", "connect") else ""
        out.write(f"{call}: {style('would fail', '1;31')} with {c.error}{at}\n")
    else:
        out.write(f"{call}: {style('depends', '1;33')} on {v.depends_on}\n")
        for hs, flag in v.deciding[:SHOWN]:
            why = hs.flags_note or "unreadable"
            out.write(f"  {hs.label()}: {flag.upper() if flag == 'v6only' else 'SO_' + flag.upper()} unknown ({why})\n")
        if len(v.deciding) > SHOWN:
            out.write(f"  ... and {len(v.deciding) - SHOWN} more unknown flags\n")
    for i, c in enumerate(v.cases, 1):
        indent = "  "
        if c.assumption:
            if v.status == "depends":
                verdict = style("would succeed", "32") if c.ok else style(f"would fail with {c.error}", "31")
                out.write(f"\n  case {i}, {c.assumption}: {verdict}\n")
                indent = "    "
            else:
                out.write(f"  ({c.assumption})\n")
        for r in c.reasons:
            out.write(f"{indent}- [{r.rule}, spec {r.spec}] {r.message}\n")
            if r.blocker is not None and r.blocker.holders:
                for h in r.blocker.holders[:5]:
                    out.write(f"{indent}  held by pid {h.pid} fd {h.fd}: {_command_text(h.command)}\n")
            if r.others:
                out.write(f"{indent}  and {len(r.others)} more sockets, same rule: "
                          + "; ".join(f"{n} {state} of {holder}" for holder, state, n in r.others_by_holder()[:SHOWN])
                          + ("; ..." if len(r.others_by_holder()) > SHOWN else "") + "\n")
            if r.fixes:
                out.write(f"{indent}  would succeed if: " + f";\n{indent}                    or ".join(r.fixes) + "\n")
    if v.also_possible:
        out.write("  possibly also blocked by (their flags could not be read):\n")
        for hs in v.also_possible[:SHOWN]:
            out.write(f"    {hs.describe()}\n")
        if len(v.also_possible) > SHOWN:
            out.write(f"    ... and {len(v.also_possible) - SHOWN} more\n")


def _ports(args: argparse.Namespace, snapshot: Any) -> int:
    from portspace.live import ports_report
    snap = snapshot(("tcp", "udp"), None, source=args.source, read_flags=False)
    rep = ports_report(snap)
    notes = list(snap.notes) + rep.notes
    if args.json:
        d = rep.as_dict()
        d["source"] = snap.source
        d["notes"] = notes
        import json
        json.dump(d, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    style = _Style(sys.stdout)
    out = sys.stdout
    lo, hi = rep.range
    res = rep.as_dict()
    out.write(f"ephemeral range   {lo}-{hi} ({hi - lo + 1} ports, net.ipv4.ip_local_port_range)\n")
    reserved = res["ip_local_reserved_ports"] or "none"
    out.write(f"reserved          {reserved} ({res['reserved_in_range']} in the range, "
              f"net.ipv4.ip_local_reserved_ports)\n")
    out.write(f"usable by connect {rep.usable} ports\n\n")
    t, u = rep.tcp, rep.udp
    rows = [["sockets", str(t["sockets"]), str(u["sockets"])],
            ["TIME_WAIT remnants", str(t["time_wait"]), "-"],
            ["ports in use", str(t["ports_in_use"]), str(u["ports_in_use"])],
            ["  inside the range", str(t["ports_in_use_in_range"]), str(u["ports_in_use_in_range"])],
            ["  held by bind()/listen()", str(t["ports_fixed_by_bind_or_listen"]), "-"],
            ["  held only by TIME_WAIT", str(t["ports_time_wait_only"]), "-"],
            ["ports of the range free", str(t["ports_free_in_range"]), str(u["ports_free_in_range"])]]
    _table(rows, ["", "TCP", "UDP"], out, style)
    if rep.destinations:
        out.write("\nTCP connections per destination (from this namespace):\n")
        drows = [[d.text, d.source_text, str(d.live), str(d.time_wait) + (f" ({d.recyclable} recyclable)"
                                                                           if d.recyclable else ""),
                  str(d.left)] for d in rep.destinations]
        _table(drows, ["DESTINATION", "SOURCE", "CONNECTIONS", "TIME_WAIT", "LEFT BEFORE EADDRNOTAVAIL"], out, style)
    if rep.warnings:
        out.write("\n")
        for w in rep.warnings:
            out.write(f"{style('warning', '33')}: {w}\n")
    _notes(notes)
    return 0
