"""The column chooser: which columns the socket list shows, and in what order."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from tui.columns import SOCKET_COLUMNS
from tui.help import Keymap, hint_line
from tui.question import Question

TITLES = {c.id: c.title for c in SOCKET_COLUMNS}
CURSOR = Style(reverse=True)


class ColumnChooser(Question[tuple[str, ...] | None]):
    """Dismissed with the shown column ids in order (None: cancelled)."""

    LATER = Binding("J,shift+down", "shift(1)", "move the column later", id="chooser-later")
    EARLIER = Binding("K,shift+up", "shift(-1)", "move the column earlier", id="chooser-earlier")
    TOGGLE = Binding("space", "flip", "show or hide the column", id="chooser-toggle")
    SAVE = Binding("enter", "save", "use this choice and save it", id="chooser-save")
    CANCEL = Binding("escape", "dismiss(None)", "cancel", id="chooser-cancel")
    BINDINGS = [
        Binding("j,down", "move(1)", "next column", id="chooser-down"),
        Binding("k,up", "move(-1)", "previous column", id="chooser-up"),
        LATER,
        EARLIER,
        TOGGLE,
        SAVE,
        CANCEL,
    ]

    def __init__(self, shown: tuple[str, ...], keymap: Keymap) -> None:
        super().__init__()
        self.keymap = keymap
        hidden = [c for c in TITLES if c not in shown]
        self.order = [*shown, *hidden]  # every column: the shown ones first, in order
        self.shown = set(shown)
        self.cursor = 0
        # kept, not queried: an Enter typed with the C may dismiss it before it mounts
        self.listing = Static(id="chooser-list")

    def compose(self) -> ComposeResult:
        with Vertical(classes="ask-box"):
            yield self.listing
            yield Static(self.hint(), classes="ask-hint")

    def hint(self) -> str:
        parts = [(self.TOGGLE, "shows/hides"), (self.LATER, "later"), (self.EARLIER, "earlier")]
        return hint_line(self.keymap, [*parts, (self.SAVE, "saves"), (self.CANCEL, "cancels")])

    def on_mount(self) -> None:
        self.paint()

    def paint(self) -> None:
        text = Text()
        for n, column in enumerate(self.order):
            mark = "[x]" if column in self.shown else "[ ]"
            text.append(f"{mark} {TITLES[column]:<10}", CURSOR if n == self.cursor else None)
            text.append("\n" if n + 1 < len(self.order) else "")
        self.listing.update(text)

    def action_move(self, step: int) -> None:
        self.cursor = max(0, min(self.cursor + step, len(self.order) - 1))
        self.paint()

    def action_shift(self, step: int) -> None:
        target = self.cursor + step
        if 0 <= target < len(self.order):
            order = self.order
            order[self.cursor], order[target] = order[target], order[self.cursor]
            self.cursor = target
            self.paint()

    def action_flip(self) -> None:
        column = self.order[self.cursor]
        if column in self.shown and len(self.shown) > 1:  # at least one column stays
            self.shown.remove(column)
        else:
            self.shown.add(column)
        self.paint()

    def action_save(self) -> None:
        self.dismiss(tuple(c for c in self.order if c in self.shown))
