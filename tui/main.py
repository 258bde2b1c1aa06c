"""The main screen: meters, the socket list, notices, the filter prompt and a status line."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, Static

from bufmon.filters import FilterError, compile_filter
from collectors.model import Snapshot, Sock
from tui.help import HELP, Keymap, first_key, hint_line
from tui.messages import (
    Back,
    CloseAsked,
    CopyAsked,
    ExportAsked,
    FilterApplied,
    NextGrouping,
    OpenRow,
    Reverse,
    ScreenReady,
    ScreenResized,
    SortBy,
    SortStep,
    UnixToggle,
)
from tui.meters import TextLine, meter_text, notice_text, status_text
from tui.socklist import ColumnTitles, SocketList
from tui.state import ListState
from tui.view import Summary

FILTER_EXAMPLE = "e.g. state:estab recvq>64k !proc:sshd"


class FilterBar(Vertical):
    """`/` prompt; a typo shows its error on the line under it, as you type. `hint`
    follows the example in the empty prompt."""

    class Entered(Message):
        """Enter on a valid filter expression."""

        def __init__(self, expr: str) -> None:
            super().__init__()
            self.expr = expr

    def __init__(self, hint: str, *, id: str) -> None:
        super().__init__(id=id)
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Horizontal(id="filter-line"):
            yield Static("/", id="filter-prompt")
            placeholder = f"{FILTER_EXAMPLE}   Enter applies, {self.hint}"
            yield Input(placeholder=placeholder, id="filter-input", select_on_focus=False)
        yield Static(id="filter-error")

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = False

    def open(self, expr: str) -> None:
        """Show the prompt holding `expr`, the filter in force."""
        field = self.query_one(Input)
        field.value = expr
        field.cursor_position = len(expr)
        self.display = True
        self._check(expr)
        field.focus()

    def close(self) -> None:
        self.display = False

    def _check(self, expr: str) -> bool:
        error = self.query_one("#filter-error", Static)
        try:
            compile_filter(expr)
        except FilterError as exc:
            error.update(str(exc))
            error.display = True
            return False
        error.display = False
        return True

    def on_input_changed(self, event: Input.Changed) -> None:
        self._check(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self._check(event.value):
            self.post_message(self.Entered(event.value.strip()))
            self.close()
            self.screen.query_one(SocketList).focus()


class MainScreen(Screen[None]):
    BACK = Binding(
        "escape", "back", "close the prompt, leave a drill-down, clear the filter", id="back"
    )
    CLOSE = Binding(
        "K", "close", "close the marked sockets, else this one (asks first; root)", id="close"
    )
    BINDINGS = [
        Binding("slash", "filter", "filter, in the language of `bufmon snapshot`", id="filter"),
        Binding("s", "sort(1)", "sort by the next column (or click its title)", id="sort-next"),
        Binding("S", "sort(-1)", "sort by the previous column", id="sort-previous"),
        Binding("r", "reverse", "reverse the sort order", id="reverse"),
        Binding(
            "v", "group", "group by process, local port, peer host, namespace, none", id="group"
        ),
        Binding(
            "x", "unix", "show or hide idle UNIX sockets (flagged ones always show)", id="unix"
        ),
        Binding("enter", "open", "socket details, or the members of a group", id="open"),
        BACK,
        Binding("m", "mark", "mark or unmark the socket (close acts on the marked)", id="mark"),
        CLOSE,
        Binding(
            "c", "copy", "copy as text, ss command or JSON (OSC 52, else to a file)", id="copy"
        ),
        Binding("e", "export", "export the list as JSON or CSV to a new file", id="export"),
    ]

    def __init__(self, keymap: Keymap) -> None:
        super().__init__()
        self.keymap = keymap
        self.state = ListState()  # what the list shows; its filter fills the prompt
        self.meters = TextLine(id="meters")
        self.titles = ColumnTitles(id="titles")
        self.socket_list = SocketList(id="list")
        self.notices = TextLine(id="notices")
        self.filter_bar = FilterBar(hint_line(keymap, [(self.BACK, "clears")]), id="filter-bar")
        self.status = TextLine(id="status")

    def compose(self) -> ComposeResult:
        yield self.meters
        yield self.titles
        yield self.socket_list
        yield self.notices
        yield self.filter_bar
        yield self.status

    def on_resize(self) -> None:
        self.post_message(ScreenResized())

    def on_mount(self) -> None:
        self.socket_list.focus()
        self.filter_bar.display = False
        self.post_message(ScreenReady())

    def show_state(
        self,
        state: ListState,
        snapshot: Snapshot | None,
        summary: Summary | None,
        error: str | None,
        *,
        title: str,
        pace: str,
        paused: bool,
    ) -> None:
        """Paint the header, notices, column titles and status line."""
        self.state = state
        if not self.is_mounted:
            return
        host = snapshot.host if snapshot is not None else ""
        self.meters.show(meter_text(summary, f"{title} {host}", pace, paused))
        notices = snapshot.notices if snapshot else []
        self.notices.show(notice_text(notices, snapshot.system_flags if snapshot else [], error))
        self.titles.show(sort=state.sort, descending=state.descending)
        listing = self.socket_list
        self.status.show(
            status_text(
                listing.view.matched if listing.view else 0,
                len(snapshot.sockets) if snapshot else 0,
                state.group_by,
                [scope.label for scope in state.scopes],
                state.filter_expr,
                marked=len(self._marked()),
                live_key=first_key(SocketList.TOP, self.keymap) if listing.cursor > 0 else None,
                keys=(first_key(self.CLOSE, self.keymap), first_key(HELP, self.keymap)),
            )
        )

    def on_socket_list_layout_changed(self, event: SocketList.LayoutChanged) -> None:
        self.titles.show(layout=event.column_layout, width=event.line_width)

    def _ask(self, request: Message) -> None:
        """Post a request to the app, in order with the keys before and after it."""
        self.socket_list.when_current(lambda: self.post_message(request), asks_app=True)

    def on_filter_bar_entered(self, event: FilterBar.Entered) -> None:
        self._ask(FilterApplied(event.expr))

    def action_filter(self) -> None:
        self.filter_bar.open(self.state.filter_expr)

    def action_sort(self, step: int) -> None:
        self._ask(SortStep(step))

    def on_column_titles_clicked(self, event: ColumnTitles.Clicked) -> None:
        self._ask(SortBy(event.column))

    def action_reverse(self) -> None:
        self._ask(Reverse())

    def action_group(self) -> None:
        self._ask(NextGrouping())

    def action_unix(self) -> None:
        self._ask(UnixToggle())

    def action_open(self) -> None:
        listing = self.socket_list
        listing.when_current(
            lambda: self.post_message(OpenRow(listing.cursor_row)), asks_app=True, holds_keys=True
        )

    def action_back(self) -> None:
        if self.filter_bar.display:
            self.filter_bar.close()
            self._ask(FilterApplied(""))
            self.socket_list.focus()
        else:
            self._ask(Back())

    # --- actions on sockets: the app asks, then acts --------------------------------------

    def action_mark(self) -> None:
        listing = self.socket_list
        listing.when_current(listing.toggle_mark)

    def action_close(self) -> None:
        self._ask_question(lambda: CloseAsked(self._marked_or_cursor()))

    def action_copy(self) -> None:
        self._ask_question(lambda: CopyAsked(self.socket_list.cursor_row))

    def action_export(self) -> None:
        self._ask_question(lambda: ExportAsked(None))

    def _marked(self) -> list[Sock]:
        """The marked sockets still there (the filter may hide some: the confirmation
        lists each)."""
        listing = self.socket_list
        if listing.view is None or not listing.marked:
            return []
        return [s for s in listing.view.snapshot.sockets if s.key in listing.marked]

    def _marked_or_cursor(self) -> list[Sock]:
        """The marked sockets still listed, else the one under the cursor."""
        row = self.socket_list.cursor_row
        return self._marked() or ([row] if isinstance(row, Sock) else [])

    def _ask_question(self, request: Callable[[], Message]) -> None:
        """Post a request, built on the rows it is meant for, that opens a question:
        keys typed after it answer the question."""
        self.socket_list.when_current(
            lambda: self.post_message(request()), asks_app=True, holds_keys=True
        )
