"""What one sample can tell (`bufmon snapshot`): no hold times, no progress, since = 0."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bufmon.diagnosis import text
from bufmon.diagnosis.latch import Finding
from bufmon.diagnosis.rules import HANDSHAKE, WARNING, Track, drops_finding
from bufmon.diagnosis.system_rules import busiest_port_group, group_of, main_owner, memory_finding
from collectors.model import SK_DROPS, SK_RCVBUF, SK_RMEM, SK_SNDBUF, SK_WMEM, Flag, Snapshot, Sock

if TYPE_CHECKING:
    from bufmon.diagnosis.config import Config
    from bufmon.diagnosis.rules import SocketRules


def as_flag(kind: str, finding: Finding | None) -> Flag | None:
    if finding is None:
        return None
    return Flag(kind, finding.severity, 0.0, *finding.words())


def udp_finding(s: Sock, fill_limit: float) -> Finding | None:
    sk = s.skmem
    if sk is None:
        return None
    rb, tb = sk[SK_RCVBUF], sk[SK_SNDBUF]
    fill = sk[SK_RMEM] / rb if rb else 0.0
    if sk[SK_DROPS] > 0:
        return drops_finding(s, WARNING, 0.0, "total", sk[SK_DROPS], fill)
    if fill >= fill_limit:
        return drops_finding(s, WARNING, 0.0, "full", 0, fill)
    if tb and sk[SK_WMEM] >= tb:
        return drops_finding(s, WARNING, 0.0, "send", 0, sk[SK_WMEM] / tb)
    return None


def socket_flags(s: Sock, config: Config, rules: SocketRules, now: float) -> list[Flag]:
    if s.state == "LISTEN":
        flags = [as_flag("accept_queue_full", rules.accept_queue(s, 0, 0))]
    elif s.proto == "udp":
        flags = [as_flag("udp_drops", udp_finding(s, config.udp_drops.fill))]
    elif s.info is not None and s.state not in HANDSHAKE:
        zero = rules.zero_window(s, Track(now), now)
        full = None if zero is not None else rules.send_full(s, Track(now), now)
        flags = [as_flag("peer_zero_window", zero), as_flag("send_queue_full", full)]
    else:
        return []
    return [f for f in flags if f is not None]


def evaluate_single(snap: Snapshot, config: Config, rules: SocketRules) -> None:
    now = snap.time
    for s in snap.sockets:
        s.flags = socket_flags(s, config, rules, now)
    facts = snap.system
    finding, _ = memory_finding(config, facts.sockstat, facts.sysctls.get("tcp_mem"), {}, False)
    system = [as_flag("memory_pressure", finding)]
    cfg = config.port_exhaustion
    busiest = busiest_port_group(snap.sockets, facts.sysctls.get("ip_local_port_range"), cfg.warn)
    if busiest is not None and busiest[1] >= cfg.warn * busiest[2]:
        group, used, size = busiest
        members = [s for s in snap.sockets if group_of(s) == group]
        severity = "critical" if used >= cfg.critical * size else WARNING
        reason, advice = text.port_exhaustion(group[1:], used, size, main_owner(members))
        flag = Flag("port_exhaustion", severity, 0.0, reason, advice)
        system.append(flag)
        for s in members:
            s.flags = [*s.flags, flag]
    snap.system_flags = [f for f in system if f is not None]
