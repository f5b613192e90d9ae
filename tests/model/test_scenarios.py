"""Named step tables: the seeds' experiments, spec §3.7, the bind scenarios and the §3.3
fast-path anomalies, each run on the model and on the live kernel with the same expectations.

Expected outcomes are the live results recorded in
../shared/linux-port-experiments/results/scenarios_bind.txt and scenarios_fastpath.txt
(kernel 6.18.44); each table names its tag.  Rows that need connect() or delivery come with
those issues.
"""
from __future__ import annotations

import pytest

from portspace.diff import failures, run_script

SCENARIOS = {
    # -- seed 000 -------------------------------------------------------------------------
    "seed000: two UDP binds of 127.0.0.1:5556, the second fails": """
        a = udp4
        b = udp4
        a bind 127.0.0.1 5556 -> OK
        b bind 127.0.0.1 5556 -> EADDRINUSE
    """,
    "seed000: TCP and UDP on one port both succeed": """
        u = udp4
        t = tcp4
        u bind 127.0.0.1 5556 -> OK
        t bind 127.0.0.1 5556 -> OK
        t listen -> OK
    """,
    # -- spec §3.7 / scenarios_bind.txt --------------------------------------------------------
    "bind:a TCP 0.0.0.0:p listening, then UDP bind 0.0.0.0:p": """
        t = tcp4
        t bind 0.0.0.0 20001 -> OK
        t listen -> OK
        u = udp4
        u bind 0.0.0.0 20001 -> OK
    """,
    "bind:b no options: wildcard then specific": """
        a = tcp4
        b = tcp4
        a bind 0.0.0.0 8888 -> OK
        b bind 192.168.1.100 8888 -> EADDRINUSE
    """,
    "bind:b no options: specific then wildcard": """
        a = tcp4
        b = tcp4
        a bind 192.168.1.100 8888 -> OK
        b bind 0.0.0.0 8888 -> EADDRINUSE
    """,
    "bind:b SO_REUSEADDR both: both bind, only the first listens": """
        a = tcp4 reuseaddr
        b = tcp4 reuseaddr
        a bind 0.0.0.0 8888 -> OK
        b bind 192.168.1.100 8888 -> OK
        a listen -> OK
        b listen -> EADDRINUSE
    """,
    "bind:b SO_REUSEADDR both, wildcard already listening: specific bind fails": """
        a = tcp4 reuseaddr
        a bind 0.0.0.0 8888 -> OK
        a listen -> OK
        b = tcp4 reuseaddr
        b bind 192.168.1.100 8888 -> EADDRINUSE
    """,
    "bind:b SO_REUSEPORT both: wildcard and specific both listen": """
        a = tcp4 reuseport
        b = tcp4 reuseport
        a bind 0.0.0.0 8888 -> OK
        a listen -> OK
        b bind 192.168.1.100 8888 -> OK
        b listen -> OK
    """,
    "bind:L a failed listen keeps the port; rebind EINVAL; retry after close": """
        a = tcp4 reuseaddr
        b = tcp4 reuseaddr
        a bind 127.0.0.1 20002 -> OK
        b bind 127.0.0.1 20002 -> OK
        a listen -> OK
        b listen -> EADDRINUSE
        b getsockname -> ('127.0.0.1', 20002)
        b bind 127.0.0.1 20003 -> EINVAL
        a close -> OK
        b listen -> OK
    """,
    "bind:D TCP devices: lo listener vs d0 / none / lo": """
        a = tcp4 dev=lo
        a bind 0.0.0.0 20010 -> OK
        a listen -> OK
        b = tcp4 dev=d0
        b bind 0.0.0.0 20010 -> OK
        b listen -> OK
        c = tcp4
        c bind 0.0.0.0 20010 -> EADDRINUSE
        d = tcp4 dev=lo
        d bind 0.0.0.0 20010 -> EADDRINUSE
    """,
    "bind:D TCP devices: unbound listener vs lo": """
        a = tcp4
        a bind 0.0.0.0 20011 -> OK
        a listen -> OK
        b = tcp4 dev=lo
        b bind 0.0.0.0 20011 -> EADDRINUSE
    """,
    "bind:D UDP devices": """
        a = udp4 dev=lo
        a bind 0.0.0.0 20012 -> OK
        b = udp4 dev=d0
        b bind 0.0.0.0 20012 -> OK
        c = udp4
        c bind 0.0.0.0 20012 -> EADDRINUSE
        d = udp4 dev=lo
        d bind 0.0.0.0 20012 -> EADDRINUSE
        e = udp4
        f = udp4 dev=lo
        e bind 0.0.0.0 20013 -> OK
        f bind 0.0.0.0 20013 -> EADDRINUSE
    """,
    "bind:M REUSEADDR-only bound, REUSEPORT-only binds the same": """
        a = tcp4 reuseaddr
        a bind 127.0.0.1 20020 -> OK
        b = tcp4 reuseport
        b bind 127.0.0.1 20020 -> EADDRINUSE
    """,
    "bind:M both REUSEADDR+REUSEPORT, first listening uid 0, second uid 1000": """
        a = tcp4 reuseaddr reuseport
        a bind 127.0.0.1 20021 -> OK
        a listen -> OK
        b = tcp4 reuseaddr reuseport uid=1000
        b bind 127.0.0.1 20021 -> EADDRINUSE
    """,
    "bind:M both REUSEADDR+REUSEPORT, bound only, other uid: bind OK, second listen fails": """
        a = tcp4 reuseaddr reuseport
        a bind 127.0.0.1 20022 -> OK
        b = tcp4 reuseaddr reuseport uid=1000
        b bind 127.0.0.1 20022 -> OK
        a listen -> OK
        b listen -> EADDRINUSE
    """,
    "bind:E address and errno catalogue": """
        a = tcp4
        a bind 10.9.9.9 20030 -> EADDRNOTAVAIL
        b = tcp4 freebind
        b bind 10.9.9.9 20031 -> OK
        c = tcp6
        c bind [2001:db8::1] 20032 -> EADDRNOTAVAIL
        d = tcp4
        d bind 127.0.0.1 20033 -> OK
        d bind 127.0.0.1 20034 -> EINVAL
        d bind 10.9.9.9 20035 -> EADDRNOTAVAIL
        e = tcp6
        e bind [::1] 20036 -> OK
        e bind [2001:db8::1] 20037 -> EINVAL
        f = tcp6 v6only
        f bind [::ffff:127.0.0.1] 20038 -> EINVAL
        g = tcp6
        g bind [fe80::1] 20039 -> EINVAL
        h = tcp6
        h bind [ff02::1] 20040 -> EINVAL
        i = tcp4
        i bind 224.0.0.1 20041 -> OK
        j = udp4
        j bind 127.255.255.255 20042 -> OK
    """,
    "bind:E ip_nonlocal_bind and IPV6_FREEBIND": """
        ns sysctl net.ipv4.ip_nonlocal_bind 1 -> OK
        a = tcp4
        a bind 10.9.9.9 20050 -> OK
        ns sysctl net.ipv4.ip_nonlocal_bind 0 -> OK
        b = tcp6 freebind
        b bind [2001:db8::1] 20051 -> OK
    """,
    "bind:E privileged ports for an unprivileged uid": """
        a = tcp4
        a bind 127.0.0.1 80 as=65534 -> EACCES
        b = udp4
        b bind 127.0.0.1 1023 as=65534 -> EACCES
        c = tcp4
        c bind 127.0.0.1 1024 as=65534 -> OK
        d = tcp4
        d bind 127.0.0.1 0 as=65534 -> OK
        ns sysctl net.ipv4.ip_unprivileged_port_start 80 -> OK
        e = tcp4
        e bind 127.0.0.1 80 as=65534 -> OK
        f = tcp4
        f bind 127.0.0.1 79 as=65534 -> EACCES
        ns sysctl net.ipv4.ip_unprivileged_port_start 1024 -> OK
    """,
    "bind:E sysctl validation": """
        ns sysctl net.ipv4.ip_local_port_range "1000 2000" -> EINVAL
        ns sysctl net.ipv4.ip_local_port_range "5000 4000" -> EINVAL
        ns sysctl net.ipv4.ip_local_port_range -> '32768\\t60999'
        ns sysctl net.ipv4.ip_unprivileged_port_start 40000 -> EINVAL
        ns sysctl net.ipv4.ip_local_port_range 40000 -> OK
        ns sysctl net.ipv4.ip_local_port_range -> '40000\\t60999'
        ns sysctl net.ipv4.ip_local_reserved_ports 3,1,2,8080 -> OK
        ns sysctl net.ipv4.ip_local_reserved_ports -> 1-3,8080
        ns sysctl net.ipv4.tcp_tw_reuse 3 -> EINVAL
        ns sysctl net.ipv4.tcp_tw_reuse_delay 0x10 -> OK
        ns sysctl net.ipv4.tcp_tw_reuse_delay -> 16
    """,
    "bind:Q UDP SO_REUSEADDR both, different uid: identical bind OK": """
        a = udp4 reuseaddr
        a bind 127.0.0.1 20060 -> OK
        b = udp4 reuseaddr uid=1000
        b bind 127.0.0.1 20060 -> OK
    """,
    "bind:Q UDP SO_REUSEPORT both, different uid: EADDRINUSE": """
        a = udp4 reuseport
        a bind 127.0.0.1 20061 -> OK
        b = udp4 reuseport uid=1000
        b bind 127.0.0.1 20061 -> EADDRINUSE
    """,
    "bind:Q TCP SO_REUSEADDR both, different uid, none listening: OK": """
        a = tcp4 reuseaddr
        a bind 127.0.0.1 20062 -> OK
        b = tcp4 reuseaddr uid=1000
        b bind 127.0.0.1 20062 -> OK
    """,
    "bind:Q TCP SO_REUSEADDR set after bind still counts": """
        a = tcp4
        a bind 127.0.0.1 20063 -> OK
        a set reuseaddr 1 -> OK
        b = tcp4 reuseaddr
        b bind 127.0.0.1 20063 -> OK
    """,
    "bind:Q IPV6_V6ONLY after bind, and forced by a specific bind": """
        a = tcp6
        a bind [::1] 20064 -> OK
        a set v6only 0 -> EINVAL
        a get v6only -> 1
    """,
    "bind:Q listen() on UDP": """
        u = udp4
        u listen -> ENOTSUP  # EOPNOTSUPP, 95: Python names it ENOTSUP
    """,
    "bind:L listen() without bind autobinds to 0.0.0.0": """
        a = tcp4
        a listen -> OK
        a get reuseaddr -> 0
    """,
    # -- scenarios_fastpath.txt (spec §3.3) ---------------------------------------------
    "fastpath:F1 clearing SO_REUSEADDR after bind is honoured": """
        a = tcp4 reuseaddr
        a bind 127.0.0.1 20101 -> OK
        a set reuseaddr 0 -> OK
        b = tcp4 reuseaddr
        b bind 127.0.0.1 20101 -> EADDRINUSE
        c = tcp4 reuseaddr
        c bind 127.0.0.1 20101 -> EADDRINUSE
    """,
    "fastpath:F1b control: first never had SO_REUSEADDR": """
        a = tcp4
        a bind 127.0.0.1 20102 -> OK
        b = tcp4 reuseaddr
        b bind 127.0.0.1 20102 -> EADDRINUSE
    """,
    "fastpath:F2 clearing SO_REUSEPORT after bind: the bucket still admits": """
        a = tcp4 reuseport
        a bind 127.0.0.1 20103 -> OK
        a set reuseport 0 -> OK
        b = tcp4 reuseport
        b bind 127.0.0.1 20103 -> OK
        a listen -> EADDRINUSE
        b listen -> OK
    """,
    "fastpath:F3 STRICT after a plain socket on another address": """
        z = tcp4
        z bind 127.0.0.2 20104 -> OK
        a = tcp4 reuseport
        a bind 127.0.0.1 20104 -> OK
        b = tcp4 reuseport
        b bind 127.0.0.1 20104 -> OK
        c = tcp4 reuseport
        c bind 0.0.0.0 20104 -> EADDRINUSE
    """,
    "fastpath:F4 UDP has no bucket flags": """
        a = udp4 reuseaddr
        a bind 127.0.0.1 20105 -> OK
        a set reuseaddr 0 -> OK
        b = udp4 reuseaddr
        b bind 127.0.0.1 20105 -> EADDRINUSE
    """,
    "fastpath:F5 device-scoped sockets open a hole in the fast path": """
        z = tcp4 dev=d0
        z bind 0.0.0.0 20106 -> OK
        a = tcp4 reuseport dev=lo
        a bind 0.0.0.0 20106 -> OK
        b = tcp4 reuseport
        b bind 0.0.0.0 20106 -> OK
        z listen -> EADDRINUSE
        a listen -> OK
        b listen -> OK
    """,
    "fastpath:F5b control without the lo socket": """
        z = tcp4 dev=d0
        z bind 0.0.0.0 20107 -> OK
        b = tcp4 reuseport
        b bind 0.0.0.0 20107 -> EADDRINUSE
    """,
    "fastpath:F6 remembered 127.0.0.1 does not cover 0.0.0.0": """
        a = tcp4 reuseport
        a bind 127.0.0.1 20108 -> OK
        a set reuseport 0 -> OK
        b = tcp4 reuseport
        b bind 0.0.0.0 20108 -> EADDRINUSE
        c = tcp4 reuseport
        c bind 127.0.0.1 20108 -> OK
    """,
    "fastpath:F6b remembered 0.0.0.0 covers 127.0.0.1 for the same uid only": """
        a = tcp4 reuseport
        a bind 0.0.0.0 20109 -> OK
        a set reuseport 0 -> OK
        b = tcp4 reuseport
        b bind 127.0.0.1 20109 -> OK
        c = tcp4 reuseport uid=1000
        c bind 127.0.0.1 20109 -> EADDRINUSE
    """,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(any_ns, name):
    results = run_script(any_ns, SCENARIOS[name])
    assert not failures(results), "\n".join(failures(results))
