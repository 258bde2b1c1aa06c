"""The Diagnoser: one pass over a snapshot's sockets, flags set in place.

The common healthy socket costs a tuple of its sample and three dict operations:
rule work starts only when a queue is non-empty, the socket listens, a UDP socket
changed, a changed socket's srtt is high enough for the Nagle hint, or the socket
already has rule state (a pending or raised flag). A sample is "changed" when its
queues, skmem, state or segs_in differ, or its rates stopped or started (so rates
falling to 0 get a record); every ack, data or window update arrives in a segment,
so an unchanged TCP sample with steady flags (SocketRules._steady_until) only gets
them carried over with a current `since`. History gets a record only when a
socket's sample changed.
"""

from __future__ import annotations

import copy
from itertools import filterfalse

from bufmon.diagnosis.config import Config
from bufmon.diagnosis.history import RETR_SCALE, U32, History, clamp32, fill16
from bufmon.diagnosis.latch import carry
from bufmon.diagnosis.rules import (
    LOSS_COUNTERS,
    PRUNE_COUNTERS,
    Refresh,
    SocketRules,
    Track,
    counter_events,
)
from bufmon.diagnosis.single import evaluate_single
from bufmon.diagnosis.system_rules import SystemRules
from bufmon.diagnosis.unix_rules import UnixRules
from collectors.checkpoint import Checkpoint, in_steps, no_pause
from collectors.model import IDLE, SK_DROPS, Snapshot, Sock, UnixSock

Key = tuple[str, int]
# A sample's queues, skmem (a tuple the dump shares between equal samples, so two
# signatures compare by identity first), segs_in, state, quiet: kept as the values
# themselves, not a hash of them, so an unchanged sample is never hashed
Signature = tuple[object, ...]
_RECORD_INFO = ("rtt", "snd_wnd", "rcv_wnd", "total_retrans")
_RECORD_COUNTERS = ("bytes_acked", "bytes_received", "busy_time", "rwnd_limited", "sndbuf_limited")
_RULE_STATES = frozenset({"LISTEN", "CLOSE-WAIT"})  # a track even when idle


def _count(sigs: dict[str, dict[int, Signature]]) -> int:
    """The signatures kept, over every namespace."""
    return sum(map(len, sigs.values()))


def record_values(s: Sock) -> tuple[int, ...]:
    """The history record of one sample (every field but the time)."""
    info, sk = s.info, s.skmem
    rfill, sfill = s.recv_fill, s.send_fill
    gauges: list[int] = [0, 0, 0, 0]
    counters: list[int] = [0, 0, 0, 0, 0]
    if info is not None:
        gauges = [clamp32(info.get(name) or 0) for name in _RECORD_INFO]
        counters = [(info.get(name) or 0) & U32 for name in _RECORD_COUNTERS]
    drops = 0 if sk is None else clamp32(sk[SK_DROPS])
    rates = s.rates
    moved = (0, 0, 0)
    if rates is not None:
        moved = (
            clamp32(round(rates.rx_bytes_per_s)),
            clamp32(round(rates.tx_bytes_per_s)),
            clamp32(round(rates.retrans_per_s * RETR_SCALE)),
        )
    return (
        clamp32(s.recv_q),
        clamp32(s.send_q),
        gauges[0],
        fill16(rfill or 0.0),
        fill16(sfill or 0.0),
        drops,
        *gauges[1:],
        *counters,
        *moved,
    )


