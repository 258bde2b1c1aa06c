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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Middle
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Static
from textual.worker import get_current_worker

from bufmon.diagnosis.config import ConfigError
from bufmon.filters import FilterError, Predicate, with_unix
from bufmon.pacing import Pace
from bufmon.viewconfig import ViewSettings, load_view, save_view, settings_path
from collectors.model import Snapshot, Sock
from collectors.untrusted import printable
from tui.actions import Actions
from tui.arrange import COLUMN_IDS
from tui.ask import ConfirmClose
from tui.chooser import ColumnChooser
from tui.detail import HISTORY_FIELDS, DetailScreen, other_end
from tui.fmt import one_line
from tui.hangup import HangupDriver
from tui.help import HELP, HelpScreen, Section, clash, remapped
from tui.main import MainScreen
from tui.messages import (
    CloseAsked,
    CopyAsked,
    Drill,
    ExportAsked,
    FilterApplied,
    OpenRow,
    SortBy,
    SortStep,
)
from tui.screenshot import keep_spaces
from tui.socklist import SocketList
from tui.source import MonitorSource, SockKey, Source
from tui.state import ListState
from tui.system import SystemScreen
from tui.trail import Past, SystemPast
from tui.view import (
    GroupRow,
    Positions,
    Stale,
    Summary,
    View,
    ViewRequest,
    summarize,
)
from tui.viewwork import ViewWork, settled_view

if TYPE_CHECKING:
    from bufmon.diagnosis import Config
    from bufmon.diagnosis.config import SendQueueFull

P = TypeVar("P", bound=Past)
MIN_WIDTH, MIN_HEIGHT = 60, 15
INTERVALS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
MIN_GAP = 0.05  # seconds between the end of one refresh and the start of the next
# While a worker runs Python, the UI thread waits up to the GIL switch interval (5 ms by
# default) each time it takes the GIL back, many times per key and frame.
SWITCH_INTERVAL = 0.001
ABANDON_CHECK = 0.05  # seconds between a refresh worker's looks at whether the app ended
THEMES = {"dark": "textual-dark", "light": "textual-light"}  # [view] theme -> Textual's


@dataclass(slots=True)
class Collected:
    """What one refresh brings back to the UI thread."""

    started: float
    cost: float = 0.0  # seconds the worker took: collect, filter, sort, group
    snapshot: Snapshot | None = None
    summary: Summary | None = None
    view: View | None = None
    detail: tuple[Sock | None, Sock | None, Past] | None = None  # socket, other end, history
    system: SystemPast | None = None
    error: str | None = None


class FirstSockets(Message):
    """The first refresh's sockets, before their processes and flags (posted: the
    worker must not wait for the UI while it holds the source lock)."""

    def __init__(self, early: Collected) -> None:
        super().__init__()
        self.early = early


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


def abandoned_on_exit(work: Callable[[], None]) -> Callable[[], None]:
    """A thread worker's body that the app's exit does not wait for: `work` runs in a
    daemon thread, and the worker ends with it or as soon as the app cancels it (at
    exit). Python joins the worker threads of an ending app, not daemon threads."""

    def run() -> None:
        worker = get_current_worker()
        thread = threading.Thread(target=work, name="bufmon-refresh", daemon=True)
        thread.start()
        while thread.is_alive() and not worker.is_cancelled:
            thread.join(ABANDON_CHECK)

    return run


