"""The replay's timeline line: where the cursor and the flag marks fall, and its width."""

from __future__ import annotations

import time

import pytest

from tui.timeline import timeline_text

START = time.mktime((2026, 12, 1, 0, 0, 0, 0, 0, -1))  # local midnight
DAY = 86400 - 1


def bar(now: float, flags: list[float], width: int = 60, end: float = START + DAY) -> str:
    plain = timeline_text(START, end, now, flags, "1/2 end", width).plain
    assert len(plain) == width
    return plain.split(" ")[1]


@pytest.mark.parametrize("width", [40, 80, 200])
def test_the_line_fills_its_width(width: int) -> None:
    text = timeline_text(START, START + DAY, START + 3600, [START + 7200], "3601/86400 -23h", width)
    assert len(text.plain) == width
    assert text.plain.startswith("00:00 ") and text.plain.endswith("23:59  3601/86400 -23h")


def test_cursor_and_flags_fall_where_their_times_are() -> None:
    cells = bar(START + DAY / 2, [START + DAY / 4, START + DAY * 3 / 4, START - 60])
    n = len(cells)
    assert cells.index("●") == n // 2
    assert [i for i, c in enumerate(cells) if c == "▲"] == [n // 4, n * 3 // 4]
    assert set(cells[: n // 2]) == {"━", "▲"}  # played
    assert set(cells[n // 2 + 1 :]) == {"─", "▲"}  # still to come


def test_the_ends_and_a_one_frame_recording() -> None:
    assert bar(START, []).startswith("●─")
    assert bar(START + DAY, []).endswith("━●")
    assert bar(START, [START], end=START).startswith("●")


def test_a_recording_over_two_days_shows_the_dates() -> None:
    plain = timeline_text(START, START + 2 * DAY, START, [], "1/2", 80).plain
    assert plain.startswith("12-01 00:00 ") and "12-02 23:59" in plain
