"""Synthetic host snapshots for the offline tests (no I/O): sockets, holders and flags as the
readers would have produced them."""
from __future__ import annotations

from portspace.live._rows import SockRow
from portspace.live._rtnl import Addr, Link
from portspace.live._snapshot import Holder, HostSocket, Snapshot
from portspace.model._addr import AF_INET, AF_INET6, parse_ipv4, parse_ipv6
from portspace.model._rules import CLOSE, ESTABLISHED, LISTEN, TIME_WAIT

_STATES = {"LISTEN": LISTEN, "BOUND": CLOSE, "UNCONN": CLOSE, "ESTAB": ESTABLISHED, "ESTABLISHED": ESTABLISHED,
           "TIME_WAIT": TIME_WAIT}


def _addr(text: str) -> tuple[int, int, int]:
    host, _, port = text.rpartition(":")
    if host.startswith("["):
        return AF_INET6, parse_ipv6(host[1:-1]), int(port)
    return AF_INET, parse_ipv4(host), int(port)


def sock(proto: str, local: str, state: str, *, peer: str | None = None, uid: int = 0, pid: int | None = None,
         fd: int = 3, command: str = "server --port", reuseaddr: bool | None = False,
         reuseport: bool | None = False, v6only: bool | None = None, ifindex: int = 0, inode: int = 0,
         device: str | None = None) -> HostSocket:
    fam, la, lp = _addr(local)
    ra, rp = (0, 0) if peer is None else _addr(peer)[1:]
    tw = state == "TIME_WAIT"
    inode = 0 if tw else (inode or 1000 + lp)
    row = SockRow(proto, fam, _STATES[state], la, lp, ra, rp, ifindex, 0 if tw else uid, inode,
                  v6only if fam == AF_INET6 else None, 3 if tw else 0, 42_000 if tw else None, tw)
    hs = HostSocket(row, device=device)
    if tw:
        hs.flags_note = "a TIME_WAIT remnant has no fd: its flags cannot be read"
        return hs
    if pid is not None:
        hs.holders.append(Holder(pid, fd, command))
    hs.reuseaddr, hs.reuseport = reuseaddr, reuseport
    if reuseaddr is None or reuseport is None:
        hs.flags_note = "not permitted to borrow pid's fds"
    return hs


def snapshot(*socks: HostSocket, euid: int = 0, caps: int | None = (1 << 41) - 1, source: str = "sock_diag",
             sysctls: dict[str, str] | None = None) -> Snapshot:
    links = [Link("lo", 1, True, True), Link("eth0", 2, False, True)]
    addrs = [Addr(AF_INET, 0x7F000001, 8, 1), Addr(AF_INET6, 1, 128, 1), Addr(AF_INET, parse_ipv4("10.0.0.2"), 24, 2)]
    return Snapshot(list(socks), source, dict(sysctls or {"net.ipv4.ip_local_port_range": "32768\t60999",
                                                         "net.ipv4.ip_unprivileged_port_start": "1024"}),
                    links, addrs, [], ("tcp", "udp"), None, euid, caps)


def standard() -> Snapshot:
    """A listener with SO_REUSEADDR, a bound-only socket, a TIME_WAIT remnant, a UDP socket of
    uid 1000, a SO_REUSEPORT group and a [::] listener whose IPV6_V6ONLY is unknown."""
    return snapshot(
        sock("tcp", "127.0.0.1:5000", "LISTEN", pid=100, fd=3, reuseaddr=True),
        sock("tcp", "127.0.0.1:40001", "BOUND", pid=100, fd=4),
        sock("tcp", "127.0.0.1:41000", "TIME_WAIT", peer="127.0.0.1:5000"),
        sock("udp", "0.0.0.0:6000", "UNCONN", uid=1000, pid=200, fd=5, command="dnsd"),
        *[sock("tcp", "0.0.0.0:7000", "LISTEN", pid=300 + i, fd=6, reuseport=True, command="worker")
          for i in range(3)],
        sock("tcp", "[::]:7100", "LISTEN", pid=400, fd=7, v6only=None),
    )
