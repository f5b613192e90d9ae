"""Issue 6 acceptance: a tiny echo server and its clients, written against the stdlib socket
API (non-blocking sockets and a select loop), run through model sockets and through real
sockets in a private namespace with identical transcripts.

:func:`echo_session` knows nothing of portspace: it gets a socket factory and a select
function -- ``ns.socket`` / ``ns.select`` for the model, ``KernelNamespace.socket`` /
``KernelNamespace.select`` (``select.select`` in the namespace's child) for the kernel -- and
records every event it sees.  Client ports are ephemeral (the kernel's choice depends on its
secret keys), so the transcript names clients by their index and shows their port only as
"in the ephemeral range".
"""
from __future__ import annotations

import errno
import socket
from typing import Any, Callable

import pytest

from ..conftest import make_ns

pytestmark = pytest.mark.kernel

PORT = 5300


def echo_session(new_socket: Callable[..., Any], select: Callable[..., Any],
                 messages: list[list[bytes]], chunk: int = 4096, family: int = socket.AF_INET) -> list[tuple]:
    """Run the echo server and one client per entry of ``messages`` (each client sends its
    messages one at a time and waits for each echo), until every client has seen the server
    close.  Returns the transcript: one tuple per event, in the order the loop saw them."""
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    log: list[tuple] = []
    server = new_socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, PORT))
    server.listen(8)
    server.setblocking(False)
    conns: dict[Any, bytearray] = {}       # server side: connection -> bytes to echo back
    eof: set[Any] = set()                  # server side: connections whose client finished
    names: dict[int, int] = {}             # client port -> client index
    clients = []
    for i, msgs in enumerate(messages):
        c = new_socket(family, socket.SOCK_STREAM)
        c.setblocking(False)
        rc = c.connect_ex((host, PORT))
        port = c.getsockname()[1]
        names[port] = i
        log.append(("client connect", i, errno.errorcode.get(rc, rc), 32768 <= port <= 60999))
        clients.append({"sock": c, "todo": list(msgs), "want": b"", "got": b"", "state": "connecting"})
    rounds = 0
    while any(st["state"] != "done" for st in clients):
        rounds += 1
        assert rounds < 200, "echo loop does not finish"
        rlist = [server] + list(conns) + [st["sock"] for st in clients if st["state"] in ("waiting", "closing")]
        wlist = [conn for conn, buf in conns.items() if buf] + \
                [st["sock"] for st in clients if st["state"] in ("connecting", "idle")]
        readable, writable, _ = select(rlist, wlist, [], 5.0)
        log.append(("select", len(readable), len(writable)))
        for s in readable:
            if s is server:
                conn, addr = server.accept()
                conn.setblocking(False)
                conns[conn] = bytearray()
                log.append(("server accept", names[addr[1]], conn.getsockname()[1]))
            elif s in conns:
                who = names[s.getpeername()[1]]
                data = s.recv(chunk)
                log.append(("server recv", who, data))
                if data:
                    conns[s] += data
                else:
                    eof.add(s)
            else:
                st = next(st for st in clients if st["sock"] is s)
                i = clients.index(st)
                data = s.recv(chunk)
                log.append(("client recv", i, data))
                if st["state"] == "closing":
                    if not data:
                        s.close()
                        st["state"] = "done"
                    continue
                st["got"] += data
                if st["got"] == st["want"]:
                    st["got"] = st["want"] = b""
                    st["state"] = "idle"
        for s in writable:
            if s in conns:
                buf = conns[s]
                n = s.send(bytes(buf))
                log.append(("server send", names[s.getpeername()[1]], n))
                del buf[:n]
                continue
            st = next(st for st in clients if st["sock"] is s)
            i = clients.index(st)
            if st["state"] == "connecting":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                log.append(("client connected", i, err, s.getpeername()[1]))
                st["state"] = "idle"
            if st["todo"]:
                msg = st["todo"].pop(0)
                n = s.send(msg)
                log.append(("client send", i, n))
                st["want"], st["state"] = msg[:n], "waiting"
            else:
                s.shutdown(socket.SHUT_WR)
                log.append(("client shutdown", i))
                st["state"] = "closing"
        for conn in [c for c in eof if not conns[c]]:
            log.append(("server close", names[conn.getpeername()[1]]))
            conn.close()
            del conns[conn]
            eof.discard(conn)
    server.close()
    log.append(("rounds", rounds))
    return log


CASES = {
    "one client, one message": [[b"hello"]],
    "three clients, several messages each": [[b"a", b"bb", b"ccc"], [b"one", b"two"], [b"x" * 3000]],
    "messages larger than the server's read size": [[b"y" * 10000, b"z" * 5000]],
    "a client that sends nothing": [[], [b"late"]],
}


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["v4", "v6"])
@pytest.mark.parametrize("name", list(CASES))
def test_echo_same_transcript(name: str, family: int) -> None:
    chunk = 4096
    model = make_ns("model")
    got = echo_session(model.socket, model.select, CASES[name], chunk, family)
    assert model.socket_count() == 0
    model.check_invariants()
    kernel = make_ns("kernel")
    try:
        want = echo_session(kernel.socket, kernel.select, CASES[name], chunk, family)
        assert kernel.socket_count() == 0
    finally:
        kernel.close()
    assert got == want
    # the transcript is about the echo: every message came back whole
    for i, msgs in enumerate(CASES[name]):
        echoed = b"".join(ev[2] for ev in got if ev[0] == "client recv" and ev[1] == i)
        assert echoed == b"".join(msgs)


def test_echo_transcript_sees_a_difference() -> None:
    """The comparison can fail: a select that reports writability one round late changes the
    transcript (same namespace kind, same messages)."""
    honest_ns = make_ns("model")
    honest = echo_session(honest_ns.socket, honest_ns.select, [[b"hi"]])
    skewed_ns = make_ns("model")

    def late_select(r, w, x, timeout):
        rr, ww, xx = skewed_ns.select(r, w, x, timeout)
        return rr, (ww[:0] if rr else ww), xx
    skewed = echo_session(skewed_ns.socket, late_select, [[b"hi"]])
    assert honest != skewed
