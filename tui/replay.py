"""`bufmon replay FILE`: the live view over a recording, with its time and a timeline.

A ReplaySource is the app's Source over a Recording: refresh() returns the frame at
the cursor, series() builds a socket's history from earlier frames. The ReplayApp
never collects live data: its refresh loop stays paused and every move in time asks
for exactly one refresh of the frame there.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Hashable
from typing import TYPE_CHECKING

from rich.text import Text
from textual.binding import Binding
from textual.timer import Timer

from bufmon.diagnosis.engine import record_values
from bufmon.diagnosis.history import History
from bufmon.record.incidents import incident_line, incidents
from bufmon.record.reader import Recording, RecordingError
from bufmon.record.times import clock_text, parse_time
from bufmon.viewconfig import ViewSettings
from collectors.checkpoint import Checkpoint, no_pause
from collectors.model import Flag, Snapshot
from tui.app import BufmonApp, view_settings
from tui.detail import DetailScreen
from tui.fmt import human_duration
from tui.help import Section
from tui.messages import OpenRow
from tui.source import Series
from tui.state import ListState
from tui.timeline import IncidentsScreen, Timeline, TimePrompt, timeline_text
from tui.trail import Span, Trail, extend

if TYPE_CHECKING:
    from bufmon.monitor import FirstLook

SPEEDS = (1, 10, 60)
MINUTE = 60.0
HISTORY_WINDOW = 600.0  # seconds of history on the detail screen, as live
# ...but at most this many frames: a reader rebuilds every frame in between anyway
# (each is a delta on the one before), so sampling fewer would not read less.
HISTORY_FRAMES = 120
Sample = tuple[float, tuple[int, ...], list[Flag]]  # one frame's record of a socket


class ReplaySource:
    """A Recording as the app's Source; `index` is the cursor (moved by the UI thread)."""

    def __init__(self, recording: Recording, index: int = 0) -> None:
        self.recording = recording
        self.times = recording.times
        self.index = index
        self._frame: tuple[int, Snapshot] | None = None
        self._samples_key: Hashable = None
        self._samples: dict[int, Sample | None] = {}
        self._history: tuple[Hashable, int, History] | None = None
        self.trail = Trail(HISTORY_WINDOW)  # fed by the app with the frames shown
        self.checkpoint: Checkpoint = no_pause  # not called: a refresh reads one frame

    def __len__(self) -> int:
        return len(self.times)

    @property
    def time(self) -> float:
        return self.times[self.index]

    def index_at(self, t: float) -> int:
        """The last frame at or before `t`; the first frame for a time before it."""
        return 0 if t <= self.times[0] else min(self.recording.index_at(t), len(self) - 1)

    def snapshot(self, index: int) -> Snapshot:
        if self._frame is None or self._frame[0] != index:
            self._frame = (index, self.recording.snapshot(index))
        return self._frame[1]

    def refresh(self, first_look: FirstLook | None = None) -> Snapshot:
        return self.snapshot(self.index)

    def series(self, key: Hashable, field: str) -> Series:
        return self._history_at(key, self.index).series(key, field)  # type: ignore[arg-type]

    def _history_at(self, key: Hashable, index: int) -> History:
        """The socket's History up to frame `index`, built by the live History's own rules.

        Each frame's sample is kept while the same socket is shown, so moving on by a
        frame reads one frame more.
        """
        if self._history is not None and self._history[:2] == (key, index):
            return self._history[2]
        if key != self._samples_key:
            self._samples_key, self._samples = key, {}
        first = max(self.index_at(self.times[index] - HISTORY_WINDOW), index - HISTORY_FRAMES)
        history = History(window=HISTORY_WINDOW)
        spans: list[Span] = []
        for i in range(first, index + 1):
            sample = self._sample(key, i)
            if sample is not None:
                t, values, flags = sample
                history.append(key, t, values)  # type: ignore[arg-type]
                for flag in flags:
                    extend(spans, flag.kind, flag.severity, t - flag.since, t)
        self._samples = {i: self._samples[i] for i in range(first, index + 1)}  # bounded
        self._history = (key, index, history)
        self.trail.replace(key, spans)  # type: ignore[arg-type]
        return history

    def _sample(self, key: Hashable, index: int) -> Sample | None:
        if index not in self._samples:
            snap = self.snapshot(index) if index == self.index else self.recording.snapshot(index)
            sock = next((s for s in snap.sockets if s.key == key), None)
            self._samples[index] = (
                None if sock is None else (snap.time, record_values(sock), list(sock.flags))
            )
        return self._samples[index]

    def close(self) -> None:
        self.recording.close()


