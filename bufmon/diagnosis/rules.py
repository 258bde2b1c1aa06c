"""Per-socket rules. Each keeps a little streaming state in a Track (progress marks,
latches) instead of reading history, except the slow-reader window and the chrono
counters behind a sender's limit (bufmon.diagnosis.limits)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

from bufmon.diagnosis import text
from bufmon.diagnosis.config import Config
from bufmon.diagnosis.history import FILL_SCALE, History
from bufmon.diagnosis.latch import Finding, Latches, Since, advance, step
from bufmon.diagnosis.limits import (
    CHRONO_WINDOW,
    LIMIT_FIELDS,
    Limit,
    ends_key,
    peer_key,
    receiver_of,
    recent,
    send_limit,
    sysctl,
)
from collectors.model import SK_DROPS, SK_RCVBUF, SK_RMEM, SK_SNDBUF, SK_WMEM, Flag, Sock

WARNING, CRITICAL, INFO = "warning", "critical", "info"
HANDSHAKE = frozenset({"SYN-SENT", "SYN-RECV"})  # Send-Q holds the SYN, windows unknown


class Track:
    """Streaming state of one socket that needs rule work (queues, listener, UDP, flags)."""

    __slots__ = (
        "acked_mark",
        "acked_t",
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
        self.steady_until = now  # see SocketRules.tcp

    def progress(self, now: float, read: int, acked: int) -> None:
        """Note the time of any read (bytes_received - Recv-Q) or ack progress."""
        if read != self.read_mark:
            self.read_mark = read
            self.read_t = now
        if acked != self.acked_mark:
            self.acked_mark = acked
            self.acked_t = now


class Refresh:
    """What one refresh knows beyond the socket: time and host counter deltas."""

    __slots__ = (
        "_close_waits", "_ends", "blamed", "deltas", "loss_events", "now", "prune_events",
        "rmem_default", "sockets", "sysctls", "tracks",
    )  # fmt: skip

    def __init__(
        self,
        now: float,
        deltas: dict[str, int],
        *,
        rmem_default: int,  # tcp_rmem[1]
        loss_events: str,  # non-empty when TcpExt says received data was thrown away
        prune_events: str,  # the kernel collapsed/pruned receive queues (no loss by itself)
        sysctls: Mapping[str, list[int]],
        sockets: Sequence[Sock],  # the whole snapshot, for the lookups below
        tracks: dict[str, dict[int, Track]],  # by netns, cookie
    ) -> None:
        self.now = now
        self.deltas = deltas
        self.rmem_default = rmem_default
        self.loss_events = loss_events
        self.prune_events = prune_events
        self.sysctls = sysctls
        self.sockets = sockets
        self.tracks = tracks
        self.blamed: set[str] = set()  # kinds pinned on some socket
        self._ends: dict[tuple[object, ...], Sock] | None = None
        self._close_waits: Counter[int | None] | None = None

    def local_peer(self, s: Sock) -> Sock | None:
        """The other end of connection `s` when it is in this snapshot (index built once)."""
        if self._ends is None:
            self._ends = {ends_key(o): o for o in self.sockets if o.info is not None}
        return self._ends.get(peer_key(s))

    def raised_kinds(self, s: Sock) -> list[str]:
        """Kinds raised on `s` by its rules so far (this refresh or the one before)."""
        tr = self.tracks.get(s.netns, {}).get(s.cookie)
        return [] if tr is None else [k for k, latch in tr.latches.items() if latch.flag]

    def close_waits(self, s: Sock) -> int:
        """CLOSE-WAIT connections of the process owning `s` (of unknown owners, if none)."""
        if self._close_waits is None:
            self._close_waits = Counter(
                None if o.process is None else o.process.pid
                for o in self.sockets
                if o.state == "CLOSE-WAIT"
            )
        return self._close_waits[None if s.process is None else s.process.pid]

    @property
    def abort_on_overflow(self) -> int | None:
        return sysctl(self.sysctls, "tcp_abort_on_overflow")


# Received data thrown away for want of receive memory: the sender must retransmit it.
# TCPOFODrop counts out-of-order segments dropped because the socket could not charge
# them to its receive buffer: data lost the same way.
LOSS_COUNTERS = ("RcvPruned", "OfoPruned", "TCPRcvQDrop", "TCPZeroWindowDrop", "TCPOFODrop")
# Work to make room without loss: tcp_prune_queue() collapses the queue and clamps the
# window first, and drops (counted above) only if that was not enough.
PRUNE_COUNTERS = ("PruneCalled", "TCPRcvCollapsed")


def counter_events(deltas: dict[str, int], group: str, names: tuple[str, ...]) -> str:
    """ "PruneCalled +3, RcvPruned +1" for the counters of `group` that rose."""
    return ", ".join(
        f"{name} +{deltas[f'{group}.{name}']}"
        for name in names
        if deltas.get(f"{group}.{name}", 0) > 0
    )


def udp_finding(s: Sock, rise: int | None, fill_limit: float, hold: float) -> Finding | None:
    """The udp_drops verdict of one UDP socket. `rise`: datagrams dropped since the last
    sample, None when one sample cannot tell (then old drops are a warning, not info)."""
    sk = s.skmem
    if sk is None:
        return None
    rb, tb = sk[SK_RCVBUF], sk[SK_SNDBUF]
    fill = sk[SK_RMEM] / rb if rb else 0.0
    if rise:
        return Finding(CRITICAL, 0.0, text.udp_drops, (s, "dropped", rise, fill))
    if rise is None and sk[SK_DROPS] > 0:
        return Finding(WARNING, 0.0, text.udp_drops, (s, "total", sk[SK_DROPS], fill))
    if fill >= fill_limit:
        return Finding(WARNING, hold, text.udp_drops, (s, "full", 0, fill))
    if tb and sk[SK_WMEM] >= tb:
        return Finding(WARNING, hold, text.udp_drops, (s, "send", 0, sk[SK_WMEM] / tb))
    if sk[SK_DROPS] > 0:  # dropped before we watched, or long ago
        return Finding(INFO, 0.0, text.udp_drops, (s, "total", sk[SK_DROPS], fill))
    return None


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
            ("buffer_limited", config.buffer_limited.clear),
            ("close_wait", config.close_wait.clear),
        )
        self._limit: tuple[Sock, float, Limit | None] | None = None  # send_limit's last

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
        zero = self.zero_window(s, tr, now, ctx)
        reader = s.inode != 0  # inode 0: not accepted yet, no process can read it
        findings = (
            self._stalled(s, tr, now) if reader else None,
            self._slow(s, tr, now) if reader else None,
            zero,
            None if zero is not None else self.send_full(s, tr, now, ctx),
            self._overrun(s, ctx),
            self._nagle(s, ctx, zero is not None),
            self._buffer_limited(s, tr, ctx),
            self._close_wait(s, tr, ctx),
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
        age of a non-empty Send-Q. Durations in flag texts count on by themselves."""
        if s.send_q > 0 or (s.recv_q > 0 and tr.read_t >= now) or s.state == "CLOSE-WAIT":
            return now  # CLOSE-WAIT: its flag counts the process's others, which move
        if s.recv_q >= self.config.slow_reader.min_queue and not self._stalled_long(tr, now):
            return now
        for latch in tr.latches.values():
            if latch.flag is None or latch.false_since is not None:
                return now
        return math.inf

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
        args = (s, Since(tr.read_t), r, rb, rcv_wnd)
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

    def zero_window(
        self, s: Sock, tr: Track, now: float, ctx: Refresh | None = None
    ) -> Finding | None:
        """Send-Q waits on a shut window, or on one held below one MSS while the peer's
        window limits the sender; tr.acked_t is the last ack progress."""
        info = s.info
        assert info is not None
        if s.send_q <= 0:
            return None
        snd_wnd = info.get("snd_wnd")
        mss = info.get("snd_mss") or 0
        if snd_wnd == 0:
            why = "snd_wnd 0"
        elif (
            snd_wnd is not None
            and snd_wnd < mss
            and (limit := self.send_limit(s, now, ctx)) is not None
            and limit.rwnd
        ):
            why = "small buffer" if limit.cause == "rcvbuf" else "small window"
        elif s.timer == "persist":
            why = "persist timer"
        else:
            return None
        cfg = self.config.peer_zero_window
        latch = tr.latches.get("peer_zero_window")
        held = None if latch is None else Since(latch.first)
        severity = CRITICAL if now - tr.acked_t >= cfg.critical else WARNING
        args = (s, held, Since(tr.acked_t), why, snd_wnd or 0, mss)
        return Finding(severity, cfg.hold, text.peer_zero_window, args)

    def send_limit(self, s: Sock, now: float, ctx: Refresh | None = None) -> Limit | None:
        """What held this sender back over the last CHRONO_WINDOW seconds (the last
        socket's verdict is kept: several rules ask about one socket in a row)."""
        memo = self._limit
        if memo is not None and memo[0] is s and memo[1] == now:
            return memo[2]
        info = s.info
        assert info is not None
        since = now - CHRONO_WINDOW
        series = {name: self.history.series(s.key, name, since) for name in LIMIT_FIELDS}
        receiver, sysctls = None, None
        if ctx is not None:
            sysctls = ctx.sysctls
            if info.get("rwnd_limited"):
                peer = ctx.local_peer(s)
                if peer is not None:
                    receiver = receiver_of(peer, ctx.raised_kinds(peer), sysctls)
        limit = send_limit(
            info, recent(series, since), self.config.send_queue_full, s.skmem, sysctls, receiver
        )
        self._limit = (s, now, limit)
        return limit

    def _peer_limited(self, s: Sock, now: float, ctx: Refresh | None) -> bool:
        limit = self.send_limit(s, now, ctx)
        return limit is not None and limit.rwnd

    def send_full(
        self, s: Sock, tr: Track, now: float, ctx: Refresh | None = None
    ) -> Finding | None:
        cfg = self.config.send_queue_full
        if s.send_q <= 0:
            return None
        fill = s.send_fill
        if fill is None or fill < cfg.fill:
            return None
        limit = self.send_limit(s, now, ctx)
        cause, share = ("network", 0.0) if limit is None else (limit.cause, limit.share)
        severity = INFO if cause == "network" else WARNING
        args = (s, fill, cause, share)
        return Finding(severity, cfg.hold, text.send_queue_full, args)

    def _overrun(self, s: Sock, ctx: Refresh) -> Finding | None:
        """Loss counters rose: a warning on each socket over (or, small, near) its
        receive buffer. Pruning alone lost nothing: at most an info on such a socket."""
        sk = s.skmem
        if not (ctx.loss_events or ctx.prune_events) or sk is None:
            return None
        r, rb = sk[SK_RMEM], sk[SK_RCVBUF]
        small = rb < ctx.rmem_default and r >= self.config.rcvbuf_overrun.near * rb
        if not (r > rb or small):
            return None
        if not ctx.loss_events:
            return Finding(INFO, 0.0, text.rcvbuf_pruned, (s, ctx.prune_events, r, rb))
        ctx.blamed.add("rcvbuf_overrun")
        return Finding(WARNING, 0.0, text.rcvbuf_overrun, (s, ctx.loss_events, r, rb))

    def _nagle(self, s: Sock, ctx: Refresh, window_shut: bool) -> Finding | None:
        """A hint, never on a sender the peer's window holds back (zero, small or
        persist window, or rwnd-limited): that delay is the peer's, not Nagle's."""
        info = s.info
        assert info is not None
        if window_shut or s.timer == "persist":
            return None
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
        snd_wnd = info.get("snd_wnd")
        if snd_wnd is not None and snd_wnd < (info.get("snd_mss") or 0):
            return None
        if self._peer_limited(s, ctx.now, ctx):
            return None
        delayed = ctx.deltas.get("TcpExt.DelayedACKs", 0)
        args = (s, rtt / 1000, min_rtt / 1000, delayed)
        return Finding(INFO, cfg.hold, text.nagle_hint, args)

    def _buffer_limited(self, s: Sock, tr: Track, ctx: Refresh) -> Finding | None:
        """A sender busy most of the window, held back by a receive or send buffer that
        cannot grow (at its autotuning ceiling or set by the application)."""
        if s.send_q <= 0 and "buffer_limited" not in tr.latches:
            return None  # cheap: nothing to send now, and nothing pending
        limit = self.send_limit(s, ctx.now, ctx)
        if limit is None or not limit.recent or limit.buffer is None or not limit.buffer.fixed:
            return None
        info = s.info
        assert info is not None
        receiver = ctx.local_peer(s) if limit.cause == "rcvbuf" else None
        args = (s, limit, info.get("delivery_rate") or 0, info.get("min_rtt") or 0, receiver)
        return Finding(WARNING, self.config.buffer_limited.hold, text.buffer_limited, args)

    def _close_wait(self, s: Sock, tr: Track, ctx: Refresh) -> Finding | None:
        """The peer closed and the application has not: a leaked descriptor, if it lasts."""
        if s.state != "CLOSE-WAIT":
            return None
        cfg = self.config.close_wait
        latch = tr.latches.get("close_wait")
        first = ctx.now if latch is None else latch.first
        severity = WARNING if ctx.now - first >= cfg.warn else INFO
        return Finding(severity, cfg.hold, text.close_wait, (s, Since(first), ctx.close_waits(s)))

    def udp(self, s: Sock, tr: Track, ctx: Refresh) -> list[Flag]:
        sk = s.skmem
        if sk is None:
            return []
        cfg = self.config.udp_drops
        drops = sk[SK_DROPS]
        rise = 0 if tr.drops is None else max(drops - tr.drops, 0)
        tr.drops = drops
        finding = udp_finding(s, rise, cfg.fill, cfg.hold)
        if rise > 0 or (sk[SK_SNDBUF] and sk[SK_WMEM] >= sk[SK_SNDBUF]):
            ctx.blamed.add("udp_drops")
        flag = step(tr.latches, "udp_drops", ctx.now, finding, cfg.clear)
        return [] if flag is None else [flag]

    def listener(self, s: Sock, tr: Track, ctx: Refresh) -> list[Flag]:
        sk = s.skmem
        drops = 0 if sk is None else sk[SK_DROPS]
        rise = 0 if tr.drops is None else max(drops - tr.drops, 0)
        tr.drops = drops
        overflows = ctx.deltas.get("TcpExt.ListenOverflows", 0)
        finding = self.accept_queue(s, rise, overflows, ctx.abort_on_overflow)
        clear = self.config.accept_queue_full.clear
        flag = step(tr.latches, "accept_queue_full", ctx.now, finding, clear)
        return [] if flag is None else [flag]

    def accept_queue(
        self, s: Sock, rise: int, overflows: int, abort: int | None = None
    ) -> Finding | None:
        """Recv-Q > Send-Q (or SYNs dropped) is critical; >= `fill` of the backlog a warning."""
        cfg = self.config.accept_queue_full
        queued, backlog = s.recv_q, s.send_q
        full = queued > backlog
        critical = full or rise > 0
        if not critical and not (backlog and queued >= cfg.fill * backlog):
            return None
        args = (s, full, rise, overflows if critical else 0, abort)
        hold = cfg.full_hold if critical else cfg.hold
        return Finding(CRITICAL if critical else WARNING, hold, text.accept_queue, args)
