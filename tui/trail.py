"""What the plots need beyond the per-socket History: when flags held, and the system's past.

A Trail is fed one snapshot (and its header Summary) per refresh, in the worker thread.
It keeps, over its window, the intervals where each flag held (per socket, and for the
system flags) and one SystemSample per refresh. A snapshot older than the last one (a
replay moved back) drops what came after it, so the trail never runs ahead of the view.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collectors.model import Flag, Snapshot
    from tui.source import Series, SockKey
    from tui.view import Summary

SYSTEM = ("", 0)  # the key of the system flags' spans (no socket has inode 0)
SLACK = 0.5  # seconds: `since` is rounded in recordings


@dataclass(slots=True)
class Span:
    """A flag held from `start` to `end` (the last sample it was seen in)."""

    kind: str
    severity: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class SystemSample:
    time: float
    summary: Summary


class Trail:
    def __init__(self, window: float = 600.0) -> None:
        self.window = window
        self.samples: deque[SystemSample] = deque()
        self._spans: dict[SockKey, list[Span]] = {}
        self._held: list[Flag] = []  # the system flags of the latest snapshot
        self._pruned = float("-inf")  # when spans were last cut to the window

    def observe(self, snapshot: Snapshot, summary: Summary) -> None:
        now = snapshot.time
        if self.samples and now <= self.samples[-1].time:
            self._rewind(now)
        self.samples.append(SystemSample(now, summary))
        oldest = now - self.window
        while self.samples[0].time < oldest:
            self.samples.popleft()
        spans = self._spans
        for s in [s for s in snapshot.sockets if s.flags]:  # one C-speed pass over all
            held = spans.setdefault(s.key, [])
            for flag in s.flags:
                extend(held, flag.kind, flag.severity, now - flag.since, now)
        self._held = list(snapshot.system_flags)
        for flag in snapshot.system_flags:
            extend(spans.setdefault(SYSTEM, []), flag.kind, flag.severity, now - flag.since, now)
        if now - self._pruned >= self.window / 10:  # spans that left the window, now and then
            self._pruned = now
            self._spans = {
                key: kept for key, spans in self._spans.items() if (kept := _after(spans, oldest))
            }

    def replace(self, key: SockKey, spans: list[Span]) -> None:
        """Spans rebuilt elsewhere (a replay reads them from its frames) replace the key's."""
        self._spans[key] = spans

    def _rewind(self, now: float) -> None:
        while self.samples and self.samples[-1].time >= now:
            self.samples.pop()
        self._spans = {
            key: kept
            for key, spans in self._spans.items()
            if (kept := [s for s in spans if s.start < now])
        }
        for spans in self._spans.values():
            for span in spans:
                span.end = min(span.end, now)

    def spans(self, key: SockKey) -> list[Span]:
        """The intervals where a flag of this socket (or SYSTEM) held, oldest first."""
        return [Span(s.kind, s.severity, s.start, s.end) for s in self._spans.get(key, ())]

    def past(self, key: SockKey, series: dict[str, Series], now: float) -> Past:
        return Past(series, self.spans(key), now, self.window)

    def system(self) -> SystemPast:
        """The system screen's plots: the header's figures and the system flags' spans."""
        last = self.samples[-1] if self.samples else None
        return SystemPast(
            system_series(self.samples),
            self.spans(SYSTEM),
            0.0 if last is None else last.time,
            self.window,
            list(self._held),
            None if last is None else last.summary.tcp_mem_bytes,
        )


def extend(spans: list[Span], kind: str, severity: str, start: float, now: float) -> None:
    """A flag seen at `now` that rose (at `start`) before its last span ended is that span,
    held on; else it rose again: a new span."""
    last = next((span for span in reversed(spans) if span.kind == kind), None)
    if last is not None and start <= last.end + SLACK:
        last.end, last.severity = now, severity
    else:
        spans.append(Span(kind, severity, start, now))


def _after(spans: list[Span], oldest: float) -> list[Span]:
    return [span for span in spans if span.end >= oldest]


@dataclass(frozen=True, slots=True)
class Past:
    """What the detail screen plots of one socket: its series, its flags' spans, and the
    time of the snapshot they end at."""

    series: dict[str, Series]
    spans: list[Span]
    now: float
    window: float  # the longest time axis: the history's window


@dataclass(frozen=True, slots=True)
class SystemPast(Past):
    """The system screen's: also the system flags held now and tcp_mem (bytes)."""

    held: list[Flag]
    tcp_mem: list[int] | None


def system_series(samples: Iterable[SystemSample]) -> dict[str, Series]:
    """The header's figures over time: "mem" bytes, each state's count, each rate per s."""
    out: dict[str, Series] = {}
    for sample in samples:
        t, summary = sample.time, sample.summary
        if summary.mem_bytes is not None:
            out.setdefault("mem", []).append((t, float(summary.mem_bytes)))
        for state, count in summary.states:
            out.setdefault(state, []).append((t, float(count)))
        for label, rate in summary.rates:
            if rate is not None:
                out.setdefault(label, []).append((t, rate))
    return out
