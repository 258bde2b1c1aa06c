"""What one sample can tell (`bufmon snapshot`): no hold times, no progress, since = 0."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bufmon.diagnosis.latch import Finding
from bufmon.diagnosis.limits import sysctl
from bufmon.diagnosis.rules import HANDSHAKE, Track, udp_finding
from bufmon.diagnosis.system_rules import memory_finding, orphan_finding, port_finding
from bufmon.diagnosis.unix_rules import UnixRules
from collectors.model import Flag, Snapshot, Sock, UnixSock

if TYPE_CHECKING:
    from bufmon.diagnosis.config import Config
    from bufmon.diagnosis.rules import SocketRules


def as_flag(kind: str, finding: Finding | None, now: float) -> Flag | None:
    return None if finding is None else finding.flag(kind, 0.0, now)


def socket_flags(
    s: Sock, config: Config, rules: SocketRules, track: Track, unix_rules: UnixRules
) -> Sequence[Flag]:
    """The flags one sample raises on `s`; () (shared, no list) for most sockets.
    `track`: an empty history at the sample's time, which the rules only read."""
    now = track.seen
    if isinstance(s, UnixSock):  # one sample shows no drain progress: only the backlog
        finding = unix_rules.accept_queue(s) if s.is_listener else None
        flags = [as_flag("accept_queue_full", finding, now)]
    elif s.state == "LISTEN":
        abort = sysctl(unix_rules.sysctls, "tcp_abort_on_overflow")
        flags = [as_flag("accept_queue_full", rules.accept_queue(s, 0, 0, abort), now)]
    elif s.proto == "udp":
        cfg = config.udp_drops
        flags = [as_flag("udp_drops", udp_finding(s, None, cfg.fill, 0.0), now)]
    elif s.info is not None and s.state not in HANDSHAKE:
        zero = rules.zero_window(s, track, now)
        full = None if zero is not None else rules.send_full(s, track, now)
        if zero is None and full is None:
            return ()
        flags = [as_flag("peer_zero_window", zero, now), as_flag("send_queue_full", full, now)]
    else:
        return ()
    return [f for f in flags if f is not None]


def evaluate_single(snap: Snapshot, config: Config, rules: SocketRules) -> None:
    now = snap.time
    unix_rules = UnixRules(config)
    unix_rules.sysctls = snap.system.sysctls
    track = Track(now)  # no history, shared: not one per socket
    for s in snap.sockets:
        # Most sockets of a big host: a TCP connection with nothing to send. The rules a
        # sample checks on it (peer_zero_window, send_queue_full) each first ask for a
        # send queue: a comparison here, not three calls.
        if s.send_q <= 0 and s.proto == "tcp" and s.state != "LISTEN":
            s.flags = ()
        else:
            s.flags = socket_flags(s, config, rules, track, unix_rules)
    facts = snap.system
    finding, _ = memory_finding(config, facts.sockstat, facts.sysctls.get("tcp_mem"), {}, False)
    system = [
        as_flag("memory_pressure", finding, now),
        as_flag("orphan_sockets", orphan_finding(config, facts.sockstat, facts.sysctls), now),
    ]
    finding, members = port_finding(snap.sockets, facts.sysctls.get("ip_local_port_range"), config)
    ports = as_flag("port_exhaustion", finding, now)
    if ports is not None:
        system.append(ports)
        for s in members:
            s.flags = [*s.flags, ports]
    snap.system_flags = [f for f in system if f is not None]
