"""``explain`` on synthetic snapshots (no I/O): verdicts, blockers, the unknown-flag cases, the
caller's identity, and the ports report."""
from __future__ import annotations

import pytest

from portspace.live import Question, explain, parse_endpoint, ports_report, window_for
from portspace.live._rtnl import Addr
from portspace.live._snapshot import load
from portspace.model._addr import AF_INET, AF_INET6

from .offline import snapshot, sock, standard


def q(proto, endpoint, **kw):
    family, host, port = parse_endpoint(endpoint)
    return Question(proto, family, host, port, **kw)


def _blockers(case):
    return [b for r in case.reasons for b in ([r.blocker] if r.blocker is not None else []) + r.others]


# ---- definite answers -------------------------------------------------------------------

@pytest.mark.parametrize("question, status, error, blocker_port", [
    pytest.param(q("tcp", "127.0.0.1:5000"), "fail", "EADDRINUSE", 5000, id="tcp on a listener: fails"),
    pytest.param(q("tcp", "127.0.0.1:5000", reuseaddr=True), "fail", "EADDRINUSE", 5000,
                 id="tcp SO_REUSEADDR vs a SO_REUSEADDR listener: fails"),
    pytest.param(q("tcp", "0.0.0.0:40001"), "fail", "EADDRINUSE", 40001, id="wildcard over a bound-only socket"),
    pytest.param(q("tcp", "127.0.0.2:40001"), "ok", None, None, id="other loopback address: ok"),
    pytest.param(q("tcp", "0.0.0.0:41000"), "fail", "EADDRINUSE", 41000, id="over a TIME_WAIT, no options"),
    pytest.param(q("udp", "127.0.0.1:6000", reuseport=True), "fail", "EADDRINUSE", 6000,
                 id="udp SO_REUSEPORT alone: fails"),
    pytest.param(q("udp", "127.0.0.1:6000", reuseport=True, uid=1000), "fail", "EADDRINUSE", 6000,
                 id="udp: the holder has no SO_REUSEPORT"),
    pytest.param(q("tcp", "0.0.0.0:7000", reuseport=True, listen=True), "ok", None, None,
                 id="joins the reuseport group"),
    pytest.param(q("tcp", "0.0.0.0:7000", reuseport=True, uid=1000), "fail", "EADDRINUSE", 7000,
                 id="reuseport group of another uid"),
    pytest.param(q("tcp", "[::]:7100"), "fail", "EADDRINUSE", 7100, id="[::] vs [::] whatever v6only"),
    pytest.param(q("tcp", "10.9.9.9:80"), "fail", "EADDRNOTAVAIL", None, id="not a local address"),
    pytest.param(q("tcp", "10.0.0.2:80"), "ok", None, None, id="an address of eth0"),
    pytest.param(q("tcp", "127.0.0.1:80", uid=1000), "fail", "EACCES", None, id="privileged port as uid 1000"),
    pytest.param(q("tcp", "127.0.0.1:0"), "ok", None, None, id="automatic port"),
    pytest.param(q("udp", "127.0.0.1:5000"), "ok", None, None, id="TCP and UDP are separate spaces"),
])
def test_explain_definite(question, status, error, blocker_port):
    v = explain(standard(), question)
    assert v.status == status, v.as_dict()
    (case,) = v.cases
    assert case.error == error
    if blocker_port is not None:
        assert {b.row.lport for b in _blockers(case)} == {blocker_port}
    assert v.exit_code == {"ok": 0, "fail": 1}[status]


def test_explain_names_the_holder():
    v = explain(standard(), q("tcp", "127.0.0.1:5000"))
    (r,) = v.cases[0].reasons
    assert r.blocker.pids == [100]
    assert "pid 100 (server) fd 3" in r.message and "#" not in r.message
    assert any("were closed" in f and "pid 100" in f for f in r.fixes)
    assert any("port 5001" in f for f in r.fixes)


def test_explain_reuseport_group_names_every_member():
    v = explain(standard(), q("tcp", "0.0.0.0:7000", reuseport=True, uid=1000))
    (r,) = v.cases[0].reasons                                     # one class of equivalent sockets
    assert r.rule == "reuseport-same-uid"
    assert sorted(b.pids[0] for b in [r.blocker] + r.others) == [300, 301, 302]
    assert [n for _, _, n in r.others_by_holder()] == [1, 1]
    assert "(and 2 like it)" in " ".join(r.fixes)


# ---- unknown flags: both cases ------------------------------------------------------------

