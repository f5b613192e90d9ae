"""TCP byte streams on the model and the kernel: the same step tables on both (``any_ns``).

Every expected outcome below was first seen on Linux 6.18 in a private namespace; the kernel
run of each table keeps it that way.  Where a table checks who holds TIME_WAIT it binds the
old port again: EADDRINUSE while a remnant holds it, OK once nothing does.
"""
from __future__ import annotations

import pytest

from portspace.diff import failures, run_script

PAIR = """
        L = tcp4
        L bind 127.0.0.1 5100 -> OK
        L listen -> OK
        c = tcp4 range=40005-40005
        c connect 127.0.0.1 5100 -> OK
        a = L accept
        L close -> OK
"""

SCENARIOS = {
    "bytes flow both ways, recv takes at most bufsize": PAIR + """
        c send hello -> 5
        a recv 3 -> b'hel'
        a recv 10 -> b'lo'
        a send back -> 4
        a sendall again -> OK
        c recv 100 -> b'backagain'
        c timeout 0
        c recv 10 -> EAGAIN
        c recvfrom 10 -> EAGAIN
        c send '' -> 0
    """,
    "MSG_PEEK leaves the bytes queued; recvfrom names no peer": PAIR + """
        c send abcdef -> 6
        a recv 4 peek -> b'abcd'
        a recv 2 peek -> b'ab'
        a recvfrom 10 -> (b'abcdef', None)
    """,
    "send on sockets that never connected: EPIPE; recv: ENOTCONN": """
        t = tcp4
        t send x -> EPIPE
        t sendall x -> EPIPE
        t send '' -> EPIPE
        t sendto x 127.0.0.1 9 -> EPIPE
        t recv 1 -> ENOTCONN
        t recvfrom 0 -> ENOTCONN
        t recv 0 -> b''
        b = tcp4
        b bind 127.0.0.1 0 -> OK
        b send x -> EPIPE
        b recv 1 -> ENOTCONN
        L = tcp4
        L bind 127.0.0.1 5101 -> OK
        L listen -> OK
        L send x -> EPIPE
        L recv 1 -> ENOTCONN
        L recv 1 oob -> ENOTCONN
        t recv 1 oob -> EINVAL
    """,
    "shutdown(SHUT_WR): EPIPE on our side, b'' on the peer's, the other direction still works": PAIR + """
        c shutdown wr -> OK
        c send x -> EPIPE
        c send '' -> EPIPE
        a recv 10 -> b''
        a recv 10 -> b''
        a send still -> 5
        c recv 10 -> b'still'
    """,
    "shutdown(SHUT_RD): b'' once the queue is empty, but bytes that arrive are still read": PAIR + """
        c send early -> 5
        a shutdown rd -> OK
        a recv 10 -> b'early'
        a recv 10 -> b''
        c send late -> 4
        a recv 10 -> b'late'
        a recv 10 -> b''
    """,
    "the peer closed: b'', the first send succeeds, the reset makes the next EPIPE": PAIR + """
        a close -> OK
        c recv 10 -> b''
        c send x -> 1
        c error -> 32
        c send x -> EPIPE
        c recv 10 -> b''
    """,
    "the peer closed and the reset is reported by send after the recv": PAIR + """
        a close -> OK
        c send x -> 1
        c recv 10 -> b''
        c send x -> EPIPE
        c error -> 0
    """,
    "close() with unread data resets: ECONNRESET once, then b'' and EPIPE; no TIME_WAIT anywhere": PAIR + """
        a send data -> 4
        c send unread -> 6
        a close -> OK
        c recv 2 -> b'da'
        c recv 10 -> b'ta'
        c recv 10 -> ECONNRESET
        c recv 10 -> b''
        c send x -> EPIPE
        c close -> OK
        s = tcp4
        s bind 127.0.0.1 5100 -> OK
        t = tcp4
        t bind 127.0.0.1 40005 -> OK
    """,
    "the reset is reported by send first": PAIR + """
        c send unread -> 6
        a close -> OK
        c send x -> ECONNRESET
        c send x -> EPIPE
        c recv 10 -> b''
        c error -> 0
    """,
    "close() with unread data after the peer's FIN: reset, the peer in FIN_WAIT2 sees ECONNRESET": PAIR + """
        c send unread -> 6
        c shutdown wr -> OK
        a close -> OK
        c recv 10 -> ECONNRESET
        c send x -> EPIPE
        c close -> OK
        t = tcp4
        t bind 127.0.0.1 40005 -> OK
        s = tcp4
        s bind 127.0.0.1 5100 -> OK
    """,
    "close() with unread data kills the peer's orphaned FIN_WAIT2 remnant": PAIR + """
        c send unread -> 6
        c close -> OK
        t = tcp4
        t bind 127.0.0.1 40005 -> EADDRINUSE
        a close -> OK
        u = tcp4
        u bind 127.0.0.1 40005 -> OK
    """,
    "a FIN_WAIT2 peer with its reading side shut resets on data (EPIPE here, ECONNRESET there)": PAIR + """
        c shutdown rdwr -> OK
        a send data -> 4
        a error -> 32
        c error -> 104
        c recv 10 -> b''
    """,
    "close() with unread data after its own SHUT_WR: the peer in CLOSE_WAIT gets EPIPE": PAIR + """
        a send x -> 1
        c shutdown wr -> OK
        c close -> OK
        a error -> 32
        a recv 10 -> b''
    """,
    "a reset accepted child releases the listener's port at once (sk_clone_lock drops BINDPORT)": PAIR + """
        c shutdown rdwr -> OK
        a send d -> 1
        s = tcp4
        s bind 127.0.0.1 5100 -> OK
        a name -> 127.0.0.1:5100
    """,
    "all data read, then close: the normal FIN exchange and TIME_WAIT on the first closer": PAIR + """
        c send abc -> 3
        a recv 10 -> b'abc'
        c close -> OK
        a close -> OK
        t = tcp4
        t bind 127.0.0.1 40005 -> EADDRINUSE
    """,
    "MSG_WAITALL: all of bufsize when it is there; less at the end of the stream or without blocking": PAIR + """
        c send abcdef -> 6
        a recv 4 waitall -> b'abcd'
        a timeout 0
        a recv 10 waitall -> b'ef'
        a timeout none
        c send xy -> 2
        c shutdown wr -> OK
        a recv 10 waitall -> b'xy'
    """,
    "MSG_DONTWAIT on a blocking socket: EAGAIN": PAIR + """
        a recv 10 dontwait -> EAGAIN
        a recvfrom 0 dontwait -> EAGAIN
        c send abc -> 3
        a recvfrom 0 -> (b'', None)
        a recv 10 dontwait -> b'abc'
    """,
    "error queue: EAGAIN, even on a blocking socket": PAIR + """
        a recv 10 errqueue -> EAGAIN
    """,
    "a socket connected to itself reads what it sends; closing it with unread data leaves no TIME_WAIT": """
        s = tcp4
        s bind 127.0.0.1 5102 -> OK
        s connect 127.0.0.1 5102 -> OK
        s send me -> 2
        s recv 10 -> b'me'
        s send unread -> 6
        s close -> OK
        t = tcp4
        t bind 127.0.0.1 5102 -> OK
    """,
    "data to a queued connection is read after accept(); a listener close resets it": """
        L = tcp4
        L bind 127.0.0.1 5103 -> OK
        L listen -> OK
        c = tcp4
        c connect 127.0.0.1 5103 -> OK
        c send early -> 5
        a = L accept
        a recv 10 -> b'early'
        d = tcp4
        d connect 127.0.0.1 5103 -> OK
        d send pending -> 7
        L close -> OK
        d recv 10 -> ECONNRESET
        d send x -> EPIPE
    """,
    "a queued connection reset by its listener's close: the next connect() reports ECONNRESET": """
        L = tcp4
        L bind 127.0.0.1 5109 -> OK
        L listen -> OK
        d = tcp4 nonblock
        d connect 127.0.0.1 5109 -> EINPROGRESS
        L close -> OK
        d connect 127.0.0.1 5109 -> ECONNRESET
        d connect 127.0.0.1 5109 -> EINPROGRESS
        d error -> 111
    """,
    "shutdown() of a reset, still-connecting socket: connect() is EINVAL from then on": """
        L = tcp4
        L bind 127.0.0.1 5110 -> OK
        L listen -> OK
        d = tcp4 nonblock
        d connect 127.0.0.1 5110 -> EINPROGRESS
        L close -> OK
        d shutdown rd -> ENOTCONN
        d connect 127.0.0.1 5110 -> EINVAL
    """,
    "shutdown(SHUT_WR) before connect() sticks: the connection cannot send": """
        L = tcp4
        L bind 127.0.0.1 5104 -> OK
        L listen -> OK
        c = tcp4
        c shutdown wr -> ENOTCONN
        c connect 127.0.0.1 5104 -> OK
        c send x -> EPIPE
    """,
    "a refused blocking connect leaves ENOTCONN and EPIPE; a later connect carries data": """
        c = tcp4
        c bind 127.0.0.1 5106 -> OK
        c connect 127.0.0.1 5105 -> ECONNREFUSED
        c recv 10 -> ENOTCONN
        c send x -> EPIPE
        L = tcp4
        L bind 127.0.0.1 5105 -> OK
        L listen -> OK
        c connect 127.0.0.1 5105 -> OK
        c send x -> 1
        a = L accept
        a recv 10 -> b'x'
    """,
    "a refused non-blocking connect: its error is reported by recv, then b''": """
        c = tcp4 nonblock
        c connect 127.0.0.1 5107 -> EINPROGRESS
        c select -> rw-
        c recv 10 -> ECONNREFUSED
        c recv 10 -> b''
        c send x -> EPIPE
    """,
    "select(): readiness of fresh, listening, connected, half-closed and reset sockets": """
        f = tcp4
        f select -> rw-
        L = tcp4
        L bind 127.0.0.1 5108 -> OK
        L listen -> OK
        L select -> ---
        c = tcp4
        c connect 127.0.0.1 5108 -> OK
        L select -> r--
        c select -> -w-
        a = L accept
        L select -> ---
        a select -> -w-
        c send x -> 1
        a select -> rw-
        a recv 1 -> b'x'
        a select -> -w-
        c shutdown wr -> OK
        a select -> rw-
        c select -> -w-
        c close -> OK
        a select -> rw-
        a send x -> 1
        a select -> rw-
    """,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_stream_scenario(any_ns, name):
    results = run_script(any_ns, SCENARIOS[name])
    assert not failures(results), "\n".join(failures(results))
