"""Per-socket rules. Each keeps a little streaming state in a Track (progress marks,
latches) instead of reading history, except the slow-reader window."""

from __future__ import annotations

from dataclasses import dataclass, field

from bufmon.diagnosis import text
from bufmon.diagnosis.config import Config
from bufmon.diagnosis.history import FILL_SCALE, History
from bufmon.diagnosis.latch import Finding, Latches, step
from collectors.model import SK_DROPS, SK_RCVBUF, SK_RMEM, SK_SNDBUF, SK_WMEM, Flag, Sock

WARNING, CRITICAL, INFO = "warning", "critical", "info"
CHRONO_WINDOW = 10.0  # seconds of chrono counters behind a send-queue cause
HANDSHAKE = frozenset({"SYN-SENT", "SYN-RECV"})  # Send-Q holds the SYN, windows unknown


class Track:
    """Streaming state of one socket that needs rule work (queues, listener, UDP, flags)."""

    __slots__ = (
        "acked_mark",
        "acked_t",
        "chrono_new",
        "chrono_old",
        "chrono_t",
        "drops",
        "latches",
        "read_mark",
        "read_t",
        "seen",
        "sock",
    )

    def __init__(self, now: float) -> None:
        self.seen = now
        self.latches: Latches = {}
        self.sock: Sock | None = None  # last sample, kept while it has flags
        self.read_mark = -1  # bytes_received - Recv-Q: what the app has read
        self.read_t = now
        self.acked_mark = -1
        self.acked_t = now
        self.drops: int | None = None
        self.chrono_old: tuple[int, int, int] | None = None
        self.chrono_new: tuple[int, int, int] | None = None
        self.chrono_t = now


@dataclass(slots=True)
class Refresh:
    """What one refresh knows beyond the socket: time and host counter deltas."""

    now: float
    deltas: dict[str, int]
    rmem_default: int = 131072
    overrun_events: str = ""  # non-empty when TcpExt says received data was pruned
    blamed: set[str] = field(default_factory=set)  # kinds pinned on some socket


OVERRUN_COUNTERS = ("PruneCalled", "RcvPruned", "TCPRcvQDrop", "TCPZeroWindowDrop")


def counter_events(deltas: dict[str, int], group: str, names: tuple[str, ...]) -> str:
    """ "PruneCalled +3, RcvPruned +1" for the counters of `group` that rose."""
    return ", ".join(
        f"{name} +{deltas[f'{group}.{name}']}"
        for name in names
        if deltas.get(f"{group}.{name}", 0) > 0
    )