class BufmonApp(ViewWork):
    CSS_PATH = "bufmon.tcss"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("q", "quit", "quit", id="quit"),
        HELP,
        Binding(
            "y", "system", "the system: socket memory, states, counters over time", id="system"
        ),
        Binding("space", "pause", "pause or resume (the cursor stays on its socket)", id="pause"),
        Binding(
            "plus,equals_sign", "interval(1)", "refresh less often (longer interval)", id="slower"
        ),
        Binding("minus", "interval(-1)", "refresh more often (shorter interval)", id="faster"),
        Binding(
            "ctrl+s",
            "screenshot(None, '.')",
            "save a screenshot (SVG) in this directory",
            id="screenshot",
        ),
        Binding("C", "columns", "choose the columns and their order (saved)", id="columns"),
        Binding(
            "R", "services", "ports as service names from /etc/services (saved)", id="services"
        ),
        Binding("T", "theme", "light or dark colours (saved)", id="theme"),
    ]

    def __init__(
        self,
        source: Source | None = None,
        *,
        title: str = "bufmon",
        state: ListState | None = None,
        interval: float | None = None,
        send_rule: SendQueueFull | None = None,
        show_unix: bool = False,
        settings: ViewSettings | None = None,
        settings_file: str | None = None,
        pace: Pace | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings or ViewSettings()
        self.settings_file = settings_file  # where column, name and theme choices are saved
        self.source: Source = source or MonitorSource()
        self.send_rule = send_rule  # the thresholds the flags judge a sender's limit by
        self.title = title
        self.state = state or ListState(predicate=with_unix(""))
        # an interval given here rules; else the default one, longer while refreshes are slow
        self.pace = pace or Pace.from_option(interval)
        self.paused = False
        self.snapshot: Snapshot | None = None
        self.summary: Summary | None = None
        self.error: str | None = None
        self.source_lock = threading.Lock()
        self._collecting = False
        self._collect_again = False  # refresh_now() came while a refresh was running
        self._adopted = 0  # snapshots adopted so far
        self._first_looking = False  # the first refresh's sockets are shown, the rest not yet
        self._timer: Timer | None = None
        self._switch_interval = sys.getswitchinterval()  # to restore
        self.main = MainScreen(self.settings.keys)
        self.main.socket_list.expect(self.state.generation)
        self.actions = Actions(self)
        self.main.socket_list.settings = self.settings
        self.set_keymap(dict(self.settings.keys))
        self.theme = THEMES[self.settings.theme]

    # --- screens -----------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        return self.main

    def get_driver_class(self) -> type[HangupDriver]:
        """SIGHUP (the SSH session dropped) and SIGTERM quit like `q`: the terminal is
        given back as it was (main screen, cursor shown, no mouse reporting); a terminal
        gone quits too, within a bound even when the clean exit hangs (tui/hangup.py)."""
        return HangupDriver

    def on_mount(self) -> None:
        sys.setswitchinterval(SWITCH_INTERVAL)
        self.check_size()

    def on_screen_ready(self) -> None:
        self._show_state()
        self._start_refresh()

    def on_screen_resized(self) -> None:
        self.check_size()

    def check_size(self) -> None:
        """Cover every screen with a plain message while the terminal is too small."""
        small = self.size.width < MIN_WIDTH or self.size.height < MIN_HEIGHT
        showing = isinstance(self.screen, TooSmallScreen)
        if small and not showing:
            self.push_screen(TooSmallScreen())
        elif showing and not small:
            self.pop_screen()

    def help_sections(self) -> list[Section]:
        """Every screen's keys, as the [keys] table of the config file remapped them."""
        return [(title, remapped(bindings, self.settings.keys)) for title, bindings in SECTIONS]

    def action_system(self) -> None:
        if not isinstance(self.screen, SystemScreen):
            screen = SystemScreen(self.settings.keys)
            self.push_screen(screen)
            self._load(self.source.trail.system, screen.show_past)

    def export_screenshot(self, *, title: str | None = None, simplify: bool = False) -> str:
        """As Textual's, with the spaces at the edges of each text run kept in place."""
        return keep_spaces(super().export_screenshot(title=title, simplify=simplify))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.help_sections()))

    # --- refresh loop ----------------------------------------------------------------

    def _hold(self) -> Positions | None:
        """Freeze the order while the cursor is away from the top row."""
        listing = self.main.socket_list
        view = listing.view
        if view is None or listing.cursor == 0 or not listing.current:
            return None
        return view.index

    def _top(self) -> Screen[Any] | None:
        """The active screen, or None while the app shuts down (no screens left)."""
        return self.screen_stack[-1] if self.screen_stack else None

    def _detail_key(self) -> SockKey | None:
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
        request, detail_key = self.state.request(self._hold()), self._detail_key()
        system = isinstance(self._top(), SystemScreen)
        first = self.snapshot is None
        self.run_worker(
            abandoned_on_exit(lambda: self._collect(request, detail_key, system, first)),
            thread=True,
            group="collect",
            exit_on_error=False,
        )

    def _collect(
        self, request: ViewRequest, detail_key: SockKey | None, system: bool, first: bool
    ) -> None:
        """Worker thread: collect, then filter/sort/group, then hand over to the UI. The
        first refresh shows the sockets as soon as they are read (`FirstSockets`)."""
        result = Collected(time.monotonic())
        unwanted = self._unwanted(request)
        keys_first = self.source.checkpoint = self.keys_first()

        def look(snapshot: Snapshot) -> None:
            early = Collected(result.started, snapshot=snapshot, summary=summarize(snapshot))
            with contextlib.suppress(Stale):  # then the current View follows the sockets
                early.view = settled_view(snapshot, request, unwanted)
            self.post_message(FirstSockets(early))  # no waiting: the refresh holds the source

        try:
            with self.source_lock:
                snapshot = self.source.refresh(look if first else None)
                result.summary = summarize(snapshot)
                self.source.trail.observe(snapshot, result.summary)
                result.detail = self._find(snapshot, detail_key)
                result.system = self.source.trail.system() if system else None
            keys_first()
            with contextlib.suppress(Stale):  # a key changed the state: its View follows
                result.view = settled_view(snapshot, request, unwanted)
            result.snapshot = snapshot
        except Exception as exc:  # a refresh error is a notice; the app keeps running
            result.error = one_line(exc)
        # the waits are left out: that time went to keys' Views, not to this refresh
        result.cost = time.monotonic() - result.started - keys_first.waited
        self.hand_over(self._collected, result)

    def _find(
        self,
        snapshot: Snapshot,
        key: SockKey | None,
    ) -> tuple[Sock | None, Sock | None, Past] | None:
        """Worker thread: the detail screen's socket, its other end and its history (None:
        no detail); both ends are found here, off the UI thread (each a scan)."""
        if key is None:
            return None
        sock = next((s for s in snapshot.sockets if s.key == key), None)
        return sock, other_end(snapshot, sock), self._past(key, snapshot.time)

    def _past(self, key: SockKey, now: float) -> Past:
        """Worker thread, holding the source lock: one socket's history and flag spans."""
        series = {name: self.source.series(key, name) for name in HISTORY_FIELDS}
        return self.source.trail.past(key, series, now)

    def _load(self, fetch: Callable[[], P], show: Callable[[P], None]) -> None:
        """A freshly opened screen gets its history without waiting for a refresh."""

        def run() -> None:
            with self.source_lock:
                past = fetch()
            self.hand_over(show, past)

        self.run_worker(run, thread=True, group="history", exit_on_error=False)

    def on_first_sockets(self, message: FirstSockets) -> None:
        """The first refresh's sockets, before their processes and flags: on a big host
        those take longer than reading the sockets. The refresh's result replaces them
        (if it came first, this is dropped)."""
        early = message.early
        if self._top() is not None and self.snapshot is None:
            self._first_looking = True
            self._adopt(early)
            self._show_state()

    def _adopt(self, result: Collected) -> None:
        self.snapshot, self.summary = result.snapshot, result.summary
        self._adopted += 1
        self._show_view(result.view)

    def _collected(self, result: Collected) -> None:
        self._collecting = self._first_looking = False
        if self._top() is None:
            return
        self.error = result.error
        self.pace.took(result.cost + self._prefetch_spent)
        self._prefetch_spent = 0.0
        if result.snapshot is not None and result.summary is not None:
            self._adopt(result)
            self._show_detail(result)
        self._show_state()
        if self._collect_again:
            self._collect_again = False
            self._start_refresh(force=True)
        elif not self.paused:
            self._arm(max(MIN_GAP, self.pace.in_force - (time.monotonic() - result.started)))

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(delay, self._start_refresh)

    def _show_detail(self, result: Collected) -> None:
        screen, snap = self._top(), result.snapshot
        if isinstance(screen, DetailScreen) and result.detail is not None and snap is not None:
            sock, peer, past = result.detail
            screen.show(sock, peer, snap.system.sysctls, past)
        elif isinstance(screen, SystemScreen) and result.system is not None:
            screen.show_past(result.system)

    # --- what the list shows: state transitions asked for by the screens ---------------

    def update_state(self, state: ListState, to_top: bool = False) -> None:
        """Show `state`: titles now, rows when its View is computed. Every request from
        the list ends here, changed or not: the list runs the keys after it."""
        listing = self.main.socket_list
        if state is not self.state:
            self.state = state
            if to_top:
                listing.move_to(0)
            self._show_state()
            self._recompute()
        listing.expect(state.generation)

    def on_filter_applied(self, message: FilterApplied) -> None:
        try:
            state = self.state.filter(message.expr)
        except FilterError:  # the prompt checked it; the old filter stays
            state = self.state
        self.update_state(state)

    def on_sort_step(self, message: SortStep) -> None:
        ids = self.main.socket_list.column_ids(self.state.group_by)
        self.update_state(self.state.sort_step(message.step, ids))

    def on_unix_toggle(self) -> None:
        self.update_state(self.state.unix_toggled())

    def on_reverse(self) -> None:
        self.update_state(self.state.reversed())

    def on_next_grouping(self) -> None:
        self.update_state(self.state.next_grouping(), to_top=True)

    def on_back(self) -> None:
        self.update_state(self.state.back(), to_top=True)

    def on_open_row(self, message: OpenRow) -> None:
        row = message.row
        if isinstance(row, GroupRow):
            self.update_state(self.state.drill(row.scope()), to_top=True)
        else:
            if isinstance(row, Sock):
                sysctls = None if self.snapshot is None else self.snapshot.system.sysctls
                peer = other_end(self.snapshot, row)
                screen = DetailScreen(row, self.send_rule, peer, sysctls, self.settings.keys)
                self.push_screen(screen)
                now = self.snapshot.time if self.snapshot else time.time()
                self._load(lambda: self._past(screen.key, now), screen.show_history)
            self.update_state(self.state)

    def on_drill(self, message: Drill) -> None:
        """From a detail screen: back to the list, showing only the scope's sockets."""
        while self.screen is not self.main and len(self.screen_stack) > 1:
            self.pop_screen()
        self.update_state(self.state.drill(message.scope), to_top=True)

    # --- acting on sockets: close, copy, export (tui/actions.py) -----------------------------

    def on_close_asked(self, message: CloseAsked) -> None:
        self.actions.close(message.socks)
        self.update_state(self.state)

    def on_copy_asked(self, message: CopyAsked) -> None:
        self.actions.copy(message.sock)
        self.update_state(self.state)

    def on_export_asked(self, message: ExportAsked) -> None:
        self.actions.export(message.sock)
        self.update_state(self.state)

    def on_sort_by(self, message: SortBy) -> None:
        if message.column == self.state.sort:
            self.update_state(self.state.reversed())
        else:
            self.update_state(self.state.sorted_by(message.column))

    # --- the user's columns, names and theme, kept in the config file ------------------

    def action_columns(self) -> None:
        shown = self.settings.columns or COLUMN_IDS
        self.push_screen(ColumnChooser(shown, self.settings.keys), self._chosen)

    def _chosen(self, columns: tuple[str, ...] | None) -> None:
        if columns is not None:
            self.use_settings(self.settings._replace(columns=columns))

    def action_services(self) -> None:
        self.use_settings(self.settings._replace(services=not self.settings.services))

    def action_theme(self) -> None:
        theme = "light" if self.settings.theme == "dark" else "dark"
        self.use_settings(self.settings._replace(theme=theme))

    def use_settings(self, settings: ViewSettings) -> None:
        """Show `settings` now and save them in the config file's [view] table."""
        self.settings = settings
        self.theme = THEMES[settings.theme]
        self.main.socket_list.use_settings(settings)
        if self.settings_file is not None:
            try:
                save_view(self.settings_file, settings)
            except (ConfigError, OSError) as exc:
                reason = printable(str(exc))
                self.notify(reason, title="settings not saved", severity="error", markup=False)
            else:
                self.notify(f"saved in {printable(self.settings_file)}", timeout=2, markup=False)

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
        now = self.pace.in_force
        index = min(range(len(INTERVALS)), key=lambda i: abs(INTERVALS[i] - now))
        self.pace.choose(INTERVALS[max(0, min(index + step, len(INTERVALS) - 1))])
        if self._timer is not None:
            self._arm(self.pace.interval)
        self._show_state()

    # --- header, notices, status -----------------------------------------------------------

    def header(self) -> tuple[str, str, bool]:
        """(title, pace, paused) of the meters; a replay shows its recording's time."""
        return self.title, self.pace.describe(), self.paused

    def _show_state(self) -> None:
        title, pace, paused = self.header()
        self.main.show_state(
            self.state,
            self.snapshot,
            self.summary,
            self.error,
            title=title,
            pace=pace,
            paused=paused,
        )

    def on_socket_list_changed(self) -> None:
        self._show_state()

    def on_unmount(self) -> None:
        sys.setswitchinterval(self._switch_interval)
        self._ending.set()  # Views and prefetches stop within a chunk
        self._views_idle.set()  # and nothing waits for a key's View any more
        # A refresh under way (seconds on a big host) is not waited for: it holds the
        # source until the process ends; else the source closes now.
        if self.source_lock.acquire(blocking=False):
            try:
                self.source.close()
            finally:
                self.source_lock.release()


