"""Per-namespace sysctls that the port manager reads (spec §1.7), with the kernel's text
format and write validation.

Theory of operation
-------------------
``Sysctls`` holds the values as ints (the port range as two ints, reserved ports as a
frozenset).  ``read(name)`` returns the exact text ``/proc/sys/<name>`` shows (without the
trailing newline); ``write(name, text)`` parses text the way the kernel's ``proc_dointvec``
family does and raises :class:`SysctlError` with an errno *cause* when the kernel would
refuse the write.  The errno itself is chosen in ``_errors.py``.

Parsing facts, all measured on 6.18.44 in a fresh ``unshare -n`` namespace:

* numbers go through ``strtoul(.., base 0)``: ``"0x10"`` is 16 and ``"010"`` is 8; a leading
  ``+`` is refused; ``"7x"`` is refused; an empty write changes nothing and succeeds;
* a one-value sysctl takes the first number and ignores the rest (``"1 2"`` writes 1);
* ``ip_local_port_range`` takes one or two numbers (one number sets only the low end), each
  1..65535, and refuses ``hi < lo`` or ``lo < ip_unprivileged_port_start`` (EINVAL)
  [V bind:E]; ``ip_unprivileged_port_start`` refuses a value above the range start;
* ``ip_local_reserved_ports`` is a comma list of ports and ``a-b`` ranges, printed back
  sorted and merged (``"3,1"`` reads ``"1,3"``; ``"1,2,3"`` reads ``"1-3"``).

Rule 1: all sysctl validation lives here.  Rule 2: this module does not know what the values
mean; the rules modules read them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from ._sysctl_names import KERNEL_SYSCTLS

INT_MIN: Final = -(1 << 31)
INT_MAX: Final = (1 << 31) - 1


class SysctlError(Exception):
    """A write the kernel refuses: ``cause`` is ``"invalid"`` (EINVAL), ``"unknown"`` (no such
    file) or ``"unmodelled"`` (exists in Linux, not in the model)."""

    def __init__(self, cause: str, name: str, detail: str = "") -> None:
        super().__init__(detail or name)
        self.cause = cause
        self.name = name
        self.detail = detail


@dataclass(frozen=True)
class IntSpec:
    """One integer sysctl: default, inclusive bounds and the kernel handler it mimics."""

    default: int
    lo: int = INT_MIN
    hi: int = INT_MAX
    handler: str = "proc_dointvec"
    doc: str = ""


# name -> spec.  Bounds measured live (see module header); HZ is 250 on the reference machine,
# which bounds tcp_fin_timeout (seconds -> jiffies) at INT_MAX // 250.
INT_SYSCTLS: Final[dict[str, IntSpec]] = {
    "net.ipv4.ip_unprivileged_port_start": IntSpec(1024, 0, 65535, "ipv4_privileged_ports",
                                                    "ports below need CAP_NET_BIND_SERVICE (spec §3.1)"),
    "net.ipv4.ip_nonlocal_bind": IntSpec(0, 0, 255, "proc_dou8vec_minmax", "bind non-local IPv4 addresses"),
    "net.ipv6.ip_nonlocal_bind": IntSpec(0, 0, 255, "proc_dou8vec_minmax", "bind non-local IPv6 addresses"),
    "net.ipv4.ip_autobind_reuse": IntSpec(0, 0, 1, "proc_dou8vec_minmax", "relaxed second pass of bind(0) (spec §5.2)"),
    "net.ipv4.tcp_tw_reuse": IntSpec(2, 0, 2, "proc_dou8vec_minmax", "TIME_WAIT reuse by connect() (spec §6.4)"),
    "net.ipv4.tcp_tw_reuse_delay": IntSpec(1000, 1, 60000, "proc_dointvec_minmax", "ms before a TIME_WAIT may be reused"),
    "net.ipv4.tcp_timestamps": IntSpec(1, 0, 255, "proc_dou8vec_minmax", "TCP timestamps (needed by tw reuse)"),
    "net.ipv4.tcp_fin_timeout": IntSpec(60, -(INT_MAX // 250) - 1, INT_MAX // 250, "proc_dointvec_jiffies",
                                        "lifetime of an orphaned FIN_WAIT2 (s)"),
    "net.ipv4.tcp_max_tw_buckets": IntSpec(131072, INT_MIN, INT_MAX, "proc_dointvec",
                                           "TIME_WAIT limit (machine dependent; 131072 on the reference host)"),
    "net.ipv4.tcp_migrate_req": IntSpec(0, 0, 1, "proc_dou8vec_minmax", "reuseport request migration"),
    "net.ipv4.tcp_rfc1337": IntSpec(0, 0, 255, "proc_dou8vec_minmax", "RST does not kill TIME_WAIT"),
    "net.ipv6.bindv6only": IntSpec(0, 0, 255, "proc_dou8vec_minmax", "default IPV6_V6ONLY"),
    "net.ipv4.tcp_fastopen": IntSpec(1, INT_MIN, INT_MAX, "proc_dointvec", "TCP Fast Open flags"),
    "net.ipv4.tcp_max_syn_backlog": IntSpec(2048, INT_MIN, INT_MAX, "proc_dointvec",
                                            "SYN queue limit (machine dependent)"),
    "net.core.somaxconn": IntSpec(4096, 0, INT_MAX, "proc_dointvec_minmax", "listen() backlog cap"),
}

RANGE: Final = "net.ipv4.ip_local_port_range"
RESERVED: Final = "net.ipv4.ip_local_reserved_ports"
UNPRIV: Final = "net.ipv4.ip_unprivileged_port_start"


def _strtol(token: str, name: str) -> int:
    """The kernel's ``proc_get_long``: optional '-', then strtoul with base 0."""
    neg = token.startswith("-")
    body = token[1:] if neg else token
    try:
        if body[:2] in ("0x", "0X"):
            value = int(body[2:], 16)
        elif body.startswith("0") and len(body) > 1:
            value = int(body[1:], 8)
        elif body.isdigit():
            value = int(body, 10)
        else:
            raise ValueError(token)
    except ValueError:
        raise SysctlError("invalid", name, f"{token!r} is not a number") from None
    return -value if neg else value


