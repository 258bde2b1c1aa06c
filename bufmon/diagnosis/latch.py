"""Hysteresis: a flag rises after its condition held for `hold` and clears only after
it was false for `clear` seconds, so a flickering condition does not flap.

A raised flag keeps the last finding of its rule; its reason and advice are built from
that finding when someone reads them, with every duration in it (a `Since`) counted
up to the flag's own sample. The numbers a user reads are those of the latest sample,
and pending conditions or unread flags build no text at all.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from bufmon.diagnosis.text import Named
from collectors.model import Flag, Sock

Text = Callable[..., tuple[str, str]]


class Since(float):
    """A time in a finding's arguments that its text shows as a duration up to `now`."""

    __slots__ = ()


class Finding:
    """One sample's verdict of a rule: what the flag would say if it were raised."""

    __slots__ = ("args", "hold", "severity", "started", "text")

    def __init__(
        self,
        severity: str,
        hold: float,
        text: Text,  # a function of bufmon.diagnosis.text: text(*args) = (reason, advice)
        args: tuple[Any, ...],  # a Sock among them is kept as a text.Named
        started: float | None = None,  # when the condition began, if before this sample
    ) -> None:
        self.severity = severity
        self.hold = hold
        self.text = text
        self.args = tuple(Named.of(a) if isinstance(a, Sock) else a for a in args)
        self.started = started

    def words_at(self, now: float) -> tuple[str, str]:
        """The text with each Since argument turned into the seconds from it to `now`."""
        args = tuple(now - a if isinstance(a, Since) else a for a in self.args)
        return self.text(*args)

    def flag(self, kind: str, since: float, now: float) -> Flag:
        return Flag(kind, self.severity, since, words=partial(self.words_at, now))


class Latch:
    __slots__ = ("false_since", "finding", "first", "flag", "true_at")

    def __init__(self, first: float) -> None:
        self.first = first  # when the condition became true
        self.false_since: float | None = None  # first false sample while raised
        self.flag: Flag | None = None  # set once raised
        self.finding: Finding | None = None  # the finding of the last true sample
        self.true_at = first  # time of the last true sample

    def aged(self, kind: str, now: float) -> Flag:
        """The raised flag again at `now`: `since` is current; the text's durations run
        on while the condition holds and stop at its last true sample while clearing."""
        finding = self.finding
        assert finding is not None
        self.flag = finding.flag(kind, now - self.first, self.true_at)
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
        if latch.flag is None and now - latch.first < finding.hold:
            return None
        latch.finding = finding
        latch.true_at = now
        latch.flag = finding.flag(kind, now - latch.first, now)
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
    """Every latch raised and its socket's sample unchanged: the same findings at `now`."""
    for latch in latches.values():
        latch.true_at = now
    return [latch.aged(kind, now) for kind, latch in latches.items()]
