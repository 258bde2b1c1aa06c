"""Hysteresis: a flag rises after its condition held for `hold` and clears only after
it was false for `clear` seconds, so a flickering condition does not flap."""

from __future__ import annotations

from dataclasses import dataclass

from collectors.model import Flag


@dataclass(slots=True)
class Finding:
    """One sample's verdict of a rule: what the flag would say if it were raised."""

    severity: str
    hold: float
    reason: str
    advice: str


class Latch:
    __slots__ = ("false_since", "first", "flag")

    def __init__(self, first: float) -> None:
        self.first = first  # when the condition became true
        self.false_since: float | None = None  # first false sample while raised
        self.flag: Flag | None = None  # set once raised


Latches = dict[str, Latch]


def step(
    latches: Latches,
    kind: str,
    now: float,
    finding: Finding | None,
    clear: float,
    started: float | None = None,
) -> Flag | None:
    """Advance one latch by one sample; returns the flag to show (None when not raised).

    `started` backdates a new latch when the rule knows the condition began earlier.
    """
    latch = latches.get(kind)
    if finding is not None:
        if latch is None:
            latch = latches[kind] = Latch(now if started is None else started)
        latch.false_since = None
        if latch.flag is not None or now - latch.first >= finding.hold:
            held = now - latch.first
            latch.flag = Flag(kind, finding.severity, held, finding.reason, finding.advice)
        return latch.flag
    if latch is None:
        return None
    if latch.false_since is None:
        latch.false_since = now
    if latch.flag is None or now - latch.false_since >= clear:
        del latches[kind]
        return None
    old = latch.flag  # raised and briefly false: keep showing it, still counting
    latch.flag = Flag(kind, old.severity, now - latch.first, old.reason, old.advice)
    return latch.flag
