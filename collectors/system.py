"""Host counters, socket totals and sysctls from /proc, read cheaply every refresh.

Counters and sockstat come from one network namespace: the host's by default, another
one's through proc_net="/proc/PID/net". Sysctls under /proc/sys always describe the
namespace of the reading process, whatever proc_net points at.
"""

from __future__ import annotations

import contextlib

from collectors.model import SystemFacts

# File under proc_net -> the "Group:" lines kept from it.
HEADER_FILES = {
    "netstat": frozenset({"TcpExt", "IpExt"}),
    "snmp": frozenset({"Tcp", "Udp"}),
}
SNMP6_GROUP = "Udp6"  # snmp6 lines look like "Udp6RcvbufErrors 0"
SOCKSTAT_FILES = ("sockstat", "sockstat6")
SYSCTL_PATHS = {
    "tcp_rmem": "net/ipv4/tcp_rmem",
    "tcp_wmem": "net/ipv4/tcp_wmem",
    "tcp_mem": "net/ipv4/tcp_mem",
    "ip_local_port_range": "net/ipv4/ip_local_port_range",
    "tcp_tw_reuse": "net/ipv4/tcp_tw_reuse",
    "rmem_max": "net/core/rmem_max",
    "wmem_max": "net/core/wmem_max",
    "somaxconn": "net/core/somaxconn",
    "max_dgram_qlen": "net/unix/max_dgram_qlen",
    "tcp_moderate_rcvbuf": "net/ipv4/tcp_moderate_rcvbuf",
    "tcp_max_orphans": "net/ipv4/tcp_max_orphans",
    "tcp_abort_on_overflow": "net/ipv4/tcp_abort_on_overflow",
    "tcp_max_syn_backlog": "net/ipv4/tcp_max_syn_backlog",
}


def read_text(path: str) -> str | None:
    """The whole file in one read, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except (OSError, ValueError):
        return None


def put_int(out: dict[str, int], key: str, value: str) -> None:
    """Store value as an int; a garbled value leaves the key out."""
    with contextlib.suppress(ValueError):
        out[key] = int(value)


def parse_header_pairs(text: str, groups: frozenset[str], out: dict[str, int]) -> None:
    """netstat/snmp layout: a "Group: names..." line followed by "Group: values..."."""
    header: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if not header or not fields or fields[0] != header[0]:
            header = fields
            continue
        group = header[0].rstrip(":")
        if group in groups and len(header) == len(fields):
            for name, value in zip(header[1:], fields[1:], strict=True):
                put_int(out, f"{group}.{name}", value)
        header = []


def parse_snmp6(text: str, out: dict[str, int]) -> None:
    cut = len(SNMP6_GROUP)
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0].startswith(SNMP6_GROUP):
            put_int(out, f"{SNMP6_GROUP}.{fields[0][cut:]}", fields[1])


def parse_sockstat(text: str, out: dict[str, int]) -> None:
    """ "TCP: inuse 5 orphan 0 tw 0 alloc 6 mem 95" -> {"TCP.inuse": 5, ...}."""
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        proto = fields[0].rstrip(":")
        for name, value in zip(fields[1::2], fields[2::2], strict=False):
            put_int(out, f"{proto}.{name}", value)


def parse_int_list(text: str) -> list[int] | None:
    try:
        values = [int(field) for field in text.split()]
    except ValueError:
        return None
    return values or None


class SystemReader:
    """Reads SystemFacts; deltas cover the time since this reader's previous read()."""

    def __init__(self, proc_net: str = "/proc/net", proc_sys: str = "/proc/sys") -> None:
        self.proc_net = proc_net
        self.proc_sys = proc_sys
        self._previous: dict[str, int] | None = None
        self._previous_time = 0.0

    def read(self, now: float) -> SystemFacts:
        counters = self.read_counters()
        facts = SystemFacts(
            counters=counters, sockstat=self.read_sockstat(), sysctls=self.read_sysctls()
        )
        previous = self._previous
        if previous is not None:
            facts.interval = now - self._previous_time
            # A counter that went backwards (namespace recreated) restarts from zero.
            facts.deltas = {
                key: max(value - previous[key], 0)
                for key, value in counters.items()
                if key in previous
            }
        self._previous = counters
        self._previous_time = now
        return facts

    def read_counters(self) -> dict[str, int]:
        counters: dict[str, int] = {}
        for name, groups in HEADER_FILES.items():
            text = read_text(f"{self.proc_net}/{name}")
            if text is not None:
                parse_header_pairs(text, groups, counters)
        text = read_text(f"{self.proc_net}/snmp6")
        if text is not None:
            parse_snmp6(text, counters)
        return counters

    def read_sockstat(self) -> dict[str, int]:
        sockstat: dict[str, int] = {}
        for name in SOCKSTAT_FILES:
            text = read_text(f"{self.proc_net}/{name}")
            if text is not None:
                parse_sockstat(text, sockstat)
        return sockstat

    def read_sysctls(self) -> dict[str, list[int]]:
        sysctls: dict[str, list[int]] = {}
        for key, path in SYSCTL_PATHS.items():
            text = read_text(f"{self.proc_sys}/{path}")
            values = None if text is None else parse_int_list(text)
            if values is not None:
                sysctls[key] = values
        return sysctls