@pytest.mark.parametrize("question, flag", [
    pytest.param(q("tcp", "127.0.0.1:41000", reuseaddr=True), "reuseaddr", id="TIME_WAIT: SO_REUSEADDR decides"),
    pytest.param(q("tcp", "127.0.0.1:41000", reuseport=True), "reuseport", id="TIME_WAIT: SO_REUSEPORT decides"),
    pytest.param(q("tcp", "0.0.0.0:7100"), "v6only", id="[::] listener: IPV6_V6ONLY decides an IPv4 bind"),
])
def test_explain_depends_on_one_unknown_flag(question, flag):
    v = explain(standard(), question)
    assert v.status == "depends" and v.exit_code == 3
    ((hs, f),) = v.deciding
    assert f == flag
    yes, no = v.cases
    assert yes.ok and not no.ok and no.error == "EADDRINUSE"
    assert yes.assumption.startswith("if ") and "does not have" in no.assumption
    assert _blockers(no) == [hs]


def test_explain_certain_failure_despite_unknown_flags_says_so():
    v = explain(standard(), q("tcp", "127.0.0.1:41000"))
    assert v.status == "fail"
    assert "whatever the flags" in v.cases[0].assumption
    assert v.cases[0].reasons[0].rule == "overlap-without-reuse"


def test_explain_depends_on_two_sockets():
    snap = snapshot(sock("tcp", "127.0.0.1:8000", "TIME_WAIT", peer="127.0.0.1:1"),
                    sock("tcp", "127.0.0.1:8000", "TIME_WAIT", peer="127.0.0.1:2"))
    v = explain(snap, q("tcp", "127.0.0.1:8000", reuseaddr=True))
    assert v.status == "depends" and len(v.deciding) == 2
    assert v.cases[0].ok and " and " in v.cases[0].assumption


def test_explain_either_flag_suffices():
    # a TIME_WAIT remnant and a new socket with both options: either flag of the remnant is enough
    snap = snapshot(sock("tcp", "127.0.0.1:8000", "TIME_WAIT", peer="127.0.0.1:1"))
    v = explain(snap, q("tcp", "127.0.0.1:8000", reuseaddr=True, reuseport=True))
    assert v.status == "depends"
    assert {f for _, f in v.deciding} == {"reuseaddr", "reuseport"}
    assert v.cases[0].ok and not v.cases[1].ok


def test_explain_unknown_flags_that_do_not_matter():
    snap = snapshot(sock("tcp", "127.0.0.1:8000", "LISTEN", pid=1, reuseaddr=None, reuseport=None))
    assert explain(snap, q("tcp", "127.0.0.2:8000")).status == "ok"          # no overlap at all
    v = explain(snap, q("tcp", "127.0.0.1:8000"))                             # fails whatever they are
    assert v.status == "fail" and "whatever" in v.cases[0].assumption


def test_explain_possibly_also_blocked():
    snap = snapshot(sock("tcp", "0.0.0.0:8000", "LISTEN", pid=1),
                    sock("tcp", "127.0.0.1:8000", "TIME_WAIT", peer="127.0.0.1:9"))
    v = explain(snap, q("tcp", "127.0.0.1:8000", reuseaddr=True))
    assert v.status == "fail"
    assert [b.row.state_text for b in _blockers(v.cases[0])] == ["LISTEN"]
    assert [b.row.state_text for b in v.also_possible] == ["TIME_WAIT"]


# ---- the caller --------------------------------------------------------------------------

def test_caller_identity_and_capabilities():
    bind80 = q("tcp", "127.0.0.1:80")
    assert explain(snapshot(euid=1000, caps=0), bind80).cases[0].error == "EACCES"
    v = explain(snapshot(euid=1000, caps=1 << 10), bind80)                   # CAP_NET_BIND_SERVICE
    assert v.status == "ok" and any("CAP_NET_BIND_SERVICE" in n for n in v.notes)
    v = explain(snapshot(euid=0, caps=0), bind80)
    assert v.status == "ok" and any("without CAP_NET_BIND_SERVICE" in n for n in v.notes)
    assert explain(snapshot(euid=0), q("tcp", "127.0.0.1:80", uid=1000)).cases[0].error == "EACCES"
    assert explain(snapshot(euid=1000, caps=1 << 10), q("tcp", "127.0.0.1:80", uid=1000)).status == "fail"


