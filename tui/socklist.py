"""The socket list: a virtual ScrollView that renders only the rows on screen.

A new View swaps in with O(visible rows) work on the UI thread; rendered lines sit in
an LRU cache until the next View, and only lines whose text changed are redrawn.
The cursor stays on its row key; at the top row it follows the top (worst first).
Keys run in order, each once the View of the state before it has arrived: keys typed
ahead (a filter, then Enter) act on the rows they were meant for. Keys typed after an
Enter are held until the app has handled it, then run on the screen then on top (the
details it opened, or the list).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Sequence
from inspect import isawaitable
from typing import Any

from rich.style import Style
from textual import events
from textual.actions import parse as parse_action
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Input

from bufmon.viewconfig import ViewSettings
from tui.arrange import arranged
from tui.columns import Layout, fit, render_row, render_titles
from tui.view import GroupRow, View

MAX_WAITING = 1000  # actions kept while the current View is computed


class SocketList(ScrollView, can_focus=True):
    TOP = Binding("g,home", "jump(0)", "first row (and the live order)", id="top")
    BINDINGS = [
        Binding("j,down", "move(1)", "next row", id="down"),
        Binding("k,up", "move(-1)", "previous row", id="up"),
        Binding("pagedown,ctrl+f", "page(1)", "page down", id="page-down"),
        Binding("pageup,ctrl+b", "page(-1)", "page up", id="page-up"),
        TOP,
        Binding("G,end", "jump(-1)", "last row", id="bottom"),
    ]
    COMPONENT_CLASSES = {"socket-list--cursor", "socket-list--marked"}

    class Changed(Message):
        """The cursor moved or a mark changed: the status line tells whether the order
        is held and how many sockets are marked."""

    class LayoutChanged(Message):
        def __init__(self, layout: Layout, width: int) -> None:
            super().__init__()
            self.column_layout = layout
            self.line_width = width

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view: View | None = None
        self.cursor = 0
        self.column_layout: Layout = ()
        self.settings = ViewSettings()  # the user's columns (tui.arrange)
        self._group_by: str | None = None
        self._cache: LRUCache[tuple[int, bool, bool], Strip] = LRUCache(1024)
        self._shown: dict[int, Strip] = {}  # screen line -> strip last painted there
        self._width = 0
        # (base, cursor, marked); costly to compute
        self._styles: tuple[Style, Style, Style] | None = None
        self.marked: set[Hashable] = set()  # keys of the sockets marked for an action
        self.expected = 0  # the generation of the state the app is in
        # (action, asks app, holds the keys after it)
        self._waiting: deque[tuple[Callable[[], object], bool, bool]] = deque()
        self._asking = False  # a request to the app is not handled yet
        self._asked_holds = False  # that request holds the keys after it
        self._releasing = False  # a held key runs: the action it queues runs first

    @property
    def rows(self) -> Sequence[Any]:
        return () if self.view is None else self.view.rows

    @property
    def cursor_row(self) -> Any | None:
        rows = self.rows
        return rows[self.cursor] if self.cursor < len(rows) else None

    @property
    def cursor_key(self) -> Hashable | None:
        row = self.cursor_row
        return None if row is None else row.key

    def set_view(self, view: View) -> None:
        """Swap in a new View keeping the cursor on its row and that row on its screen line."""
        key, screen_line = self.cursor_key, self.cursor - self.scroll_offset.y
        following_top = self.cursor == 0
        self.view = view
        if view.request.group_by != self._group_by:
            self._group_by = view.request.group_by
            self._relayout()
        count = len(view.rows)
        found = None if following_top or key is None else view.index.find(key)
        self.cursor = found if found is not None else max(0, min(self.cursor, count - 1))
        self._cache.clear()
        if self.virtual_size.height != count:
            self.virtual_size = Size(self.virtual_size.width, count)
        if found is not None:
            self.scroll_to(y=self.cursor - screen_line, animate=False, immediate=True)
        self._keep_cursor_visible()
        self._redraw_changed()
        self._run_waiting()

    # --- keys act in order, each on the View of the state it was meant for -------------

    def expect(self, generation: int) -> None:
        """The app handled the last request; its state is at `generation`."""
        self.expected = generation
        self._asking = False
        self._run_waiting()

    @property
    def current(self) -> bool:
        return self.view is not None and self.view.request.generation == self.expected

    def when_current(
        self, action: Callable[[], object], asks_app: bool = False, holds_keys: bool = False
    ) -> None:
        """Run `action` once the list shows the current state and earlier actions ran.

        `asks_app`: the action posts a request to the app; later actions wait until the
        app has handled it (`expect`) and its View has arrived. `holds_keys`: keys typed
        after it wait as keys, to run on the screen on top once it ran (an Enter may
        open a detail screen).
        """
        entry = (action, asks_app, holds_keys)
        if self._releasing:
            self._waiting.appendleft(entry)
        else:
            self._waiting.append(entry)
        if len(self._waiting) > MAX_WAITING:
            self._waiting.popleft()
        self._run_waiting()

    def _run_waiting(self) -> None:
        while self._waiting and self.current and not self._asking:
            action, self._asking, self._asked_holds = self._waiting.popleft()
            action()

    @property
    def _holding(self) -> bool:
        return (self._asking and self._asked_holds) or any(e[2] for e in self._waiting)

    def on_key(self, event: events.Key) -> None:
        """The list's keys run here, in the order typed (Textual would run a binding only
        once the key has bubbled up to the app, after a key typed next was held)."""
        event.stop()
        event.prevent_default()
        key, character = event.key, event.character
        if self._holding:
            self.when_current(lambda: self._release(key, character), holds_keys=True)
        else:
            self._press(key, character)

    def _release(self, key: str, character: str | None) -> None:
        """A held key runs on the screen now on top; an action returning True (a detail
        screen's drill-down) asked the app, and the keys after it wait for the answer."""
        self._releasing = True
        try:
            self._asking = self._press(key, character) is True
        finally:
            self._releasing = False

    def _press(self, key: str, character: str | None) -> object:
        """Run `key`'s binding on the screen on top at once, as Textual would."""
        app = self.app
        active = app.screen.active_bindings.get(key)
        if active is None or not active.enabled:
            if isinstance(app.focused, Input) and character and character.isprintable():
                app.focused.insert_text_at_cursor(character)  # typed into the filter prompt
            return None
        target, name, params = parse_action(active.binding.action)
        node = {"app": app, "screen": app.screen}.get(target, active.node)
        result = getattr(node, f"action_{name}")(*params)
        if isawaitable(result):
            app.call_next(lambda: result)
        return result

    def column_ids(self, group_by: str | None) -> list[str]:
        """Ids of the columns that fit on screen in a list grouped by `group_by`."""
        return [column.id for column, _ in fit(arranged(group_by, self.settings), self._width)]

    def use_settings(self, settings: ViewSettings) -> None:
        """Show the columns `settings` choose (and ports as names if they say so)."""
        self.settings = settings
        self._relayout()

    # --- drawing -------------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        self._relayout()
        self._keep_cursor_visible()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None
        self._cache.clear()

    def _relayout(self) -> None:
        width = self._width = self.scrollable_content_region.width
        self.column_layout = fit(arranged(self._group_by, self.settings), width)
        self.virtual_size = Size(width, len(self.rows))
        self._cache.clear()
        self._shown.clear()
        self.refresh()
        self.post_message(self.LayoutChanged(self.column_layout, width))

    def _line(self, index: int) -> Strip:
        if self._styles is None:
            cursor = self.get_component_rich_style("socket-list--cursor")
            mark = self.get_component_rich_style("socket-list--marked")
            self._styles = (self.rich_style, cursor, mark)
        base, cursor, mark = self._styles
        rows, width = self.rows, self._width
        if index >= len(rows):
            return Strip.blank(width, base)
        selected = index == self.cursor
        marked = bool(self.marked) and rows[index].key in self.marked
        strip = self._cache.get((index, selected, marked))
        if strip is None:
            strip = Strip(render_row(rows[index], self.column_layout, width), width)
            style = base + mark if marked else base
            strip = strip.apply_style(style + cursor if selected else style)
            self._cache[(index, selected, marked)] = strip
        return strip

    def toggle_mark(self) -> None:
        """Mark the socket under the cursor, or unmark it (groups are not marked)."""
        row = self.cursor_row
        if row is None or isinstance(row, GroupRow):
            return
        self.marked ^= {row.key}
        self.refresh_line(self.cursor)
        self.post_message(self.Changed())

    def render_line(self, y: int) -> Strip:
        strip = self._line(self.scroll_offset.y + y)
        self._shown[y] = strip
        return strip

    def _redraw_changed(self) -> None:
        top = self.scroll_offset.y
        changed = [
            y
            for y in range(self.scrollable_content_region.height)
            if self._shown.get(y) != self._line(top + y)
        ]
        if len(changed) > len(self._shown) // 2:
            self.refresh()  # one region instead of many
        else:
            for y in changed:
                self.refresh_line(top + y)

    # --- cursor ----------------------------------------------------------------------

    def move_to(self, index: int) -> None:
        count = len(self.rows)
        index = max(0, min(index, count - 1))
        if index == self.cursor:
            return
        old, self.cursor = self.cursor, index
        self.refresh_line(old)
        self.refresh_line(index)
        self._keep_cursor_visible()
        self.post_message(self.Changed())

    def _keep_cursor_visible(self) -> None:
        top, height = self.scroll_offset.y, self.scrollable_content_region.height
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif height and self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, immediate=True)

    def action_move(self, delta: int) -> None:
        self.when_current(lambda: self.move_to(self.cursor + delta))

    def action_page(self, direction: int) -> None:
        page = direction * max(1, self.scrollable_content_region.height - 1)
        self.when_current(lambda: self.move_to(self.cursor + page))

    def action_jump(self, index: int) -> None:
        self.when_current(lambda: self.move_to(index if index >= 0 else len(self.rows) - 1))

    def on_click(self, event: events.Click) -> None:
        line = self.scroll_offset.y + event.y
        self.when_current(lambda: self.move_to(line))


class ColumnTitles(Widget):
    """The title line above the list, sharing its layout; the sorted column has an arrow."""

    DEFAULT_CSS = "ColumnTitles { height: 1; }"

    class Clicked(Message):
        def __init__(self, column: str) -> None:
            super().__init__()
            self.column = column

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.column_layout: Layout = ()
        self.line_width = 0
        self.sort = ""
        self.descending = True

    def show(
        self,
        layout: Layout | None = None,
        width: int | None = None,
        sort: str | None = None,
        descending: bool | None = None,
    ) -> None:
        if layout is not None:
            self.column_layout = layout
        if width is not None:
            self.line_width = width
        if sort is not None:
            self.sort = sort
        if descending is not None:
            self.descending = descending
        self.refresh()

    def on_click(self, event: events.Click) -> None:
        """A click on a title sorts by that column (on the sorted one: reverses it)."""
        x = 0
        for column, width in self.column_layout:
            if x <= event.x < x + width:
                self.post_message(self.Clicked(column.id))
                return
            x += width + 1

    def render_line(self, y: int) -> Strip:
        segments = render_titles(self.column_layout, self.line_width, self.sort, self.descending)
        base = self.rich_style
        return Strip(segments).apply_style(base).extend_cell_length(self.size.width, base)
