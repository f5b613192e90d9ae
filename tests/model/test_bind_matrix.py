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

# the enumeration (address classes, modes, the cell procedure) lives in src, shared with
# ``portspace matrix``; this test holds it to the recorded kernel tables
from portspace.diff._matrix import ADDRS, MODES, all_cells, cell  # noqa: E402


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