class Diagnoser:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.history = History(config.history.window, int(config.history.max_mb * (1 << 20)))
        self.rules = SocketRules(config, self.history)
        self.system_rules = SystemRules(config)
        self.unix_rules = UnixRules(config)
        self._sigs: dict[str, dict[int, Signature]] = {}  # sample signature by netns, cookie
        self._tracks: dict[str, dict[int, Track]] = {}
        self._closed: dict[Key, tuple[Sock, float]] = {}  # closed flagged sockets, closed at
        self._generation = 0

    def evaluate(
        self, snap: Snapshot, single_sample: bool = False, checkpoint: Checkpoint = no_pause
    ) -> None:
        """Set sock.flags and snap.system_flags; append recently closed flagged sockets.
        `checkpoint()` is called between steps of the pass over the sockets."""
        if single_sample:
            evaluate_single(snap, self.config, self.rules)
            return
        self._generation += 1
        facts = snap.system
        self.unix_rules.sysctls = facts.sysctls
        tcp_rmem = facts.sysctls.get("tcp_rmem")
        ctx = Refresh(
            snap.time,
            facts.deltas,
            rmem_default=tcp_rmem[1] if tcp_rmem and len(tcp_rmem) == 3 else 131072,
            loss_events=counter_events(facts.deltas, "TcpExt", LOSS_COUNTERS),
            prune_events=counter_events(facts.deltas, "TcpExt", PRUNE_COUNTERS),
            sysctls=facts.sysctls,
            sockets=snap.sockets,
            tracks=self._tracks,
        )
        listeners, others = self._sockets(snap.sockets, ctx, checkpoint)
        self._forget_closed(snap.time)
        orphan_syn = self.system_rules.syn_backlog(listeners, others, ctx)
        snap.system_flags = self.system_rules.evaluate(
            snap.sockets, ctx, facts.sockstat, facts.sysctls
        )
        if orphan_syn is not None:
            snap.system_flags.append(orphan_syn)
        self.history.set_budget()
        snap.sockets.extend(sock for sock, _ in self._closed.values())

    def _sockets(
        self, socks: list[Sock], ctx: Refresh, checkpoint: Checkpoint
    ) -> tuple[list[tuple[Sock, Track]], list[Sock]]:
        """The per-socket pass. Returns listeners (with their tracks) and the sockets
        without skmem or tcp_info (TIME-WAIT, SYN-RECV) for the system rules.

        State is kept per namespace by cookie: int keys are the cheapest dict lookups."""
        now, generation = ctx.now, self._generation
        olds = self._sigs
        news: dict[str, dict[int, Signature]] = {}
        all_tracks = self._tracks
        rules, unix_rules = self.rules, self.unix_rules
        append = self.history.append
        nagle_floor = self.config.nagle_hint.min_srtt_ms * 1000
        idle_skips = nagle_floor > 0  # else an unchanged sample's rtt (0) reaches it
        overrun = bool(ctx.loss_events or ctx.prune_events)  # the overrun rule looks at all
        listeners: list[tuple[Sock, Track]] = []
        others: list[Sock] = []
        netns: str | None = None
        old: dict[int, Signature] = {}
        new: dict[int, Signature] = {}
        tracks: dict[int, Track] = {}
        fresh = 0  # sockets without a signature before (each cookie at least once)
        for s in in_steps(socks, checkpoint):
            if s.netns is not netns:  # a dump lists each namespace's sockets together
                netns = s.netns
                old = olds.get(netns, {})
                new = news.setdefault(netns, {})
                tracks = all_tracks.setdefault(netns, {})
            info = s.info
            rq, sq = s.recv_q, s.send_q
            if info is not None:
                quiet = (s.rates or IDLE) is IDLE  # no rates yet, or none moved
                sig: Signature = (rq, sq, s.skmem, s.segs_in, s.state, quiet)
            elif s.skmem is not None:
                sig = (rq, sq, s.skmem)
            else:
                others.append(s)
                continue
            cookie = s.cookie
            new[cookie] = sig
            tr = tracks.get(cookie)
            rtt = 0  # srtt moves only with incoming acks: an unchanged sample needs no rtt
            before = old.get(cookie)
            if before == sig:
                if tr is None and idle_skips and not (rq or sq or s.state in _RULE_STATES):
                    continue  # most sockets: the same sample, idle, no track
                changed = False
            else:
                changed = True
                fresh += before is None
                append((netns, cookie), now, record_values(s))
                if info is not None:
                    rtt = info.get("rtt") or 0
                elif s.proto == "udp":
                    rq = 1  # a changed UDP socket may have dropped: look at it
            listening = s.state == "LISTEN"
            if tr is None:
                if not (rq or sq or rtt >= nagle_floor or s.state in _RULE_STATES):
                    continue
                tr = tracks[cookie] = Track(now)
                changed = True  # a new track starts from this sample
            tr.seen = generation
            if isinstance(s, UnixSock):
                flags = unix_rules.evaluate(s, tr, now)
                if not tr.latches and not rq and not sq:
                    del tracks[cookie]
            elif listening:
                flags = rules.listener(s, tr, ctx)
                listeners.append((s, tr))
            elif s.proto == "udp":
                flags = rules.udp(s, tr, ctx)
            elif not changed and now < tr.steady_until and not overrun:
                flags = carry(tr.latches, now)  # same sample, same verdict: only `since` moves
            else:
                flags = rules.tcp(s, tr, ctx, changed)
                if not tr.latches and not s.recv_q and not sq:
                    del tracks[cookie]  # idle again: its progress marks would go stale
            s.flags = flags
            tr.sock = s if flags else None
        self._sigs = news
        if _count(news) - fresh < _count(olds):  # some sockets are gone since
            for name, gone in olds.items():
                for cookie in filterfalse(news.get(name, {}).__contains__, gone):
                    self.history.forget((name, cookie))
        return listeners, others

    def _forget_closed(self, now: float) -> None:
        """Drop tracks of sockets gone from this snapshot; keep flagged ones listed a while."""
        generation = self._generation
        for netns, tracks in self._tracks.items():
            for cookie in [c for c, tr in tracks.items() if tr.seen != generation]:
                sock = tracks.pop(cookie).sock
                key = (netns, cookie)
                if sock is not None and sock.flags and key not in self._closed:
                    closed = copy.copy(sock)
                    closed.flags = list(sock.flags)
                    closed.closed = True
                    self._closed[key] = (closed, now)
        self._tracks = {netns: t for netns, t in self._tracks.items() if t}  # pods come and go
        linger = self.config.history.linger
        for key in [k for k, (_, t) in self._closed.items() if now - t >= linger]:
            del self._closed[key]
