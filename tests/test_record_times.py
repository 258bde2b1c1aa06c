"""TIME arguments of `bufmon replay` (local clock times, like the view's header)."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from bufmon.record.times import parse_duration, parse_time

START = datetime(2026, 12, 1, 2, 0, 0).timestamp()
END = datetime(2026, 12, 1, 4, 30, 0).timestamp()


def test_absolute_time() -> None:
    assert parse_time("2026-12-01T03:12:00", START, END) == datetime(2026, 12, 1, 3, 12).timestamp()


def test_time_of_day_within_the_recording() -> None:
    assert parse_time("03:12", START, END) == datetime(2026, 12, 1, 3, 12).timestamp()
    assert parse_time("03:12:30", START, END) == datetime(2026, 12, 1, 3, 12, 30).timestamp()
    # before the start's time of day: the next day's
    assert parse_time("01:00", START, END) == datetime(2026, 12, 2, 1, 0).timestamp()


def test_relative_to_the_end() -> None:
    assert parse_time("-10m", START, END) == END - 600
    assert parse_time("-90", START, END) == END - 90
    assert parse_time("-1.5h", START, END) == END - 5400


@pytest.mark.parametrize("text", ["", "yesterday", "25:00", "03:61", "-10x", "-", "3:1"])
def test_bad_times_are_one_line_errors(text: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_time(text, START, END)
    assert "\n" not in str(err.value) and repr(text) in str(err.value)


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "10m", "2h", "1d")] == [
        90,
        90,
        600,
        7200,
        86400,
    ]
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_local_time_is_used() -> None:
    stamp = time.mktime((2026, 12, 1, 3, 12, 0, 0, 0, -1))
    assert parse_time("2026-12-01T03:12:00", START, END) == stamp
