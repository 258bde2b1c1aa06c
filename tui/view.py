"""What the socket list shows, computed in a worker thread: scope, filter, group, sort.

Nothing here touches Textual; the UI thread only swaps in a finished `View`.
"""

from __future__ import annotations

import resource
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

from bufmon.filters import Predicate, select
from bufmon.present import netns_text, worst_key
from bufmon.rates import retr_rate, rx_rate, tx_rate
from collectors.model import SEVERITIES, SEVERITY_RANK, Snapshot, Sock

PAGE_SIZE = resource.getpagesize()
SHOWN_STATES = ("ESTAB", "LISTEN", "TIME-WAIT", "UNCONN")
# (label, counter): per-second rates in the header
RATE_COUNTERS = (
    ("ovfl", "TcpExt.ListenOverflows"),
    ("prune", "TcpExt.PruneCalled"),
    ("rqdrop", "TcpExt.TCPRcvQDrop"),
    ("retr", "Tcp.RetransSegs"),
    ("udperr", "Udp.RcvbufErrors"),
)


# Numeric sort keys are plain floats: C sorts them several times faster than tuples,
# and a sort is one C call that holds the GIL (stalling the UI thread) while it runs.
TIE = 1e-15  # weight of a secondary byte count: below any visible difference in fill


def _queue_key(fill: float | None, queued: int) -> float:
    return (fill or 0.0) + queued * TIE


def _text_number_key(text: str, number: int, width: int = 2) -> str:
    """(text, number) order as one string: text, NUL, then `number` (below 256**width) in
    `width` characters, high byte first. C sorts strings about three times faster than
    tuples."""
    return text + "\0" + number.to_bytes(width).decode("latin-1")


def _process_key(s: Sock) -> str:
    """(comm, pid) order, a connection in an accept queue after its listener's process."""
    value = _process_value(s)
    if value is None:
        return ""
    key = _text_number_key(value[0], value[1], 3)  # pids stay below 2**22
    return key + "\0" if len(value) == 3 else key


def _rate_key(rate: float | None) -> float:
    """Sockets without rates (first sample, no tcp_info) sort below idle ones."""
    return -1.0 if rate is None else rate


@dataclass(frozen=True, slots=True)
class Grouping:
    title: str
    value: Callable[[Sock], Hashable]
    label: Callable[[Any], str]


def _process_value(s: Sock) -> tuple[str, int] | tuple[str, int, str] | None:
    """(comm, pid); a connection still in an accept queue groups under its listener's
    process as (comm, pid, "accept queue")."""
    if s.process is not None:
        return (s.process.comm, s.process.pid)
    owner = None if s.listener is None else s.listener.process
    return None if owner is None else (owner.comm, owner.pid, "accept queue")


def _process_label(value: Any) -> str:
    if value is None:
        return "(no process)"
    if len(value) == 3:
        return f"(accept queue of {value[0]}/{value[1]})"
    return f"{value[0]}/{value[1]}"


GROUPINGS: dict[str, Grouping] = {
    "process": Grouping("process", _process_value, _process_label),
    "port": Grouping("local port", lambda s: (s.proto, s.local_port), lambda v: f"{v[0]}/{v[1]}"),
    "peer": Grouping("peer host", lambda s: s.peer_addr, str),
    "netns": Grouping("namespace", netns_text, str),
}
GROUP_ORDER = (None, "process", "port", "peer", "netns")

# A View's passes over every socket look between chunks whether it is still wanted: a
# key pressed meanwhile stops a View it made stale (which would otherwise share the GIL
# with the key's own View) within a chunk's time, a few ms.
CHUNK = 20_000
Unwanted = Callable[[], bool]  # True once nobody will show the View being computed


class Stale(Exception):
    """The View being computed is not wanted any more (Unwanted said so)."""


def wanted() -> bool:
    """The Unwanted of a View always wanted."""
    return False


def chunks(items: Sequence[Any], unwanted: Unwanted) -> Iterator[Sequence[Any]]:
    """`items` a chunk at a time; raises Stale once `unwanted()`."""
    for start in range(0, len(items), CHUNK):
        if unwanted():
            raise Stale
        yield items[start : start + CHUNK]


