"""The main screen: meters, the socket list, notices, the filter prompt and a status line."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Input, Static

from bufmon.filters import FilterError, compile_filter
from tui.meters import TextLine
from tui.socklist import ColumnTitles, SocketList

if TYPE_CHECKING:
    from tui.app import BufmonApp

FILTER_HINT = "e.g. state:estab recvq>64k !proc:sshd   Enter applies, Esc clears"


class FilterBar(Vertical):
    """`/` prompt; a typo shows its error on the line under it, as you type."""

    def compose(self) -> ComposeResult:
        with Horizontal(id="filter-line"):
            yield Static("/", id="filter-prompt")
            yield Input(placeholder=FILTER_HINT, id="filter-input", select_on_focus=False)
        yield Static(id="filter-error")

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = False

    def open(self, expr: str) -> None:
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
            cast("BufmonApp", self.app).set_filter(event.value.strip())
            self.close()
            self.screen.query_one(SocketList).focus()


class MainScreen(Screen[None]):
    BINDINGS = [
        Binding("slash", "filter", "filter, in the language of `bufmon snapshot`"),
        Binding("s", "sort(1)", "sort by the next column (arrow marks it)"),
        Binding("S", "sort(-1)", "sort by the previous column"),
        Binding("r", "reverse", "reverse the sort order"),
        Binding("v", "group", "group by process, local port, peer host, namespace, none"),
        Binding("enter", "open", "socket details, or the members of a group"),
        Binding("escape", "back", "close the prompt, leave a drill-down, clear the filter"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.meters = TextLine(id="meters")
        self.titles = ColumnTitles(id="titles")
        self.socket_list = SocketList(id="list")
        self.notices = TextLine(id="notices")
        self.filter_bar = FilterBar(id="filter-bar")
        self.status = TextLine(id="status")

    def compose(self) -> ComposeResult:
        yield self.meters
        yield self.titles
        yield self.socket_list
        yield self.notices
        yield self.filter_bar
        yield self.status

    def on_resize(self) -> None:
        self.bufmon.check_size()  # the bottom screen hears every resize, even when covered

    def on_mount(self) -> None:
        self.socket_list.focus()
        self.filter_bar.display = False
        self.bufmon.start()

    @property
    def bufmon(self) -> BufmonApp:
        return cast("BufmonApp", self.app)

    def on_socket_list_layout_changed(self, event: SocketList.LayoutChanged) -> None:
        self.titles.show(layout=event.column_layout, width=event.line_width)

    def action_filter(self) -> None:
        self.filter_bar.open(self.bufmon.filter_expr)

    def action_sort(self, step: int) -> None:
        ids = [column.id for column, _ in self.socket_list.column_layout]
        current = self.bufmon.sort
        position = ids.index(current) if current in ids else -1
        self.bufmon.set_sort(ids[(position + step) % len(ids)])

    def action_reverse(self) -> None:
        self.bufmon.set_reverse(not self.bufmon.reverse)

    def action_group(self) -> None:
        self.bufmon.next_grouping()

    def action_open(self) -> None:
        self.bufmon.open_row(self.socket_list.cursor_row)

    def action_back(self) -> None:
        if self.filter_bar.display:
            self.filter_bar.close()
            self.bufmon.set_filter("")
            self.socket_list.focus()
        else:
            self.bufmon.back()
