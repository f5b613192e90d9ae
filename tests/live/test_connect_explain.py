"""``portspace explain connect`` on a real kernel, each verdict cross-checked by making the
connect() in the same private namespace: the route errors (no route, blackhole, unreachable,
prohibit), a listener or none on a local destination, a remote destination behind a port-less
bridge (the SYN goes nowhere: EINPROGRESS, from the route's source address), the ephemeral range
exhausted for one destination but not for another, and TIME_WAIT remnants that connect() may
recycle (tcp_tw_reuse) -- where whether they used TCP timestamps decides, exit 3.

Loopback and a port-less bridge in a namespace of our own: nothing leaves it."""
from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from portspace.live import KernelNamespace, probe

_reason = probe()
if _reason is not None:
    pytest.skip(f"live kernel namespace unavailable: {_reason}", allow_module_level=True)

IP = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin:" + os.environ.get("PATH", ""))
if IP is None:
    pytest.skip("the `ip` program (iproute2) is not installed: routes cannot be set up", allow_module_level=True)

pytestmark = pytest.mark.kernel

from .test_live_host import cli  # noqa: E402 - ``portspace ARGV`` in the namespace's child


def ip(*args):
    subprocess.run([IP, *args], check=True, capture_output=True)


def outcome(kns, host, port, family=socket.AF_INET, blocking=True, keep=None):
    """What the kernel answers to a new socket's connect(): "OK", "EINPROGRESS" or the errno
    name, and the local address it got.  The socket stays open in ``keep`` (or is closed)."""
    s = kns.socket(family)
    if not blocking:
        s.setblocking(False)
    else:
        s.settimeout(5)
    try:
        s.connect((host, port))
        result = "OK"
    except OSError as e:
        result = errno.errorcode[e.errno] if e.errno else type(e).__name__
    local = s.getsockname()
    if keep is None or result not in ("OK", "EINPROGRESS"):
        s.close()
    else:
        keep.append(s)
    return result, local


def explain(kns, *argv):
    code, out, err = kns.run(cli, ["explain", "connect", *argv, "--json"])
    assert code in (0, 1, 3), (code, out, err)
    d = json.loads(out)
    return code, d


@pytest.fixture
def kns():
    with KernelNamespace() as k:
        k.add_device("br0")
        k.run(ip, "addr", "add", "10.9.0.1/24", "dev", "br0")
        for kind, net in (("blackhole", "198.51.100.0/24"), ("unreachable", "198.51.101.0/24"),
                          ("prohibit", "198.51.102.0/24")):
            k.run(ip, "route", "add", kind, net)
        k.sysctl("net.ipv4.ip_local_port_range", "40000 40009")
        lst = k.socket()
        lst.bind(("127.0.0.1", 5000))
        lst.listen(64)
        k.held = [lst]
        yield k


@pytest.mark.parametrize("dest,code,error,real", [
    ("127.0.0.1:5000", 0, None, "OK"),
    ("127.0.0.1:5001", 1, "ECONNREFUSED", "ECONNREFUSED"),
    ("203.0.113.9:80", 1, "ENETUNREACH", "ENETUNREACH"),
    ("198.51.100.1:80", 1, "EINVAL", "EINVAL"),
    ("198.51.101.1:80", 1, "EHOSTUNREACH", "EHOSTUNREACH"),
    ("198.51.102.1:80", 1, "EACCES", "EACCES"),
])
def test_verdict_is_the_kernels(kns, dest, code, error, real):
    got, d = explain(kns, dest)
    assert (got, d["cases"][0]["error"]) == (code, error)
    host, port = dest.rsplit(":", 1)
    assert outcome(kns, host, int(port))[0] == real


