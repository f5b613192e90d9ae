"""The C accelerator (``live/_speedups.c``) against the Python loops it replaces, which stay
the reference: the same rows from the same bytes (captured dumps, then generated and damaged
ones), the same order, the same table, the same fd walk.

Where the accelerator is not built in the checkout (the tests run from ``src/``; ``pip install``
builds it into site-packages), it is compiled here into a temporary directory; with no C
compiler these tests skip: the accelerator is optional and portspace then runs the Python loops.
"""
from __future__ import annotations

import importlib.util
import io
import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from portspace.cli import _live
from portspace.live import _procfs, _snapshot, _sockdiag
from portspace.live._rows import SockRow

SOURCE = Path(_sockdiag.__file__).with_name("_speedups.c")
DATA = Path(__file__).parent.parent / "data" / "sockdiag"


@pytest.fixture(scope="module")
def speedups(tmp_path_factory):
    try:
        from portspace.live import _speedups
        return _speedups
    except ImportError:
        pass
    out = tmp_path_factory.mktemp("speedups")
    script = ("import sys; from setuptools import Extension, setup; "
              f"setup(name='x', script_args=['build_ext', '--build-lib', {str(out)!r}, '--build-temp', "
              f"{str(out / 'tmp')!r}], ext_modules=[Extension('_speedups', [{str(SOURCE)!r}])])")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=out)
    built = sorted(out.glob("_speedups*.so"))
    if proc.returncode != 0 or not built:
        pytest.skip(f"the optional C accelerator cannot be built here (no C compiler?): {proc.stderr[-300:]}")
    spec = importlib.util.spec_from_file_location("_speedups", built[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---- decode ------------------------------------------------------------------------------------

def _decode_with(accelerator, data, proto):
    """``_sockdiag.decode`` with the accelerator module given (None: the Python loops)."""
    saved = _sockdiag._speedups
    _sockdiag._speedups = accelerator
    try:
        return _sockdiag.decode(data, proto)
    finally:
        _sockdiag._speedups = saved


def _same(speedups, data, proto):
    c, py = _decode_with(speedups, data, proto), _decode_with(None, data, proto)
    assert c.rows == py.rows
    assert [type(r) for r in c.rows] == [SockRow] * len(c.rows)
    assert c.errors == py.errors
    return c


@pytest.mark.parametrize("name,proto", [("tcp4", "tcp"), ("tcp6", "tcp"), ("udp4", "udp"), ("udp6", "udp")])
def test_decode_captured_dumps(speedups, name, proto):
    datagrams = [bytes.fromhex(line) for line in (DATA / f"{name}.hex").read_text().split()]
    rows = sum((_same(speedups, d, proto).rows for d in datagrams), [])
    assert rows
    if name == "tcp6":
        assert any(r.v6only is not None for r in rows)          # the attribute is read


def _message(family, state, timer, sport, dport, src, dst, ifindex, cookie, expires, uid, inode, attrs, mtype):
    body = struct.pack("=BBBB", family, state, timer, 0) + struct.pack(">HH", sport, dport)
    body += src.to_bytes(16, "big") + dst.to_bytes(16, "big")
    body += struct.pack("=IQIIIII", ifindex, cookie, expires, 0, 0, uid, inode) + attrs
    return struct.pack("=IHHII", 16 + len(body), mtype, 2, 1, 0) + body + b"\0" * (-len(body) % 4)


def _attr(atype, value):
    return struct.pack("=HH", 4 + len(value), atype) + value + b"\0" * (-len(value) % 4)


_u128 = st.one_of(st.sampled_from([0, 1, 0x7F000001 << 96, (0xFFFF << 32) | 0x7F000001]),
                  st.integers(0, (1 << 128) - 1))
_attrs = st.lists(st.tuples(st.sampled_from([1, 5, 8, 11, 11 | 0x8000]), st.binary(max_size=6)), max_size=3).map(
    lambda xs: b"".join(_attr(t, v) for t, v in xs))
_messages = st.builds(_message, st.sampled_from([2, 10, 10, 2, 1, 44]), st.integers(0, 13), st.integers(0, 4),
                      st.integers(0, 65535), st.integers(0, 65535), _u128, _u128, st.integers(0, 2**32 - 1),
                      st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
                      st.integers(0, 2**32 - 1), _attrs, st.sampled_from([20, 20, 20, 3, 2, 1]))


@settings(max_examples=300, deadline=None)
@given(st.lists(_messages, max_size=8), st.sampled_from(["tcp", "udp"]), st.integers(0, 400), st.data())
def test_decode_generated_and_damaged(speedups, msgs, proto, cut, data):
    """Any mix of families, states, lengths, attributes and types; then the same bytes cut
    short, or with one length field changed: rows and error lines as the Python decoder's."""
    blob = b"".join(msgs)
    _same(speedups, blob, proto)
    _same(speedups, blob[:len(blob) - cut] if cut < len(blob) else blob[:cut % 17], proto)
    if blob:
        damaged = bytearray(blob)
        at = data.draw(st.integers(0, max(0, len(blob) - 4)))
        damaged[at:at + 4] = struct.pack("=I", data.draw(st.integers(0, 300)))
        _same(speedups, bytes(damaged), proto)


# ---- sort --------------------------------------------------------------------------------------

_rows = st.builds(SockRow, st.sampled_from(["tcp", "udp"]), st.sampled_from([2, 10]), st.integers(0, 13),
                  st.sampled_from([0, 1, 0x7F000001, 1 << 100, (1 << 128) - 1]), st.sampled_from([0, 80, 5000, 65535]),
                  st.sampled_from([0, 0x7F000001, (0xFFFF << 32) | 1, 1 << 127]), st.sampled_from([0, 1, 443]),
                  st.just(0), st.just(0), st.integers(0, 3), st.none(), st.just(0), st.none(), st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.lists(_rows, max_size=40))
def test_sort_rows_is_list_sort_in_row_order(speedups, rows):
    """The same permutation as the stable ``list.sort(key=ROW_ORDER)``: equal keys keep their
    order (one socket can appear twice in a dump)."""
    c, py = list(rows), list(rows)
    assert speedups.sort_rows(c) is True
    py.sort(key=_snapshot.ROW_ORDER)
    assert len(c) == len(py) and all(a is b for a, b in zip(c, py))


@pytest.mark.parametrize("bad", [
    SockRow("sctp", 2, 1, 0, 1, 0, 0, 0, 0, 0, None, 0, None, False),      # an unknown protocol
    SockRow("tcp", 2, 1, -1, 1, 0, 0, 0, 0, 0, None, 0, None, False),      # a negative address
    SockRow("tcp", 2, 1, 1 << 128, 1, 0, 0, 0, 0, 0, None, 0, None, False),  # not 128 bits
    SockRow("tcp", 2, 1, 0, 70000, 0, 0, 0, 0, 0, None, 0, None, False),   # not a port
    ("tcp", 2),                                                           # not a row
])
def test_sort_rows_declines_what_it_does_not_know(speedups, bad):
    good = SockRow("tcp", 2, 1, 5, 9, 0, 0, 0, 0, 0, None, 0, None, False)
    rows = [good, bad, good]
    assert speedups.sort_rows(rows) is False and rows == [good, bad, good]
    if isinstance(bad, SockRow):
        _snapshot.sort_rows(rows)                     # then list.sort does it
        assert rows == sorted([good, bad, good], key=_snapshot.ROW_ORDER)


# ---- render ------------------------------------------------------------------------------------

def _python_table(cols, header):
    saved = _live._render_c
    _live._render_c = None
    try:
        buf = io.StringIO()
        _live._columns_table(cols, header, buf, _live._Style(buf), 1)
        return buf.getvalue()
    finally:
        _live._render_c = saved


_cell = st.text(alphabet="abc:*-.[]/0123456789 ", min_size=0, max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 6).flatmap(lambda k: st.tuples(
    st.lists(st.text(alphabet="ABC-", min_size=1, max_size=8), min_size=k, max_size=k),
    st.integers(0, 12).flatmap(lambda n: st.lists(st.lists(_cell, min_size=n, max_size=n), min_size=k, max_size=k)))))
def test_render_is_the_python_table(speedups, case):
    header, cols = case
    cols = [[c if i < len(header) - 1 else (c or "-") for c in col] for i, col in enumerate(cols)]  # last never empty
    assert speedups.render(cols, tuple(header)) == _python_table(cols, header)


def test_render_declines_non_ascii(speedups):
    assert speedups.render([["été"], ["x"]], ("A", "B")) is None
    assert speedups.render([["a"], ["x", "y"]], ("A", "B")) is None            # ragged
    assert speedups.render([["a"]], ("A", "B")) is None                        # a column short


# ---- ls_columns --------------------------------------------------------------------------------

def _ls_c(speedups, socks):
    return speedups.ls_columns(socks, _live._host_cell, _live._state_cell, _live._flags_cell, _live._who_cell,
                               _live._procs_cell)


_holders = st.lists(st.builds(_snapshot.Holder, st.sampled_from([1, 7, 4242]), st.integers(0, 1100),
                              st.sampled_from([None, "", "/usr/sbin/nginx -g daemon off;", "nginx: worker", "[kthreadd]",
                                               "/opt/été/serveur --port 80"])), max_size=3)
_hs_rows = st.builds(
    SockRow, st.sampled_from(["tcp", "udp"]), st.sampled_from([2, 10]), st.sampled_from([1, 6, 7, 8, 10, 12, 13]),
    st.sampled_from([0, 0x7F000001, (0xFFFF << 32) | 0x7F000001, 1, (0xFE80 << 112) | 1, (1 << 128) - 1]),
    st.sampled_from([0, 80, 5000, 65535]),
    st.sampled_from([0, 0x7F000001, (0xFFFF << 32) | 0x0A000001, 1, (0xFE80 << 112) | 7]), st.sampled_from([0, 1, 443]),
    st.sampled_from([0, 0, 1, 3]), st.sampled_from([0, 1000, 2**32 - 2]), st.integers(0, 3),
    st.sampled_from([None, True, False]), st.integers(0, 4),
    st.one_of(st.none(), st.integers(0, 120_000), st.sampled_from([50, 150, 1050, 1150, 59_950])), st.booleans())


@st.composite
def _host_sockets(draw):
    row = draw(_hs_rows)
    dev = draw(st.sampled_from([None, "lo", "eth0", "wlp2s0é"])) if row.ifindex else None
    return _snapshot.HostSocket(row, draw(_holders), draw(st.sampled_from([None, True, False])),
                                draw(st.sampled_from([None, True, False])), device=dev)


@settings(max_examples=300, deadline=None)
@given(st.lists(_host_sockets(), max_size=30).flatmap(
    lambda xs: st.permutations(xs + xs[: len(xs) // 2])))       # repeats: the C loop's memo of the last row
def test_ls_columns_is_the_python_loop(speedups, socks):
    """Every cell as the Python loop makes it: addresses (v4, v6, mapped, link-local with a
    device), states, TW-LEFT rounding, uids, flags known or not, one holder or several, non-ASCII
    commands and devices."""
    assert _ls_c(speedups, socks) == _live._ls_columns_py(socks)


def test_ls_columns_declines_what_it_does_not_know(speedups):
    good = _snapshot.HostSocket(SockRow("tcp", 2, 10, 0, 80, 0, 0, 0, 0, 9, None, 0, None, False))
    for bad_row in [("tcp", 2),                                                       # not a row
                    SockRow("tcp", 2, 10, -1, 80, 0, 0, 0, 0, 9, None, 0, None, False),  # a negative address
                    SockRow("tcp", 2, 10, 0, 80, 0, 0, 0, 0, 9, None, 0, None, 1)]:      # tw not a bool
        bad = _snapshot.HostSocket(bad_row)
        assert _ls_c(speedups, [good, bad]) is None
    assert _ls_c(speedups, (good,)) is None                                           # not a list


def test_ls_columns_reads_attributes_of_other_classes(speedups):
    """A HostSocket subclass whose attribute is a property is read by getattr, not by slot."""
    class Shown(_snapshot.HostSocket):
        __slots__ = ()

        @property
        def device(self):
            return "eth0"

        @device.setter
        def device(self, value):
            pass
    row = SockRow("tcp", 10, 10, (0xFE80 << 112) | 1, 80, 0, 0, 2, 0, 9, True, 0, None, False)
    socks = [_snapshot.HostSocket(row), Shown(row), _snapshot.HostSocket(row)]
    cols = _ls_c(speedups, socks)
    assert cols == _live._ls_columns_py(socks)
    assert cols[2] == ["[fe80::1]:80", "[fe80::1%eth0]:80", "[fe80::1]:80"]


def _json_c(speedups, socks):
    return speedups.ls_json(socks, _live._json_host, _live._json_head, _live._json_text, _live._json_proc,
                            _live._json_v6only)


@settings(max_examples=300, deadline=None)
@given(st.lists(_host_sockets(), max_size=30).flatmap(lambda xs: st.permutations(xs + xs[: len(xs) // 2])),
       st.lists(st.sampled_from([None, "not read", 'odd "note"\n', "été"]), min_size=45, max_size=45))
def test_ls_json_is_the_python_loop(speedups, socks, notes):
    for hs, note in zip(socks, notes):
        hs.flags_note = note
    body = _json_c(speedups, socks)
    assert body == _live._ls_json_rows(socks)
    assert json.loads(f"[{body}]") == [hs.as_dict() for hs in socks]


def test_ls_json_declines_what_it_does_not_know(speedups):
    good = _snapshot.HostSocket(SockRow("tcp", 2, 10, 0, 80, 0, 0, 0, 0, 9, None, 0, None, False))
    odd = _snapshot.HostSocket(SockRow("tcp", 2, 10, 0, 80, 0, 0, 0, -5, 9, None, 0, None, False))   # uid < 0
    assert _json_c(speedups, [good, odd]) is None
    good.reuseaddr = 1                                                    # not a bool
    assert _json_c(speedups, [good]) is None
    assert _json_c(speedups, (good,)) is None


# ---- attribute ---------------------------------------------------------------------------------

def _attribution(socks, processes, commands, accelerator):
    """Holders and notes after attributing, on fresh copies of ``socks``: by the accelerator's
    ``attribute`` (falling back to Python where it declines, as _snapshot._attribute does) or by
    the Python loops."""
    copies = [_snapshot.HostSocket(hs.row) for hs in socks]
    scan = _procfs.FdScan()
    scan.processes = processes
    n = None
    if accelerator is not None:
        n = accelerator.attribute(copies, processes, commands, _snapshot.Holder, _snapshot.UNATTRIBUTED)
    declined = n is None
    if declined:
        n = _snapshot._attribute_py(copies, scan, commands)
    return n, declined, [(hs.holders, [type(h) for h in hs.holders], hs.flags_note) for hs in copies]


_inodes = st.sampled_from([0, 0, 11, 12, 13, 14, 2**32 - 1])


@settings(max_examples=300, deadline=None)
@given(st.lists(_inodes, max_size=12),
       st.lists(st.tuples(st.sampled_from([1, 2, 3, 99]), st.lists(st.tuples(_inodes, st.integers(0, 50)), max_size=6)),
                max_size=4),
       st.dictionaries(st.sampled_from([1, 2, 3]), st.one_of(st.none(), st.text(max_size=5))))
def test_attribute_is_the_python_loop(speedups, inodes, processes, commands):
    """Every holder on every socket, in walk order, as Holder tuples with the command of their
    pid (None when unknown); the unheld ones noted and counted.  A socket in two rows (the same
    inode twice) is Python's: the accelerator declines before changing anything."""
    socks = [_snapshot.HostSocket(SockRow("tcp", 2, 1, 1, 80, 1, 5000 + i, 0, 0, inode, None, 0, None, False))
             for i, inode in enumerate(inodes)]
    n, declined, c = _attribution(socks, processes, commands, speedups)
    assert (n, c) == _attribution(socks, processes, commands, None)[::2]
    held = [i for i in inodes if i]
    assert declined == (len(set(held)) < len(held))


def test_attribute_declines_what_it_does_not_know(speedups):
    hs = _snapshot.HostSocket(SockRow("tcp", 2, 1, 1, 80, 1, 5000, 0, 0, 11, None, 0, None, False))
    note = _snapshot.UNATTRIBUTED
    assert speedups.attribute([hs], [(1, [(11, 3, 4)])], {}, _snapshot.Holder, note) is None    # not a pair
    assert speedups.attribute([hs], [(1, [(11, 3)])], {}, dict, note) is None                    # not a tuple type
    assert hs.holders == [] and hs.flags_note is None                                           # untouched
    assert speedups.attribute([hs], [(1, [(11, 3)])], {1: "x"}, _snapshot.Holder, note) == 0
    assert hs.holders == [(1, 3, "x")]


# ---- walk --------------------------------------------------------------------------------------

def _proc(root, pid, fds):
    d = root / str(pid) / "fd"
    d.mkdir(parents=True)
    for fd, target in fds.items():
        os.symlink(target, d / str(fd))


def test_walk_is_scan_socket_fds(speedups, tmp_path):
    rng = random.Random(7)
    for pid in range(100, 130):
        _proc(tmp_path, pid, {fd: rng.choice(["socket:[%d]" % rng.randrange(1, 10**7), "/dev/null", "pipe:[4]",
                                               "socket:[]", "socket:[12x]", "anon_inode:[eventpoll]"])
                              for fd in rng.sample(range(200), rng.randrange(0, 12))})
    (tmp_path / "999").mkdir()                               # exited: no fd directory
    (tmp_path / "self").mkdir()
    (tmp_path / "net").mkdir()
    _proc(tmp_path, 131, {"notanfd": "socket:[5]", 3: "socket:[6]"})
    for skip in (None, 105):
        processes, scanned, denied, vanished = speedups.walk(str(tmp_path), skip)
        ref = _procfs.scan_socket_fds(str(tmp_path), None, skip)
        ref_pairs = [(pid, [(_procfs.parse_socket_link(link), fd) for link, fd in pairs]) for pid, pairs in ref.processes]
        assert processes == ref_pairs                        # (readdir order on both sides)
        assert (scanned, denied, vanished) == (ref.scanned, ref.denied, ref.vanished)
    assert speedups.walk(str(tmp_path / "nope"), None) == ([], 0, [], 0)


def test_walk_of_this_process(speedups):
    """On the real /proc: this process's AF_UNIX pair (no port taken) is found, as by Python."""
    import socket
    a, b = socket.socketpair()
    try:
        processes = dict(speedups.walk("/proc", None)[0])
        assert (os.fstat(a.fileno()).st_ino, a.fileno()) in processes[os.getpid()]
    finally:
        a.close()
        b.close()