class ReplayApp(BufmonApp):
    BINDINGS = [
        Binding("space", "pause", "play or pause the replay"),
        Binding("greater_than_sign", "speed(1)", "play faster: 1x, 10x, 60x the recorded pace"),
        Binding("less_than_sign", "speed(-1)", "play slower"),
        Binding("left_square_bracket", "step(-1)", "one frame back"),
        Binding("right_square_bracket", "step(1)", "one frame forward"),
        Binding("left_curly_bracket", "minute(-1)", "one minute back"),
        Binding("right_curly_bracket", "minute(1)", "one minute forward"),
        Binding("N", "flag(-1)", "the previous moment a flag was raised"),
        Binding("n", "flag(1)", "the next moment a flag was raised"),
        Binding("t", "go_to", "go to a time: 2026-12-01T03:12:00, 03:12, -10m"),
        Binding("i", "incidents", "every flag raised in the recording, one line each"),
    ]

    def __init__(
        self,
        source: ReplaySource,
        state: ListState | None = None,
        settings: ViewSettings | None = None,
        settings_file: str | None = None,
    ) -> None:
        super().__init__(
            source, title="replay", state=state, settings=settings, settings_file=settings_file
        )
        self.replay = source
        self.paused = True  # the refresh loop never runs: every move asks for its frame
        self.speed = SPEEDS[0]
        self.playing = False
        self._player: Timer | None = None
        self._anchor = (0.0, 0.0)  # (recording time, monotonic time) when play started
        self.flag_times: list[float] | None = None  # read in a worker after the first frame
        self._flag_frames: list[int] = []
        self.incidents: list[tuple[float, str]] | str | None = None  # (rose, line) once read
        self._incidents_reader: threading.Thread | None = None

    def on_screen_ready(self) -> None:
        """Before the app's own handler of the message (Textual calls both, this first)."""
        self.main.mount(Timeline(self._timeline), before=self.main.status)
        self.refresh_now()
        self.run_worker(self._read_flags, thread=True, group="flags", exit_on_error=False)

    def help_sections(self) -> list[Section]:
        """The replay's keys first; the live keys it gives another meaning are left out."""
        mine = {b.key for b in ReplayApp.BINDINGS if isinstance(b, Binding)}
        live = [
            (title, [b for b in keys if not (isinstance(b, Binding) and b.key in mine)])
            for title, keys in super().help_sections()
        ]
        return [("Replay", ReplayApp.BINDINGS), *live]

    def on_open_row(self, _message: OpenRow) -> None:
        """The app's own handler, called after this one, may push a detail screen: give it
        a timeline of its own above its hint line."""
        self.call_after_refresh(self._detail_timeline)

    def _detail_timeline(self) -> None:
        screen = self.screen_stack[-1]
        if isinstance(screen, DetailScreen) and not screen.query(Timeline):
            screen.mount(Timeline(self._timeline), before="#detail-hint")

    # --- header and timeline ------------------------------------------------------------

    def header(self) -> tuple[str, str, bool]:
        snap = self.snapshot
        title = "replay" if snap is None else f"replay {clock_text(snap.time)} "
        pace = f"playing {self.speed}x" if self.playing else f"speed {self.speed}x"
        return title, pace, not self.playing

    def _timeline(self, width: int) -> Text:
        source = self.replay
        times, index = source.times, source.index
        behind = times[-1] - times[index]
        where = f"-{human_duration(behind)}" if behind > 0 else "end"
        frame = f"{clock_text(times[index])[11:]}  {index + 1}/{len(times)} {where}"
        return timeline_text(times[0], times[-1], times[index], self.flag_times or (), frame, width)

    def _redraw_timelines(self) -> None:
        for screen in self.screen_stack:
            for timeline in screen.query(Timeline):
                timeline.refresh()

    def _read_flags(self) -> None:
        """Worker thread: when flags rose, for the timeline and n / N."""
        flag_times = sorted(self.replay.recording.flag_times())
        self.hand_over(self._flags_read, flag_times)

    def _flags_read(self, flag_times: list[float]) -> None:
        times = self.replay.times
        self.flag_times = flag_times
        last = len(times) - 1
        self._flag_frames = sorted({min(bisect_left(times, t), last) for t in flag_times})
        self._redraw_timelines()

    # --- moving in time -------------------------------------------------------------------

    def go(self, index: int) -> None:
        """Show frame `index` (clamped to the recording); playing goes on from there."""
        index = max(0, min(index, len(self.replay) - 1))
        if self.playing:
            self._anchor = (self.replay.times[index], time.monotonic())
        self._show_frame(index)

    def _show_frame(self, index: int) -> None:
        if index != self.replay.index:
            self.replay.index = index
            self._redraw_timelines()
            self.refresh_now()

    def action_step(self, frames: int) -> None:
        self.go(self.replay.index + frames)

    def action_minute(self, direction: int) -> None:
        source = self.replay
        index = source.index_at(source.time + direction * MINUTE)
        self.go(index if index != source.index else index + direction)

    def action_flag(self, direction: int) -> None:
        if self.flag_times is None:
            self.notify("still reading when flags were raised…")
            return
        frames, here = self._flag_frames, self.replay.index
        if direction > 0:
            n = bisect_right(frames, here)
            target = frames[n] if n < len(frames) else None
        else:
            n = bisect_left(frames, here)
            target = frames[n - 1] if n > 0 else None
        if target is None:
            self.notify(f"no flag was raised {'after' if direction > 0 else 'before'} this")
        else:
            self.go(target)

    def action_go_to(self) -> None:
        times = self.replay.times
        self.push_screen(
            TimePrompt(lambda text: parse_time(text, times[0], times[-1])),
            lambda moment: None if moment is None else self.go_to(moment),
        )

    def go_to(self, moment: float) -> None:
        self.go(self.replay.index_at(moment))

    def action_incidents(self) -> None:
        self.push_screen(
            IncidentsScreen(self.incidents),
            lambda rose: None if rose is None else self.go_to(rose),
        )
        if self.incidents is None and self._incidents_reader is None:
            # a daemon thread, not a worker: quitting never waits for a long recording
            self._incidents_reader = threading.Thread(
                target=self._read_incidents, name="incidents", daemon=True
            )
            self._incidents_reader.start()

    def _read_incidents(self) -> None:
        """Its own thread, with its own reader: the source's shows the frames meanwhile."""
        found: list[tuple[float, str]] | str
        try:
            recording = Recording.open(self.replay.recording.path)
            try:
                found = [(inc.rose, incident_line(inc)) for inc in incidents(recording)]
            finally:
                recording.close()
        except RecordingError as exc:
            found = f"cannot read the incidents: {exc}"
        self.hand_over(self._incidents_read, found)

    def _incidents_read(self, found: list[tuple[float, str]] | str) -> None:
        self.incidents = found
        for screen in self.screen_stack:
            if isinstance(screen, IncidentsScreen):
                screen.show(found)

    # --- playing ------------------------------------------------------------------------

    def action_pause(self) -> None:
        if self.playing:
            self._stop()
        elif self.replay.index >= len(self.replay) - 1:
            self.notify("at the end of the recording: step back or go to a time first")
        else:
            self.playing = True
            self._anchor = (self.replay.time, time.monotonic())
            self._player = self.set_interval(self.pace.interval, self._tick)
        self._show_state()

    def action_speed(self, step: int) -> None:
        self.speed = SPEEDS[max(0, min(SPEEDS.index(self.speed) + step, len(SPEEDS) - 1))]
        if self.playing:
            self._anchor = (self.replay.time, time.monotonic())
        self._show_state()

    def action_interval(self, step: int) -> None:
        super().action_interval(step)
        if self._player is not None:
            self._player.stop()
            self._player = self.set_interval(self.pace.interval, self._tick)

    def _tick(self) -> None:
        recorded, started = self._anchor
        target = recorded + (time.monotonic() - started) * self.speed
        index = self.replay.index_at(target)
        self._show_frame(index)
        if index >= len(self.replay) - 1:
            self._stop()
            self._show_state()

    def _stop(self) -> None:
        self.playing = False
        if self._player is not None:
            self._player.stop()
            self._player = None


def run_replay(recording: Recording, at: float, filter_expr: str = "") -> int:
    """Run the replay view on frame `at` (a time) until the user quits; the caller has
    checked the filter and closes the recording."""
    source = ReplaySource(recording)
    source.index = source.index_at(at)
    settings, settings_file = view_settings(None)  # the live view's columns, keys, theme
    app = ReplayApp(source, ListState().filter(filter_expr), settings, settings_file)
    app.run()
    return app.return_code or 0