SECTIONS: list[Section] = [
    ("Everywhere", BufmonApp.BINDINGS),
    ("Socket list", [*MainScreen.BINDINGS, *SocketList.BINDINGS]),
    ("Socket details", DetailScreen.BINDINGS),
    ("System", SystemScreen.BINDINGS),
    ("Column chooser", ColumnChooser.BINDINGS),
    ("Close confirmation", ConfirmClose.BINDINGS),
]  # every screen's keys, as `?` lists them
KEY_ACTIONS = frozenset(
    b.id
    for _, bindings in SECTIONS
    for b in bindings
    if isinstance(b, Binding) and b.id is not None
)  # what the config file's [keys] table may remap
TOGETHER: list[Section] = [
    ("the socket list", [*BufmonApp.BINDINGS, *MainScreen.BINDINGS, *SocketList.BINDINGS]),
    ("socket details", [*BufmonApp.BINDINGS, *DetailScreen.BINDINGS]),
    ("the system screen", SystemScreen.BINDINGS),
    ("the column chooser", ColumnChooser.BINDINGS),
    ("the close confirmation", ConfirmClose.BINDINGS),
]  # the keys active at once on each screen: one key does one thing there


def view_settings(config_file: str | None, theme: str | None = None) -> tuple[ViewSettings, str]:
    """The view's settings from `config_file` (else the default config file) and where
    to save them; `theme` overrides the file's. Raises ConfigError."""
    path = settings_path(config_file)
    settings = load_view(path, COLUMN_IDS, KEY_ACTIONS)
    for where, bindings in TOGETHER:
        clashed = clash(bindings, settings.keys)
        if clashed is not None:
            key, one, other = clashed
            raise ConfigError(
                f"{path}: keys: {key} would be both {one} and {other} in {where}; "
                "give one of them another key"
            )
    return (settings if theme is None else settings._replace(theme=theme)), path


def run_app(
    source: Source,
    title: str = "bufmon",
    config: Config | None = None,
    filter_expr: str = "",
    keep: Predicate | None = None,
    pace: Pace | None = None,
    show_unix: bool = False,
    config_file: str | None = None,
    theme: str | None = None,
) -> int:
    """Run the view on `source` until the user quits; the caller checked the arguments
    and compiled `filter_expr` into `keep` (tui.launch starts the source first). Raises
    ConfigError (view_settings) before starting."""
    settings, settings_file = view_settings(config_file, theme)
    expr = filter_expr.strip()
    state = ListState(filter_expr=expr, predicate=keep, show_unix=show_unix)
    app = BufmonApp(
        source,
        title=title,
        state=state,
        pace=pace,
        send_rule=config.send_queue_full if config else None,
        settings=settings,
        settings_file=settings_file,
    )
    app.run()
    return app.return_code or 0
