"""The system screen: socket memory against tcp_mem, sockets by state, and the counters
the rules read, each over the history window, with the system flags where they held."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from collectors.model import Flag
from collectors.untrusted import printable
from tui.fmt import DIM, SEVERITY_STYLES, human_bytes, human_rate
from tui.help import HELP, Keymap, hint_line
from tui.meters import LABEL
from tui.plots import Mark, PlotPanel, PlotSpec, plot_rows
from tui.trail import SystemPast
from tui.view import RATE_COUNTERS, SHOWN_STATES

TITLE = "System  socket memory, sockets by state, the counters the rules read"
FIXED_ROWS = 6  # title, hint, flags, flag row and axis lines: what the plots leave room for
BACK = Binding("escape,y", "back", "back to the list", id="back")
RATE_TITLES = {
    "ovfl": "listen ovfl/s",
    "prune": "prunes/s",
    "rqdrop": "rcvq drops/s",
    "retr": "retrans/s",
    "udperr": "udp rcvbuf/s",
}


def _count(value: float) -> str:
    return str(int(value))


SYSTEM_PLOTS: tuple[PlotSpec, ...] = (
    PlotSpec("memory", "mem", human_bytes),
    *(PlotSpec(state, state, _count) for state in SHOWN_STATES),
    PlotSpec("other states", "other", _count),
    *(PlotSpec(RATE_TITLES[label], label, human_rate) for label, _ in RATE_COUNTERS),
)


def flags_text(flags: list[Flag]) -> Text:
    """The system flags held now: severity, kind and reason, one line each."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("System flags", LABEL)
    if not flags:
        text.append("  none now (the rows under the plots show where they held)", DIM)
    for flag in flags:
        text.append(f"\n● {flag.severity.upper()} {flag.kind}", SEVERITY_STYLES[flag.severity])
        text.append(f"  {printable(flag.reason)}")
    return text


class SystemScreen(Screen[None]):
    BINDINGS = [BACK]

    def __init__(self, keymap: Keymap | None = None) -> None:
        super().__init__()
        self.keymap = keymap or {}
        self.past: SystemPast | None = None
        self.title_line = Static(TITLE, id="system-title")
        self.flags = Static(id="system-flags")
        self.plots = PlotPanel(SYSTEM_PLOTS, id="system-plots")

    def compose(self) -> ComposeResult:
        yield self.title_line
        with VerticalScroll(id="system-body"):
            yield self.flags
            yield self.plots
        yield Static(hint_line(self.keymap, [(BACK, "back"), (HELP, "help")]), id="system-hint")

    def on_mount(self) -> None:
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def show_past(self, past: SystemPast) -> None:
        self.past = past
        if self.is_mounted:
            self._draw()

    def _draw(self) -> None:
        past = self.past
        if past is None:
            self.flags.update(Text("collecting…", DIM))
            return
        self.flags.update(flags_text(past.held))
        marks: dict[str, list[Mark]] = {}
        if past.tcp_mem:
            _, pressure, high = past.tcp_mem
            marks["mem"] = [("press", float(pressure)), ("high", float(high))]
        rows = plot_rows(self.app.size.height, len(SYSTEM_PLOTS), FIXED_ROWS + len(past.held))
        self.plots.show(past, rows, marks)

    def action_back(self) -> None:
        self.dismiss()
