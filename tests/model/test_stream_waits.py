"""What the single-threaded model does where the kernel would wait: Deadlock for a blocking
call that could never complete, TimeoutError with a timeout, select()'s virtual-clock wait,
and OutOfScope where the model stops (buffer limit, foreign objects, untested flags)."""
from __future__ import annotations

import socket

import pytest

import portspace
from portspace.model._errors import Deadlock
from portspace.model._stream import UNREAD_LIMIT


@pytest.fixture
def pair():
    ns = portspace.Namespace(seed=3)
    lsk = ns.socket()
    lsk.bind(("127.0.0.1", 5500))
    lsk.listen()
    c = ns.socket()
    c.connect(("127.0.0.1", 5500))
    a, _ = lsk.accept()
    yield ns, lsk, c, a
    for s in (lsk, c, a):
        s.close()
    ns.check_invariants()


def test_blocking_recv_with_nothing_queued_is_a_deadlock(pair):
    ns, lsk, c, a = pair
    with pytest.raises(Deadlock, match=r"blocking recv\(\) on socket #\d+ would wait forever"):
        a.recv(10)
    c.send(b"ab")
    with pytest.raises(Deadlock):
        a.recv(10, socket.MSG_WAITALL)   # two bytes are there, ten were asked for
    assert a.recv(10) == b"ab"          # nothing was consumed by the failed call


def test_timeouts_answer_timed_out_without_changing_state(pair):
    ns, lsk, c, a = pair
    a.settimeout(0.5)
    with pytest.raises(TimeoutError, match="timed out"):
        a.recv(10)
    lsk.settimeout(0.5)
    with pytest.raises(TimeoutError):
        lsk.recv(1)        # CPython polls the listener first: never readable for data
    with pytest.raises(TimeoutError):
        lsk.send(b"x")
    c.send(b"x")
    assert a.recv(10) == b"x"


def test_select_deadlock_and_virtual_wait(pair):
    ns, lsk, c, a = pair
    with pytest.raises(Deadlock, match="select"):
        ns.select([a, lsk], [], [])
    before = ns.now
    assert ns.select([a], [], [a], 2.5) == ([], [], [])
    assert ns.now == before + 2.5
    assert ns.select([a], [], [], 0) == ([], [], [])
    assert ns.now == before + 2.5
    c.send(b"x")
    r, w, x = ns.select((a, a), iter([c]), [], None)
    assert r == [a, a] and w == [c] and x == []


def test_select_wait_lets_timers_fire(pair):
    ns, lsk, c, a = pair
    port = c.getsockname()[1]
    c.close()
    a.close()               # LAST_ACK -> the client's remnant goes to TIME_WAIT for 60 s
    probe = ns.socket()
    with pytest.raises(OSError) as ei:
        probe.bind(("127.0.0.1", port))
    assert ei.value.errno == 98
    assert ns.select([lsk], [], [], 61) == ([], [], [])
    probe.bind(("127.0.0.1", port))   # the remnant expired during the wait
    probe.close()


def test_select_rejects_what_it_cannot_wait_on(pair):
    ns, lsk, c, a = pair
    other = portspace.Namespace(seed=1)
    foreign = other.socket()
    with pytest.raises(portspace.OutOfScope, match="only this namespace's model sockets"):
        ns.select([foreign], [], [], 0)
    real = socket.socket()
    try:
        with pytest.raises(portspace.OutOfScope):
            ns.select([], [real], [], 0)
    finally:
        real.close()
    with pytest.raises(OSError) as ei:
        ns.select([900], [], [], 0)
    assert ei.value.errno == 9
    assert ns.select([a.fileno()], [c.fileno()], [], 0) == ([], [c.fileno()], [])
    foreign.close()


def test_unread_limit_is_out_of_scope_not_eagain(pair):
    ns, lsk, c, a = pair
    c.setblocking(False)
    c.sendall(b"x" * UNREAD_LIMIT)
    with pytest.raises(portspace.OutOfScope, match="send-buffer limit"):
        c.send(b"y")
    assert len(a.recv(UNREAD_LIMIT)) == UNREAD_LIMIT
    assert c.send(b"y") == 1


@pytest.mark.parametrize("flag, what", [(socket.MSG_OOB, "MSG_OOB"), (socket.MSG_MORE, "MSG_MORE")])
def test_send_flags_out_of_scope(pair, flag, what):
    ns, lsk, c, a = pair
    with pytest.raises(portspace.OutOfScope, match=what):
        c.send(b"z", flag)


def test_recv_trunc_out_of_scope(pair):
    ns, lsk, c, a = pair
    with pytest.raises(portspace.OutOfScope, match="MSG_TRUNC"):
        a.recv(1, socket.MSG_TRUNC)
