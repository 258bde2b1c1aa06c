"""Metric families of one Snapshot: aggregated per listener and per process and port,
flag counts, system facts, and per-connection series only for the worst flagged sockets.

Label sets stay bounded whatever the host holds: a connection's local port is a label
only when some socket of that namespace listens on (or is bound to) it, otherwise it
counts under local_port="other". Process labels are `comm` names, never command lines.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from bufmon.diagnosis.rules import LOSS_COUNTERS, PRUNE_COUNTERS
from bufmon.diagnosis.system_rules import COOKIE_COUNTERS, MEMORY_COUNTERS, UDP_COUNTERS
from bufmon.present import worst_first
from collectors.model import FLAG_KINDS, SEVERITIES, SK_DROPS, Flag, Snapshot, Sock

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
OTHER_PORT = "other"
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z]{2})")
KINDS = sorted(FLAG_KINDS)
Labels = tuple[str, ...]
Family = TypeVar("Family", GaugeMetricFamily, CounterMetricFamily)

# The counters the diagnosis rules read, as "Group.Name" keys of SystemFacts.counters.
RULE_COUNTERS = (
    *(f"TcpExt.{n}" for n in (*PRUNE_COUNTERS, *LOSS_COUNTERS, *MEMORY_COUNTERS, *COOKIE_COUNTERS)),
    "TcpExt.ListenOverflows",
    "TcpExt.DelayedACKs",
    *(f"{g}.{n}" for g in ("Udp", "Udp6") for n in UDP_COUNTERS),
)

# sysctl -> (metric name, labels of its fields, multiplier to base units)
SYSCTLS = {
    "tcp_rmem": ("bufmon_sysctl_tcp_rmem_bytes", ("min", "default", "max"), 1),
    "tcp_wmem": ("bufmon_sysctl_tcp_wmem_bytes", ("min", "default", "max"), 1),
    "tcp_mem": ("bufmon_sysctl_tcp_mem_bytes", ("low", "pressure", "high"), PAGE_SIZE),
    "ip_local_port_range": ("bufmon_sysctl_ip_local_port_range", ("low", "high"), 1),
    "tcp_tw_reuse": ("bufmon_sysctl_tcp_tw_reuse", ("value",), 1),
    "rmem_max": ("bufmon_sysctl_rmem_max_bytes", ("value",), 1),
    "wmem_max": ("bufmon_sysctl_wmem_max_bytes", ("value",), 1),
    "somaxconn": ("bufmon_sysctl_somaxconn", ("value",), 1),
    "tcp_moderate_rcvbuf": ("bufmon_sysctl_tcp_moderate_rcvbuf", ("value",), 1),
    "tcp_max_orphans": ("bufmon_sysctl_tcp_max_orphans", ("value",), 1),
    "tcp_abort_on_overflow": ("bufmon_sysctl_tcp_abort_on_overflow", ("value",), 1),
    "tcp_max_syn_backlog": ("bufmon_sysctl_tcp_max_syn_backlog", ("value",), 1),
}

# sockstat key -> (metric name, multiplier, help)
SOCKSTAT = {
    "TCP.mem": ("bufmon_tcp_memory_bytes", PAGE_SIZE, "Memory of all TCP sockets (sockstat)"),
    "UDP.mem": ("bufmon_udp_memory_bytes", PAGE_SIZE, "Memory of all UDP sockets (sockstat)"),
    "TCP.orphan": ("bufmon_tcp_orphan_sockets", 1, "TCP sockets no process holds any more"),
    "TCP.tw": ("bufmon_tcp_timewait_sockets", 1, "TCP sockets in TIME-WAIT"),
}

LISTENER_LABELS = ["netns", "proto", "process", "local_address", "local_port"]
GROUP_LABELS = ["netns", "proto", "process", "local_port"]
SOCKET_LABELS = [
    "netns",
    "proto",
    "state",
    "process",
    "local_address",
    "local_port",
    "peer_address",
    "peer_port",
]


def process_label(sock: Sock) -> str:
    return "" if sock.process is None else sock.process.comm


def is_listener(sock: Sock) -> bool:
    """TCP LISTEN sockets and bound UDP sockets without a peer."""
    return sock.state == "LISTEN" or (sock.proto == "udp" and not sock.peer_port)


@dataclass
class FlagOnsets:
    """Counts flags as they rise: a (socket or system, kind) raised now and not before."""

    raised: Counter[tuple[str, str]] = field(default_factory=Counter)
    _before: set[tuple[object, str]] = field(default_factory=set)

    def update(self, snap: Snapshot) -> None:
        now: dict[tuple[object, str], Flag] = {("system", f.kind): f for f in snap.system_flags}
        for s in snap.sockets:
            for f in s.flags:
                now[(s.key, f.kind)] = f
        for key, flag in now.items():
            if key not in self._before:
                self.raised[(flag.kind, flag.severity)] += 1
        self._before = set(now)


@dataclass
class ExporterStats:
    """The exporter's own health, shown next to the snapshot's metrics."""

    refreshes: int = 0
    errors: int = 0
    cut: int = 0  # flagged sockets left out of per-connection series, summed
    last_duration: float = 0.0
    last_success: float = 0.0
    sockets: int = 0


def gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels or [])


def counter(name: str, doc: str, labels: list[str] | None = None) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels or [])


def families(
    snap: Snapshot, onsets: FlagOnsets, max_sockets: int, stats: ExporterStats
) -> list[Metric]:
    """Every family of one refresh; adds to stats.cut what the per-connection cap left out."""
    live = [s for s in snap.sockets if not s.closed]
    out = [*listener_families(live), *group_families(live), *flag_families(live, snap, onsets)]
    flagged = worst_first([s for s in live if s.flags])
    stats.cut += max(0, len(flagged) - max_sockets)
    out += socket_families(flagged[:max_sockets])
    out += system_families(snap)
    return out


def filled(family: Family, counts: Counter[Labels]) -> Family:
    for labels, value in counts.items():
        family.add_metric(list(labels), value)
    return family


def listener_families(socks: Iterable[Sock]) -> Iterator[Metric]:
    queue: Counter[Labels] = Counter()
    limit: Counter[Labels] = Counter()
    dropped: Counter[Labels] = Counter()
    for s in socks:
        if not is_listener(s):
            continue
        key = (s.netns, s.proto, process_label(s), s.local_addr, str(s.local_port))
        if s.proto == "tcp":
            queue[key] += s.recv_q
            limit[key] += s.send_q
        dropped[key] += s.skmem_value(SK_DROPS) or 0
    yield filled(
        gauge(
            "bufmon_listener_accept_queue",
            "Connections waiting in a TCP listener's accept queue (Recv-Q of LISTEN)",
            LISTENER_LABELS,
        ),
        queue,
    )
    yield filled(
        gauge(
            "bufmon_listener_backlog",
            "Accept queue limit of a TCP listener: min(listen() backlog, somaxconn)",
            LISTENER_LABELS,
        ),
        limit,
    )
    yield filled(
        counter(
            "bufmon_listener_drops",
            "Packets a listener (TCP LISTEN or unconnected UDP socket) dropped (skmem d)",
            LISTENER_LABELS,
        ),
        dropped,
    )


def group_families(socks: list[Sock]) -> Iterator[Metric]:
    """Queued bytes and sockets by state, per process and local (listening) port."""
    bound = {(s.netns, s.proto, s.local_port) for s in socks if is_listener(s)}
    recv: Counter[Labels] = Counter()
    send: Counter[Labels] = Counter()
    states: Counter[Labels] = Counter()
    for s in socks:
        port = str(s.local_port) if (s.netns, s.proto, s.local_port) in bound else OTHER_PORT
        key = (s.netns, s.proto, process_label(s), port)
        states[(*key, s.state)] += 1
        if s.state != "LISTEN":  # a listener's Recv-Q counts connections, not bytes
            recv[key] += s.recv_q
            send[key] += s.send_q
    yield filled(
        gauge(
            "bufmon_receive_queue_bytes",
            "Bytes received and not yet read (Recv-Q), summed per process and local port",
            GROUP_LABELS,
        ),
        recv,
    )
    yield filled(
        gauge(
            "bufmon_send_queue_bytes",
            "Bytes written and not yet acknowledged (Send-Q), summed per process and local port",
            GROUP_LABELS,
        ),
        send,
    )
    yield filled(
        gauge(
            "bufmon_sockets",
            "Sockets per process, local port and state",
            [*GROUP_LABELS, "state"],
        ),
        states,
    )


def flag_families(socks: list[Sock], snap: Snapshot, onsets: FlagOnsets) -> Iterator[Metric]:
    onsets.update(snap)
    flagged = Counter((f.kind, f.severity) for s in socks for f in s.flags)
    system = Counter((f.kind, f.severity) for f in snap.system_flags)
    by_kind = gauge(
        "bufmon_flagged_sockets",
        "Sockets with a raised flag, by kind and severity",
        ["kind", "severity"],
    )
    sys_flags = gauge(
        "bufmon_system_flags",
        "Raised flags about the namespace or host as a whole, by kind and severity",
        ["kind", "severity"],
    )
    raised = counter(
        "bufmon_flags_raised",
        "Flags raised (socket and system), by kind and severity",
        ["kind", "severity"],
    )
    for kind in KINDS:
        for sev in SEVERITIES:
            by_kind.add_metric([kind, sev], flagged[(kind, sev)])
            sys_flags.add_metric([kind, sev], system[(kind, sev)])
            raised.add_metric([kind, sev], onsets.raised[(kind, sev)])
    held = gauge(
        "bufmon_system_flag_held_seconds",
        "How long a raised system flag's condition has held",
        ["kind", "severity"],
    )
    for f in snap.system_flags:
        held.add_metric([f.kind, f.severity], f.since)
    yield from (by_kind, sys_flags, raised, held)


def socket_labels(s: Sock) -> list[str]:
    return [
        s.netns,
        s.proto,
        s.state,
        process_label(s),
        s.local_addr,
        str(s.local_port),
        s.peer_addr,
        str(s.peer_port),
    ]


def socket_families(flagged: list[Sock]) -> Iterator[Metric]:
    """Per-connection series of the flagged sockets kept by --max-sockets."""
    held = gauge(
        "bufmon_socket_flag_held_seconds",
        "How long a flagged socket's condition has held (one series per flag)",
        [*SOCKET_LABELS, "kind", "severity"],
    )
    rq = gauge(
        "bufmon_socket_receive_queue_bytes",
        "Recv-Q of a flagged socket (a listener's: connections)",
        SOCKET_LABELS,
    )
    sq = gauge(
        "bufmon_socket_send_queue_bytes",
        "Send-Q of a flagged socket (a listener's: its backlog)",
        SOCKET_LABELS,
    )
    for s in flagged:
        labels = socket_labels(s)
        rq.add_metric(labels, s.recv_q)
        sq.add_metric(labels, s.send_q)
        for f in s.flags:
            held.add_metric([*labels, f.kind, f.severity], f.since)
    yield from (held, rq, sq)


def snake(name: str) -> str:
    """ "TCPRcvQDrop" -> "tcp_rcv_q_drop", "Udp6" -> "udp6"."""
    return _CAMEL.sub("_", name).lower()


def counter_name(key: str) -> str:
    """ "TcpExt.ListenOverflows" -> "bufmon_tcpext_listen_overflows" (the client adds _total)."""
    group, name = key.split(".")
    return f"bufmon_{group.lower()}_{snake(name)}"


def system_families(snap: Snapshot) -> Iterator[Metric]:
    facts = snap.system
    for key in RULE_COUNTERS:
        if key in facts.counters:
            group, name = key.split(".")
            yield CounterMetricFamily(
                counter_name(key),
                f"{group} {name} from /proc/net, as node_exporter's netstat",
                value=facts.counters[key],
            )
    for key, (name, scale, doc) in SOCKSTAT.items():
        if key in facts.sockstat:
            yield GaugeMetricFamily(name, doc, value=facts.sockstat[key] * scale)
    for key, (name, parts, scale) in SYSCTLS.items():
        values = facts.sysctls.get(key)
        if values is None or len(values) != len(parts):
            continue
        fam = gauge(name, f"The sysctl {key}, as bufmon reads it", ["field"])
        for part, value in zip(parts, values, strict=True):
            fam.add_metric([part], value * scale)
        yield fam


# ExporterStats field -> (family class, metric name, help)
EXPORTER_METRICS = {
    "last_duration": (
        GaugeMetricFamily,
        "bufmon_exporter_refresh_duration_seconds",
        "Duration of the last refresh (sockets, processes, flags, metrics)",
    ),
    "refreshes": (CounterMetricFamily, "bufmon_exporter_refreshes", "Refreshes attempted"),
    "errors": (CounterMetricFamily, "bufmon_exporter_refresh_errors", "Refreshes that failed"),
    "last_success": (
        GaugeMetricFamily,
        "bufmon_exporter_last_refresh_timestamp_seconds",
        "Unix time of the last successful refresh",
    ),
    "sockets": (GaugeMetricFamily, "bufmon_exporter_sockets", "Sockets seen by the last refresh"),
    "cut": (
        CounterMetricFamily,
        "bufmon_exporter_flagged_sockets_cut",
        "Flagged sockets left out of per-connection series by --max-sockets, summed over refreshes",
    ),
}


def exporter_families(stats: ExporterStats) -> Iterator[Metric]:
    for attr, (family, name, doc) in EXPORTER_METRICS.items():
        yield family(name, doc, value=getattr(stats, attr))
