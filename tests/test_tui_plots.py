"""The history plots' parts (resampling, axes, flag rows), the Trail behind them, the
list's width and blank rules, and SVG screenshots that keep their spaces.

Pure functions on made-up values: no kernel is involved; the Pilot test of the plots on
a real stalled reader is in test_tui_pilot.py.
"""

from __future__ import annotations

import re

from collectors.model import Flag, Snapshot, SystemFacts
from tui.columns import SOCKET_COLUMNS, fit, render_row
from tui.plots import MARKED, flag_rows, resample, sparkline_data, time_axis, time_span
from tui.screenshot import keep_spaces
from tui.synthetic import synthetic_snapshot
from tui.trail import SYSTEM, Span, Trail
from tui.view import summarize


def test_resample_holds_each_value_until_the_next_record() -> None:
    # records only when a value changed: 5 from t=0, 9 from t=4, 0 from t=8
    series = [(0.0, 5.0), (4.0, 9.0), (8.0, 0.0)]
    assert resample(series, 0.0, 10.0, 5) == [5.0, 5.0, 9.0, 9.0, 0.0]
    # a column keeps the largest value in force in it (a short peak is not lost)
    assert resample([(0.0, 1.0), (3.1, 7.0), (3.2, 1.0)], 0.0, 10.0, 2) == [7.0, 1.0]


def test_resample_leaves_the_time_before_the_first_record_empty() -> None:
    assert resample([(6.0, 3.0)], 0.0, 10.0, 5) == [0.0, 0.0, 0.0, 3.0, 3.0]
    assert resample([], 0.0, 10.0, 3) == [0.0, 0.0, 0.0]


def test_time_span_grows_with_the_history_up_to_the_window() -> None:
    assert time_span(None, 100.0, 600.0) == 60.0
    assert time_span(0.0, 100.0, 600.0) == 120.0
    assert time_span(0.0, 5000.0, 600.0) == 600.0


def test_time_axis_labels_relative_times_and_ends_at_now() -> None:
    axis = time_axis(600.0, 60).plain
    assert axis.rstrip().endswith("now")
    labels = re.findall(r"-\d+m", axis)
    assert labels[0] == "-10m" and len(labels) >= 3
    # narrow: fewer labels, none overlapping
    narrow = time_axis(600.0, 20).plain
    assert "now" in narrow and "-10m" in narrow and len(re.findall(r"-\d+m", narrow)) <= 2


def test_sparkline_data_anchors_the_y_axis_at_zero_and_top() -> None:
    data = sparkline_data([0.5, 0.5, 0.5], 1.0)
    assert data[::2] == [0.5, 0.5, 0.5]  # the values, one per column
    assert min(data) == 0.0 and max(data) == 1.0  # what the Sparkline scales by


def test_flag_rows_mark_where_a_flag_held_without_colour() -> None:
    spans = [Span("stalled_reader", "critical", 20.0, 40.0)]
    row = flag_rows(spans, 0.0, 100.0, 10).plain
    assert row.startswith("STALL")
    cells = row.split("│")[1]
    assert cells == "  " + MARKED * 3 + " " * 5  # columns 2..4 hold 20..50 s
    assert "none raised" in flag_rows([], 0.0, 100.0, 10).plain


def _snapshot(now: float, flags: list[Flag]) -> Snapshot:
    snap = synthetic_snapshot(10)
    snap.time = now
    for s in snap.sockets:
        s.flags = []
    snap.sockets[3].flags = flags
    snap.system_flags = []
    return snap


def test_trail_keeps_a_flag_that_rose_and_cleared_as_one_span() -> None:
    trail = Trail(window=600.0)
    key = synthetic_snapshot(10).sockets[3].key
    for t in range(100, 110):
        flags = [Flag("stalled_reader", "critical", t - 102)] if 102 <= t < 106 else []
        snap = _snapshot(float(t), flags)
        trail.observe(snap, summarize(snap))
    assert [(s.kind, s.start, s.end) for s in trail.spans(key)] == [
        ("stalled_reader", 102.0, 105.0)
    ]
    # it rises again: a second span, not a longer first one
    again = _snapshot(120.0, [Flag("stalled_reader", "critical", 1.0)])
    trail.observe(again, summarize(again))
    assert [s.start for s in trail.spans(key)] == [102.0, 119.0]
    assert len(trail.samples) == 11 and trail.spans(SYSTEM) == []


def test_trail_rewinds_when_a_replay_moves_back() -> None:
    trail = Trail(window=600.0)
    for t in (100.0, 101.0, 102.0):
        snap = _snapshot(t, [Flag("stalled_reader", "critical", t - 100.0)])
        trail.observe(snap, summarize(snap))
    back = _snapshot(100.5, [])
    trail.observe(back, summarize(back))
    assert [s.time for s in trail.samples] == [100.0, 100.5]
    key = back.sockets[3].key
    assert [(s.start, s.end) for s in trail.spans(key)] == [(100.0, 100.5)]


def test_trail_forgets_what_left_the_window() -> None:
    trail = Trail(window=10.0)
    for t in (0.0, 5.0, 20.0):
        snap = _snapshot(t, [Flag("stalled_reader", "critical", 0.0)] if t == 0 else [])
        snap.system = SystemFacts()
        trail.observe(snap, summarize(snap))
    assert [s.time for s in trail.samples] == [20.0]
    assert trail.spans(snap.sockets[3].key) == []


def _rtt_cell(state: str, proto: str = "tcp", width: int = 160) -> str:
    """The RTT cell of the first synthetic socket in `state`, as the list draws it."""
    sock = next(s for s in synthetic_snapshot(20).sockets if s.state == state and s.proto == proto)
    layout = fit(SOCKET_COLUMNS, width)
    text = "".join(seg.text for seg in render_row(sock, layout, width))
    ids = [column.id for column, _ in layout]
    start = sum(w + 1 for _, w in layout[: ids.index("rtt")])
    return text[start : start + layout[ids.index("rtt")][1]].strip()


def test_rtt_is_blank_where_a_socket_has_none() -> None:
    assert _rtt_cell("LISTEN") == "-"
    assert _rtt_cell("UNCONN", proto="udp") == "-"
    assert _rtt_cell("ESTAB").endswith("ms")


def test_wide_terminals_give_the_gauges_the_room_addresses_do_not_need() -> None:
    narrow = {c.id: w for c, w in fit(SOCKET_COLUMNS, 80)}
    wide = {c.id: w for c, w in fit(SOCKET_COLUMNS, 160)}
    assert wide["local"] == wide["peer"] == len("255.255.255.255:65535")
    minimum = {c.id: c.width for c in SOCKET_COLUMNS}
    grown = {name: width - minimum[name] for name, width in wide.items()}
    others = [g for name, g in grown.items() if name not in ("local", "peer", "recvq", "sendq")]
    assert min(grown["recvq"], grown["sendq"]) > max(others)  # the gauges take the rest
    assert wide["recvq"] > narrow["recvq"] and sum(wide.values()) + len(wide) - 1 == 160


def test_screenshots_move_edge_spaces_out_of_text_runs() -> None:
    svg = (
        '<text class="r4" x="12.2" y="20" textLength="85.4" clip-path="u">'
        "&#160;ESTAB&#160;</text>"
        '<text class="r3" x="97.6" y="20" textLength="24.4" clip-path="u">15</text>'
    )
    fixed = keep_spaces(svg)
    assert '<text class="r4" x="24.4" y="20" textLength="61" clip-path="u">ESTAB</text>' in fixed
    assert '<text class="r3" x="97.6" y="20" textLength="24.4" clip-path="u">15</text>' in fixed
