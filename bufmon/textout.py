"""Plain-text renderings of a snapshot: the `snapshot` table and `watch` log lines.

Names come from other users (process names, namespace labels): every cell and line
passes through `printable` so no control character reaches the terminal."""

from __future__ import annotations

import functools
import itertools
import operator
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from bufmon.present import netns_text, worst_first
from bufmon.unix_ends import end_columns, ends
from collectors.model import SEVERITY_RANK, Flag, Snapshot, Sock
from collectors.untrusted import printable

if TYPE_CHECKING:
    from bufmon.jsonkept import KeptTexts

COLUMNS = (
    "Netns",
    "Proto",
    "State",
    "Recv-Q",
    "Send-Q",
    "Local",
    "Peer",
    "Rx%",
    "Tx%",
    "Process",
    "Flags",
)


_PERCENTS = tuple(f"{n}%" for n in range(301))  # a table of 40,000 rows formats 80,000


def percent(fill: float | None) -> str:
    """ "42%", as f"{fill * 100:.0f}%" writes it (round() rounds half to even too)."""
    if fill is None:
        return "-"
    scaled = fill * 100
    if 0 <= scaled < 300.5:  # also False for NaN: a replayed file may hold anything
        return _PERCENTS[round(scaled)]
    return f"{scaled:.0f}%"


def process_text(sock: Sock) -> str:
    proc = sock.process
    return "-" if proc is None else f"{proc.comm}/{proc.pid}"


def human_duration(seconds: float) -> str:
    """12s, 2m06s, 3h05m."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def flag_tags(flags: Sequence[Flag]) -> str:
    return ",".join([f.kind for f in flags]) if flags else "-"


RATE_COLUMNS = ("Rx/s", "Tx/s", "Retr/s")  # with `snapshot --rates`, after Tx%
NUMERIC_COLUMNS = {"Recv-Q", "Send-Q", "Rx%", "Tx%", *RATE_COLUMNS}  # right-aligned
_RATES_AT = COLUMNS.index("Process")


def rate_cells(sock: Sock) -> tuple[str, ...]:
    """Bytes/s received and sent, retransmitted segments/s; `-` without rates."""
    rates = sock.rates
    if rates is None:
        return ("-", "-", "-")
    return (
        str(round(rates.rx_bytes_per_s)),
        str(round(rates.tx_bytes_per_s)),
        f"{rates.retrans_per_s:.1f}",
    )


def _each(text: Callable[[Any], str], values: list[Any]) -> list[str]:
    """[printable(text(v)) for v in values], text() called once per distinct value: most
    cells of a big table repeat (idle sockets' 0%, a process's name)."""
    memo = {value: printable(text(value)) for value in set(values)}
    return list(map(memo.__getitem__, values))


def _clean(col: list[str]) -> list[str]:
    """`col` with printable cells: one check a column in the common case, not one a cell."""
    return col if "".join(col).isprintable() else list(map(printable, col))


def columns(socks: Sequence[Sock], rates: bool = False) -> list[list[str]]:
    """The table's cells, a column at a time (a table of 40,000 rows: a comprehension
    per column, not a tuple and a dozen calls per row)."""
    local, peer = end_columns(socks)
    return [
        _clean(list(map(netns_text, socks))),
        _clean([s.proto for s in socks]),
        _clean([s.state + " (closed)" if s.closed else s.state for s in socks]),
        _each(str, [s.recv_q for s in socks]),
        _each(str, [s.send_q for s in socks]),
        _clean(local),
        _clean(peer),
        _each(percent, list(map(_RECV_FILL, socks))),
        _each(percent, list(map(_SEND_FILL, socks))),
        *(_transposed(list(map(rate_cells, socks)), len(RATE_COLUMNS)) if rates else ()),
        _clean(list(map(process_text, socks))),
        _clean([flag_tags(s.flags) for s in socks]),
    ]


def _transposed(rows: list[tuple[str, ...]], width: int) -> list[list[str]]:
    """Rate cells (numbers: printable) as columns."""
    return [list(map(operator.itemgetter(i), rows)) for i in range(width)]


_RECV_FILL = operator.attrgetter("recv_fill")
_SEND_FILL = operator.attrgetter("send_fill")


def row(sock: Sock, rates: bool = False) -> tuple[str, ...]:
    """One socket's cells, as the table shows them."""
    return tuple(col[0] for col in columns([sock], rates))


def table(socks: list[Sock], rates: bool = False) -> str:
    """An aligned table, numbers right-aligned, like `ss`; `rates` adds RATE_COLUMNS."""
    extra = RATE_COLUMNS if rates else ()
    titles = (*COLUMNS[:_RATES_AT], *extra, *COLUMNS[_RATES_AT:])
    padded = []
    for title, col in zip(titles, columns(socks, rates), strict=True):
        col.insert(0, title)
        if title == titles[-1]:  # flags, never ending in a space: no padding to strip
            padded.append(col)
            continue
        width = max(map(len, col))
        padded.append(_padded(col, width, str.rjust if title in NUMERIC_COLUMNS else str.ljust))
    return "\n".join(map("  ".join, zip(*padded, strict=True)))