def test_sysctls_are_loaded():
    snap = snapshot(sysctls={"net.ipv4.ip_local_port_range": "40000\t40000",
                             "net.ipv4.ip_unprivileged_port_start": "80"})
    assert explain(snap, q("tcp", "127.0.0.1:80", uid=1000)).status == "ok"
    snap.sockets.append(sock("tcp", "127.0.0.1:40000", "BOUND", pid=1))
    v = explain(snap, q("tcp", "127.0.0.1:0"))
    assert v.status == "fail" and v.cases[0].reasons[0].rule == "ephemeral-exhausted"


def test_device_option():
    assert explain(standard(), q("tcp", "127.0.0.1:5000", device="eth0")).status == "fail"  # vs unbound: conflict
    v = explain(standard(), q("tcp", "127.0.0.1:5000", device="nosuch"))
    assert v.status == "fail" and v.cases[0].error == "ENODEV" and v.cases[0].stage == "setsockopt"
    snap = snapshot(sock("tcp", "10.0.0.2:8000", "LISTEN", pid=1, ifindex=2, device="eth0"))
    assert explain(snap, q("tcp", "10.0.0.2:8000", device="lo")).status == "ok"   # different devices


def test_v4_mapped_and_v6only_questions():
    snap = snapshot(sock("tcp", "[::ffff:127.0.0.1]:8000", "LISTEN", pid=1, v6only=False))
    assert explain(snap, q("tcp", "127.0.0.1:8000")).status == "fail"
    assert explain(snap, q("tcp", "[::]:8000", v6only=True)).status == "ok"
    assert explain(snap, q("tcp", "[::1]:8000")).status == "ok"


def test_load_maps_model_fds_to_host_sockets():
    snap = standard()
    ns, fd_map, notes = load(snap, "tcp")
    assert notes == []
    # the three members of the reuseport group are equivalent: one model socket stands for them
    assert sorted((cls[0].row.lport, len(cls)) for cls in fd_map.values()) == [
        (5000, 1), (7000, 3), (7100, 1), (40001, 1), (41000, 1)]
    ns.check_invariants()


# ---- questions ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("0.0.0.0:8080", (AF_INET, "0.0.0.0", 8080)), ("8080", (AF_INET, "0.0.0.0", 8080)),
    (":8080", (AF_INET, "0.0.0.0", 8080)), ("*:0", (AF_INET, "0.0.0.0", 0)),
    ("[::]:443", (AF_INET6, "::", 443)), ("[::ffff:127.0.0.1]:80", (AF_INET6, "::ffff:127.0.0.1", 80)),
    ("[fe80::1%eth0]:80", (AF_INET6, "fe80::1%eth0", 80)),
])
def test_parse_endpoint(text, want):
    assert parse_endpoint(text) == want


@pytest.mark.parametrize("text", ["", "1.2.3.4", "1.2.3.4:", "1.2.3.4:65536", "localhost:80", "::1:80",
                                  "[::1]80", "[::1]", "1.2.3.4%eth0:80", "[1.2.3.4]:80", "1.2.3.4:-1", "[zz]:1"])
def test_parse_endpoint_rejects(text):
    with pytest.raises(ValueError):
        parse_endpoint(text)


def test_question_validation():
    with pytest.raises(ValueError, match="TCP only"):
        q("udp", "1.2.3.4:5", listen=True)
    with pytest.raises(ValueError, match="IPv6"):
        q("tcp", "1.2.3.4:5", v6only=True)
    assert window_for(q("tcp", "1.2.3.4:65500")) == (65500, 65535)
    assert window_for(q("tcp", "1.2.3.4:0")) is None


# ---- ports -------------------------------------------------------------------------------

