"""Per-socket rules. Each keeps a little streaming state in a Track (progress marks,
latches) instead of reading history, except the slow-reader window."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bufmon.diagnosis import text
from bufmon.diagnosis.config import Config
from bufmon.diagnosis.history import FILL_SCALE, History
from bufmon.diagnosis.latch import Finding, Latches, advance, step
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
        "steady_until",
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
        self.steady_until = now  # see SocketRules.tcp

    def progress(self, now: float, read: int, acked: int) -> None:
        """Note the time of any read (bytes_received - Recv-Q) or ack progress."""
        if read != self.read_mark:
            self.read_mark = read
            self.read_t = now
        if acked != self.acked_mark:
            self.acked_mark = acked
            self.acked_t = now


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


def drops_finding(s: Sock, severity: str, hold: float, kind: str, n: int, fill: float) -> Finding:
    """A udp_drops finding; `kind` is one of text.udp_drops's reasons."""
    return Finding(severity, hold, text.udp_drops, (s, kind, n, fill), variant=kind)


class SocketRules:
    def __init__(self, config: Config, history: History) -> None:
        self.config = config
        self.history = history
        self._tcp_kinds = (  # (kind, clear) in the order of tcp()'s findings
            ("stalled_reader", config.stalled_reader.clear),
            ("slow_reader", config.slow_reader.clear),
            ("peer_zero_window", config.peer_zero_window.clear),
            ("send_queue_full", config.send_queue_full.clear),
            ("rcvbuf_overrun", config.rcvbuf_overrun.clear),
            ("nagle_hint", config.nagle_hint.clear),
        )

    def tcp(self, s: Sock, tr: Track, ctx: Refresh, changed: bool = True) -> list[Flag]:
        """The connection rules. `changed`: the sample differs from the last one (its
        signature: queues, skmem, segs_in, state), else the progress marks still hold.
        Sets tr.steady_until: until then an unchanged sample may carry() the flags."""
        info = s.info
        if info is None or s.state in HANDSHAKE:
            return []
        now = ctx.now
        if changed:
            read = (info.get("bytes_received") or 0) - s.recv_q
            tr.progress(now, read, info.get("bytes_acked") or 0)
        zero = self.zero_window(s, tr, now)
        findings = (
            self._stalled(s, tr, now),
            self._slow(s, tr, now),
            zero,
            None if zero is not None else self.send_full(s, tr, now),
            self._overrun(s, ctx),
            self._nagle(s, ctx),
        )
        flags = advance(tr.latches, now, self._tcp_kinds, findings)
        tr.steady_until = self._steady_until(s, tr, now)
        return flags

    def _steady_until(self, s: Sock, tr: Track, now: float) -> float:
        """Until when the same sample gets the same verdict and the same flag texts
        (`now`: evaluate the next sample in full). The overrun rule is left to the
        caller: it depends on the refresh's counters, not on the sample.

        Any incoming segment changes segs_in, so an unchanged sample also means unchanged
        windows, rtt and read/ack progress; what still moves is time: pending and
        clearing latches, the slow-reader window, the chrono counters and zero-window
        age of a non-empty Send-Q, and text refreshes."""
        if s.send_q > 0 or (s.recv_q > 0 and tr.read_t >= now):
            return now
        if s.recv_q >= self.config.slow_reader.min_queue and not self._stalled_long(tr, now):
            return now
        until = math.inf
        for latch in tr.latches.values():
            if latch.flag is None or latch.false_since is not None:
                return now
            until = min(until, latch.text_due)
        return until

    def _stalled(self, s: Sock, tr: Track, now: float) -> Finding | None:
        """Recv-Q waits and the app has not read since tr.read_t."""
        if s.recv_q <= 0 or tr.read_t >= now:
            return None
        info = s.info
        assert info is not None
        sk = s.skmem
        r, rb = (sk[SK_RMEM], sk[SK_RCVBUF]) if sk else (0, 0)
        rcv_wnd = info.get("rcv_wnd")
        severity = CRITICAL if (rb and r >= rb) or rcv_wnd == 0 else WARNING
        args = (s, now - tr.read_t, r, rb, rcv_wnd)
        hold = self.config.stalled_reader.hold
        return Finding(severity, hold, text.stalled_reader, args, started=tr.read_t)

    def _slow(self, s: Sock, tr: Track, now: float) -> Finding | None:
        cfg = self.config.slow_reader
        if s.recv_q < cfg.min_queue or self._stalled_long(tr, now):
            return None
        share = self._share_high(s, now, cfg.window, cfg.min_queue, cfg.fill)
        if share < cfg.share:
            return None
        return Finding(INFO, 0.0, text.slow_reader, (s, share, cfg.fill, cfg.window))

    def _stalled_long(self, tr: Track, now: float) -> bool:
        """No read for the stalled-reader hold: a stall, not a slow reader."""
        return now - tr.read_t >= self.config.stalled_reader.hold

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
        """Send-Q waits on a shut window; tr.acked_t is the last ack progress."""
        info = s.info
        assert info is not None
        if s.send_q <= 0:
            return None
        snd_wnd = info.get("snd_wnd")
        if not (snd_wnd == 0 or s.timer == "persist"):
            return None
        cfg = self.config.peer_zero_window
        why = "snd_wnd 0" if snd_wnd == 0 else "persist timer"
        stuck = now - tr.acked_t
        latch = tr.latches.get("peer_zero_window")
        held = None if latch is None else now - latch.first
        severity = CRITICAL if stuck >= cfg.critical else WARNING
        args = (s, held, stuck, why)
        return Finding(severity, cfg.hold, text.peer_zero_window, args, variant=why)

    def send_full(self, s: Sock, tr: Track, now: float) -> Finding | None:
        cfg = self.config.send_queue_full
        if s.send_q <= 0:
            return None
        fill = s.send_fill()
        if fill is None or fill < cfg.fill:
            return None
        cause, share = self._send_cause(s, tr, now)
        severity = INFO if cause == "network" else WARNING
        args = (s, fill, cause, share)
        return Finding(severity, cfg.hold, text.send_queue_full, args, variant=cause)

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
        return Finding(WARNING, 0.0, text.rcvbuf_overrun, (s, ctx.overrun_events, r, rb))

    def _nagle(self, s: Sock, ctx: Refresh) -> Finding | None:
        info = s.info
        assert info is not None
        cfg = self.config.nagle_hint
        rtt = info.get("rtt") or 0
        if rtt < cfg.min_srtt_ms * 1000:
            return None
        min_rtt = info.get("min_rtt") or 0
        if rtt < cfg.rtt_ratio * min_rtt:
            return None
        if not info.get("delivery_rate_app_limited"):
            return None
        segs = info.get("data_segs_out") or 0
        if segs == 0 or (info.get("bytes_acked") or 0) / segs >= (info.get("snd_mss") or 0) / 2:
            return None
        delayed = ctx.deltas.get("TcpExt.DelayedACKs", 0)
        args = (s, rtt / 1000, min_rtt / 1000, delayed)
        return Finding(INFO, cfg.hold, text.nagle_hint, args)

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
            finding = drops_finding(s, CRITICAL, 0.0, "dropped", rise, fill)
        elif fill >= cfg.fill:
            finding = drops_finding(s, WARNING, cfg.hold, "full", 0, fill)
        elif tb and sk[SK_WMEM] >= tb:
            finding = drops_finding(s, WARNING, cfg.hold, "send", 0, sk[SK_WMEM] / tb)
        elif drops > 0:  # dropped before we watched, or long ago
            finding = drops_finding(s, INFO, 0.0, "total", drops, fill)
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
        args = (s, full, rise, overflows if critical else 0)
        hold = cfg.full_hold if critical else cfg.hold
        return Finding(CRITICAL if critical else WARNING, hold, text.accept_queue, args)