def _parse_reserved(text: str, name: str) -> frozenset[int] | None:
    text = text.strip()
    if not text:
        return None
    ports: set[int] = set()
    for item in text.split(","):
        lo_s, dash, hi_s = item.partition("-")
        try:
            lo = int(lo_s, 10)
            hi = int(hi_s, 10) if dash else lo
        except ValueError:
            raise SysctlError("invalid", name, f"{item!r} is not a port or range") from None
        if lo < 0 or hi > 65535 or hi < lo:
            raise SysctlError("invalid", name, f"{item!r} is outside 0-65535 or reversed")
        ports.update(range(lo, hi + 1))
    return frozenset(ports)


def format_reserved(ports: frozenset[int]) -> str:
    """Sorted, merged ``a-b`` runs, as ``proc_do_large_bitmap`` prints them."""
    out: list[str] = []
    run_start = prev = None
    for p in sorted(ports):
        if prev is not None and p == prev + 1:
            prev = p
            continue
        if run_start is not None:
            out.append(str(run_start) if run_start == prev else f"{run_start}-{prev}")
        run_start = prev = p
    if run_start is not None:
        out.append(str(run_start) if run_start == prev else f"{run_start}-{prev}")
    return ",".join(out)


@dataclass
class Sysctls:
    """The namespace's sysctl values.  Invariant: every value passed the kernel's validation;
    ``port_range[0] <= port_range[1]`` and ``port_range[0] >= unprivileged_port_start``."""

    ints: dict[str, int] = field(default_factory=lambda: {k: v.default for k, v in INT_SYSCTLS.items()})
    port_range: tuple[int, int] = (32768, 60999)
    reserved: frozenset[int] = frozenset()

    # -- fast accessors used by the rules (attribute reads, no dict lookups by long names) --
    @property
    def unprivileged_port_start(self) -> int:
        return self.ints[UNPRIV]

    def get(self, name: str) -> int:
        return self.ints[name]

    # -- text interface ------------------------------------------------------------------
    @staticmethod
    def check_name(name: str) -> None:
        if name in INT_SYSCTLS or name in (RANGE, RESERVED):
            return
        parts = name.split(".")
        generic = ".".join(parts[:3] + ["*"] + parts[4:]) if len(parts) > 3 else name
        if name in KERNEL_SYSCTLS or generic in KERNEL_SYSCTLS:
            raise SysctlError("unmodelled", name, f"sysctl {name} exists in Linux but is not modelled by portspace")
        raise SysctlError("unknown", name, f"no sysctl named {name}")

    def read(self, name: str) -> str:
        self.check_name(name)
        if name == RANGE:
            return f"{self.port_range[0]}\t{self.port_range[1]}"
        if name == RESERVED:
            return format_reserved(self.reserved)
        return str(self.ints[name])

    def write(self, name: str, text: str) -> None:
        self.check_name(name)
        if name == RESERVED:
            ports = _parse_reserved(text, name)
            if ports is not None:
                self.reserved = ports
            return
        tokens = text.split()
        if not tokens:
            return  # an empty write succeeds and changes nothing
        if name == RANGE:
            lo = _strtol(tokens[0], name)
            hi = _strtol(tokens[1], name) if len(tokens) > 1 else self.port_range[1]
            if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
                raise SysctlError("invalid", name, "each end must be in 1..65535")
            if hi < lo:
                raise SysctlError("invalid", name, f"high end {hi} is below low end {lo}")
            if lo < self.ints[UNPRIV]:
                raise SysctlError("invalid", name, f"low end {lo} is below ip_unprivileged_port_start "
                                                   f"({self.ints[UNPRIV]})")
            self.port_range = (lo, hi)
            return
        spec = INT_SYSCTLS[name]
        value = _strtol(tokens[0], name)
        if not spec.lo <= value <= spec.hi:
            raise SysctlError("invalid", name, f"{value} is outside {spec.lo}..{spec.hi}")
        if name == UNPRIV and value > self.port_range[0]:
            raise SysctlError("invalid", name, f"{value} is above the ephemeral range start "
                                               f"({self.port_range[0]})")
        self.ints[name] = value