class GroupRow:
    """One aggregate row: every socket whose grouping value is `value`."""

    __slots__ = (
        "by",
        "count",
        "flag_counts",
        "key",
        "label",
        "max_recv_fill",
        "max_send_fill",
        "recv_q",
        "retr",
        "rx",
        "send_q",
        "tx",
        "value",
        "worst",
    )

    def __init__(self, by: str, value: Hashable) -> None:
        self.by = by
        self.value = value
        self.key = ("group", by, value)
        self.label = GROUPINGS[by].label(value)
        self.count = 0
        self.recv_q = 0
        self.send_q = 0
        self.max_recv_fill = 0.0
        self.max_send_fill = 0.0
        self.rx = self.tx = self.retr = 0.0  # summed rates (sockets without rates add 0)
        self.worst = 0
        self.flag_counts = dict.fromkeys(SEVERITIES, 0)

    def add(self, s: Sock) -> None:
        self.count += 1
        self.recv_q += s.recv_q
        self.send_q += s.send_q
        recv, send = s.recv_fill, s.send_fill
        if recv is not None and recv > self.max_recv_fill:
            self.max_recv_fill = recv
        if send is not None and send > self.max_send_fill:
            self.max_send_fill = send
        rates = s.rates
        if rates is not None:
            self.rx += rates.rx_bytes_per_s
            self.tx += rates.tx_bytes_per_s
            self.retr += rates.retrans_per_s
        for flag in s.flags:
            self.flag_counts[flag.severity] += 1
            self.worst = max(self.worst, SEVERITY_RANK[flag.severity])

    def scope(self) -> Scope:
        get, value = GROUPINGS[self.by].value, self.value
        return Scope(f"{GROUPINGS[self.by].title} {self.label}", lambda s: get(s) == value)


Row = Sock | GroupRow

# column id -> (sort key, descending by default). Worst first = severity, then fullness.
SOCKET_SORTS: dict[str, tuple[Callable[[Any], Any], bool]] = {
    "netns": (netns_text, False),
    "proto": (lambda s: s.proto, False),
    "state": (lambda s: s.state, False),
    "local": (lambda s: _text_number_key(s.local_addr, s.local_port), False),
    "peer": (lambda s: _text_number_key(s.peer_addr, s.peer_port), False),
    "process": (_process_key, False),
    "recvq": (lambda s: _queue_key(s.recv_fill, s.recv_q), True),
    "sendq": (lambda s: _queue_key(s.send_fill, s.send_q), True),
    "rtt": (lambda s: -1 if s.info is None else s.info.get("rtt") or 0, True),
    "rx": (lambda s: _rate_key(rx_rate(s)), True),
    "tx": (lambda s: _rate_key(tx_rate(s)), True),
    "retr": (lambda s: _rate_key(retr_rate(s)), True),
    "flags": (worst_key, True),
}
GROUP_SORTS: dict[str, tuple[Callable[[Any], Any], bool]] = {
    "group": (lambda g: g.label, False),
    "count": (lambda g: g.count, True),
    "recvq": (lambda g: _queue_key(g.max_recv_fill, g.recv_q), True),
    "sendq": (lambda g: _queue_key(g.max_send_fill, g.send_q), True),
    "rx": (lambda g: g.rx, True),
    "tx": (lambda g: g.tx, True),
    "retr": (lambda g: g.retr, True),
    "flags": (lambda g: (g.worst, sum(g.flag_counts.values()), g.count), True),
}
DEFAULT_SORT = "flags"


@dataclass(frozen=True, slots=True)
class Scope:
    """A drill-down: only the sockets `match` accepts, named by `label`."""

    label: str
    match: Predicate


@dataclass(frozen=True, slots=True)
class ViewRequest:
    generation: int
    predicate: Predicate | None
    sort: str
    reverse: bool
    group_by: str | None
    scopes: tuple[Scope, ...]
    hold: Positions | None = None  # keep this order; new rows go last

    def same_view(self, other: ViewRequest) -> bool:
        """Whether `other` asks for the same rows in the same order (held or not)."""
        return (self.predicate, self.sort, self.reverse, self.group_by, self.scopes) == (
            other.predicate,
            other.sort,
            other.reverse,
            other.group_by,
            other.scopes,
        )


class Ordered(Sequence[Any]):
    """The rows of a `_Prepared` in one order, without copying them: at 200,000 rows a
    copy costs more than the sort, and the list only ever reads the rows on screen."""

    __slots__ = ("_order", "_rows")

    def __init__(self, rows: list[Any], order: list[int]) -> None:
        self._rows, self._order = rows, order

    def __len__(self) -> int:
        return len(self._order)

    @overload
    def __getitem__(self, at: int) -> Any: ...
    @overload
    def __getitem__(self, at: slice) -> list[Any]: ...
    def __getitem__(self, at: int | slice) -> Any:
        if isinstance(at, slice):
            return list(map(self._rows.__getitem__, self._order[at]))
        return self._rows[self._order[at]]

    def __iter__(self) -> Iterator[Any]:
        return map(self._rows.__getitem__, self._order)


