"""bufmon's Textual app: a refresh loop in a worker thread feeding the screens.

Collection, filtering, sorting and grouping run in worker threads; the UI thread only
swaps in finished Views. One refresh at a time: a one-shot timer is re-armed when
the previous refresh has been applied (never a fixed-rate timer that could overlap).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Center, Middle
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Static

from bufmon.filters import FilterError, Predicate, compile_filter
from collectors.model import Snapshot, Sock
from collectors.netns import NamespaceSet, NetnsError
from tui.detail import DetailScreen
from tui.fmt import one_line
from tui.help import HelpScreen, Section
from tui.main import MainScreen
from tui.meters import meter_text, notice_text, status_text
from tui.socklist import SocketList
from tui.source import HISTORY_FIELDS, MonitorSource, Series, Source
from tui.view import (
    DEFAULT_SORT,
    GROUP_ORDER,
    GroupRow,
    Scope,
    Summary,
    View,
    ViewRequest,
    compute_view,
    sorts_for,
    summarize,
)

if TYPE_CHECKING:
    from bufmon.diagnosis import Config

MIN_WIDTH, MIN_HEIGHT = 60, 15
INTERVALS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
MIN_GAP = 0.05  # seconds between the end of one refresh and the start of the next


@dataclass(slots=True)
class Collected:
    """What one refresh brings back to the UI thread."""

    started: float
    snapshot: Snapshot | None = None
    summary: Summary | None = None
    view: View | None = None
    detail: tuple[Sock | None, dict[str, Series]] | None = None
    error: str | None = None


class TooSmallScreen(Screen[None]):
    BINDINGS = [Binding("q", "app.quit", "quit")]

    def compose(self) -> ComposeResult:
        with Middle(), Center():
            yield Static(id="too-small")

    def on_mount(self) -> None:
        self.show_size()

    def on_resize(self) -> None:
        self.show_size()

    def show_size(self) -> None:
        width, height = self.app.size
        self.query_one(Static).update(
            f"Terminal too small: {width}x{height}.\n"
            f"Needs at least {MIN_WIDTH}x{MIN_HEIGHT}: enlarge it, or q to quit."
        )


@dataclass(slots=True)
class DrillDown:
    scope: Scope
    group_by: str | None  # the grouping to return to on Esc


class BufmonApp(App[int]):
    CSS_PATH = "bufmon.tcss"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("question_mark", "help", "this help"),
        Binding("space", "pause", "pause or resume (the cursor stays on its socket)"),
        Binding("plus,equals_sign", "interval(1)", "refresh less often (longer interval)"),
        Binding("minus", "interval(-1)", "refresh more often (shorter interval)"),
        Binding("ctrl+s", "screenshot(None, '.')", "save a screenshot (SVG) in this directory"),
    ]

    def __init__(
        self,
        source: Source | None = None,
        *,
        title: str = "bufmon",
        filter_expr: str = "",
        interval: float = 1.0,
    ) -> None:
        super().__init__()
        self.source: Source = source or MonitorSource()
        self.title = title
        self.filter_expr = filter_expr
        self.predicate: Predicate | None = compile_filter(filter_expr) if filter_expr else None
        self.sort = DEFAULT_SORT
        self.reverse = False
        self.group_by: str | None = None
        self.drills: list[DrillDown] = []
        self.interval = interval
        self.paused = False
        self.generation = 0  # bumped by every change of what the list should show
        self.snapshot: Snapshot | None = None
        self.summary: Summary | None = None
        self.error: str | None = None
        self._source_lock = threading.Lock()
        self._collecting = False
        self._collect_again = False  # refresh_now() came while a refresh was running
        self._viewing = False
        self._view_again = False
        self._timer: Timer | None = None
        self.main = MainScreen()

    # --- screens -----------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        return self.main

    def on_mount(self) -> None:
        self.check_size()

    def start(self) -> None:
        """The main screen is up: show the empty frame and start refreshing."""
        self._show_state()
        self._start_refresh()

    def check_size(self) -> None:
        """Cover every screen with a plain message while the terminal is too small."""
        small = self.size.width < MIN_WIDTH or self.size.height < MIN_HEIGHT
        showing = isinstance(self.screen, TooSmallScreen)
        if small and not showing:
            self.push_screen(TooSmallScreen())
        elif showing and not small:
            self.pop_screen()

    def help_sections(self) -> list[Section]:
        return [
            ("Everywhere", BufmonApp.BINDINGS),
            ("Socket list", MainScreen.BINDINGS + SocketList.BINDINGS),
            ("Socket details", DetailScreen.BINDINGS),
        ]

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.help_sections()))

    # --- refresh loop ----------------------------------------------------------------

    def _request(self, hold: dict[Hashable, int] | None = None) -> ViewRequest:
        return ViewRequest(
            self.generation,
            self.predicate,
            self.sort,
            self.reverse,
            self.group_by,
            tuple(d.scope for d in self.drills),
            hold,
        )

    def _hold(self) -> dict[Hashable, int] | None:
        """Freeze the order while the cursor is away from the top row."""
        listing = self.main.socket_list
        view = listing.view
        if view is None or listing.cursor == 0 or view.request.generation != self.generation:
            return None
        return view.index

    def _top(self) -> Screen[Any] | None:
        """The active screen, or None while the app shuts down (no screens left)."""
        return self.screen_stack[-1] if self.screen_stack else None

    def _detail_key(self) -> Hashable | None:
        screen = self._top()
        return screen.key if isinstance(screen, DetailScreen) else None

    def refresh_now(self) -> None:
        """Refresh once now, even while paused (a replay moved in time); queued behind a
        refresh that is running, so the newest request always gets its frame."""
        if self._collecting:
            self._collect_again = True
        else:
            self._start_refresh(force=True)

    def _start_refresh(self, force: bool = False) -> None:
        self._timer = None
        if (self.paused and not force) or self._collecting:
            return
        self._collecting = True
        request, detail_key = self._request(self._hold()), self._detail_key()
        self.run_worker(
            lambda: self._collect(request, detail_key),
            thread=True,
            group="collect",
            exit_on_error=False,
        )

    def _collect(self, request: ViewRequest, detail_key: Hashable | None) -> None:
        """Worker thread: collect, then filter/sort/group, then hand over to the UI."""
        result = Collected(time.monotonic())
        try:
            with self._source_lock:
                snapshot = self.source.refresh()
                result.detail = self._find(snapshot, detail_key)
            result.summary = summarize(snapshot)
            result.view = compute_view(snapshot, request)
            result.snapshot = snapshot
        except Exception as exc:  # a refresh error is a notice; the app keeps running
            result.error = one_line(exc)
        self._hand_over(self._collected, result)

    def _find(
        self,
        snapshot: Snapshot,
        key: Hashable | None,
    ) -> tuple[Sock | None, dict[str, Series]] | None:
        """Worker thread: the detail screen's socket and its history (None: no detail)."""
        if key is None:
            return None
        sock = next((s for s in snapshot.sockets if s.key == key), None)
        return sock, self._series(key)

    def _series(self, key: Hashable) -> dict[str, Series]:
        """Worker thread, holding the source lock: one socket's history."""
        return {name: self.source.series(key, name) for name in HISTORY_FIELDS}

    def _load_history(self, screen: DetailScreen) -> None:
        """A freshly opened detail screen gets its history without waiting for a refresh."""

        def fetch() -> None:
            with self._source_lock:
                series = self._series(screen.key)
            self._hand_over(screen.show_history, series)

        self.run_worker(fetch, thread=True, group="history", exit_on_error=False)

    def _hand_over(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the app closed meanwhile
            self.call_from_thread(callback, *args)

    def _collected(self, result: Collected) -> None:
        self._collecting = False
        if self._top() is None:
            return
        self.error = result.error
        if result.snapshot is not None and result.summary is not None:
            self.snapshot, self.summary = result.snapshot, result.summary
            self._show_view(result.view)
            self._show_detail(result)
        self._show_state()
        if self._collect_again:
            self._collect_again = False
            self._start_refresh(force=True)
        elif not self.paused:
            self._arm(max(MIN_GAP, self.interval - (time.monotonic() - result.started)))

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(delay, self._start_refresh)

    def _show_view(self, view: View | None) -> None:
        """Show a finished View if it is current; otherwise compute the current one."""
        if (
            view is not None
            and view.request.generation == self.generation
            and view.snapshot is self.snapshot
        ):
            self.main.socket_list.set_view(view)
            self._show_state()
        else:
            self._recompute()

    def _show_detail(self, result: Collected) -> None:
        screen = self._top()
        if isinstance(screen, DetailScreen) and result.detail is not None:
            sock, series = result.detail
            screen.show(sock)
            screen.show_history(series)

    def _recompute(self) -> None:
        """Filter/sort/group the current snapshot again, in a worker thread."""
        if self.snapshot is None:
            return
        if self._viewing:
            self._view_again = True
            return
        self._viewing = True
        snapshot, request = self.snapshot, self._request()
        self.run_worker(
            lambda: self._compute(snapshot, request), thread=True, group="view", exit_on_error=False
        )

    def _compute(self, snapshot: Snapshot, request: ViewRequest) -> None:
        try:
            view: View | None = compute_view(snapshot, request)
        except Exception as exc:  # shown as a notice; the previous view stays
            view, self.error = None, one_line(exc)
        self._hand_over(self._computed, view)

    def _computed(self, view: View | None) -> None:
        self._viewing = False
        if self._view_again:
            self._view_again = False
            self._recompute()
        elif view is not None:
            self._show_view(view)  # computes again if the state moved on meanwhile
        self._show_state()

    def _changed(self) -> None:
        """The user changed what the list shows: update titles now, rows when computed."""
        self.generation += 1
        self._show_state()
        self._recompute()

    # --- what the list shows ------------------------------------------------------------

    def set_filter(self, expr: str) -> None:
        try:
            self.predicate = compile_filter(expr) if expr else None
        except FilterError:
            return  # the prompt shows the error and keeps the old filter
        self.filter_expr = expr
        self._changed()

    def set_sort(self, column: str) -> None:
        self.sort, self.reverse = column, False
        self._changed()

    def set_reverse(self, reverse: bool) -> None:
        self.reverse = reverse
        self._changed()

    def next_grouping(self) -> None:
        self.group_by = GROUP_ORDER[(GROUP_ORDER.index(self.group_by) + 1) % len(GROUP_ORDER)]
        if self.sort not in sorts_for(self.group_by):
            self.sort, self.reverse = DEFAULT_SORT, False
        self.main.socket_list.move_to(0)
        self._changed()

    def open_row(self, row: Any) -> None:
        if isinstance(row, GroupRow):
            self.drill(row.scope())
        elif isinstance(row, Sock):
            screen = DetailScreen(row)
            self.push_screen(screen)
            self._load_history(screen)

    def drill(self, scope: Scope) -> None:
        """Show only `scope`'s sockets (Esc returns); from a detail screen, return first."""
        while self.screen is not self.main and len(self.screen_stack) > 1:
            self.pop_screen()
        self.drills.append(DrillDown(scope, self.group_by))
        self.group_by = None
        if self.sort not in sorts_for(None):
            self.sort, self.reverse = DEFAULT_SORT, False
        self.main.socket_list.move_to(0)
        self._changed()

    def back(self) -> None:
        if self.drills:
            self.group_by = self.drills.pop().group_by
            if self.sort not in sorts_for(self.group_by):
                self.sort, self.reverse = DEFAULT_SORT, False
        elif self.filter_expr:
            self.filter_expr, self.predicate = "", None
        else:
            return
        self.main.socket_list.move_to(0)
        self._changed()

    # --- pause and interval ---------------------------------------------------------------

    def action_pause(self) -> None:
        self.paused = not self.paused
        if self.paused and self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._show_state()
        if not self.paused:
            self._start_refresh()

    def action_interval(self, step: int) -> None:
        index = min(range(len(INTERVALS)), key=lambda i: abs(INTERVALS[i] - self.interval))
        self.interval = INTERVALS[max(0, min(index + step, len(INTERVALS) - 1))]
        if self._timer is not None:
            self._arm(self.interval)
        self._show_state()

    # --- header, notices, status -----------------------------------------------------------

    def header(self) -> Text:
        """The meters at the top (a replay shows its recording's time there)."""
        host = self.snapshot.host if self.snapshot is not None else ""
        pace = f"every {self.interval:g}s"
        return meter_text(self.summary, f"{self.title} {host}", pace, self.paused)

    def _show_state(self) -> None:
        main = self.main
        if not main.is_mounted:
            return
        main.meters.show(self.header())
        snap = self.snapshot
        main.notices.show(
            notice_text(snap.notices if snap else [], snap.system_flags if snap else [], self.error)
        )
        listing = main.socket_list
        view = listing.view
        descending = sorts_for(self.group_by)[self.sort][1] != self.reverse
        main.titles.show(sort=self.sort, descending=descending)
        main.status.show(
            status_text(
                view.matched if view else 0,
                len(snap.sockets) if snap else 0,
                self.group_by,
                [d.scope.label for d in self.drills],
                self.filter_expr,
                held=listing.cursor > 0,
            )
        )

    def on_socket_list_moved(self) -> None:
        self._show_state()

    def on_unmount(self) -> None:
        with self._source_lock:  # a collect worker may be mid-dump on the same sockets
            self.source.close()


def run_app(
    netns: str = "auto",
    title: str = "bufmon",
    config: Config | None = None,
    filter_expr: str = "",
    interval: float = 1.0,
) -> int:
    """Run the TUI until the user quits; a bad filter is one line and exit status 2, a
    missing namespace one line and exit status 1."""
    try:
        compile_filter(filter_expr)
    except FilterError as exc:
        print(f"bufmon: {exc}", file=sys.stderr)
        return 2
    try:
        NamespaceSet(netns).close()  # a namespace that does not exist: say so, do not start
    except NetnsError as exc:
        print(f"bufmon: {exc}", file=sys.stderr)
        return 1
    app = BufmonApp(
        MonitorSource(netns, config), title=title, filter_expr=filter_expr, interval=interval
    )
    app.run()
    return app.return_code or 0