class SocketRules:
    def __init__(self, config: Config, history: History) -> None:
        self.config = config
        self.history = history

    def tcp(self, s: Sock, tr: Track, ctx: Refresh) -> list[Flag]:
        info = s.info
        if info is None or s.state in HANDSHAKE:
            return []
        now = ctx.now
        cfg = self.config
        latches = tr.latches
        flags = [
            step(latches, "stalled_reader", now, *self._stalled(s, tr, now)),
            step(latches, "slow_reader", now, self._slow(s, tr, now), cfg.slow_reader.clear),
        ]
        zero = self.zero_window(s, tr, now)
        flags.append(step(latches, "peer_zero_window", now, zero, cfg.peer_zero_window.clear))
        full = None if zero is not None else self.send_full(s, tr, now)
        flags.append(step(latches, "send_queue_full", now, full, cfg.send_queue_full.clear))
        overrun = self._overrun(s, ctx)
        flags.append(step(latches, "rcvbuf_overrun", now, overrun, cfg.rcvbuf_overrun.clear))
        flags.append(step(latches, "nagle_hint", now, self._nagle(s, ctx), cfg.nagle_hint.clear))
        return [f for f in flags if f is not None]

    def _stalled(self, s: Sock, tr: Track, now: float) -> tuple[Finding | None, float, float]:
        info = s.info
        assert info is not None
        cfg = self.config.stalled_reader
        read = (info.get("bytes_received") or 0) - s.recv_q
        if read != tr.read_mark:
            tr.read_mark = read
            tr.read_t = now
        if s.recv_q <= 0 or tr.read_t >= now:
            return None, cfg.clear, now
        sk = s.skmem
        r, rb = (sk[SK_RMEM], sk[SK_RCVBUF]) if sk else (0, 0)
        rcv_wnd = info.get("rcv_wnd")
        critical = (rb and r >= rb) or rcv_wnd == 0
        reason, advice = text.stalled_reader(s, now - tr.read_t, r, rb, rcv_wnd)
        finding = Finding(CRITICAL if critical else WARNING, cfg.hold, reason, advice)
        return finding, cfg.clear, tr.read_t

    def _slow(self, s: Sock, tr: Track, now: float) -> Finding | None:
        cfg = self.config.slow_reader
        if s.recv_q < cfg.min_queue or now - tr.read_t >= self.config.stalled_reader.hold:
            return None
        share = self._share_high(s, now, cfg.window, cfg.min_queue, cfg.fill)
        if share < cfg.share:
            return None
        return Finding(INFO, 0.0, *text.slow_reader(s, share, cfg.fill, cfg.window))

    def _share_high(self, s: Sock, now: float, window: float, min_queue: int, fill: float) -> float:
        """Part of the last `window` seconds with Recv-Q >= min_queue and r/rb >= fill."""
        start = now - window
        records = self.history.records(s.key, start)
        limit = fill * FILL_SCALE
        high = 0.0
        for i, (t, record) in enumerate(records):
            end = records[i + 1][0] if i + 1 < len(records) else now
            if record[1] >= min_queue and record[4] >= limit:
                high += max(end - max(t, start), 0.0)
        return high / window if window > 0 else 1.0

    def zero_window(self, s: Sock, tr: Track, now: float) -> Finding | None:
        info = s.info
        assert info is not None
        acked = info.get("bytes_acked") or 0
        if acked != tr.acked_mark:
            tr.acked_mark = acked
            tr.acked_t = now
        snd_wnd = info.get("snd_wnd")
        if s.send_q <= 0 or not (snd_wnd == 0 or s.timer == "persist"):
            return None
        cfg = self.config.peer_zero_window
        why = "snd_wnd 0" if snd_wnd == 0 else "persist timer"
        stuck = now - tr.acked_t
        latch = tr.latches.get("peer_zero_window")
        held = None if latch is None else now - latch.first
        reason, advice = text.peer_zero_window(s, held, stuck, why)
        severity = CRITICAL if stuck >= cfg.critical else WARNING
        return Finding(severity, cfg.hold, reason, advice)

    def send_full(self, s: Sock, tr: Track, now: float) -> Finding | None:
        cfg = self.config.send_queue_full
        fill = s.send_fill()
        if fill is None or fill < cfg.fill or s.send_q <= 0:
            return None
        cause, share = self._send_cause(s, tr, now)
        severity = INFO if cause == "network" else WARNING
        return Finding(severity, cfg.hold, *text.send_queue_full(s, fill, cause, share))

    def _send_cause(self, s: Sock, tr: Track, now: float) -> tuple[str, float]:
        """Which resource held the sender back, from chrono counters of the last 10-20 s."""
        info = s.info
        assert info is not None
        busy = info.get("busy_time")
        if busy is None:
            return "network", 0.0
        current = (busy, info.get("rwnd_limited") or 0, info.get("sndbuf_limited") or 0)
        if tr.chrono_old is None or tr.chrono_new is None:
            tr.chrono_old = tr.chrono_new = current
            tr.chrono_t = now
        elif now - tr.chrono_t >= CHRONO_WINDOW:
            tr.chrono_old, tr.chrono_new, tr.chrono_t = tr.chrono_new, current, now
        base = tr.chrono_old
        d_busy = current[0] - base[0]
        if d_busy <= 0:  # nothing new yet: judge by the totals
            base, d_busy = (0, 0, 0), current[0]
        if d_busy <= 0:
            return "network", 0.0
        rwnd = (current[1] - base[1]) / d_busy
        sndbuf = (current[2] - base[2]) / d_busy
        cfg = self.config.send_queue_full
        if rwnd >= cfg.peer_share:
            return "peer", rwnd
        if sndbuf >= cfg.buffer_share:
            return "buffer", sndbuf
        return "network", 0.0

    def _overrun(self, s: Sock, ctx: Refresh) -> Finding | None:
        sk = s.skmem
        if not ctx.overrun_events or sk is None:
            return None
        r, rb = sk[SK_RMEM], sk[SK_RCVBUF]
        small = rb < ctx.rmem_default and r >= self.config.rcvbuf_overrun.near * rb
        if not (r > rb or small):
            return None
        ctx.blamed.add("rcvbuf_overrun")
        return Finding(WARNING, 0.0, *text.rcvbuf_overrun(s, ctx.overrun_events, r, rb))

    def _nagle(self, s: Sock, ctx: Refresh) -> Finding | None:
        info = s.info
        assert info is not None
        cfg = self.config.nagle_hint
        rtt, min_rtt = info.get("rtt") or 0, info.get("min_rtt") or 0
        if rtt < cfg.min_srtt_ms * 1000 or rtt < cfg.rtt_ratio * min_rtt:
            return None
        if not info.get("delivery_rate_app_limited"):
            return None
        segs = info.get("data_segs_out") or 0
        if segs == 0 or (info.get("bytes_acked") or 0) / segs >= (info.get("snd_mss") or 0) / 2:
            return None
        delayed = ctx.deltas.get("TcpExt.DelayedACKs", 0)
        return Finding(INFO, cfg.hold, *text.nagle_hint(s, rtt / 1000, min_rtt / 1000, delayed))

    def udp(self, s: Sock, tr: Track, ctx: Refresh) -> list[Flag]:
        sk = s.skmem
        if sk is None:
            return []
        cfg = self.config.udp_drops
        drops = sk[SK_DROPS]
        rise = 0 if tr.drops is None else drops - tr.drops
        tr.drops = drops
        rb, tb = sk[SK_RCVBUF], sk[SK_SNDBUF]
        fill = sk[SK_RMEM] / rb if rb else 0.0
        finding = None
        if rise > 0:
            finding = Finding(CRITICAL, 0.0, *text.udp_drops(s, "dropped", rise, fill))
        elif fill >= cfg.fill:
            finding = Finding(WARNING, cfg.hold, *text.udp_drops(s, "full", 0, fill))
        elif tb and sk[SK_WMEM] >= tb:
            finding = Finding(WARNING, cfg.hold, *text.udp_drops(s, "send", 0, sk[SK_WMEM] / tb))
        elif drops > 0:  # dropped before we watched, or long ago
            finding = Finding(INFO, 0.0, *text.udp_drops(s, "total", drops, fill))
        if rise > 0 or (tb and sk[SK_WMEM] >= tb):
            ctx.blamed.add("udp_drops")
        flag = step(tr.latches, "udp_drops", ctx.now, finding, cfg.clear)
        return [] if flag is None else [flag]

    def listener(self, s: Sock, tr: Track, ctx: Refresh) -> list[Flag]:
        sk = s.skmem
        drops = 0 if sk is None else sk[SK_DROPS]
        rise = 0 if tr.drops is None else max(drops - tr.drops, 0)
        tr.drops = drops
        finding = self.accept_queue(s, rise, ctx.deltas.get("TcpExt.ListenOverflows", 0))
        clear = self.config.accept_queue_full.clear
        flag = step(tr.latches, "accept_queue_full", ctx.now, finding, clear)
        return [] if flag is None else [flag]

    def accept_queue(self, s: Sock, rise: int, overflows: int) -> Finding | None:
        """Recv-Q > Send-Q (or SYNs dropped) is critical; >= `fill` of the backlog a warning."""
        cfg = self.config.accept_queue_full
        queued, backlog = s.recv_q, s.send_q
        full = queued > backlog
        critical = full or rise > 0
        if not critical and not (backlog and queued >= cfg.fill * backlog):
            return None
        reason, advice = text.accept_queue(s, full, rise, overflows if critical else 0)
        hold = cfg.full_hold if critical else cfg.hold
        return Finding(CRITICAL if critical else WARNING, hold, reason, advice)