class Positions(Mapping[Hashable, int]):
    """Row key -> position in one order, built only when asked: the list looks up one
    key (`find`, scans in C), a held order looks up every key (`as_dict`, built once)."""

    __slots__ = ("_dict", "_order", "_prepared")

    def __init__(self, prepared: _Prepared, order: list[int]) -> None:
        self._prepared, self._order = prepared, order
        self._dict: dict[Hashable, int] | None = None

    def find(self, key: Hashable) -> int | None:
        if self._dict is not None:
            return self._dict.get(key)
        try:
            return self._order.index(self._prepared.row_keys().index(key))
        except ValueError:
            return None

    def as_dict(self) -> dict[Hashable, int]:
        if self._dict is None:
            keys = map(self._prepared.row_keys().__getitem__, self._order)
            self._dict = dict(zip(keys, range(len(self._order)), strict=True))
        return self._dict

    def __getitem__(self, key: Hashable) -> int:
        return self.as_dict()[key]

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[Hashable]:
        return map(self._prepared.row_keys().__getitem__, self._order)


@dataclass(slots=True)
class View:
    request: ViewRequest
    snapshot: Snapshot
    rows: Ordered
    index: Positions
    matched: int  # sockets left after scopes and filter


def sorts_for(group_by: str | None) -> dict[str, tuple[Callable[[Any], Any], bool]]:
    return GROUP_SORTS if group_by else SOCKET_SORTS


def group(socks: list[Sock], by: str, unwanted: Unwanted = wanted) -> list[GroupRow]:
    get = GROUPINGS[by].value
    groups: dict[Hashable, GroupRow] = {}
    for part in chunks(socks, unwanted):
        for s in part:
            value = get(s)
            row = groups.get(value)
            if row is None:
                row = groups[value] = GroupRow(by, value)
            row.add(s)
    return list(groups.values())


Locks = dict[Hashable, threading.Lock]


def once(made: dict[Hashable, Any], key: Hashable, locks: Locks, make: Callable[[], Any]) -> Any:
    """made[key], made by `make` once even when two workers ask for it at the same time
    (a key's View and the prefetch's): the second waits for the first, and for nothing
    else being made meanwhile."""
    value = made.get(key)
    if value is None:
        with locks.setdefault(key, threading.Lock()):
            value = made.get(key)
            if value is None:
                value = made[key] = make()
    return value


class _Prepared:
    """The rows of one grouping of a filtered snapshot, with the sort keys computed so
    far: a new sort or reverse on the same snapshot skips filtering and key computing."""

    __slots__ = ("_building", "_orders", "_row_keys", "group_by", "rows", "sort_keys")

    def __init__(self, socks: list[Sock], group_by: str | None, unwanted: Unwanted) -> None:
        self.group_by = group_by
        self.rows: list[Any] = group(socks, group_by, unwanted) if group_by else socks
        self.sort_keys: dict[str, list[Any]] = {}
        self._orders: dict[Hashable, list[int]] = {}  # (sort, descending) -> order
        self._building: Locks = {}
        # built on the first lookup: a list following its top row never looks a row up
        self._row_keys: list[Hashable] | None = None

    def row_keys(self) -> list[Hashable]:
        if self._row_keys is None:
            self._row_keys = [r.key for r in self.rows]
        return self._row_keys

    def keys_for(self, sort: str, unwanted: Unwanted = wanted) -> list[Any]:
        keys = self.sort_keys.get(sort)
        if keys is None:
            key = sorts_for(self.group_by)[sort][0]
            keys = []
            for part in chunks(self.rows, unwanted):
                keys += map(key, part)
            self.sort_keys[sort] = keys
        return keys

    def order(self, sort: str, descending: bool, unwanted: Unwanted = wanted) -> list[int]:
        """Positions in `rows`, sorted; kept, so going back to an order costs nothing
        (never changed: callers copy before reordering)."""

        def make() -> list[int]:
            keys = self.keys_for(sort, unwanted)
            # the opposite order, when kept, is less work for the sort (its runs come in
            # reverse); a stable sort keeps ties in row order from either start
            start = self._orders.get((sort, not descending), range(len(keys)))
            return sorted(start, key=keys.__getitem__, reverse=descending)

        order: list[int] = once(self._orders, (sort, descending), self._building, make)
        return order


