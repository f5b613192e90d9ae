"""Explanations: the rule, the blocking socket, and fixes that were checked, on the model."""
from __future__ import annotations

import socket

import pytest

import portspace

SOL, RA, RP = socket.SOL_SOCKET, socket.SO_REUSEADDR, socket.SO_REUSEPORT


def tcp(ns, *opts, uid=None):
    def make():
        s = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
        for o in opts:
            s.setsockopt(SOL, o, 1)
        return s
    if uid is None:
        return make()
    with ns.user(uid):
        return make()


def refusal(fn):
    with pytest.raises(OSError) as ei:
        fn()
    return ei.value


def test_reasons_name_the_blocker_and_rule():
    ns = portspace.Namespace()
    a = tcp(ns)
    a.bind(("0.0.0.0", 8080))
    a.listen()
    b = tcp(ns)
    e = refusal(lambda: b.bind(("127.0.0.1", 8080)))
    assert e.errno == 98 and type(e) is OSError
    (r,) = e.reasons
    assert r.rule == "overlap-without-reuse"
    assert r.blocker.fd == a.fileno() and r.blocker.state == "LISTEN" and r.blocker.address == "0.0.0.0"
    assert any("closed" in f for f in r.fixes)
    assert any("127.0.0.2" not in f for f in r.fixes)
    # SO_REUSEADDR cannot help against a listener, so it is not offered
    assert not any(f.startswith("SO_REUSEADDR") for f in r.fixes)
    assert any(f.startswith("SO_REUSEPORT") for f in r.fixes)


def test_reasons_reuseaddr_vs_listener():
    ns = portspace.Namespace()
    a = tcp(ns, RA)
    a.bind(("127.0.0.1", 8080))
    a.listen()
    b = tcp(ns, RA)
    (r,) = refusal(lambda: b.bind(("127.0.0.1", 8080))).reasons
    assert r.rule == "tcp-reuseaddr-vs-listener"


def test_reasons_reuseport_uid():
    ns = portspace.Namespace()
    a = tcp(ns, RP)
    a.bind(("127.0.0.1", 8080))
    b = tcp(ns, RP, uid=1000)
    (r,) = refusal(lambda: b.bind(("127.0.0.1", 8080))).reasons
    assert r.rule == "reuseport-same-uid"
    assert "uid 1000 vs uid 0" in r.message
    assert any("created by uid 0" in f for f in r.fixes)


def test_reasons_are_a_snapshot():
    """Reading reasons after the blocker closed still explains the refusal as it was."""
    ns = portspace.Namespace()
    a = tcp(ns)
    a.bind(("127.0.0.1", 9000))
    b = tcp(ns)
    e = refusal(lambda: b.bind(("127.0.0.1", 9000)))
    a.close()
    assert e.reasons[0].blocker.port == 9000


def test_reasons_privileged_port_and_not_local():
    ns = portspace.Namespace()
    s = tcp(ns)
    with ns.user(1000):
        e = refusal(lambda: s.bind(("127.0.0.1", 80)))
    assert type(e) is PermissionError and e.reasons[0].rule == "privileged-port"
    e = refusal(lambda: s.bind(("10.1.2.3", 5000)))
    assert e.errno == 99 and e.reasons[0].rule == "address-not-local"


def test_explain_changes_nothing():
    ns = portspace.Namespace(seed=3)
    a = tcp(ns)
    a.bind(("127.0.0.1", 7000))
    b = tcp(ns)
    before = str(ns.tables())
    ex = ns.explain(b, "bind", ("127.0.0.1", 7000))
    assert not ex.ok and ex.error == "EADDRINUSE" and ex.reasons[0].blocker.fd == a.fileno()
    ok = ns.explain(b, "bind", ("127.0.0.2", 7000))
    assert ok.ok and ok.reasons[0].rule == "no-overlap"
    assert str(ns.tables()) == before
    b.bind(("127.0.0.1", 0))  # the RNG was not consumed by explain(): same as a twin namespace
    twin = portspace.Namespace(seed=3)
    ta = tcp(twin)
    ta.bind(("127.0.0.1", 7000))
    tb = tcp(twin)
    tb.bind(("127.0.0.1", 0))
    assert b.getsockname() == tb.getsockname()


def test_explain_fast_path_admission():
    """Spec §3.3 F2: the pairwise rule would refuse, the bucket admits -- and says so."""
    ns = portspace.Namespace()
    a = tcp(ns, RP)
    a.bind(("127.0.0.1", 7001))
    a.setsockopt(SOL, RP, 0)
    b = tcp(ns, RP)
    ex = ns.explain(b, "bind", ("127.0.0.1", 7001))
    assert ex.ok and ex.reasons[0].rule == "bucket-fast-path"


@pytest.mark.parametrize("fix_kind", ["reuseaddr", "reuseport", "close", "address", "port"])
def test_offered_fixes_work(fix_kind):
    """Each kind of fix offered for a plain conflict, applied, makes the bind succeed."""
    ns = portspace.Namespace()
    a = tcp(ns)
    a.bind(("127.0.0.1", 7002))
    b = tcp(ns)
    (r,) = refusal(lambda: b.bind(("127.0.0.1", 7002))).reasons
    text = " | ".join(r.fixes)
    addr = ("127.0.0.1", 7002)
    if fix_kind == "reuseaddr":
        assert "SO_REUSEADDR" in text
        a.setsockopt(SOL, RA, 1)
        b.setsockopt(SOL, RA, 1)
    elif fix_kind == "reuseport":
        assert "SO_REUSEPORT" in text
        a.setsockopt(SOL, RP, 1)
        b.setsockopt(SOL, RP, 1)
    elif fix_kind == "close":
        assert f"#{a.fileno()} were closed" in text
        a.close()
    elif fix_kind == "address":
        assert "127.0.0.2:7002 instead" in text
        addr = ("127.0.0.2", 7002)
    else:
        assert "port 7003" in text
        addr = ("127.0.0.1", 7003)
    b.bind(addr)


def test_time_wait_blocker_explained_with_time_left():
    """The brief's example: a remnant of the old server, its time left, its frozen flags."""
    from portspace.diff import run_script
    ns = portspace.Namespace()
    run_script(ns, """
        L = tcp4
        L bind 0.0.0.0 8080
        L listen
        c = tcp4
        c connect 127.0.0.1 8080
        a = L accept
        a close
        c close
        L close
    """)
    ns.advance(18.8)
    n = tcp(ns, RA)
    (r,) = refusal(lambda: n.bind(("0.0.0.0", 8080))).reasons
    assert r.rule == "time-wait-kept-old-flags"
    assert r.blocker.time_wait and abs(r.blocker.time_left - 41.2) < 1e-6
    assert "41.2 s left" in r.message and "does not help" in r.message
    assert any("waited 41.2 s" in f for f in r.fixes)
    assert not any(f.startswith("SO_REUSEADDR") for f in r.fixes)
    ns.advance(41.2)
    n.bind(("0.0.0.0", 8080))
