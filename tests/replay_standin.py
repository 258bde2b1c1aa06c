"""TEMPORARY stand-in of branch `record`'s reader API (in memory, from real snapshots),
used only until that branch lands; then the tests switch to real recordings."""

from __future__ import annotations

import bisect
import sys
import types
from dataclasses import dataclass

from collectors.model import Snapshot


class RecordingError(Exception):
    pass


class Recording:
    def __init__(self, snapshots: list[Snapshot]) -> None:
        self.frames = snapshots
        self.times = [s.time for s in snapshots]
        self.closed = False

    def __len__(self) -> int:
        return len(self.frames)

    def index_at(self, t: float) -> int:
        return max(bisect.bisect_right(self.times, t) - 1, 0)

    def snapshot(self, i: int) -> Snapshot:
        return self.frames[i]

    def flag_times(self) -> list[float]:
        seen: set[tuple[object, str]] = set()
        out = []
        for snap in self.frames:
            now = {(s.key, f.kind) for s in snap.sockets for f in s.flags}
            if now - seen:
                out.append(snap.time)
            seen = now
        return out

    def close(self) -> None:
        self.closed = True


@dataclass
class Incident:
    start: float
    kind: str


def incidents(rec: Recording) -> list[Incident]:
    return [Incident(t, "flag") for t in rec.flag_times()]


def incident_line(inc: Incident) -> str:
    return f"{inc.start:.1f} {inc.kind}"


def parse_time(text: str, start: float, end: float) -> float:
    if text.startswith("-") and text.endswith("s"):
        return end - float(text[1:-1])
    raise ValueError(f"not a time: {text!r}")


def install() -> None:
    try:
        import bufmon.record.reader  # noqa: F401
    except ImportError:
        me = sys.modules[__name__]
        package = types.ModuleType("bufmon.record")
        package.__path__ = []
        sys.modules["bufmon.record"] = package
        for name in ("reader", "times", "incidents"):
            sys.modules[f"bufmon.record.{name}"] = me