def test_ports_report_capacity_and_warnings():
    snap = snapshot(
        sock("tcp", "10.0.0.2:40005", "LISTEN", pid=1, command="app"),               # fixed port in range
        sock("tcp", "10.0.0.2:40000", "ESTAB", peer="10.0.0.1:80", pid=2),
        sock("tcp", "10.0.0.2:40001", "ESTAB", peer="10.0.0.1:80", pid=2),
        sock("tcp", "10.0.0.2:40002", "TIME_WAIT", peer="10.0.0.1:80"),
        sock("tcp", "10.0.0.2:40000", "ESTAB", peer="10.0.0.1:443", pid=2),          # shares 40000
        sock("tcp", "10.0.0.2:40005", "ESTAB", peer="10.0.0.9:1234", pid=1),         # accepted: not a client
        sock("udp", "0.0.0.0:40007", "UNCONN", pid=3),
        sysctls={"net.ipv4.ip_local_port_range": "40000\t40009", "net.ipv4.ip_local_reserved_ports": "40003",
                 "net.ipv4.tcp_tw_reuse": "2"})
    rep = ports_report(snap)
    assert rep.usable == 9
    free = {40004, 40006, 40007, 40008, 40009}
    assert rep.tcp["ports_free_in_range"] == len(free) and rep.tcp["time_wait"] == 1
    assert rep.udp == {"sockets": 1, "ports_in_use": 1, "ports_in_use_in_range": 1, "ports_free_in_range": 8}
    d = {x.text: x for x in rep.destinations}
    assert set(d) == {"10.0.0.1:80", "10.0.0.1:443"}
    assert (d["10.0.0.1:80"].live, d["10.0.0.1:80"].time_wait, d["10.0.0.1:80"].recyclable) == (2, 1, 0)
    assert d["10.0.0.1:80"].left == 5                 # free ports only: 40000-40002 are taken for :80
    assert d["10.0.0.1:443"].left == 5 + 2            # 40001 and 40002 can be shared with :80
    assert any("40005" in w and "inside ip_local_port_range" in w for w in rep.warnings)
    assert sum("more connections" in w for w in rep.warnings) == 2
    assert rep.as_dict()["ip_local_reserved_ports"] == "40003"


def test_ports_report_reserved_listener_is_no_warning_and_tw_reuse_on_loopback():
    snap = snapshot(sock("tcp", "127.0.0.1:40001", "LISTEN", pid=1),
                    sock("tcp", "127.0.0.1:40002", "TIME_WAIT", peer="127.0.0.1:5000"),
                    sysctls={"net.ipv4.ip_local_port_range": "40000\t40099",
                             "net.ipv4.ip_local_reserved_ports": "40000-40001"})
    rep = ports_report(snap)
    assert not any("inside" in w for w in rep.warnings)
    (d,) = rep.destinations
    assert d.recyclable == 1 and d.left == 97


def test_ipv6_scope_by_name_or_number():
    snap = snapshot(sock("tcp", "[fe80::1]:8000", "LISTEN", pid=1, ifindex=2, device="eth0", v6only=True))
    snap.addrs.append(Addr(AF_INET6, 0xFE80 << 112 | 1, 64, 2))
    assert explain(snap, q("tcp", "[fe80::1%eth0]:8000")).cases[0].error == "EADDRINUSE"
    assert explain(snap, q("tcp", "[fe80::1%2]:8001")).status == "ok"
    v = explain(snap, q("tcp", "[fe80::1%nosuch]:8000"))
    assert v.cases[0].error == "ENODEV" and "names no device" in v.cases[0].reasons[0].message


# ---- explain connect (no I/O: the route is given) ----------------------------------------

def _connect(snap, endpoint, route):
    from portspace.live._outbound import ConnectQuestion, explain_connect
    family, host, port = parse_endpoint(endpoint)
    return explain_connect(snap, ConnectQuestion(family, host, port), route)


def _route(kind="local", source="127.0.0.1", oif=1):
    from portspace.live._rtnl import Route
    from portspace.model._addr import parse_ipv4
    return Route(AF_INET, kind, parse_ipv4(source), oif, None)


SMALL = {"net.ipv4.ip_local_port_range": "40000\t40003", "net.ipv4.ip_unprivileged_port_start": "1024"}


def test_connect_counts_ports_per_destination():
    conns = [sock("tcp", f"127.0.0.1:{p}", "ESTABLISHED", peer="127.0.0.1:5000", pid=9) for p in (40000, 40001)]
    other = sock("tcp", "127.0.0.1:40002", "ESTABLISHED", peer="127.0.0.1:6000", pid=9)
    snap = snapshot(sock("tcp", "127.0.0.1:5000", "LISTEN", pid=1), *conns, other, sysctls=SMALL)
    v = _connect(snap, "127.0.0.1:5000", _route())
    assert v.status == "ok" and v.extra["ports"]["left"] == 2                   # 40002 shared, 40003 free
    assert v.extra["ports"]["held_by_connections_to_it"] == 2
    snap.sockets.append(sock("tcp", "127.0.0.1:40003", "BOUND", pid=2))         # never used by connect()
    snap.sockets.append(sock("tcp", "127.0.0.1:40002", "ESTABLISHED", peer="127.0.0.1:5000", pid=9))
    v = _connect(snap, "127.0.0.1:5000", _route())
    assert v.status == "fail" and v.cases[0].error == "EADDRNOTAVAIL" and v.exit_code == 1
    assert v.extra["ports"]["held_by_bind_or_listen"] == 1
    assert _connect(snap, "127.0.0.1:6000", _route()).cases[0].error == "ECONNREFUSED"   # ports ok, no listener


