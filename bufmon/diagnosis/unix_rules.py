"""Rules of UNIX domain sockets: a listener's backlog, a stream reader that stopped, a
datagram receiver that stopped draining. sock_diag gives UNIX sockets no read counter:
progress is a receive queue (or the peers' queued memory) that shrank. A stall is no
such progress for the hold time, so a reader that still drains now and then clears."""

from __future__ import annotations

from bufmon.diagnosis import unix_text
from bufmon.diagnosis.config import Config
from bufmon.diagnosis.latch import Finding, Since, advance
from bufmon.diagnosis.limits import sysctl
from bufmon.diagnosis.rules import CRITICAL, WARNING, Track
from bufmon.diagnosis.unix_text import UnixFacts
from collectors.model import Flag, UnixSock


class UnixRules:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.sysctls: dict[str, list[int]] = {}  # of the refresh being evaluated
        self._kinds = (
            ("accept_queue_full", config.accept_queue_full.clear),
            ("stalled_reader", config.stalled_reader.clear),
            ("dgram_queue_full", config.dgram_queue_full.clear),
        )

    def evaluate(self, s: UnixSock, tr: Track, now: float) -> list[Flag]:
        findings: tuple[Finding | None, ...]
        if s.state == "LISTEN":
            findings = (self.accept_queue(s), None, None)
        elif s.sock_type == "dgram":
            findings = (None, None, self._dgram(s, tr, now))
        else:
            findings = (None, self._stalled(s, tr, now), None)
        return advance(tr.latches, now, self._kinds, findings)

    def accept_queue(self, s: UnixSock) -> Finding | None:
        """Pending connections beyond the backlog: connect() blocks or fails."""
        cfg = self.config.accept_queue_full
        queued, backlog = s.recv_q, s.send_q
        full = queued > backlog
        if not full and not (backlog and queued >= cfg.fill * backlog):
            return None
        args = (s, UnixFacts.of(s), full, sysctl(self.sysctls, "somaxconn"))
        hold = cfg.full_hold if full else cfg.hold
        return Finding(CRITICAL if full else WARNING, hold, unix_text.accept_queue, args)

    @staticmethod
    def _drained_since(tr: Track, now: float, queued: int) -> float:
        """When `queued` last shrank (or was empty): the last sign of a read."""
        if queued == 0 or (tr.read_mark >= 0 and queued < tr.read_mark):
            tr.read_t = now
        tr.read_mark = queued
        return tr.read_t

    def _stalled(self, s: UnixSock, tr: Track, now: float) -> Finding | None:
        since = self._drained_since(tr, now, s.recv_q)
        if s.recv_q <= 0 or now - since < self.config.stalled_reader.hold:
            return None
        args = (s, UnixFacts.of(s), Since(since))
        return Finding(WARNING, 0.0, unix_text.stalled_reader, args, started=since)

    def _dgram(self, s: UnixSock, tr: Track, now: float) -> Finding | None:
        """A receiver with datagrams waiting whose senders' queued memory never fell."""
        waiting = s.senders_q if s.recv_q else 0
        since = self._drained_since(tr, now, waiting)
        if waiting <= 0 or now - since < self.config.dgram_queue_full.hold:
            return None
        args = (s, UnixFacts.of(s), Since(since), sysctl(self.sysctls, "max_dgram_qlen"))
        return Finding(CRITICAL, 0.0, unix_text.dgram_queue_full, args, started=since)
