"""History plots: one Sparkline per series on a shared time axis, with the flag intervals.

Why Textual's own Sparkline (with axis labels drawn beside it) rather than textual-plot or
textual-plotext: it ships with Textual (no new dependency: textual-plot pulls numpy and
a canvas package and is at 0.x with a moving API; textual-plotext wraps plotext, whose
last release of the wrapper is from 2024, and rebuilds an ANSI string per frame), it
draws any height with eighth blocks, so the shape survives NO_COLOR (heights, not
colours), and it costs one pass over width x height cells. What it lacks we add around
it: the y range (its data carries two anchor values, see `sparkline_data`), the
resampling of change-only records onto time columns, the time axis and the flag rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.scalar import Scalar
from textual.widgets import Sparkline, Static

from tui.fmt import DIM, SEVERITY_STYLES, kind_tag
from tui.source import Series
from tui.trail import Past, Span

GUTTER = 20  # the labels left of a plot, its axis line included
MAX_ROWS = 6  # a plot's height at most: painting costs width x height cells
SPANS = (60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)  # time axis lengths, seconds
TITLE = Style(bold=True)
TICKS = (10, 15, 30, 60, 120, 300, 600, 900, 1800)  # seconds between time labels
TICK_ROOM = 8  # columns per time label at least
MARKED = "━"  # a flag held in this column (a mark, not only a colour: NO_COLOR)

Unit = Callable[[float], str]


@dataclass(frozen=True, slots=True)
class PlotSpec:
    """One plot: its title, the history field it draws, how values read, and the least
    top of its y axis (fills: 100%); the axis grows to the largest value shown."""

    title: str
    field: str
    unit: Unit
    top: float | None = None
    also: tuple[str, Unit] | None = None  # another field shown by its value now


def now_text(spec: PlotSpec, series: dict[str, Series]) -> str | None:
    """The latest value, and the `also` field's beside it (None: no history yet)."""
    values = series.get(spec.field)
    if not values:
        return None
    text = spec.unit(values[-1][1])
    if spec.also is not None and (more := series.get(spec.also[0])):
        text += f" {spec.also[1](more[-1][1])}"
    return text


Mark = tuple[str, float]  # a labelled value shown on the y axis (min_rtt, tcp_mem marks)


def resample(series: Series, start: float, end: float, columns: int) -> list[float]:
    """The largest value in force in each of `columns` equal slices of [start, end].

    History stores a record only when a value changed, so a value holds until the
    next record; slices before the first record are 0. One pass over both."""
    out = [0.0] * columns
    if not series or columns <= 0 or end <= start:
        return out
    step = (end - start) / columns
    held, i, n = 0.0, 0, len(series)
    for column in range(columns):
        begins = start + column * step
        while i < n and series[i][0] <= begins:  # the record in force as the slice begins
            held = series[i][1]
            i += 1
        top, ends = held, begins + step
        while i < n and series[i][0] < ends:  # and every record inside it
            held = series[i][1]
            top = max(top, held)
            i += 1
        out[column] = top
    return out


