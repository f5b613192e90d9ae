"""Regenerate tests/data/procnet/*.txt and tests/data/sockdiag/*.hex from a private namespace.

Run as root from the repository root:  PYTHONPATH=src python tests/data/capture_live_fixtures.py

The namespace holds the sockets listed in SCENARIO (ports fixed, so the fixture tests can name
them); what the kernel printed and sent is stored verbatim: /proc/net text as is, netlink
datagrams one per line in hex.  Inodes, cookies and ephemeral client ports vary between runs;
the tests only rely on what SCENARIO fixes.  Nothing outside the private namespace is touched.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from portspace.live import KernelNamespace
from portspace.live import _netlink, _rtnl, _sockdiag

HERE = Path(__file__).parent

SCENARIO = """\
tcp  127.0.0.1:5000        LISTEN (SO_REUSEADDR)
tcp  [::]:5001             LISTEN, IPV6_V6ONLY
tcp  [::]:5002             LISTEN, dual-stack
tcp  127.0.0.1:40001       BOUND (neither listening nor connected)
tcp  [::ffff:127.0.0.1]:40002  BOUND, v4-mapped
tcp  [fe80::1%d0]:40003    BOUND, link-local, SO_BINDTODEVICE d0 via scope id
tcp  [fe80::1%d0]:5003     LISTEN, link-local
tcp  127.0.0.1:41000 -> 127.0.0.1:5000   TIME_WAIT (client closed first)
tcp  127.0.0.1:5000 <- 127.0.0.1:*       ESTABLISHED (accepted) + its client
tcp  [::1]:5001 <- [::1]:*               ESTABLISHED (accepted) + its client
udp  0.0.0.0:6000          UNCONN, uid 1000
udp  [::ffff:127.0.0.1]:6001  UNCONN, v4-mapped
udp  [::]:6002             UNCONN, IPV6_V6ONLY
udp  127.0.0.1:6003 -> 127.0.0.1:6000    ESTAB (connected)
"""


def _capture() -> dict[str, object]:
    out: dict[str, object] = {}
    for name in ("tcp", "tcp6", "udp", "udp6"):
        with open(f"/proc/net/{name}") as f:
            out[name] = f.read()
    for proto, ipproto in (("tcp", socket.IPPROTO_TCP), ("udp", socket.IPPROTO_UDP)):
        for fam, tag in ((socket.AF_INET, "4"), (socket.AF_INET6, "6")):
            out[f"diag_{proto}{tag}"] = _netlink.dump(_netlink.NETLINK_SOCK_DIAG,
                                                      _sockdiag.build_request(fam, ipproto))
    out["rtnl_links"] = _netlink.dump(_netlink.NETLINK_ROUTE,
                                      _netlink.pack_request(_rtnl.RTM_GETLINK, _rtnl._IFINFO.pack(0, 0, 0, 0, 0)))
    out["rtnl_addrs"] = _netlink.dump(_netlink.NETLINK_ROUTE,
                                      _netlink.pack_request(_rtnl.RTM_GETADDR, _rtnl._IFADDR.pack(0, 0, 0, 0, 0)))
    return out


def main() -> int:
    SOL = socket.SOL_SOCKET
    with KernelNamespace() as ns:
        ns.add_device("d0")
        ns.add_address("fe80::1/64", "d0")
        keep = []
        lst = ns.socket()
        lst.setsockopt(SOL, socket.SO_REUSEADDR, 1)
        lst.bind(("127.0.0.1", 5000))
        lst.listen()
        l6 = ns.socket(socket.AF_INET6)
        l6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        l6.bind(("::", 5001))
        l6.listen()
        ld = ns.socket(socket.AF_INET6)
        ld.bind(("::", 5002))
        ld.listen()
        b = ns.socket()
        b.bind(("127.0.0.1", 40001))
        bm = ns.socket(socket.AF_INET6)
        bm.bind(("::ffff:127.0.0.1", 40002))
        bl = ns.socket(socket.AF_INET6)
        bl.bind(("fe80::1", 40003, 0, 2))  # scope id 2 = d0 (lo is 1)
        ll = ns.socket(socket.AF_INET6)
        ll.bind(("fe80::1", 5003, 0, 2))
        ll.listen()
        keep += [lst, l6, ld, b, bm, bl, ll]
        # a TIME_WAIT remnant: client bound to 41000 connects, the client closes first
        c = ns.socket()
        c.bind(("127.0.0.1", 41000))
        c.connect(("127.0.0.1", 5000))
        a, _ = lst.accept()
        c.close()
        time.sleep(0.05)
        a.close()
        # live connections, v4 and v6
        c4 = ns.socket()
        c4.connect(("127.0.0.1", 5000))
        a4, _ = lst.accept()
        c6 = ns.socket(socket.AF_INET6)
        c6.connect(("::1", 5001))
        a6, _ = l6.accept()
        keep += [c4, a4, c6, a6]
        with ns.user(1000):
            u = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind(("0.0.0.0", 6000))
        um = ns.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        um.bind(("::ffff:127.0.0.1", 6001))
        u6 = ns.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        u6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        u6.bind(("::", 6002))
        uc = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        uc.bind(("127.0.0.1", 6003))
        uc.connect(("127.0.0.1", 6000))
        keep += [u, um, u6, uc]
        time.sleep(0.05)
        cap = ns.run(_capture)
        for s in keep:
            s.close()
    (HERE / "procnet").mkdir(exist_ok=True)
    (HERE / "sockdiag").mkdir(exist_ok=True)
    for name in ("tcp", "tcp6", "udp", "udp6"):
        (HERE / "procnet" / f"{name}.txt").write_text(cap[name])  # type: ignore[arg-type]
    for key, chunks in cap.items():
        if key.startswith(("diag_", "rtnl_")):
            lines = [bytes(c).hex() for c in chunks]  # type: ignore[union-attr]
            (HERE / "sockdiag" / f"{key.split('_', 1)[1] if key.startswith('diag_') else key}.hex").write_text(
                "\n".join(lines) + "\n")
    (HERE / "procnet" / "SCENARIO.txt").write_text(SCENARIO)
    print("captured into", HERE / "procnet", "and", HERE / "sockdiag", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("needs root (a private network namespace)")
    sys.exit(main())
