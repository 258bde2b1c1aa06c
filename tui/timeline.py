"""The replay's timeline line, its go-to-time prompt and its incidents list."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from tui.fmt import DIM, SEVERITY_STYLES
from tui.question import Question

PLAYED = Style(bold=True)
CURSOR = Style(bold=True, reverse=True)
FLAG = SEVERITY_STYLES["warning"]
TIME_HINT = "e.g. 2026-12-01T03:12:00, 03:12 or -10m (before the end)   Enter goes, Esc cancels"


def _clock(t: float, with_day: bool) -> str:
    return time.strftime("%m-%d %H:%M" if with_day else "%H:%M", time.localtime(t))


def timeline_text(
    start: float, end: float, now: float, flags: Sequence[float], frame: str, width: int
) -> Text:
    """One line: start time, a bar with the cursor (●) and every flag rise (▲), end time.

    Cells before the cursor are drawn heavy (played), after it light."""
    with_day = time.localtime(start)[:3] != time.localtime(end)[:3]
    left, right = _clock(start, with_day), f"{_clock(end, with_day)}  {frame}"
    cells = max(width - len(left) - len(right) - 2, 1)
    span = end - start

    def cell(t: float) -> int:
        return 0 if span <= 0 else min(int((t - start) / span * cells), cells - 1)

    marks = {cell(t) for t in flags if start <= t <= end}
    here = cell(now)
    text = Text(no_wrap=True, overflow="crop")
    text.append(left + " ", DIM)
    for c in range(cells):
        if c == here:
            text.append("●", CURSOR)
        elif c in marks:
            text.append("▲", FLAG)
        else:
            text.append("━" if c < here else "─", PLAYED if c < here else DIM)
    text.append(" " + right, DIM)
    return text


class Timeline(Widget):
    """The timeline line; drawn for its width whenever it is refreshed."""

    DEFAULT_CSS = "Timeline { height: 1; padding: 0 1; }"

    def __init__(self, text_for: Callable[[int], Text]) -> None:
        super().__init__()
        self.text_for = text_for

    def render(self) -> Text:
        return self.text_for(self.content_region.width)


class TimePrompt(Question[float]):
    """Asks for a time; dismisses with it once `parse` accepts it (its error shows meanwhile)."""

    DEFAULT_CSS = """
    TimePrompt { align: center bottom; }
    #time-box { height: auto; width: 100%; background: $surface; padding: 0 1; }
    #time-input { border: none; height: 1; padding: 0; }
    #time-error { color: $error; text-style: bold; }
    """
    BINDINGS = [Binding("escape", "dismiss", "cancel")]

    def __init__(self, parse: Callable[[str], float]) -> None:
        super().__init__()
        self.parse = parse

    def compose(self) -> ComposeResult:
        with Vertical(id="time-box"):
            yield Static("go to time", classes="title")
            yield Input(placeholder=TIME_HINT, id="time-input")
            yield Static(id="time-error")

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = False
        self.query_one("#time-error").display = False
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            moment = self.parse(event.value.strip())
        except ValueError as exc:
            error = self.query_one("#time-error", Static)
            error.update(str(exc))
            error.display = True
            return
        self.dismiss(moment)


class IncidentsScreen(Question[float]):
    """Every flag raised in the recording, one line each as `replay --incidents` prints
    them; Enter goes to the moment the chosen one rose."""

    DEFAULT_CSS = """
    IncidentsScreen { align: center middle; }
    #incidents { width: 100%; height: auto; max-height: 100%; border: round $accent; }
    """
    BINDINGS = [Binding("escape,i,q", "dismiss", "close the incidents list")]

    def __init__(self, incidents: list[tuple[float, str]] | str | None = None) -> None:
        super().__init__()
        self.incidents = incidents
        self.rose: list[float] = []

    def compose(self) -> ComposeResult:
        yield OptionList(Option("reading the recording…", disabled=True), id="incidents")

    def on_mount(self) -> None:
        if self.incidents is not None:
            self.show(self.incidents)

    def show(self, incidents: list[tuple[float, str]] | str) -> None:
        """(time it rose, its line) of every incident, or why they cannot be read."""
        listing = self.query_one(OptionList)
        listing.clear_options()
        if isinstance(incidents, str):
            listing.add_option(Option(incidents, disabled=True))
            return
        if not incidents:
            listing.add_option(Option("no flag was raised in this recording", disabled=True))
        self.rose = [rose for rose, _ in incidents]
        listing.add_options(line for _, line in incidents)
        listing.border_title = f"{len(incidents)} incidents   Enter goes there"
        listing.highlighted = 0
        listing.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option_index < len(self.rose):
            self.dismiss(self.rose[event.option_index])
