"""sock_diag and rtnetlink decoding on datagrams captured from a private namespace
(tests/data/capture_live_fixtures.py; sockets in tests/data/procnet/SCENARIO.txt)."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from portspace.live import _netlink, _rtnl, _sockdiag
from portspace.live._rows import endpoint_text
from portspace.model._addr import AF_INET, AF_INET6
from portspace.model._rules import CLOSE, ESTABLISHED, LISTEN, TIME_WAIT

DATA = Path(__file__).parent.parent / "data" / "sockdiag"


def _datagrams(name: str) -> list[bytes]:
    return [bytes.fromhex(line) for line in (DATA / name).read_text().split()]


def _decode_all() -> _sockdiag.Decoded:
    out = _sockdiag.Decoded()
    for name, proto in (("tcp4", "tcp"), ("tcp6", "tcp"), ("udp4", "udp"), ("udp6", "udp")):
        for d in _datagrams(f"{name}.hex"):
            _sockdiag.decode(d, proto, out)
    return out


def _one(rows, proto, port, state=None):
    found = [r for r in rows if r.proto == proto and r.lport == port and (state is None or r.state == state)]
    assert len(found) == 1, found
    return found[0]


def test_decode_captured_dump():
    d = _decode_all()
    assert d.errors == []
    rows = d.rows
    lst = _one(rows, "tcp", 5000, LISTEN)
    assert endpoint_text(lst.family, lst.laddr, lst.lport) == "127.0.0.1:5000"
    assert lst.uid == 0 and lst.inode > 0 and lst.v6only is None and not lst.tw
    assert _one(rows, "tcp", 5001, LISTEN).v6only is True
    assert _one(rows, "tcp", 5002, LISTEN).v6only is False           # dual-stack [::]
    # bound-inactive sockets: state TCP_CLOSE, with uid and inode (invisible to /proc/net)
    b = _one(rows, "tcp", 40001)
    assert b.state == CLOSE and b.bound_only and b.inode > 0 and b.state_text == "BOUND"
    m = _one(rows, "tcp", 40002)
    assert endpoint_text(m.family, m.laddr, m.lport) == "[::ffff:127.0.0.1]:40002" and m.v6only is False
    ll = _one(rows, "tcp", 40003)
    assert ll.ifindex == 2 and endpoint_text(ll.family, ll.laddr, ll.lport, "d0") == "[fe80::1%d0]:40003"
    assert _one(rows, "tcp", 5003, LISTEN).ifindex == 2               # the scope id binds the device
    tw = _one(rows, "tcp", 41000)
    assert tw.tw and tw.state == TIME_WAIT and tw.inode == 0 and tw.uid == 0 and tw.timer == 3
    assert 50_000 < tw.expires_ms <= 60_000 and tw.rport == 5000
    u = _one(rows, "udp", 6000)
    assert u.uid == 1000 and u.state == CLOSE and u.state_text == "UNCONN"
    assert _one(rows, "udp", 6002).v6only is True
    c = _one(rows, "udp", 6003)
    assert c.state == ESTABLISHED and c.state_text == "ESTAB" and c.rport == 6000
    # established TCP in both families, accepted and client side
    assert sum(1 for r in rows if r.proto == "tcp" and r.state == ESTABLISHED) == 4
    assert all(r.cookie for r in rows)


def test_decode_truncated_datagram_keeps_whole_messages():
    data = b"".join(_datagrams("tcp4.hex"))
    whole = _sockdiag.decode(data, "tcp")
    for cut in (1, 17, 71, 100, len(data) - 5):
        d = _sockdiag.decode(data[:cut], "tcp")
        assert d.errors, cut                                  # the cut is reported ...
        assert d.rows == whole.rows[:len(d.rows)]             # ... and the whole messages kept


def test_decode_garbage_never_raises():
    for blob in (b"", b"\x00" * 3, b"\xff" * 64, bytes(range(256)) * 3):
        _sockdiag.decode(blob, "udp")


def _msg(payload: bytes, mtype: int = _sockdiag.SOCK_DIAG_BY_FAMILY) -> bytes:
    return _netlink.NLMSG_HDR.pack(16 + len(payload), mtype, 2, 1, 0) + payload


def test_decode_short_message_and_unknown_family():
    d = _sockdiag.decode(_msg(b"\x02" * 20) + _msg(b"\x07" + b"\x00" * 71), "tcp")
    assert d.rows == [] and len(d.errors) == 2
    assert "short inet_diag_msg" in d.errors[0] and "unknown address family 7" in d.errors[1]


def test_decode_skips_done_and_foreign_types():
    data = _datagrams("udp4.hex")[-1]
    d = _sockdiag.decode(data + _msg(b"\0\0\0\0", _netlink.NLMSG_DONE) + _msg(b"x" * 8, 99), "udp")
    assert d.errors == []


def test_port_filter_bytecode_layout():
    bc = _sockdiag.port_filter(5000, 5256)
    ops = [struct.unpack_from("=BBH", bc, i) for i in range(0, len(bc), 4)]
    # S_GE (yes 8, no: past the end) + carrier(lo); S_LE (yes 8, no: past the end) + carrier(hi)
    assert ops == [(2, 8, 20), (0, 0, 5000), (3, 8, 12), (0, 0, 5256)]
    with pytest.raises(ValueError):
        _sockdiag.port_filter(10, 5)


def test_build_request_layout():
    req = _sockdiag.build_request(AF_INET6, 17)
    length, mtype, flags, _seq, _pid = _netlink.NLMSG_HDR.unpack_from(req)
    assert length == len(req) == 16 + 56 and mtype == 20 and flags == 0x301
    family, proto, ext, _pad, states = struct.unpack_from("=BBBBI", req, 16)
    assert (family, proto, ext) == (AF_INET6, 17, 0)
    assert states & (1 << 13) and states & (1 << LISTEN) and states & (1 << TIME_WAIT) and not states & 1
    with_bc = _sockdiag.build_request(AF_INET, 6, bytecode=_sockdiag.port_filter(1, 2))
    assert len(with_bc) == 16 + 56 + 4 + 16


def test_netlink_framing_errors():
    assert _netlink.framing_error(b"") is None
    assert "truncated netlink header" in _netlink.framing_error(b"\x10\x00")
    assert "bad netlink message length 3" in _netlink.framing_error(_netlink.NLMSG_HDR.pack(3, 0, 0, 0, 0))
    assert "truncated netlink message" in _netlink.framing_error(_netlink.NLMSG_HDR.pack(40, 0, 0, 0, 0))
    assert list(_netlink.iter_attrs(b"\x02\x00\x01\x00", 0, 4)) == []          # nla_len < 4: stop
    assert _netlink.error_code(b"\xfe\xff\xff\xff", 0, 4) == 2                   # -ENOENT


def test_rtnl_decode_captured():
    ifs = _rtnl.Interfaces()
    for d in _datagrams("rtnl_links.hex"):
        _rtnl.decode_links(d, ifs)
    for d in _datagrams("rtnl_addrs.hex"):
        _rtnl.decode_addrs(d, ifs)
    assert ifs.errors == []
    names = {link.name: link for link in ifs.links}
    assert names["lo"].ifindex == 1 and names["lo"].loopback and names["lo"].up
    assert names["d0"].ifindex == 2 and not names["d0"].loopback
    addrs = {(a.family, a.addr, a.ifindex): a for a in ifs.addrs}
    assert (AF_INET, 0x7F000001, 1) in addrs and (AF_INET6, 1, 1) in addrs
    ll = addrs[(AF_INET6, 0xFE80 << 112 | 1, 2)]
    assert ll.plen == 64 and ll.usable                       # added with nodad
    # the bridge's automatic link-local address is still tentative: not bindable yet
    assert any(not a.usable for a in ifs.addrs if a.ifindex == 2)


def _messages() -> list[tuple[str, bytes]]:
    """Every inet_diag message of the captured dumps, one by one (NLMSG_DONE left out)."""
    out = []
    for name, proto in (("tcp4", "tcp"), ("tcp6", "tcp"), ("udp4", "udp"), ("udp6", "udp")):
        for d in _datagrams(f"{name}.hex"):
            for mtype, _flags, start, end in _netlink.iter_messages(d):
                if mtype == _sockdiag.SOCK_DIAG_BY_FAMILY:
                    out.append((proto, d[start - 16:end]))
    return out


def test_uniform_runs_decode_as_the_general_path():
    """A datagram made only of messages of one length takes the two-iter_unpack fast path; it
    must give exactly the rows of the message-by-message decoder, in order, including the
    AF_INET6 LISTEN/CLOSE messages whose IPV6_V6ONLY attribute it hands back to that decoder."""
    runs: dict[tuple[str, int], list[bytes]] = {}
    for proto, msg in _messages():
        runs.setdefault((proto, len(msg)), []).append(msg)
    fast_taken = 0
    v6_attr_rows = 0
    for (proto, length), msgs in runs.items():
        data = b"".join(msgs * 3)                    # several of each, as in a large dump
        assert _sockdiag._uniform(data, length)
        fast = _sockdiag.decode(data, proto)
        slow = _sockdiag._decode_general(data, proto, _sockdiag.Decoded())
        assert fast.rows == slow.rows and fast.errors == slow.errors == []
        assert len(fast.rows) == 3 * len(msgs)
        fast_taken += 1
        v6_attr_rows += sum(r.v6only is not None for r in fast.rows)
    assert fast_taken >= 3 and v6_attr_rows > 0     # v4, v6 and UDP runs; some v6only read


@pytest.mark.parametrize("damage", ["type", "length", "truncated", "trailing"])
def test_almost_uniform_runs_take_the_general_path(damage):
    proto, msg = next((p, m) for p, m in _messages() if p == "tcp")
    msgs = [bytearray(msg) for _ in range(4)]
    if damage == "type":
        struct.pack_into("=H", msgs[2], 4, _netlink.NLMSG_NOOP)   # not an inet_diag message
    elif damage == "length":
        struct.pack_into("=I", msgs[2], 0, len(msg) - 4)         # claims a shorter message
    data = b"".join(msgs)
    if damage == "truncated":
        data = data[:-7]
    elif damage == "trailing":
        data += b"\0" * 3
    length = len(msg)
    assert not (len(data) % length == 0 and _sockdiag._uniform(data, length))
    fast = _sockdiag.decode(data, proto)
    slow = _sockdiag._decode_general(data, proto, _sockdiag.Decoded())
    assert fast.rows == slow.rows and fast.errors == slow.errors
    if damage == "type":
        assert len(fast.rows) == 3 and fast.errors == []
    else:
        assert fast.errors                          # said, not raised
