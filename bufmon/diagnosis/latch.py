"""Hysteresis: a flag rises after its condition held for `hold` and clears only after
it was false for `clear` seconds, so a flickering condition does not flap.

A flag's reason and advice are built when it rises, when its severity or variant
changes, and every TEXT_REFRESH seconds after (for fresh numbers); `since` is current
on every sample. Pending conditions build no text at all.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collectors.model import Flag

TEXT_REFRESH = 5.0  # seconds between rebuilds of a raised flag's text
# First rebuild after a rise or change, as a part of TEXT_REFRESH: flags raised together
# (a process stalling 20,000 sockets) refresh their texts over several samples, not in one.
_FIRST_REFRESH = itertools.cycle([i / 10 for i in range(1, 11)])

Text = Callable[..., tuple[str, str]]


@dataclass(slots=True)
class Finding:
    """One sample's verdict of a rule: what the flag would say if it were raised."""

    severity: str
    hold: float
    text: Text  # a function of bufmon.diagnosis.text: text(*args) = (reason, advice)
    args: tuple[Any, ...]
    variant: str = ""  # a different kind of reason (cause, drop kind): rebuild at once
    started: float | None = None  # when the condition began, if before this sample

    def words(self) -> tuple[str, str]:
        return self.text(*self.args)


class Latch:
    __slots__ = ("false_since", "first", "flag", "text_due", "variant")

    def __init__(self, first: float) -> None:
        self.first = first  # when the condition became true
        self.false_since: float | None = None  # first false sample while raised
        self.flag: Flag | None = None  # set once raised
        self.text_due = 0.0  # when the raised flag's text is rebuilt next
        self.variant = ""  # the variant its text was built for

    def aged(self, kind: str, now: float) -> Flag:
        """The raised flag again, with the current `since`."""
        old = self.flag
        assert old is not None
        self.flag = Flag(kind, old.severity, now - self.first, old.reason, old.advice)
        return self.flag


Latches = dict[str, Latch]


def step(
    latches: Latches,
    kind: str,
    now: float,
    finding: Finding | None,
    clear: float,
) -> Flag | None:
    """Advance one latch by one sample; returns the flag to show (None when not raised)."""
    latch = latches.get(kind)
    if finding is not None:
        if latch is None:
            started = finding.started
            latch = latches[kind] = Latch(now if started is None else started)
        latch.false_since = None
        old = latch.flag
        if old is None and now - latch.first < finding.hold:
            return None
        severity, held = finding.severity, now - latch.first
        if old is not None and old.severity == severity and latch.variant == finding.variant:
            if now < latch.text_due:
                return latch.aged(kind, now)
            spread = 1.0
        else:
            spread = next(_FIRST_REFRESH)
        reason, advice = finding.words()
        latch.variant = finding.variant
        latch.text_due = now + TEXT_REFRESH * spread
        latch.flag = Flag(kind, severity, held, reason, advice)
        return latch.flag
    if latch is None:
        return None
    if latch.false_since is None:
        latch.false_since = now
    if latch.flag is None or now - latch.false_since >= clear:
        del latches[kind]
        return None
    return latch.aged(kind, now)  # raised and briefly false: keep showing it, still counting


def advance(
    latches: Latches,
    now: float,
    kinds: tuple[tuple[str, float], ...],
    findings: tuple[Finding | None, ...],
) -> list[Flag]:
    """step() each (kind, clear) of `kinds` with its finding; the raised flags, in the
    order their conditions began (as carry() returns them)."""
    for (kind, clear), finding in zip(kinds, findings, strict=True):
        if finding is not None or kind in latches:
            step(latches, kind, now, finding, clear)
    return [latch.flag for latch in latches.values() if latch.flag is not None]


def carry(latches: Latches, now: float) -> list[Flag]:
    """Every latch raised and unchanged: the same flags with the current `since`."""
    return [latch.aged(kind, now) for kind, latch in latches.items()]