def test_remote_destination_gets_the_routes_source_address(kns):
    code, d = explain(kns, "10.9.0.5:443")
    assert code == 0 and d["source_address"] == "10.9.0.1" and d["route"]["device"] == "br0"
    assert d["ports"]["left"] == 10
    result, local = outcome(kns, "10.9.0.5", 443, blocking=False, keep=kns.held)
    assert result == "EINPROGRESS" and local[0] == "10.9.0.1" and 40000 <= local[1] <= 40009


@pytest.mark.parametrize("dest,other", [(("127.0.0.1", 5000), ("127.0.0.1", 5000)),
                                        (("10.9.0.5", 443), ("10.9.0.6", 443))])
def test_range_exhausted_for_one_destination_not_for_another(kns, dest, other):
    """Ten ports: ten connections to one destination use them all (EADDRNOTAVAIL, on both sides);
    another destination can still share every one of them."""
    remote = dest[0].startswith("10.")
    if not remote:
        kns.held.append(kns.socket())
        kns.held[-1].bind(("127.0.0.1", 5002))
        kns.held[-1].listen(64)
        other = ("127.0.0.1", 5002)
    for _ in range(10):
        assert outcome(kns, *dest, blocking=not remote, keep=kns.held)[0] == ("EINPROGRESS" if remote else "OK")
    code, d = explain(kns, f"{dest[0]}:{dest[1]}")
    assert code == 1 and d["cases"][0]["error"] == "EADDRNOTAVAIL"
    assert d["ports"]["held_by_connections_to_it"] == 10 and d["ports"]["left"] == 0
    assert d["cases"][0]["reasons"][0]["more_blockers"] == 9                  # one described, 9 counted
    assert outcome(kns, *dest, blocking=not remote)[0] == "EADDRNOTAVAIL"
    # another destination: every port is shared, which is allowed because they came from
    # connect() -- which the kernel does not report: exit 3, and the kernel takes the first case
    code, d = explain(kns, f"{other[0]}:{other[1]}")
    assert code == 3 and d["ports"]["shared_with_other_destinations"] == 10 and d["ports"]["free"] == 0
    assert [(c["ok"], c["error"]) for c in d["cases"]] == [(True, None), (False, "EADDRNOTAVAIL")]
    assert "connect() or bind()" in d["depends_on"]
    assert outcome(kns, *other, blocking=not remote)[0] == ("EINPROGRESS" if remote else "OK")


def test_ports_bound_before_connect_are_never_shared(kns):
    """The same ten connections, each bound with bind(127.0.0.1, 0) before connect() (the
    envoy upstream_bind_config case, peers note §5.7): the second case happens -- another
    destination gets EADDRNOTAVAIL too.  From the host the two are indistinguishable: exit 3."""
    other = kns.socket()
    other.bind(("127.0.0.1", 5002))
    other.listen(64)
    kns.held.append(other)
    for _ in range(10):
        c = kns.socket()
        c.bind(("127.0.0.1", 0))
        c.connect(("127.0.0.1", 5000))
        kns.held.append(c)
    code, d = explain(kns, "127.0.0.1:5002")
    assert code == 3 and [c["error"] for c in d["cases"]] == [None, "EADDRNOTAVAIL"]
    assert outcome(kns, "127.0.0.1", 5002)[0] == "EADDRNOTAVAIL"


def test_a_listener_on_a_port_of_the_range_is_never_used(kns):
    """A bound socket on a port of the range: connect() never takes it, for any destination."""
    for port in range(40000, 40010):
        s = kns.socket()
        s.bind(("127.0.0.2", port))
        kns.held.append(s)
    code, d = explain(kns, "127.0.0.1:5000")
    assert code == 1 and d["ports"]["held_by_bind_or_listen"] == 10
    assert outcome(kns, "127.0.0.1", 5000)[0] == "EADDRNOTAVAIL"