def test_connect_route_errors_and_remote_destinations():
    import errno
    snap = snapshot(sysctls=SMALL)
    v = _connect(snap, "203.0.113.1:80", OSError(errno.ENETUNREACH, "Network is unreachable"))
    assert v.status == "fail" and v.cases[0].error == "ENETUNREACH" and "no route" in v.cases[0].reasons[0].message
    v = _connect(snap, "10.0.0.7:443", _route("unicast", "10.0.0.2", 2))
    assert v.status == "ok" and v.extra["source_address"] == "10.0.0.2" and v.extra["route"]["device"] == "eth0"
    assert "cannot be known here" in v.cases[0].reasons[0].message
    with pytest.raises(NotImplementedError, match="blackhole"):
        _connect(snap, "10.0.0.7:443", _route("blackhole"))


def test_connect_recyclable_time_wait_depends_on_timestamps():
    tws = [sock("tcp", f"127.0.0.1:{p}", "TIME_WAIT", peer="127.0.0.1:5000") for p in range(40000, 40004)]
    snap = snapshot(sock("tcp", "127.0.0.1:5000", "LISTEN", pid=1), *tws, sysctls=SMALL)   # 42 s left: 18 s old
    v = _connect(snap, "127.0.0.1:5000", _route())
    assert v.status == "depends" and v.exit_code == 3 and [c.ok for c in v.cases] == [True, False]
    assert "timestamps" in v.depends_on
    snap.sysctls["net.ipv4.tcp_tw_reuse"] = "0"
    assert _connect(snap, "127.0.0.1:5000", _route()).status == "fail"
    snap.sysctls["net.ipv4.tcp_tw_reuse"] = "2"
    snap.sysctls["net.ipv4.tcp_timestamps"] = "0"                           # then none has timestamps
    assert _connect(snap, "127.0.0.1:5000", _route()).status == "fail"


def test_decode_route_answer():
    import struct
    from portspace.live import _rtnl
    attrs = (struct.pack("=HH", 8, _rtnl.RTA_OIF) + struct.pack("=I", 2) +
             struct.pack("=HH", 8, _rtnl.RTA_PREFSRC) + bytes([10, 0, 0, 2]) +
             struct.pack("=HH", 8, _rtnl.RTA_GATEWAY) + bytes([10, 0, 0, 1]))
    body = struct.pack("=BBBBBBBBI", 2, 32, 0, 0, 254, 0, 0, 1, 0) + attrs
    msg = struct.pack("=IHHII", 16 + len(body), _rtnl.RTM_NEWROUTE, 0, 1, 0) + body
    assert _rtnl.decode_route(msg) == _rtnl.Route(2, "unicast", 0x0A000002, 2, 0x0A000001)
    assert _rtnl.decode_route(msg[:20]) is None                       # truncated: no route, no traceback
    assert _rtnl.decode_route(b"") is None
    req = _rtnl.route_request(10, 1, oif=3, uid=1000)
    assert struct.unpack_from("=IHH", req) == (len(req), _rtnl.RTM_GETROUTE, 1)   # a request, not a dump


def test_connect_counts_agree_with_the_ports_report():
    """``explain connect`` and ``ports`` count the same rule (spec §5.3) two ways: one destination
    in detail, every destination at once.  Same numbers for every destination."""
    from portspace.live._outbound import count_ports
    socks = [sock("tcp", "127.0.0.1:5000", "LISTEN", pid=1), sock("tcp", "127.0.0.1:40005", "BOUND", pid=2)]
    for i, p in enumerate(range(40000, 40012)):
        dest = ("127.0.0.1:5000", "127.0.0.1:6000", "127.0.0.2:5000")[i % 3]
        socks.append(sock("tcp", f"127.0.0.1:{p}", "TIME_WAIT" if i % 4 == 0 else "ESTABLISHED", peer=dest, pid=9))
    snap = snapshot(*socks, sysctls={**SMALL, "net.ipv4.ip_local_port_range": "40000\t40015"})
    rep = ports_report(snap)
    assert len(rep.destinations) == 3
    for d in rep.destinations:
        c, _ = count_ports(snap, d.family, d.source, d.address, d.port)
        assert (c.left, c.to_dest, len(c.waiting)) == (d.left, d.live, d.time_wait), d
