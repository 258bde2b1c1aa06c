"""Text for cells and meters: human sizes, durations, gauges and flag tags (no Textual)."""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style

from bufmon.textout import human_duration as human_duration  # shared with the CLI
from collectors.model import Flag

SEVERITY_STYLES = {
    "critical": Style(color="red", bold=True),
    "warning": Style(color="yellow", bold=True),
    "info": Style(color="cyan"),
}
SEVERITY_LETTERS = {"critical": "C", "warning": "W", "info": "I"}
DIM = Style(dim=True)
_EIGHTHS = " ▏▎▍▌▋▊▉"
_GAUGE_STYLES = (
    (0.5, Style(color="green")),
    (0.8, Style(color="yellow")),
    (float("inf"), Style(color="red", bold=True)),
)
# Short tags for the flag column; unknown kinds fall back to their first word.
FLAG_TAGS = {
    "stalled_reader": "STALL",
    "slow_reader": "SLOW",
    "peer_zero_window": "ZWIN",
    "send_queue_full": "SNDQ",
    "rcvbuf_overrun": "PRUNE",
    "accept_queue_full": "ACCQ",
    "syn_backlog": "SYNQ",
    "udp_drops": "DROP",
    "memory_pressure": "MEM",
    "port_exhaustion": "PORTS",
    "nagle_hint": "NAGLE",
    "buffer_limited": "BUFL",
    "close_wait": "CLWT",
    "orphan_sockets": "ORPH",
}


def human_bytes(n: float) -> str:
    """At most 4 characters, 1024-based: 999, 1.5K, 128K, 12M, 1.0G."""
    if n < 1000:
        return str(int(n))
    for unit in "KMGTP":
        n /= 1024
        if n < 9.95:
            return f"{n:.1f}{unit}"
        if n < 999.5:
            return f"{n:.0f}{unit}"
    return f"{n:.0f}E"


def human_rate(per_second: float) -> str:
    """Events per second: 0, 0.5, 12, 1.2K."""
    if per_second == 0:
        return "0"
    if per_second < 10:
        return f"{per_second:.1f}"
    return human_bytes(per_second)


def human_usec(usec: float) -> str:
    """A duration given in microseconds: 0.05ms, 9.9ms, 250ms, 1.2s."""
    ms = usec / 1000
    if ms < 1:
        return f"{ms:.2f}ms"
    if ms < 10:
        return f"{ms:.1f}ms"
    if ms < 1000:
        return f"{ms:.0f}ms"
    return f"{ms / 1000:.1f}s"


def gauge_style(fill: float) -> Style:
    return next(style for limit, style in _GAUGE_STYLES if fill < limit)


def bar(fill: float, width: int) -> list[Segment]:
    """A horizontal bar in eighths of a cell; the empty part is a dim dotted track."""
    cells = max(0.0, min(fill, 1.0)) * width
    full = int(cells)
    part = _EIGHTHS[int((cells - full) * 8)] if full < width else ""
    filled = "█" * full + part.strip()
    track = "·" * (width - len(filled))
    return [Segment(filled, gauge_style(fill)), Segment(track, DIM)]


def flag_tag(flag: Flag) -> str:
    return kind_tag(flag.kind)


def kind_tag(kind: str) -> str:
    """The list's short tag of a flag kind: STALL, ZWIN, ... (its first word otherwise)."""
    return FLAG_TAGS.get(kind) or kind.split("_")[0][:6].upper()


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