def plot_rows(height: int, plots: int, fixed: int) -> int:
    """Rows per plot: what the terminal's height leaves, 2 to MAX_ROWS each."""
    return min(max((height - fixed) // plots, 2), MAX_ROWS)


def time_span(first: float | None, now: float, window: float) -> float:
    """The axis length: the history there is, rounded up to a nice length, within `window`."""
    have = 0.0 if first is None else now - first
    return min(next((s for s in SPANS if s >= have), SPANS[-1]), max(window, SPANS[0]))


def sparkline_data(values: Sequence[float], top: float) -> list[float]:
    """Textual's Sparkline scales from the data's min to its max; each column becomes a
    (value, anchor) pair, read back by `first`, and the first two anchors are 0 and
    `top`, so the y axis runs from 0 to `top` whatever the values."""
    data: list[float] = []
    for n, value in enumerate(values):
        data += (value, 0.0 if n == 0 else top if n == 1 else value)
    return data


def first(pair: Sequence[float]) -> float:
    return pair[0]


def _ago(seconds: int) -> str:
    if seconds <= 0:
        return "now"
    return f"-{seconds}s" if seconds < 60 else f"-{seconds // 60}m"


def time_axis(span: float, columns: int) -> Text:
    """`└` then relative times under the columns (-10m ... -5m ... now), a tick every
    nice step that leaves room for the labels."""
    step = next((s for s in TICKS if span / s <= columns / TICK_ROOM), TICKS[-1])
    line = [" "] * columns
    for ago in range(0, int(span) + 1, step):
        label = _ago(ago)
        at = round((1 - ago / span) * (columns - 1)) - len(label) // 2
        at = min(max(at, 0), columns - len(label))
        if all(c == " " for c in line[max(at - 1, 0) : at + len(label) + 1]):
            line[at : at + len(label)] = label
    text = Text(" " * (GUTTER - 1) + "└", DIM, no_wrap=True, overflow="crop")
    text.append("".join(line), DIM)
    return text


def flag_rows(spans: Sequence[Span], start: float, end: float, columns: int) -> Text:
    """One row per flag kind that held in [start, end]: its tag, then ━ where it held."""
    text = Text(no_wrap=True, overflow="crop")
    kinds: dict[str, list[Span]] = {}
    for span in spans:
        if span.end >= start and span.start <= end:
            kinds.setdefault(span.kind, []).append(span)
    if not kinds:
        text.append(f"{'flags':<{GUTTER - 1}}│", DIM)
        text.append("none raised in this window", DIM)
        return text
    step = (end - start) / columns
    for n, (kind, held) in enumerate(kinds.items()):
        worst = SEVERITY_STYLES[held[-1].severity]
        tag = kind_tag(kind)
        text.append(("\n" if n else "") + f"{tag:<{GUTTER - 1}}", worst)
        text.append("│", DIM)
        cells = [" "] * columns
        for span in held:
            lo = max(int((span.start - start) / step), 0)
            hi = min(int((span.end - start) / step), columns - 1)
            for column in range(lo, hi + 1):
                cells[column] = MARKED
        text.append("".join(cells), worst)
    return text


def gutter(
    spec: PlotSpec, now: str | None, peak: float, top: float, marks: Sequence[Mark], rows: int
) -> Text:
    """The labels left of a plot: title, now and max on the left, y ticks on the right."""
    left = [spec.title, "", ""]
    if now is not None:
        left[1:] = [f"now {now}", f"max {spec.unit(peak)}"]
    right = {0: spec.unit(top), rows - 1: "0"}
    for label, value in marks:  # over the ticks: a mark near the top is worth more
        row = rows - 1 - round(min(value / top, 1.0) * (rows - 1)) if top else rows - 1
        right[row] = f"{label} {spec.unit(value)}"
    text = Text(no_wrap=True, overflow="crop")
    width = GUTTER - 1
    for row in range(rows):
        label = left[row] if row < len(left) else ""
        tick = right.get(row, "")
        room = max(width - len(tick) - 1, 0)
        text.append(("\n" if row else "") + f"{label[:room]:<{room}} ", TITLE if row == 0 else DIM)
        text.append(tick.rjust(width - room - 1)[: width - room - 1], DIM)
        text.append("┤" if tick else "│", DIM)
    return text


class Plot(Horizontal):
    """One series: labels on the left, the Sparkline on the right."""

    DEFAULT_CSS = f"""
    Plot {{ height: 2; }}
    Plot > .plot-gutter {{ width: {GUTTER}; }}
    Plot > Sparkline {{ width: 1fr; height: 100%; }}
    Plot > Sparkline > .sparkline--max-color {{ color: $warning; }}
    Plot > Sparkline > .sparkline--min-color {{ color: $primary; }}
    """

    def __init__(self, spec: PlotSpec) -> None:
        super().__init__()
        self.spec = spec
        self.labels = Static(classes="plot-gutter")
        self.line = Sparkline(summary_function=first)

    def compose(self) -> ComposeResult:
        yield self.labels
        yield self.line

    def show(self, values: list[float], now: str | None, rows: int, marks: Sequence[Mark]) -> None:
        """`values`: one per column; `now`: the latest value (None: no history yet)."""
        spec = self.spec
        peak = max(values, default=0.0)
        top = max(spec.top or 0.0, peak, *(value for _, value in marks)) or 1.0
        resized = self.styles.height != Scalar.from_number(rows)
        self.styles.height = rows
        self.labels.update(gutter(spec, now, peak, top, marks, rows), layout=resized)
        self.line.data = sparkline_data(values, top)


class PlotPanel(Vertical):
    """Plots of the same time window, the flag rows and one time axis under them all."""

    DEFAULT_CSS = "PlotPanel { height: auto; } PlotPanel > Static { height: auto; }"

    def __init__(self, specs: Sequence[PlotSpec], id: str | None = None) -> None:
        super().__init__(id=id)
        self.plots = [Plot(spec) for spec in specs]
        self.flags = Static(classes="plot-flags")
        self.axis = Static(classes="plot-axis")
        self._shown: tuple[Past, int, dict[str, list[Mark]]] | None = None

    def compose(self) -> ComposeResult:
        yield from self.plots
        yield self.flags
        yield self.axis

    def show(self, past: Past, rows: int, marks: dict[str, list[Mark]] | None = None) -> None:
        """Draw every plot over the history there is (at most `past.window` s) up to
        `past.now`."""
        self._shown = (past, rows, marks or {})
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        """One column per cell of the panel's width (before its first layout: the screen's)."""
        if self._shown is None or not self.is_attached:  # drawn on its first Resize
            return
        past, rows, marks = self._shown
        series, spans, now, window = past.series, past.spans, past.now, past.window
        width = self.size.width or self.app.size.width
        columns = max(width - GUTTER, 8)
        starts = [values[0][0] for values in series.values() if values]
        span = time_span(min(starts, default=None), now, window)
        # columns are fixed slices of time (the last one holds `now`), so a column's value
        # changes only with the data: an unchanged plot is not painted again
        step = span / columns
        end = (now // step + 1) * step
        start = end - span
        for plot in self.plots:
            values = series.get(plot.spec.field, [])
            sampled = resample(values, start, end, columns)
            plot.show(sampled, now_text(plot.spec, series), rows, marks.get(plot.spec.field, []))
        self.flags.update(flag_rows(spans, start, end, columns))
        self.axis.update(time_axis(span, columns))
