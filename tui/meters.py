"""The header meters, the notice lines and the status line, as Rich Text."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from collectors.model import SEVERITIES, Flag
from collectors.untrusted import printable
from tui.fmt import DIM, SEVERITY_STYLES, bar, gauge_style, human_bytes, human_rate
from tui.view import GROUPINGS, Summary

LABEL = Style(bold=True)
PAUSED = Style(bold=True, reverse=True)


def meter_text(summary: Summary | None, title: str, pace: str, paused: bool) -> Text:
    """Three lines: sockets by state; memory and rates per second; flags, pace, pause.

    `pace` says how the view moves on: "every 1s" live, the speed in a replay."""
    text = Text(no_wrap=True, overflow="crop")
    text.append(printable(title), LABEL)  # holds the host name
    if summary is None:
        text.append("  collecting…\n\n", DIM)
    else:
        text.append(f"  {summary.total} sockets ")
        for state, count in summary.states:
            if state == "other" and not count:
                continue
            text.append(f" {state} ", DIM)
            text.append(str(count))
        text.append("\n")
        _memory(text, summary)
        text.append("  per s", DIM)
        for label, rate in summary.rates:
            text.append(f" {label} ", DIM)
            if rate is None:
                text.append("-", DIM)
            else:
                text.append(human_rate(rate), SEVERITY_STYLES["warning"] if rate else None)
        text.append("\n")
    text.append("flags", LABEL)
    for severity in reversed(SEVERITIES):
        count = 0 if summary is None else summary.flags[severity]
        text.append(f" {count} {severity}", SEVERITY_STYLES[severity] if count else DIM)
    text.append(f"   {pace}", DIM)
    if paused:
        text.append("  ")
        text.append(" PAUSED ", PAUSED)
    return text


def _memory(text: Text, summary: Summary) -> None:
    text.append("mem ", LABEL)
    if summary.mem_bytes is None:
        text.append("-", DIM)
        return
    text.append(human_bytes(summary.mem_bytes))
    if summary.tcp_mem_bytes is None:
        text.append(" (tcp_mem unknown)", DIM)
        return
    pressure = summary.tcp_mem_bytes[1]
    fill = summary.mem_bytes / pressure if pressure else 0.0
    text.append(f"/{human_bytes(pressure)} ")
    for segment in bar(fill, 5):
        text.append(segment.text, segment.style)
    text.append(f" {fill:.0%}", gauge_style(fill))


def notice_text(notices: list[str], system_flags: list[Flag], error: str | None) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    lines: list[tuple[str, Style | None]] = [
        (f"{flag.severity}: {flag.reason}", SEVERITY_STYLES[flag.severity]) for flag in system_flags
    ]
    lines += [(notice, DIM) for notice in notices]
    if error:
        lines.append((f"refresh failed: {error}", SEVERITY_STYLES["critical"]))
    for n, (line, style) in enumerate(lines):
        text.append(("\n" if n else "") + "! " + printable(line), style)
    return text


def status_text(
    matched: int,
    total: int,
    group_by: str | None,
    scopes: list[str],
    filter_expr: str,
    *,
    marked: int,
    live_key: str | None,
    keys: tuple[str, str],
) -> Text:
    """The status line; `live_key` (None: the order is live) goes back to the live
    order; `keys`: the keys bound now to close (the marked sockets) and to help."""
    close_key, help_key = keys
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{matched} of {total}", LABEL)
    if group_by:
        text.append(f"  by {GROUPINGS[group_by].title}", LABEL)
    for scope in scopes:
        text.append(f"  ▸ {printable(scope)}")
    if filter_expr:
        text.append("  /", DIM)
        text.append(printable(filter_expr))
    if marked:
        text.append(f"  {marked} marked ({close_key} closes them)", LABEL)
    if live_key is not None:
        text.append(f"  order held ({live_key}: live)", DIM)
    text.append(f"   {help_key} help", DIM)
    return text


class TextLine(Static):
    """A Static that repaints only when its text really changed; hidden while empty."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: Text | None = None

    def show(self, text: Text) -> None:
        if self._shown != text:
            self._shown = text
            self.update(text)
            self.display = bool(text.plain)
