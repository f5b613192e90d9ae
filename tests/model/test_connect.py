"""connect(), accept(), getpeername() and disconnect on loopback: named step tables run on the
model and on the live kernel.  Expected outcomes were probed on Linux 6.18.44 in a private
netns (and, where tagged, recorded in ../shared/linux-port-experiments/results/
scenarios_eph.txt and scenarios_narrow.txt).  ``eph`` stands for a port of the default
ephemeral range, whose exact value depends on the kernel's secret keys."""
from __future__ import annotations

import pytest

from portspace.diff import failures, run_script

SCENARIOS = {
    "blocking connect to a listener, then accept": """
        L = tcp4
        L bind 127.0.0.1 5000 -> OK
        L listen -> OK
        c = tcp4
        c connect 127.0.0.1 5000 -> OK
        c name -> 127.0.0.1:eph
        c peer -> 127.0.0.1:5000
        a = L accept -> 127.0.0.1:eph
        a name -> 127.0.0.1:5000
        a peer -> 127.0.0.1:eph
        c connect 127.0.0.1 5000 -> EISCONN
    """,
    "non-blocking connect: EINPROGRESS, then OK, then EISCONN": """
        L = tcp4
        L bind 127.0.0.1 5000 -> OK
        L listen -> OK
        n = tcp4 nonblock
        n connect 127.0.0.1 5000 -> EINPROGRESS
        n connect 127.0.0.1 5000 -> OK
        n connect 127.0.0.1 5000 -> EISCONN
    """,
    "refused: ECONNREFUSED, the old port still shows, the address resets": """
        r = tcp4
        r connect 127.0.0.1 5001 -> ECONNREFUSED
        r name -> 0.0.0.0:eph
        r connect 127.0.0.1 5001 -> ECONNREFUSED
    """,
    "refused, non-blocking: EINPROGRESS, SO_ERROR, then ECONNABORTED": """
        r = tcp4 nonblock
        r connect 127.0.0.1 5001 -> EINPROGRESS
        r name -> 127.0.0.1:eph
        r error -> 111
        r connect 127.0.0.1 5001 -> ECONNABORTED
        r name -> 0.0.0.0:eph
    """,
    "refused, non-blocking, error not read: the next connect reports it": """
        r = tcp4 nonblock
        r connect 127.0.0.1 5001 -> EINPROGRESS
        r connect 127.0.0.1 5001 -> ECONNREFUSED
        r error -> 0
    """,
    "connect to 0.0.0.0 reaches 127.0.0.1; to :: reaches ::1": """
        L = tcp4
        L bind 127.0.0.1 5000 -> OK
        L listen -> OK
        z = tcp4
        z connect 0.0.0.0 5000 -> OK
        z peer -> 127.0.0.1:5000
        M = tcp6
        M bind [::] 5002 -> OK
        M listen -> OK
        y = tcp6
        y connect [::] 5002 -> OK
        y peer -> [::1]:5002
        y name -> [::1]:eph
        m = tcp6
        m connect [::ffff:0.0.0.0] 5002 -> OK
        m peer -> [::ffff:127.0.0.1]:5002
    """,
    "self-connect: a socket connects to its own address and port": """
        s = tcp4
        s bind 127.0.0.1 5003 -> OK
        s connect 127.0.0.1 5003 -> OK
        s peer -> 127.0.0.1:5003
    """,
    "unreachable destinations fail before any autobind": """
        b = tcp4
        b connect 127.255.255.255 5000 -> ENETUNREACH
        b name -> 0.0.0.0:0
        c = tcp4
        c connect 255.255.255.255 5000 -> ENETUNREACH
        d = tcp4
        d connect 224.0.0.1 5000 -> ENETUNREACH
        e = tcp4
        e connect 10.1.1.1 5000 -> ENETUNREACH
        e name -> 0.0.0.0:0
        f = tcp6
        f connect [2001:db8::1] 5000 -> ENETUNREACH
        g = tcp6
        g connect [fe80::1] 5000 -> EINVAL
        h = tcp6 v6only
        h connect [::ffff:127.0.0.1] 5000 -> ENETUNREACH
        i = tcp6
        i connect [::ffff:10.1.1.1] 5000 -> ENETUNREACH
    """,
    "TCP connect to port 0 is refused": """
        b = tcp4
        b connect 127.0.0.1 0 -> ECONNREFUSED
    """,
    "source address: 127/8 (even a secondary 127.0.0.2) uses 127.0.0.1, a /32 uses itself": """
        L = tcp4
        L bind 0.0.0.0 5010 -> OK
        L listen -> OK
        t = tcp4
        t connect 127.0.0.2 5010 -> OK
        t name -> 127.0.0.1:eph
        a = L accept -> 127.0.0.1:eph
        a name -> 127.0.0.2:5010
        u = tcp4
        u connect 127.0.0.5 5010 -> OK
        u name -> 127.0.0.1:eph
        v = tcp4
        v connect 192.168.1.100 5010 -> OK
        v name -> 192.168.1.100:eph
        w = tcp4
        w bind 192.168.1.100 0 -> OK
        w connect 0.0.0.0 5010 -> OK
        w peer -> 192.168.1.100:5010
    """,
    "a dual-stack listener takes IPv4 connections (v4-mapped child)": """
        L = tcp6
        L bind [::] 5001 -> OK
        L listen -> OK
        t = tcp4
        t connect 127.0.0.1 5001 -> OK
        a = L accept -> [::ffff:127.0.0.1]:eph
        a name -> [::ffff:127.0.0.1]:5001
        m = tcp6
        m connect [::ffff:127.0.0.1] 5001 -> OK
        m name -> [::ffff:127.0.0.1]:eph
    """,
    "the accept queue holds backlog + 1; later SYNs are dropped (SYN_SENT)": """
        L = tcp4
        L bind 127.0.0.1 5011 -> OK
        L listen 1 -> OK
        a = tcp4 nonblock
        a connect 127.0.0.1 5011 -> EINPROGRESS
        a connect 127.0.0.1 5011 -> OK
        b = tcp4 nonblock
        b connect 127.0.0.1 5011 -> EINPROGRESS
        b connect 127.0.0.1 5011 -> OK
        c = tcp4 nonblock
        c connect 127.0.0.1 5011 -> EINPROGRESS
        c connect 127.0.0.1 5011 -> EALREADY
        c peer -> ENOTCONN
        L timeout 0
        x = L accept -> 127.0.0.1:eph
        y = L accept -> 127.0.0.1:eph
        z = L accept -> EAGAIN
    """,
    "a former listener: shutdown frees its autobound port; connect then EINVAL, still free": """
        # (a one-port range makes the autobound port 40000, which the DSL shows as eph)
        ns sysctl net.ipv4.ip_local_port_range "40000 40000"
        L = tcp4
        L bind 127.0.0.1 7000 -> OK
        L listen -> OK
        f = tcp4
        f listen -> OK
        f name -> 0.0.0.0:eph
        o = tcp4
        o bind 127.0.0.1 40000 -> EADDRINUSE
        f shutdown rdwr -> OK
        f name -> 0.0.0.0:eph
        o bind 127.0.0.1 40000 -> OK
        o close -> OK
        f connect 127.0.0.1 7000 -> EINVAL
        f name -> 0.0.0.0:eph
        p = tcp4
        p bind 127.0.0.1 40000 -> OK
    """,
    "accept on a socket that does not listen: EINVAL; listener connect: EISCONN": """
        t = tcp4
        x = t accept -> EINVAL
        L = tcp4
        L listen -> OK
        L connect 127.0.0.1 5000 -> EISCONN
        u = tcp4
        u peer -> ENOTCONN
        v = udp4
        v peer -> ENOTCONN
    """,
    "narrow:TCP connect() narrows a wildcard binding": """
        S = tcp4
        S bind 127.0.0.1 5000 -> OK
        S listen -> OK
        a = tcp4
        a bind 0.0.0.0 21000 -> OK
        b = tcp4
        b bind 127.0.0.2 21000 -> EADDRINUSE
        a connect 127.0.0.1 5000 -> OK
        a name -> 127.0.0.1:21000
        c = tcp4
        c bind 127.0.0.2 21000 -> OK
        d = tcp4
        d bind 0.0.0.0 21000 -> EADDRINUSE
    """,
    "narrow:UDP connect() narrows a wildcard binding": """
        a = udp4
        a bind 0.0.0.0 21001 -> OK
        b = udp4
        b bind 127.0.0.2 21001 -> EADDRINUSE
        a connect 127.0.0.1 5000 -> OK
        a name -> 127.0.0.1:21001
        c = udp4
        c bind 127.0.0.2 21001 -> OK
        d = udp4
        d bind 0.0.0.0 21001 -> EADDRINUSE
    """,
    "eph:U explicit ports may share an address, never a 4-tuple": """
        L = tcp4
        L bind 127.0.0.1 5000 -> OK
        L listen -> OK
        M = tcp4
        M bind 127.0.0.1 5001 -> OK
        M listen -> OK
        a = tcp4 reuseaddr
        a bind 127.0.0.1 22050 -> OK
        b = tcp4 reuseaddr
        b bind 127.0.0.1 22050 -> OK
        a connect 127.0.0.1 5000 -> OK
        b connect 127.0.0.1 5000 -> EADDRNOTAVAIL
        b name -> 127.0.0.1:22050
        b connect 127.0.0.1 5001 -> OK
    """,
    "bind over a connected client's port: wildcard and same address refused, other address OK": """
        L = tcp4
        L bind 127.0.0.1 5000 -> OK
        L listen -> OK
        c = tcp4
        c bind 0.0.0.0 21010 -> OK
        c connect 127.0.0.1 5000 -> OK
        x = tcp4
        x bind 0.0.0.0 21010 -> EADDRINUSE
        y = tcp4 reuseaddr
        y bind 127.0.0.1 21010 -> EADDRINUSE
        z = tcp4
        z bind 127.0.0.2 21010 -> OK
    """,
    "UDP connect: autobind, broadcast needs SO_BROADCAST, unreachable after autobind": """
        u = udp4
        u connect 127.255.255.255 9 -> EACCES
        v = udp4
        v set broadcast 1 -> OK
        v connect 127.255.255.255 9 -> OK
        v name -> 127.0.0.1:eph
        w = udp4
        w connect 10.1.1.1 9 -> ENETUNREACH
        w name -> 0.0.0.0:eph
        x = udp4
        x connect 127.0.0.1 0 -> OK
        x peer -> ENOTCONN
        y = udp4
        y connect 127.0.0.2 9 -> OK
        y name -> 127.0.0.1:eph
        y peer -> 127.0.0.2:9
        z = udp4
        z connect 0.0.0.0 9 -> OK
        z peer -> 127.0.0.1:9
    """,
    "eph:G UDP disconnect releases an autobound port": """
        u = udp4
        u connect 127.0.0.1 9 -> OK
        u name -> 127.0.0.1:eph
        u disconnect -> OK
        u name -> 0.0.0.0:0
        u peer -> ENOTCONN
        b = udp4
        b bind 127.0.0.1 21020 -> OK
        b connect 127.0.0.1 9 -> OK
        b disconnect -> OK
        b name -> 127.0.0.1:21020
    """,
    "TCP disconnect of a connected socket: the peer is reset": """
        L = tcp4
        L bind 127.0.0.1 5000 -> OK
        L listen -> OK
        c = tcp4
        c connect 127.0.0.1 5000 -> OK
        a = L accept -> 127.0.0.1:eph
        c disconnect -> OK
        c peer -> ENOTCONN
        c name -> 0.0.0.0:eph
        c connect 127.0.0.1 5000 -> OK
    """,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_connect_scenario(any_ns, name):
    results = run_script(any_ns, SCENARIOS[name])
    assert not failures(results), "\n".join(failures(results))


# IPv6 sockets connecting from native and v4-mapped local addresses to native, mapped,
# unroutable, link-local multicast and unspecified destinations.  Observed on Linux 6.18.44 in
# a private netns (a probe run of exactly these steps): a v4-mapped source reaches only IPv4
# destinations (EAFNOSUPPORT after routing, from ip6_dst_lookup_tail); "::" is the host itself,
# ::ffff:127.0.0.1 for a mapped source; TCP refuses multicast before any scope check
# (ENETUNREACH) where UDP first asks for the scope of ff02::1 (EINVAL).
V6_CONNECT_OBSERVED = {
    # (src, dst): (tcp connect, udp connect, local address after connect)
    ("::ffff:127.0.0.1", "::1"): ("EAFNOSUPPORT", "EAFNOSUPPORT", "::ffff:127.0.0.1"),
    ("::ffff:127.0.0.1", "::ffff:127.0.0.1"): ("OK", "OK", "::ffff:127.0.0.1"),
    ("::ffff:127.0.0.1", "2001:db8::1"): ("ENETUNREACH", "ENETUNREACH", "::ffff:127.0.0.1"),
    ("::ffff:127.0.0.1", "ff02::1"): ("ENETUNREACH", "EINVAL", "::ffff:127.0.0.1"),
    ("::ffff:127.0.0.1", "::"): ("OK", "OK", "::ffff:127.0.0.1"),
    ("::1", "::1"): ("OK", "OK", "::1"),
    ("::1", "::ffff:127.0.0.1"): ("ENETUNREACH", "ENETUNREACH", "::1"),
    ("::1", "2001:db8::1"): ("ENETUNREACH", "ENETUNREACH", "::1"),
    ("::1", "ff02::1"): ("ENETUNREACH", "EINVAL", "::1"),
    ("::1", "::"): ("OK", "OK", "::1"),
    ("::ffff:0.0.0.0", "::1"): ("EAFNOSUPPORT", "EAFNOSUPPORT", "::ffff:0.0.0.0"),
    ("::ffff:0.0.0.0", "::ffff:127.0.0.1"): ("OK", "OK", "::ffff:127.0.0.1"),
    ("::ffff:0.0.0.0", "2001:db8::1"): ("ENETUNREACH", "ENETUNREACH", "::ffff:0.0.0.0"),
    ("::ffff:0.0.0.0", "ff02::1"): ("ENETUNREACH", "EINVAL", "::ffff:0.0.0.0"),
    ("::ffff:0.0.0.0", "::"): ("OK", "OK", "::ffff:127.0.0.1"),
}


def v6_connect_script() -> str:
    lines = ["L = tcp6", "L bind :: 6000 -> OK", "L listen 50 -> OK"]
    port = 7000
    for (src, dst), (tcp, udp, local) in V6_CONNECT_OBSERVED.items():
        for kind, want in (("tcp6", tcp), ("udp6", udp)):
            port += 1
            s = f"s{port}"
            lines += [f"{s} = {kind}", f"{s} bind {src} {port} -> OK", f"{s} connect {dst} 6000 -> {want}",
                      f"{s} name -> [{local}]:{port}", f"{s} close -> OK"]
    return "\n".join(lines)


def test_v6_connect_source_and_destination_families(any_ns):
    results = run_script(any_ns, v6_connect_script())
    assert not failures(results), "\n".join(failures(results))
