"""Times a user types about a recording: `2026-12-01T03:12:00`, `03:12`, `-10m`.

Clock times are local time, like the header of the view and `watch` lines.
"""

from __future__ import annotations

import re
import time

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
FORMS = "2026-12-01T03:12:00, 03:12 or -10m"


def parse_duration(text: str) -> float:
    """`90`, `90s`, `10m`, `2h`, `1d` in seconds; ValueError with a one-line message."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (e.g. 90, 10m, 2h, 1d)")
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


def parse_time(text: str, start: float, end: float) -> float:
    """A wall-clock time: absolute, a time of day within the recording (the first such
    moment at or after its start), or `-DURATION` before its end."""
    from datetime import datetime  # late: only replay's times need it, not every `bufmon`

    text = text.strip()
    if text.startswith("-"):
        try:
            return end - parse_duration(text[1:])
        except ValueError:
            raise ValueError(f"not a time: {text!r} (use {FORMS})") from None
    clock = _CLOCK.fullmatch(text)
    if clock is not None:
        return _time_of_day(clock, text, start)
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use {FORMS})") from None


def _time_of_day(clock: re.Match[str], text: str, start: float) -> float:
    from datetime import datetime, timedelta

    hour, minute, second = int(clock.group(1)), int(clock.group(2)), int(clock.group(3) or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"not a time of day: {text!r}")
    first = datetime.fromtimestamp(start)
    moment = first.replace(hour=hour, minute=minute, second=second, microsecond=0)
    if moment.timestamp() < int(start):
        moment += timedelta(days=1)
    return moment.timestamp()


def clock_text(t: float) -> str:
    """A time as the recording's lines print it: 2026-12-01 03:12:04."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
