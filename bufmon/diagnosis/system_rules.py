"""Rules over the whole namespace or host: memory pressure, port exhaustion, SYN backlog,
and counters that no single socket can be blamed for."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from bufmon.diagnosis import text
from bufmon.diagnosis.config import Config
from bufmon.diagnosis.latch import Finding, Latches, step
from bufmon.diagnosis.limits import sysctl
from bufmon.diagnosis.rules import CRITICAL, WARNING, Refresh, Track, counter_events
from collectors.model import Flag, Sock

WILDCARDS = frozenset({"0.0.0.0", "::"})
COOKIE_COUNTERS = ("SyncookiesSent", "TCPReqQFullDoCookies", "TCPReqQFullDrop")
MEMORY_COUNTERS = ("TCPMemoryPressures", "TCPAbortOnMemory")
UDP_COUNTERS = ("RcvbufErrors", "SndbufErrors")

PortGroup = tuple[str, str, str, int]  # netns, local IP, remote IP, remote port


def memory_level(pages: int, limits: list[int], warn: float, in_pressure: bool) -> str | None:
    """tcp_mem semantics: pressure starts at `pressure` and lasts until below `low`."""
    low, pressure, high = limits
    if pages >= high:
        return "high"
    if pages >= pressure or (in_pressure and pages >= low):
        return "pressure"
    if pages >= warn * pressure:
        return "approaching"
    return None


def memory_finding(
    config: Config,
    sockstat: dict[str, int],
    limits: list[int] | None,
    deltas: dict[str, int],
    in_pressure: bool,
) -> tuple[Finding | None, bool]:
    """The memory verdict and whether the kernel is now in its pressure state."""
    events = counter_events(deltas, "TcpExt", MEMORY_COUNTERS)
    pages = sockstat.get("TCP.mem")
    level = None
    if pages is not None and limits is not None and len(limits) == 3:
        level = memory_level(pages, limits, config.memory_pressure.warn, in_pressure)
    if level is None and not events:
        return None, False
    severity = CRITICAL if level == "high" or deltas.get("TcpExt.TCPAbortOnMemory", 0) else WARNING
    if level is None:
        finding = Finding(severity, 0.0, text.memory_events, (events,))
    else:
        args = (level, pages, limits, events)
        finding = Finding(severity, 0.0, text.memory_pressure, args)
    return finding, level in ("pressure", "high")


def orphan_finding(
    config: Config, sockstat: dict[str, int], sysctls: dict[str, list[int]]
) -> Finding | None:
    """Orphaned TCP sockets (sockstat) against tcp_max_orphans."""
    cfg = config.orphan_sockets
    orphans, limit = sockstat.get("TCP.orphan"), sysctl(sysctls, "tcp_max_orphans")
    if not orphans or not limit or orphans < cfg.warn * limit:
        return None
    severity = CRITICAL if orphans >= cfg.critical * limit else WARNING
    return Finding(severity, 0.0, text.orphan_sockets, (orphans, limit))


def may_occur(values: list[int], times: float) -> bool:
    """Whether some value occurs at least `times` times in `values`. Such a value misses
    at most n - times places, so it is in every run of n - times + 1 of them: when
    several such runs fit, only values in all of them are counted (sets, in C)."""
    width = len(values) - math.ceil(times) + 1
    if width <= 0:
        return False
    if 2 * width > len(values):  # one run: no fewer candidates than a count
        return max(Counter(values).values(), default=0) >= times
    runs = [values[at : at + width] for at in range(width, len(values) - width + 1, width)]
    return any(values.count(v) >= times for v in set(values[:width]).intersection(*runs))


def busiest_port_group(
    socks: list[Sock], port_range: list[int] | None, warn: float
) -> tuple[PortGroup, int, int] | None:
    """The (netns, local IP, remote IP, remote port) using most ephemeral ports, with the
    count and the range size; None when no group can reach `warn` of the range."""
    if port_range is None or len(port_range) != 2:
        return None
    lo, hi = port_range
    size = hi - lo + 1
    if size <= 0 or len(socks) < warn * size:  # cheap: too few sockets to matter
        return None
    # A group shares its remote port: when no remote port is that common, no group is
    # (C-level work on ints instead of a tuple per socket, every refresh at 40,000; a
    # list comprehension reads the attribute faster than attrgetter on Python 3.11)
    if not may_occur([s.peer_port for s in socks], warn * size):
        return None
    counts = Counter(
        (s.netns, s.local_addr, s.peer_addr, s.peer_port)
        for s in socks
        if lo <= s.local_port <= hi and s.peer_port and s.proto == "tcp"
    )
    if not counts:
        return None
    group, used = counts.most_common(1)[0]
    return group, used, size


def group_of(s: Sock) -> PortGroup:
    return (s.netns, s.local_addr, s.peer_addr, s.peer_port)


def main_owner(socks: list[Sock]) -> Sock | None:
    """A socket of the process owning most of `socks` (None when none is known)."""
    by_pid = Counter(s.process.pid for s in socks if s.process is not None)
    if not by_pid:
        return None
    pid = by_pid.most_common(1)[0][0]
    return next(s for s in socks if s.process is not None and s.process.pid == pid)


def port_finding(
    socks: list[Sock], port_range: list[int] | None, config: Config
) -> tuple[Finding | None, list[Sock]]:
    """The port_exhaustion verdict and the sockets of the group it names."""
    cfg = config.port_exhaustion
    busiest = busiest_port_group(socks, port_range, cfg.warn)
    if busiest is None or busiest[1] < cfg.warn * busiest[2]:
        return None, []
    group, used, size = busiest
    members = [s for s in socks if group_of(s) == group]
    severity = CRITICAL if used >= cfg.critical * size else WARNING
    args = (group[1:], used, size, main_owner(members))
    return Finding(severity, cfg.hold, text.port_exhaustion, args), members


class SystemRules:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.latches: Latches = {}
        self.in_pressure = False

    def evaluate(
        self,
        socks: list[Sock],
        ctx: Refresh,
        sockstat: dict[str, int],
        sysctls: dict[str, list[int]],
    ) -> list[Flag]:
        cfg = self.config
        now, deltas = ctx.now, ctx.deltas
        finding, self.in_pressure = memory_finding(
            cfg, sockstat, sysctls.get("tcp_mem"), deltas, self.in_pressure
        )
        flags = [step(self.latches, "memory_pressure", now, finding, cfg.memory_pressure.clear)]
        flags.append(self._ports(socks, now, sysctls.get("ip_local_port_range")))
        overrun = None
        if ctx.loss_events and "rcvbuf_overrun" not in ctx.blamed:  # pruning alone: no loss
            overrun = Finding(WARNING, 0.0, text.rcvbuf_overrun, (None, ctx.loss_events))
        flags.append(step(self.latches, "rcvbuf_overrun", now, overrun, cfg.rcvbuf_overrun.clear))
        udp_events = ", ".join(
            e for e in (counter_events(deltas, g, UDP_COUNTERS) for g in ("Udp", "Udp6")) if e
        )
        udp = None
        if udp_events and "udp_drops" not in ctx.blamed:
            udp = Finding(WARNING, 0.0, text.udp_counters, (udp_events,))
        flags.append(step(self.latches, "udp_drops", now, udp, cfg.udp_drops.clear))
        orphans = orphan_finding(cfg, sockstat, sysctls)
        flags.append(step(self.latches, "orphan_sockets", now, orphans, cfg.orphan_sockets.clear))
        return [f for f in flags if f is not None]

    def _ports(self, socks: list[Sock], now: float, port_range: list[int] | None) -> Flag | None:
        cfg = self.config.port_exhaustion
        finding, members = port_finding(socks, port_range, self.config)
        flag = step(self.latches, "port_exhaustion", now, finding, cfg.clear)
        if flag is not None:
            for s in members:
                s.flags = [*s.flags, flag]
        return flag

    def syn_backlog(
        self, listeners: list[tuple[Sock, Track]], others: Iterable[Sock], ctx: Refresh
    ) -> Flag | None:
        """Half-open connections per listener against its backlog, and SYN cookie counters.

        Listener flags go onto the listener; cookies nobody can be blamed for become a
        system flag (returned)."""
        cfg = self.config.syn_backlog
        by_addr: Counter[tuple[str, str, int]] = Counter(
            (s.netns, s.local_addr, s.local_port) for s in others if s.state == "SYN-RECV"
        )
        by_port: Counter[tuple[str, int]] = Counter()
        for (netns, _addr, port), n in by_addr.items():
            by_port[(netns, port)] += n
        cookies = counter_events(ctx.deltas, "TcpExt", COOKIE_COUNTERS)

        def half_open(s: Sock) -> int:
            if s.local_addr in WILDCARDS:
                return by_port[(s.netns, s.local_port)]
            return by_addr[(s.netns, s.local_addr, s.local_port)]

        counts = [(half_open(s), s, tr) for s, tr in listeners]
        victim = max(counts, key=lambda c: c[0], default=None)
        if victim is not None and victim[0] == 0:
            victim = None
        for count, s, tr in counts:
            blame = cookies if victim is not None and s is victim[1] else ""
            finding = None
            if count > s.send_q or blame:
                hold = 0.0 if blame else cfg.hold
                args = (s, count, s.send_q, blame)
                finding = Finding(WARNING, hold, text.syn_backlog, args)
            flag = step(tr.latches, "syn_backlog", ctx.now, finding, cfg.clear)
            if flag is not None:
                s.flags = [*s.flags, flag]
        orphan = None
        if cookies and victim is None:
            orphan = Finding(WARNING, 0.0, text.syn_backlog, (None, 0, 0, cookies))
        return step(self.latches, "syn_backlog", ctx.now, orphan, cfg.clear)