def _padded(col: list[str], width: int, pad: Callable[[str, int], str]) -> list[str]:
    """The column's cells padded to `width`; a column of few distinct cells (a state,
    0%, a process) pads each once and shares it (no string made per row)."""
    cells = set(col)
    if len(cells) * 4 > len(col):
        return list(map(pad, col, itertools.repeat(width)))
    memo = {cell: pad(cell, width) for cell in cells}
    return list(map(memo.__getitem__, col))


def flagged_lines(snap: Snapshot, socks: list[Sock]) -> list[str]:
    """`watch` output: one summary line, then one indented line per flag, the flagged
    sockets worst first (only they are sorted: `socks` may come in any order)."""
    flagged = worst_first(s for s in socks if s.flags)
    by_sev: dict[str, int] = {}
    for flag in [*snap.system_flags, *(f for s in flagged for f in s.flags)]:
        by_sev[flag.severity] = by_sev.get(flag.severity, 0) + 1
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(snap.time))
    counts = " ".join(
        f"{sev}={n}" for sev, n in sorted(by_sev.items(), key=lambda kv: -SEVERITY_RANK[kv[0]])
    )
    lines = [f"{stamp} sockets={len(socks)} flagged={len(flagged)} {counts}".rstrip()]
    for flag in snap.system_flags:
        lines.append(f"  {flag.severity:<8} {flag.kind:<18} system: {flag.reason}")
    for sock in flagged:
        local, peer = ends(sock)
        where = (
            f"{netns_text(sock)} {sock.proto} {sock.state} {local} -> {peer} {process_text(sock)}"
        )
        for flag in sock.flags:
            lines.append(f"  {flag.severity:<8} {flag.kind:<18} {where}: {flag.reason}")
    return [printable(line) for line in lines]


def kept(snap: Snapshot, keep: Callable[[Sock], bool] | None = None) -> list[Sock]:
    """The sockets the filter keeps, in collection order."""
    return snap.sockets if keep is None else [s for s in snap.sockets if keep(s)]


def shown(snap: Snapshot, keep: Callable[[Sock], bool] | None = None) -> list[Sock]:
    """The sockets `snapshot` and `watch --json` print: those the filter keeps, worst first."""
    return worst_first(kept(snap, keep))


def watch_document(snap: Snapshot, socks: list[Sock]) -> dict[str, Any]:
    """The `watch --json` document of a snapshot showing `socks` (from shown())."""
    return snap.to_json(socks)


def _dumps(value: Any, plain: Callable[[], Any] | None = None) -> bytes:
    """Compact JSON, ASCII only (a name's escape sequences never reach a terminal raw).

    orjson writes it several times faster; what it would write otherwise (any
    character past ASCII, which orjson leaves unescaped, or a value it refuses) goes
    through the standard library, so the text is the same either way. `plain()` gives
    `value` without orjson Fragments, for the standard library."""
    import orjson  # late: only the JSON outputs need it

    try:
        out = orjson.dumps(value)
    except orjson.JSONEncodeError:
        out = b"\x80"  # not ASCII: take the standard path below
    if out.isascii():
        return out
    import json  # late: only text past ASCII needs it

    doc = value if plain is None else plain()
    return json.dumps(doc, separators=(",", ":")).encode("ascii")


def json_line(doc: dict[str, Any]) -> str:
    return _dumps(doc).decode("ascii")


SOCKETS_FIELD = b'"sockets":[]'  # no JSON string holds it: their quotes are escaped
BATCH = 2000  # sockets turned into dicts and text at a time


def _plain(socks: list[Sock]) -> list[dict[str, Any]]:
    return [s.to_json() for s in socks]


def json_chunks(
    snap: Snapshot, socks: list[Sock], texts: KeptTexts | None = None
) -> Iterator[bytes | memoryview]:
    """json_line(watch_document(snap, socks)) in pieces, for a stream: the sockets'
    dicts are built a batch at a time, never all at once (200,000 sockets' dicts and
    text would take gigabytes), with the parts sockets share encoded once. `texts`
    (one per run of documents) writes again the texts of sockets that did not move."""
    from bufmon.jsonparts import SharedParts  # late: only the JSON outputs need it

    head, tail = _dumps(snap.to_json([])).split(SOCKETS_FIELD, 1)
    yield head + SOCKETS_FIELD[:-1]
    parts = SharedParts(socks)
    if texts is not None:
        texts.next_document()
    for start in range(0, len(socks), BATCH):
        batch = socks[start : start + BATCH]
        if start:
            yield b","
        members = None if texts is None else texts.members(batch, parts)
        if members is None:  # the array's members, not copied again
            text = _dumps([s.to_json(parts) for s in batch], functools.partial(_plain, batch))
            members = memoryview(text)[1:-1]
        yield members
    yield b"]" + tail


def write_json_line(
    out: BinaryIO, snap: Snapshot, socks: list[Sock], texts: KeptTexts | None = None
) -> None:
    """One JSON document on a line of `out` (see json_chunks), then flushed."""
    for chunk in json_chunks(snap, socks, texts):
        out.write(chunk)
    out.write(b"\n")
    out.flush()