@pytest.mark.parametrize("reuse,code,real", [("2", 3, "OK"), ("0", 1, "EADDRNOTAVAIL")])
def test_time_wait_remnants_decide(kns, reuse, code, real):
    """The range held by TIME_WAIT remnants to the destination (the client closed first): with
    tcp_tw_reuse=2 (loopback) they may be recycled after 1 s if they used TCP timestamps, which
    the kernel does not report -- exit 3 with both cases; the kernel recycles (timestamps are on
    by default).  With tcp_tw_reuse=0 they hold their ports."""
    kns.sysctl("net.ipv4.ip_local_port_range", "40000 40001")
    kns.sysctl("net.ipv4.tcp_tw_reuse", reuse)
    lst = kns.held[0]
    for _ in range(2):
        c = kns.socket()
        c.connect(("127.0.0.1", 5000))
        a, _ = lst.accept()
        c.close()
        a.close()
    time.sleep(1.3)                                         # past tcp_tw_reuse_delay (1000 ms)
    got, d = explain(kns, "127.0.0.1:5000")
    assert got == code
    assert d["ports"]["time_wait_to_it"] == 2 and d["ports"]["left"] == 0
    if code == 3:
        assert [c["ok"] for c in d["cases"]] == [True, False] and "timestamps" in d["depends_on"]
    assert outcome(kns, "127.0.0.1", 5000)[0] == real


