"""Collection on its own schedule: one thread refreshes the Monitor every interval and
renders the exposition once; every scrape until the next refresh is served those bytes.

A scrape never triggers a refresh. Before the first refresh has finished, scrapes wait
for it (at most one refresh); concurrent scrapes share the same rendered result.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from bufmon.exporter.metrics import ExporterStats, FlagOnsets, exporter_families, families
from bufmon.monitor import Monitor
from collectors.untrusted import printable


@dataclass(frozen=True, slots=True)
class Result:
    """What scrapes are served: replaced whole, never changed in place."""

    body: bytes
    ok: bool
    status: str  # one line for /healthz


class _Latest(Collector):
    """Yields the families of the last successful refresh plus the exporter's own."""

    def __init__(self, stats: ExporterStats) -> None:
        self.stats = stats
        self.metrics: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics
        yield from exporter_families(self.stats)


class Refresher:
    def __init__(self, monitor: Monitor, interval: float, max_sockets: int) -> None:
        self.monitor = monitor
        self.interval = interval
        self.max_sockets = max_sockets
        self.stats = ExporterStats()
        self._onsets = FlagOnsets()
        self._latest = _Latest(self.stats)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self._latest)
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total and friends
        self._result: Result | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bufmon-refresh", daemon=True)
        self._last_error = ""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def latest(self) -> Result:
        """The last rendered result; waits for the first refresh if none is done yet."""
        self._ready.wait()
        assert self._result is not None
        return self._result

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.refresh_once()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def refresh_once(self) -> None:
        started = time.monotonic()
        stats = self.stats
        stats.refreshes += 1
        try:
            snap = self.monitor.refresh()
            self._latest.metrics = families(snap, self._onsets, self.max_sockets, stats)
        except Exception as exc:  # keep serving the last result; /healthz tells
            stats.errors += 1
            message = printable(f"refresh failed: {type(exc).__name__}: {exc}")
            if message != self._last_error:
                print(f"bufmon: {message}", file=sys.stderr)
            self._last_error = message
            ok, status = False, message
        else:
            stats.sockets = len(snap.sockets)
            stats.last_success = snap.time
            self._last_error = ""
            ok = True
        stats.last_duration = time.monotonic() - started
        if ok:
            status = (
                f"ok: last refresh at {time.strftime('%H:%M:%S')} took {stats.last_duration:.3f} s"
            )
        self._result = Result(generate_latest(self.registry), ok, status)
        self._ready.set()