class _Filtered:
    """The sockets of one (snapshot, scopes, filter) and each grouping of them asked so
    far: regrouping (`v`) and back skip the filter, and a grouping seen before its keys.
    A grouping is built once even when two workers ask for it at the same time (a key's
    and the prefetch's): the second waits for the first."""

    __slots__ = ("_building", "groupings", "predicate", "scopes", "snapshot", "socks")

    def __init__(self, snapshot: Snapshot, request: ViewRequest, unwanted: Unwanted) -> None:
        self.snapshot, self.predicate, self.scopes = snapshot, request.predicate, request.scopes
        socks = snapshot.sockets
        keeps = [scope.match for scope in request.scopes]
        if request.predicate is not None:
            keeps.append(request.predicate)
        for keep in keeps:
            kept: list[Sock] = []
            for part in chunks(socks, unwanted):
                kept += select(keep, part)
            socks = kept
        self.socks = socks
        self.groupings: dict[Hashable, _Prepared] = {}
        self._building: Locks = {}

    def fits(self, snapshot: Snapshot, request: ViewRequest) -> bool:
        return (
            self.snapshot is snapshot
            and self.predicate is request.predicate
            and self.scopes == request.scopes
        )

    def grouped(self, group_by: str | None, unwanted: Unwanted = wanted) -> _Prepared:
        prepared: _Prepared = once(
            self.groupings,
            group_by,
            self._building,
            lambda: _Prepared(self.socks, group_by, unwanted),
        )
        return prepared


# The last few filtered sets, newest first, of at most two snapshots: the one on screen
# keeps its own while a refresh prepares the next, so a key pressed meanwhile finds its
# work done, and no older snapshot stays alive. A new tuple replaces the old whole, so
# worker threads never see it half changed.
KEPT_FILTERED = 3
_kept: tuple[_Filtered, ...] = ()


def _filtered(snapshot: Snapshot, request: ViewRequest, unwanted: Unwanted) -> _Filtered:
    global _kept
    kept = _kept
    found = next((f for f in kept if f.fits(snapshot, request)), None)
    if found is None:
        found = _Filtered(snapshot, request, unwanted)
    other = next((f.snapshot for f in kept if f.snapshot is not snapshot), None)
    rest = [f for f in kept if f is not found and (f.snapshot is snapshot or f.snapshot is other)]
    _kept = (found, *rest[: KEPT_FILTERED - 1])
    return found


def compute_view(snapshot: Snapshot, request: ViewRequest, unwanted: Unwanted = wanted) -> View:
    """The View of `request` on `snapshot`; raises Stale once `unwanted()` (the work done
    so far is kept only where it is whole: a filtered set, a grouping, a key list)."""
    prepared = _filtered(snapshot, request, unwanted).grouped(request.group_by, unwanted)
    sorts = sorts_for(request.group_by)
    sort = request.sort if request.sort in sorts else DEFAULT_SORT
    order = prepared.order(sort, sorts[sort][1] != request.reverse, unwanted)
    hold = request.hold
    if hold:
        last, row_keys, held = len(hold), prepared.row_keys(), hold.as_dict().get
        order = sorted(order, key=lambda i: held(row_keys[i], last))
    rows = prepared.rows
    socks = sum(r.count for r in rows) if request.group_by else len(rows)
    return View(request, snapshot, Ordered(rows, order), Positions(prepared, order), socks)


@dataclass(slots=True)
class Summary:
    """Header figures for one snapshot."""

    total: int
    states: list[tuple[str, int]]
    flags: dict[str, int]
    mem_bytes: int | None
    tcp_mem_bytes: list[int] | None  # low, pressure, high
    rates: list[tuple[str, float | None]]


def summarize(snapshot: Snapshot) -> Summary:
    socks = snapshot.sockets
    flags = dict.fromkeys(SEVERITIES, 0)
    for s in [s for s in socks if s.flags]:  # most have none: one quick pass
        for flag in s.flags:
            flags[flag.severity] += 1
    for flag in snapshot.system_flags:
        flags[flag.severity] += 1
    state_of = [s.state for s in socks]  # counted in C, a pass per state shown
    states = [(name, state_of.count(name)) for name in SHOWN_STATES]
    states.append(("other", len(state_of) - sum(n for _, n in states)))
    system = snapshot.system
    pages = system.sockstat.get("TCP.mem")
    tcp_mem = system.sysctls.get("tcp_mem")
    rates: list[tuple[str, float | None]] = []
    for label, counter in RATE_COUNTERS:
        delta = system.deltas.get(counter)
        rate = None if delta is None or system.interval <= 0 else delta / system.interval
        rates.append((label, rate))
    return Summary(
        total=len(socks),
        states=states,
        flags=flags,
        mem_bytes=None if pages is None else pages * PAGE_SIZE,
        tcp_mem_bytes=None if not tcp_mem else [p * PAGE_SIZE for p in tcp_mem],
        rates=rates,
    )
