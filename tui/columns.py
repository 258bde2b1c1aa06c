"""Columns of the socket list: what each cell shows, and which columns fit a width.

A cell is a list of Segments no wider than its column; `render_row` pads and joins.
When the terminal is narrow, columns give way by priority (lower number stays longer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style

from bufmon.present import flags_worst_first, netns_text
from bufmon.rates import retr_rate, rx_rate, tx_rate
from bufmon.unix_ends import ends
from collectors.model import SEVERITIES, SK_RCVBUF, SK_RMEM, SK_SNDBUF, SK_WMEM, SK_WQUEUED, Sock
from collectors.untrusted import printable
from tui.fmt import (
    DIM,
    SEVERITY_LETTERS,
    SEVERITY_STYLES,
    bar,
    flag_tag,
    human_bytes,
    human_rate,
    human_usec,
)
from tui.view import GroupRow

Cell = list[Segment]
GAUGE_BAR = 2  # bar cells at the minimum gauge width; extra width goes to the bar
ADDRESS_ROOM = 6  # cells an address grows by: 21 holds any IPv4 address and port
GAUGE_ROOM = 20  # cells a queue gauge grows by, once the addresses have their room
TITLE = Style(bold=True)
SORTED_TITLE = Style(bold=True, underline=True)


@dataclass(frozen=True, slots=True)
class Column:
    id: str  # also the sort key id
    title: str
    width: int  # minimum
    priority: int
    cell: Callable[[Any, int], Cell]
    grow: int = 0  # extra cells it may take when there is room
    grow_order: int = 2  # spare cells go to order 0 first, then 1, then 2
    right: bool = False


def _text(text: str, width: int, style: Style | None = None) -> Cell:
    """Every text cell, names included: control characters are shown escaped."""
    text = printable(text)
    if cell_len(text) > width:
        text = text[: max(width - 1, 0)] + "…"
    return [Segment(text, style)]


def _tail(text: str, width: int) -> Cell:
    """Keep the end (the port) when an address is too long."""
    if len(text) > width:
        text = "…" + text[len(text) - width + 1 :]
    return [Segment(text)]


def end_cell(side: int, services: bool = False) -> Callable[[Any, int], Cell]:
    """The local (side 0) or peer (1) endpoint; `services`: ports by service name."""
    return lambda s, w: _tail(ends(s, services)[side], w)


def gauge(fill: float | None, label: str, width: int) -> Cell:
    """Bar plus label, e.g. `█▌ 128K/128K`; no bar when fullness is unknown."""
    bar_width = max(width - 10, GAUGE_BAR)
    room = width - bar_width - 1
    label = label[-room:].rjust(room)
    if fill is None:
        return [Segment(" " * (bar_width + 1) + label, DIM)]
    return [*bar(fill, bar_width), Segment(" " + label)]


def recv_label(s: Sock) -> str:
    """Accept queue/backlog for a listener, r/rb when skmem is known, else Recv-Q (and
    always on UNIX sockets, whose received data is charged to the sender: r is 0)."""
    if s.state == "LISTEN":
        return f"{s.recv_q}/{s.send_q}"
    if s.skmem is None or s.proto == "unix":
        return human_bytes(s.recv_q)
    return f"{human_bytes(s.skmem[SK_RMEM])}/{human_bytes(s.skmem[SK_RCVBUF])}"


def send_label(s: Sock) -> str:
    """w/tb for TCP (t/tb for UDP and UNIX), nothing for a listener, else Send-Q."""
    if s.state == "LISTEN":
        return ""
    if s.skmem is None:
        return human_bytes(s.send_q)
    used = s.skmem[SK_WMEM] if s.proto in ("udp", "unix") else s.skmem[SK_WQUEUED]
    return f"{human_bytes(used)}/{human_bytes(s.skmem[SK_SNDBUF])}"


def _flag_tags(flags: list[Any], width: int) -> Cell:
    cell: Cell = []
    used = 0
    ordered = flags_worst_first(flags)
    for n, flag in enumerate(ordered):
        tag = flag_tag(flag)
        more = f"+{len(ordered) - n}"
        need = len(tag) + (1 if cell else 0)
        rest_needs = len(more) + 1 if n + 1 < len(ordered) else 0
        if used + need + rest_needs > width and cell:
            cell.append(Segment(" " + more, DIM))
            break
        if cell:
            cell.append(Segment(" "))
        cell.extend(_text(tag, width - used - (1 if cell else 0), SEVERITY_STYLES[flag.severity]))
        used += need
    return cell


def _rtt(s: Sock, width: int) -> Cell:
    """A connection's smoothed rtt; "-" where there is none: a listener, UDP, UNIX, or a
    connection with no sample yet (the kernel reports 0 then)."""
    rtt = None if s.info is None or s.proto != "tcp" or s.state == "LISTEN" else s.info.get("rtt")
    return _text(human_usec(rtt) if rtt else "-", width)


def _rate(rate: float | None, width: int, human: Callable[[float], str] = human_bytes) -> Cell:
    """A per-second rate; `-` (dim) when the socket has none (first sample, no tcp_info)."""
    return _text("-", width, DIM) if rate is None else _text(human(rate), width)


def _process(s: Sock, width: int) -> Cell:
    p = s.process
    return _text("-" if p is None else f"{p.comm}/{p.pid}", width)


def _group_flags(g: GroupRow, width: int) -> Cell:
    cell: Cell = []
    for severity in reversed(SEVERITIES):
        count = g.flag_counts[severity]
        if count:
            if cell:
                cell.append(Segment(" "))
            cell.append(Segment(f"{count}{SEVERITY_LETTERS[severity]}", SEVERITY_STYLES[severity]))
    return cell


SOCKET_COLUMNS: tuple[Column, ...] = (
    Column("netns", "NETNS", 8, 12, lambda s, w: _text(netns_text(s), w), grow=8),
    Column("proto", "PROTO", 5, 11, lambda s, w: _text(s.proto, w)),
    Column("state", "STATE", 10, 4, lambda s, w: _text(s.state, w)),
    Column("local", "LOCAL", 15, 0, end_cell(0), grow=ADDRESS_ROOM, grow_order=0),
    Column("peer", "PEER", 15, 5, end_cell(1), grow=ADDRESS_ROOM, grow_order=0),
    Column("process", "PROCESS", 12, 8, _process, grow=12),
    Column(
        "recvq",
        "RECV-Q",
        12,
        1,
        lambda s, w: gauge(s.recv_fill, recv_label(s), w),
        grow=GAUGE_ROOM,
        grow_order=1,
        right=True,
    ),
    Column(
        "sendq",
        "SEND-Q",
        12,
        2,
        lambda s, w: gauge(s.send_fill, send_label(s), w),
        grow=GAUGE_ROOM,
        grow_order=1,
        right=True,
    ),
    Column("rtt", "RTT", 6, 10, _rtt, right=True),
    Column("rx", "RX/s", 5, 6, lambda s, w: _rate(rx_rate(s), w), right=True),
    Column("tx", "TX/s", 5, 7, lambda s, w: _rate(tx_rate(s), w), right=True),
    Column("retr", "RETR/s", 6, 9, lambda s, w: _rate(retr_rate(s), w, human_rate), right=True),
    Column("flags", "FLAGS", 6, 3, lambda s, w: _flag_tags(s.flags, w), grow=24),
)

GROUP_COLUMNS: tuple[Column, ...] = (
    Column("group", "GROUP", 16, 0, lambda g, w: _text(g.label, w), grow=40, grow_order=0),
    Column("count", "SOCKS", 6, 1, lambda g, w: _text(str(g.count), w), right=True),
    Column(
        "recvq",
        "RECV-Q Σ",
        12,
        2,
        lambda g, w: gauge(g.max_recv_fill, human_bytes(g.recv_q), w),
        grow=8,
        right=True,
    ),
    Column(
        "sendq",
        "SEND-Q Σ",
        12,
        3,
        lambda g, w: gauge(g.max_send_fill, human_bytes(g.send_q), w),
        grow=8,
        right=True,
    ),
    Column("rx", "RX/s Σ", 6, 4, lambda g, w: _rate(g.rx, w), right=True),
    Column("tx", "TX/s Σ", 6, 5, lambda g, w: _rate(g.tx, w), right=True),
    Column("retr", "RETR/s Σ", 8, 6, lambda g, w: _rate(g.retr, w, human_rate), right=True),
    Column("flags", "FLAGS", 10, 1, _group_flags, grow=10),
)

Layout = tuple[tuple[Column, int], ...]


def columns_for(group_by: str | None) -> tuple[Column, ...]:
    """The columns of a list grouped by `group_by` (None: one row per socket)."""
    return GROUP_COLUMNS if group_by else SOCKET_COLUMNS


def fit(columns: Sequence[Column], width: int) -> Layout:
    """Columns that fit `width` (one space between), in display order, with their widths.

    Spare cells go round-robin to the growing columns, by grow_order: addresses (up to
    ADDRESS_ROOM), then the queue gauges (what the addresses do not need), then the rest.
    """
    chosen: dict[str, int] = {}
    used = -1
    for column in sorted(columns, key=lambda c: c.priority):
        if used + 1 + column.width <= width:
            chosen[column.id] = column.width
            used += 1 + column.width
    spare = width - used
    for order in sorted({c.grow_order for c in columns}):
        growing = [c for c in columns if c.id in chosen and c.grow and c.grow_order == order]
        while spare > 0 and growing:
            for column in list(growing):
                if spare == 0:
                    break
                chosen[column.id] += 1
                spare -= 1
                if chosen[column.id] - column.width >= column.grow:
                    growing.remove(column)
    return tuple((c, chosen[c.id]) for c in columns if c.id in chosen)


def _pad(cell: Cell, width: int, right: bool) -> Cell:
    gap = width - sum(seg.cell_length for seg in cell)
    if gap <= 0:
        return cell
    return [Segment(" " * gap), *cell] if right else [*cell, Segment(" " * gap)]


def _join(cells: list[Cell], layout: Layout, width: int) -> list[Segment]:
    segments: list[Segment] = []
    for n, (cell, (column, col_width)) in enumerate(zip(cells, layout, strict=True)):
        if n:
            segments.append(Segment(" "))
        segments.extend(_pad(cell, col_width, column.right))
    used = sum(seg.cell_length for seg in segments)
    if used < width:
        segments.append(Segment(" " * (width - used)))
    return segments


def render_row(row: Any, layout: Layout, width: int) -> list[Segment]:
    return _join([column.cell(row, col_width) for column, col_width in layout], layout, width)


def render_titles(layout: Layout, width: int, sort: str, descending: bool) -> list[Segment]:
    """Column titles; the sorted one carries ▼ (descending) or ▲."""
    cells = []
    for column, col_width in layout:
        if column.id == sort:
            title = column.title + ("▼" if descending else "▲")
            cells.append(_text(title, col_width, SORTED_TITLE))
        else:
            cells.append(_text(column.title, col_width, TITLE))
    return _join(cells, layout, width)