def test_ipv6_and_a_dual_stack_listener(kns):
    s = kns.socket(socket.AF_INET6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", 6000))
    s.listen(8)
    kns.held.append(s)
    for dest, fam, host in (("[::1]:6000", socket.AF_INET6, "::1"), ("127.0.0.1:6000", socket.AF_INET, "127.0.0.1")):
        code, d = explain(kns, dest)
        assert code == 0, d
        assert outcome(kns, host, 6000, family=fam)[0] == "OK"
    code, d = explain(kns, "[::1]:6001")
    assert code == 1 and d["cases"][0]["error"] == "ECONNREFUSED"
    assert outcome(kns, "::1", 6001, family=socket.AF_INET6)[0] == "ECONNREFUSED"


def test_text_output(kns):
    code, out, err = kns.run(cli, ["explain", "connect", "127.0.0.1:5001"])
    assert code == 1 and "would fail with ECONNREFUSED" in out and "nothing listens on 127.0.0.1:5001" in out
    assert "Traceback" not in err


def test_ipv6_remote_destination(kns):
    kns.add_address("2001:db8:9::1/64", "br0")
    code, d = explain(kns, "[2001:db8:9::5]:443")
    assert code == 0 and d["source_address"] == "2001:db8:9::1" and d["route"]["type"] == "unicast"
    result, local = outcome(kns, "2001:db8:9::5", 443, family=socket.AF_INET6, blocking=False, keep=kns.held)
    assert result == "EINPROGRESS" and local[0] == "2001:db8:9::1"
    code, d = explain(kns, "[2001:db8:7::5]:443")                     # no route: ENETUNREACH on both sides
    assert code == 1 and d["cases"][0]["error"] == "ENETUNREACH"
    assert outcome(kns, "2001:db8:7::5", 443, family=socket.AF_INET6)[0] == "ENETUNREACH"


def bound_outcome(device, host, port):
    """A non-blocking connect() of a socket bound to ``device`` (SO_BINDTODEVICE), in the child."""
    s = socket.socket()
    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
    try:
        s.connect((host, port))
        return "OK"
    except OSError as e:
        return errno.errorcode[e.errno]
    finally:
        s.close()


@pytest.mark.parametrize("device,dest", [("br0", "10.9.0.5:443"), ("lo", "10.9.0.5:443"),
                                         ("br0", "127.0.0.1:5000"), ("lo", "127.0.0.1:5000")])
def test_bound_to_a_device(kns, device, dest):
    """SO_BINDTODEVICE narrows the route lookup to the device (RTA_OIF); the verdict's error is
    what a non-blocking connect() of such a socket says first (EINPROGRESS: no error yet)."""
    code, d = explain(kns, dest, "--device", device)
    host, port = dest.rsplit(":", 1)
    real = kns.run(bound_outcome, device, host, int(port))
    error = d["cases"][0]["error"]
    assert code == 0 and error is None and real == "EINPROGRESS", (d, real)
    if device == "br0":   # even 127.0.0.1 is routed out of br0 (from 10.9.0.1): a remote answer, not known
        assert d["route"] == {"type": "unicast", "source": "10.9.0.1", "device": "br0", "gateway": None}


def bound_connect(src, host, port, no_port=False):
    """bind((src, 0)) [with IP_BIND_ADDRESS_NO_PORT] then a non-blocking connect(), in the child:
    the errno name of the first call that fails (and which), or EINPROGRESS/OK, and the local
    address."""
    s = socket.socket()
    s.setblocking(False)
    try:
        if no_port:
            s.setsockopt(socket.IPPROTO_IP, 24, 1)
        try:
            s.bind((src, 0))
        except OSError as e:
            return "bind", errno.errorcode[e.errno], None
        try:
            s.connect((host, port))
            return "connect", "OK", s.getsockname()
        except OSError as e:
            return "connect", errno.errorcode[e.errno], s.getsockname()
    finally:
        s.close()


@pytest.mark.parametrize("src,dest,call,error", [
    ("10.9.0.1", "10.9.0.5:443", "connect", None),
    ("127.0.0.1", "10.9.0.5:443", "connect", "EINVAL"),       # a loopback source to another host: no route
    ("10.7.7.7", "10.9.0.5:443", "bind", "EADDRNOTAVAIL"),    # not a local address
])
def test_bound_source(kns, src, dest, call, error):
    for no_port in (False, True):
        argv = [dest, "--from", src] + (["--bind-no-port"] if no_port else [])
        code, d = explain(kns, *argv)
        host, port = dest.rsplit(":", 1)
        where, real, local = kns.run(bound_connect, src, host, int(port), no_port)
        assert (d["cases"][0]["error"], code) == (error, 1 if error else 0), d
        assert where == call and real == (error or "EINPROGRESS")
        if error is None:
            assert d["source_address"] == src and local[0] == src


def test_bind_before_connect_competes_for_free_ports_only(kns):
    """Ten plain connect()s fill the range towards one destination.  Another destination: a
    plain connect() shares their ports (exit 3: how they got them is not reported; the kernel
    takes the sharing case), so does bind(127.0.0.1, 0) with IP_BIND_ADDRESS_NO_PORT; a
    bind(127.0.0.1, 0) without it needs a port nobody holds: EADDRINUSE, on both sides --
    envoy's upstream_bind_config (peers note §5.7)."""
    other = kns.socket()
    other.bind(("127.0.0.1", 5002))
    other.listen(64)
    kns.held.append(other)
    for _ in range(10):
        assert outcome(kns, "127.0.0.1", 5000, keep=kns.held)[0] == "OK"
    code, d = explain(kns, "127.0.0.1:5002", "--from", "127.0.0.1")
    assert code == 1 and d["cases"][0]["error"] == "EADDRINUSE" and d["cases"][0]["call"] == "bind"
    assert kns.run(bound_connect, "127.0.0.1", "127.0.0.1", 5002)[:2] == ("bind", "EADDRINUSE")
    code, d = explain(kns, "127.0.0.1:5002", "--from", "127.0.0.1", "--bind-no-port")
    assert code == 3 and [c["error"] for c in d["cases"]] == [None, "EADDRNOTAVAIL"]
    assert kns.run(bound_connect, "127.0.0.1", "127.0.0.1", 5002, True)[:2] == ("connect", "EINPROGRESS")


# ---- random programs: every verdict checked by the connect() that follows it ------------------

def accept_one(lst):
    a, _ = lst.accept()
    return a


MODES = [(), ("--from", "127.0.0.1"), ("--from", "127.0.0.1", "--bind-no-port"),
         ("--from", "127.0.0.2", "--bind-no-port")]


def real_connect(kns, mode, host, port):
    """The connect() that ``explain connect HOST:PORT *mode`` asked about: (errno name or OK,
    the socket when it connected)."""
    s = kns.socket()
    s.settimeout(5)
    try:
        if "--bind-no-port" in mode:
            s.setsockopt(socket.IPPROTO_IP, 24, 1)
        if "--from" in mode:
            s.bind((mode[1], 0))
        s.connect((host, port))
        return "OK", s
    except OSError as e:
        s.close()
        return errno.errorcode[e.errno], None


@pytest.mark.parametrize("seed", range(1, 7))
def test_random_programs(kns, seed):
    """Connections in a 6-port range to two listeners and a closed port, made plainly, bound
    before connect() or bound with IP_BIND_ADDRESS_NO_PORT, from 127.0.0.1 or 127.0.0.2;
    closed client-first (TIME_WAIT), server-first, or left open.  Before each connect(), explain
    connect is asked the same question: exit 0 -> the connect() succeeds, 1 -> it fails with the
    error given, 3 -> its outcome is one of the two cases'.  TIME_WAIT remnants are kept out of
    reach of recycling (tcp_tw_reuse_delay 60 s) so that no answer depends on the clock."""
    import random
    rng = random.Random(seed)
    kns.sysctl("net.ipv4.ip_local_port_range", "40000 40005")
    kns.sysctl("net.ipv4.tcp_tw_reuse_delay", "60000")
    servers = {5000: kns.held[0]}
    s2 = kns.socket()
    s2.bind(("127.0.0.1", 5001))
    s2.listen(64)
    servers[5001] = s2
    kns.held.append(s2)
    live = []                                    # (client, accepted)
    seen = {0: 0, 1: 0, 3: 0}
    for step in range(40):
        if live and rng.random() < 0.3:
            c, a = live.pop(rng.randrange(len(live)))
            first, second = (c, a) if rng.random() < 0.7 else (a, c)
            first.close()
            if rng.random() < 0.8:
                second.close()
            else:
                kns.held.append(second)          # half-closed: keeps its port
            continue
        mode = rng.choice(MODES)
        port = rng.choice([5000, 5000, 5001, 5009])
        code, d = explain(kns, f"127.0.0.1:{port}", *mode)
        want = {c["error"] or "OK" for c in d["cases"]}
        real, c = real_connect(kns, mode, "127.0.0.1", port)
        seen[code] += 1
        if code == 0:
            assert real == "OK", (step, mode, port, d)
        elif code == 1:
            assert real == d["cases"][0]["error"], (step, mode, port, d)
        else:
            assert code == 3 and len(d["cases"]) == 2 and real in want, (step, mode, port, d)
        if c is not None:
            live.append((c, kns.run(accept_one, servers[port])))
    assert seen[1] > 0 and seen[0] > 0, seen               # the programs reach exhaustion, and not only


@pytest.mark.parametrize("dest,family,host,port", [
    ("0.0.0.0:5000", socket.AF_INET, "0.0.0.0", 5000),       # reaches 127.0.0.1: the listener
    ("0.0.0.0:5001", socket.AF_INET, "0.0.0.0", 5001),
    ("[::]:6000", socket.AF_INET6, "::", 6000),               # reaches ::1
    ("[::]:6001", socket.AF_INET6, "::", 6001),
])
def test_unspecified_destination_is_this_host(kns, dest, family, host, port):
    s = kns.socket(socket.AF_INET6)
    s.bind(("::1", 6000))
    s.listen(8)
    kns.held.append(s)
    code, d = explain(kns, dest)
    real = outcome(kns, host, port, family=family)[0]
    assert (d["cases"][0]["error"] or "OK") == real and code == (0 if real == "OK" else 1), (d, real)
    assert d["destination_address"] == ("127.0.0.1" if family == socket.AF_INET else "::1")
