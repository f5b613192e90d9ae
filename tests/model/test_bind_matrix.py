"""The live bind/listen matrix of Linux 6.18 (1152 cells: TCP and UDP, 8 address classes, six
option modes, TCP with and without a listening first socket), reproduced by the model and run
again on the live kernel.

tests/data/bind_matrix.txt is a copy of ../shared/linux-port-experiments/results/bind_matrix.txt
(kernel 6.18.44, private netns), the facts this test holds the model to.
"""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import make_ns

A4, A6 = socket.AF_INET, socket.AF_INET6
ADDRS = [  # label, family, host, v6only
    ("0.0.0.0", A4, "0.0.0.0", None),
    ("127.0.0.1", A4, "127.0.0.1", None),
    ("127.0.0.2", A4, "127.0.0.2", None),
    ("[::]", A6, "::", False),
    ("[::]v6only", A6, "::", True),
    ("[::1]", A6, "::1", None),
    ("[::ffff:0.0.0.0]", A6, "::ffff:0.0.0.0", None),
    ("[::ffff:127.0.0.1]", A6, "::ffff:127.0.0.1", None),
]
MODES = {  # first socket's options, second's, second's uid
    "none": ({}, {}, None),
    "reuseaddr": ({"reuseaddr": True}, {"reuseaddr": True}, None),
    "reuseport": ({"reuseport": True}, {"reuseport": True}, None),
    "reuseport/uid": ({"reuseport": True}, {"reuseport": True}, 1000),
    "ra1-only": ({"reuseaddr": True}, {}, None),
    "ra2-only": ({}, {"reuseaddr": True}, None),
}
SHORT = {"OK": "ok", "EADDRINUSE": "INUSE", "bindOK/listen2:OK": "ok/ok", "bindOK/listen2:EADDRINUSE": "ok/INUSE"}


def load_expected() -> dict[tuple[str, str, bool, str, str], str]:
    """Parse the recorded tables: (proto, mode, listen_first, first, second) -> cell."""
    out: dict[tuple[str, str, bool, str, str], str] = {}
    proto = mode = None
    listen_first = False
    for line in (Path(__file__).parent.parent / "data" / "bind_matrix.txt").read_text().splitlines():
        if line.startswith(("TCP mode=", "UDP mode=")):
            proto = line[:3]
            mode = line.split("mode=")[1].split(" ")[0]
            listen_first = "LISTENING before" in line
        elif line and not line.startswith("first") and proto:
            cells = line.split()
            first = cells[0]
            for (label, *_), cell in zip(ADDRS, cells[1:]):
                out[(proto, mode, listen_first, first, label)] = cell
    return out


EXPECTED = load_expected()


def _mk(ns, fam, typ, v6only, uid, opts):
    def make():
        s = ns.socket(fam, typ)
        if opts.get("reuseaddr"):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if opts.get("reuseport"):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if v6only is not None and fam == A6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        return s
    if uid is None:
        return make()
    with ns.user(uid):
        return make()


def _err(fn) -> str:
    try:
        fn()
        return "OK"
    except OSError as e:
        import errno
        return errno.errorcode[e.errno]


def cell(ns, typ, a1, a2, mode, listen_first, port) -> str:
    o1, o2, uid2 = MODES[mode]
    s1 = _mk(ns, a1[1], typ, a1[3], None, o1)
    s1.bind((a1[2], port) if a1[1] == A4 else (a1[2], port, 0, 0))
    if listen_first and typ == socket.SOCK_STREAM:
        s1.listen()
    s2 = _mk(ns, a2[1], typ, a2[3], uid2, o2)
    r = _err(lambda: s2.bind((a2[2], port) if a2[1] == A4 else (a2[2], port, 0, 0)))
    if r == "OK" and typ == socket.SOCK_STREAM and not listen_first:
        s1.listen()
        r = "bindOK/listen2:" + _err(s2.listen)
    s1.close()
    s2.close()
    return SHORT.get(r, r)


def all_cells():
    for mode in MODES:
        for lf in (True, False):
            yield ("TCP", socket.SOCK_STREAM, mode, lf)
    for mode in MODES:
        yield ("UDP", socket.SOCK_DGRAM, mode, False)


@pytest.mark.parametrize("proto,typ,mode,listen_first", [
    pytest.param(p, t, m, lf, id=f"{p} {m}{' listening' if lf and p == 'TCP' else ''}") for p, t, m, lf in all_cells()])
def test_bind_matrix(backend, proto, typ, mode, listen_first):
    """Every cell of one recorded table, on the model and on the live kernel."""
    ns = make_ns(backend)
    try:
        port, wrong = 20000, []
        for a1 in ADDRS:
            for a2 in ADDRS:
                port += 1
                got = cell(ns, typ, a1, a2, mode, listen_first, port)
                want = EXPECTED[(proto, mode, listen_first if proto == "TCP" else False, a1[0], a2[0])]
                if got != want:
                    wrong.append(f"{a1[0]} then {a2[0]}: want {want}, got {got}")
        assert not wrong, "\n".join(wrong)
    finally:
        if backend == "kernel":
            ns.close()


def test_expected_table_is_complete():
    assert len(EXPECTED) == (6 * 2 + 6) * 64
