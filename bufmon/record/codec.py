"""Snapshots to frames and back: the Encoder (recorder side) and the State a reader
rebuilds frame by frame. Both keep the same picture of "the frame before", so a delta
names only what changed: sockets gone (by position), sockets new or changed (whole
rows, by position), and the tcp_info of every socket as a difference to its last one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import attrgetter, getitem, itemgetter, ne, not_, or_
from typing import Any, cast

from bufmon.record.format import (
    BIT_FLAG_ROSE,
    DELTA,
    DYNAMIC_ROW,
    HEAD_PART,
    KEYFRAME,
    R_FLAGS,
    R_INFO_LEN,
    TAIL_PART,
    TIME_PART,
    FormatError,
    Interned,
    Key,
    Row,
    add,
    decode_row,
    decompress,
    dict_change,
    dynamic_of,
    full_row,
    is_update,
    merge_row,
    pack,
    row_json,
    row_key,
    sock_of,
    split_by,
    subtract,
    time_part_len,
    with_time_part,
)
from collectors.model import Flag, Snapshot, Sock, SystemFacts

SYSTEM_DICTS = ("counters", "deltas", "sockstat", "sysctls")


@dataclass(slots=True)
class State:
    """One frame, as a reader (and the encoder, for the frame before) holds it."""

    time: float = 0.0
    host: str = ""
    order: list[Key] = field(default_factory=list)
    rows: dict[Key, Row] = field(default_factory=dict)
    infos: dict[Key, bytes | None] = field(default_factory=dict)
    system: dict[str, Any] = field(default_factory=dict)
    system_flags: list[Flag] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    namespaces: list[dict[str, Any]] = field(default_factory=list)
    flagged: set[Key] = field(default_factory=set)  # sockets with flags (closed ones too)

    def snapshot(self) -> Snapshot:
        rows, infos = self.rows, self.infos
        system = self.system
        return Snapshot(
            time=self.time,
            host=self.host,
            sockets=[sock_of(rows[k], infos[k]) for k in self.order],
            system=SystemFacts(
                dict(system["counters"]),
                dict(system["deltas"]),
                system["interval"],
                dict(system["sockstat"]),
                dict(system["sysctls"]),
            ),
            system_flags=list(self.system_flags),
            notices=list(self.notices),
            namespaces=list(self.namespaces),
        )


def _flag_lists(flags: list[Flag]) -> list[list[Any]]:
    return [[f.kind, f.severity, f.since, f.reason, f.advice] for f in flags]


def _kinds(flags: Any) -> set[str]:
    return {f.kind for f in flags}


EMPTY = b""
_info_of = attrgetter("info")
_key_of = itemgetter(0, 1, 2)  # of a dynamic_of tuple
_FLAGS = 9  # in dynamic_of
_slice = cast(Callable[[bytes, slice], bytes], getitem)


def _time_parts(infos: Iterable[bytes]) -> bytes:
    return b"".join(map(_slice, infos, repeat(TIME_PART)))


@dataclass(slots=True)
class _Lists:
    """Per socket, in frame order: what the next frame is compared with."""

    dynamic: list[tuple[Any, ...] | None]
    infos: list[bytes]  # b"" where there is no tcp_info
    heads: list[bytes | None]
    tails: list[bytes | None]
    times: list[bytes | None]

    def picked(self, index: list[int]) -> _Lists:
        """The entries at `index`, where len(dynamic) stands for "no such socket"."""

        def pick(values: list[Any], missing: Any) -> list[Any]:
            return list(map([*values, missing].__getitem__, index))

        return _Lists(
            pick(self.dynamic, None),
            pick(self.infos, EMPTY),
            pick(self.heads, None),
            pick(self.tails, None),
            pick(self.times, None),
        )


@dataclass(slots=True)
class _Before:
    lists: _Lists
    unique: bool  # no socket listed twice: positions name sockets
    system: dict[str, Any]
    system_flags: list[Flag]
    notices: list[str]
    namespaces: list[dict[str, Any]]

    def keys(self) -> list[Key]:
        return list(map(_key_of, self.lists.dynamic))  # type: ignore[arg-type]


class Encoder:
    """Turns each snapshot into a frame against the one it encoded before.

    The work per socket is a few C-level passes (map, compress, join) over lists kept
    in frame order; Python code runs per socket only for the sockets that changed."""

    def __init__(self) -> None:
        self.prev: _Before | None = None
        self._texts: dict[Key, str] = {}  # each socket's last row JSON, for keyframes

    def reset(self) -> None:
        """The next frame is a keyframe and no flag counts as raised before it."""
        self.prev = None

    def encode(
        self, snap: Snapshot, socks: list[Sock], keyframe: bool
    ) -> tuple[int, int, bytes, bytes]:
        """(kind, bits, meta section, blob section) of one frame."""
        prev = self.prev
        dynamic: list[tuple[Any, ...]] = list(map(dynamic_of, socks))
        infos = [EMPTY if i is None else i for i in map(_info_of, socks)]
        new = _Lists(
            dynamic,  # type: ignore[arg-type]
            infos,
            list(map(_slice, infos, repeat(HEAD_PART))),
            list(map(_slice, infos, repeat(TAIL_PART))),
            list(map(_slice, infos, repeat(TIME_PART))),
        )
        keys: list[Key] | None = None
        old = _aligned(prev.lists, dynamic) if prev is not None else None
        if old is None:  # sockets came, went or moved: line the frame before up by key
            keys = list(map(_key_of, dynamic))
            old = _by_key(prev, keys, len(socks))
        changed = list(
            map(
                or_,
                map(or_, map(ne, dynamic, old.dynamic), map(ne, new.heads, old.heads)),
                map(ne, new.tails, old.tails),
            )
        )
        positions = list(compress(range(len(socks)), changed))
        texts = self._texts
        for i in positions:
            row = row_json(full_row(socks[i]))
            texts[_key_of(dynamic[i])] = json.dumps(row, separators=(",", ":"))
        unique = prev.unique if keys is None and prev is not None else None
        if unique is None:
            keys = keys or list(map(_key_of, dynamic))
            unique = len(set(keys)) == len(keys)
        meta: dict[str, Any] = {}
        plan = None
        if not keyframe and prev is not None and prev.unique and unique:
            plan = [] if keys is None else _delta_plan(prev, keys)
        if plan is None:
            kind = KEYFRAME
            meta["host"] = snap.host
            keys = keys or list(map(_key_of, dynamic))
            rows_json = ",".join(map(texts.__getitem__, keys))
            self._texts = dict(zip(keys, map(texts.__getitem__, keys), strict=True))
            blob = pack(b"".join(infos), 6)
        else:
            kind = DELTA
            meta["gone"] = plan
            rows_json = ",".join(_delta_row(i, socks[i], old.dynamic[i], texts) for i in positions)
            full = b"".join(infos[i] for i in positions)
            full = subtract(full, b"".join(_base(infos[i], old.infos[i]) for i in positions))
            times = b"".join(compress(new.times, map(not_, changed)))  # type: ignore[arg-type]
            before = b"".join(compress(old.times, map(not_, changed)))  # type: ignore[arg-type]
            # two zlib streams: the changed sockets' tcp_info (small: level 9), then
            # the time parts of all the others (40,000 at times: level 6)
            packed = pack(full, 9)
            blob = packed + pack(subtract(times, before) if times else EMPTY, 6)
            meta["full"] = len(packed)
        bits = 0
        if _flag_rose(positions, dynamic, old.dynamic, prev, snap.system_flags):
            bits = BIT_FLAG_ROSE
        self._system(meta, snap, prev if kind == DELTA else None)
        text = json.dumps(meta, separators=(",", ":"))
        field = "sockets" if kind == KEYFRAME else "rows"
        text = f'{text[:-1]},"{field}":[{rows_json}]}}'
        self.prev = _Before(
            new,
            unique,
            {name: getattr(snap.system, name) for name in SYSTEM_DICTS},
            list(snap.system_flags),
            list(snap.notices),
            list(snap.namespaces),
        )
        return kind, bits, pack(text.encode(), 9), blob

    @staticmethod
    def _system(meta: dict[str, Any], snap: Snapshot, prev: _Before | None) -> None:
        facts = snap.system
        whole: dict[str, Any] = {"interval": facts.interval}
        changes: dict[str, Any] = {}
        for name in SYSTEM_DICTS:
            value = getattr(facts, name)
            change = None if prev is None else dict_change(prev.system[name], value)
            if change is None:
                whole[name] = value
            elif change:
                changes[name] = change
        meta["system"] = whole
        if changes:
            meta["system_changes"] = changes
        meta["system_flags"] = _flag_lists(snap.system_flags)
        if prev is None or prev.notices != snap.notices:
            meta["notices"] = snap.notices
        if prev is None or prev.namespaces != snap.namespaces:
            meta["namespaces"] = snap.namespaces


def _delta_row(i: int, sock: Sock, before: tuple[Any, ...] | None, texts: dict[Key, str]) -> str:
    """A new socket's whole row; of one that changed, only what a row can change in."""
    if before is None:
        return f"[{i},{texts[_key_of(dynamic_of(sock))]}]"
    values = row_json(full_row(sock))
    return json.dumps([i, [values[n] for n in DYNAMIC_ROW]], separators=(",", ":"))


def _base(info: bytes, before: bytes | None) -> bytes:
    """What a changed socket's tcp_info is stored against: its tcp_info in the frame
    before when that had the same length, else zeros."""
    return before if before is not None and len(before) == len(info) else bytes(len(info))


def _aligned(old: _Lists, dynamic: list[tuple[Any, ...]]) -> _Lists | None:
    """`old` itself when every socket is where it was in the frame before, else None."""
    if len(old.dynamic) != len(dynamic):
        return None
    for i in compress(range(len(dynamic)), map(ne, dynamic, old.dynamic)):
        before = old.dynamic[i]
        if before is None or _key_of(before) != _key_of(dynamic[i]):
            return None
    return old


def _by_key(prev: _Before | None, keys: list[Key], count: int) -> _Lists:
    if prev is None:
        return _Lists(
            [None] * count, [EMPTY] * count, [None] * count, [None] * count, [None] * count
        )
    old_keys = prev.keys()
    where = dict(zip(old_keys, range(len(old_keys)), strict=True))
    return prev.lists.picked(list(map(where.get, keys, repeat(len(old_keys)))))


def _delta_plan(prev: _Before, keys: list[Key]) -> list[int] | None:
    """Positions (in the frame before) of the sockets gone, or None when the sockets
    that stayed changed their order (then only a keyframe can say it)."""
    old = prev.keys()
    present = set(keys)
    kept = list(map(present.__contains__, old))
    gone = list(compress(range(len(old)), map(not_, kept)))
    before = set(old)
    stayed_new = list(compress(keys, map(before.__contains__, keys)))
    return gone if stayed_new == list(compress(old, kept)) else None


def _flag_rose(
    positions: list[int],
    dynamic: list[tuple[Any, ...]],
    old_dynamic: list[tuple[Any, ...] | None],
    prev: _Before | None,
    system: list[Flag],
) -> bool:
    """Did a socket (only changed ones can) or the system get a flag kind it lacked?"""
    for i in positions:
        flags = dynamic[i][_FLAGS]
        if flags:
            old = old_dynamic[i]
            if old is None or _kinds(flags) - _kinds(old[_FLAGS]):
                return True
    return bool(_kinds(system) - (set() if prev is None else _kinds(prev.system_flags)))


def apply_frame(
    prev: State | None,
    kind: int,
    t: float,
    sections: tuple[bytes, bytes | None],
    interned: Interned,
) -> State:
    """The state after one frame, from the state before it (None before a keyframe).
    Without the blob section (None) the state has rows but no tcp_info."""
    meta_z, blob_z = sections
    meta = _load(meta_z)
    if kind == KEYFRAME:
        rows = [decode_row(v, interned) for v in meta.get("sockets", [])]
        order = [row_key(r) for r in rows]
        row_map = dict(zip(order, rows, strict=True))
        flagged = {k for k, r in row_map.items() if r[R_FLAGS]}
        changed = order
        state = State(time=t, host=str(meta.get("host", "")))
    elif prev is None:
        raise FormatError("delta frame without a frame before it")
    else:
        order, row_map, flagged, changed = _apply_rows(prev, meta, interned)
        state = State(time=t, host=prev.host)
    state.order = order
    state.rows = row_map
    state.flagged = flagged
    if blob_z is not None:
        before = None if kind == KEYFRAME else prev
        state.infos = _infos(before, order, row_map, changed, meta, blob_z)
    _apply_system(state, prev, meta)
    return state


def _infos(
    prev: State | None,
    order: list[Key],
    row_map: dict[Key, Row],
    changed: list[Key],
    meta: dict[str, Any],
    blob_z: bytes,
) -> dict[Key, bytes | None]:
    """tcp_info of every socket: whole for new and changed ones, the rest from the
    frame before with its new time part."""
    cut = meta.get("full", len(blob_z))
    if not isinstance(cut, int) or not 0 <= cut <= len(blob_z):
        raise FormatError("corrupt frame (tcp_info section)")
    full, diff = decompress(blob_z[:cut]), decompress(blob_z[cut:])
    lengths = [max(row_map[k][R_INFO_LEN], 0) for k in changed]
    if prev is not None:
        full = add(
            full,
            b"".join(
                _base(bytes(n), prev.infos.get(k)) for k, n in zip(changed, lengths, strict=True)
            ),
        )
    infos: dict[Key, bytes | None] = {}
    for k, info in zip(changed, split_by(full, lengths), strict=True):
        infos[k] = info if row_map[k][R_INFO_LEN] >= 0 else None
    if prev is None:
        return infos
    same = [k for k in order if k not in infos]
    old = [prev.infos.get(k) or EMPTY for k in same]
    parts = (
        split_by(add(diff, _time_parts(old)), list(map(time_part_len, map(len, old))))
        if diff
        else [EMPTY] * len(old)
    )
    for k, info, part in zip(same, old, parts, strict=True):
        infos[k] = with_time_part(info, part) if info else None
    return {k: infos[k] for k in order}


def _load(data: bytes) -> dict[str, Any]:
    try:
        meta = json.loads(decompress(data))
    except ValueError:
        raise FormatError("corrupt frame") from None
    if not isinstance(meta, dict):
        raise FormatError("corrupt frame")
    return meta


def _apply_rows(
    prev: State, meta: dict[str, Any], interned: Interned
) -> tuple[list[Key], dict[Key, Row], set[Key], list[Key]]:
    gone = set(meta.get("gone", []))
    stayed = [k for i, k in enumerate(prev.order) if i not in gone] if gone else prev.order
    row_map = dict(prev.rows)
    flagged = set(prev.flagged)
    for i in gone:
        if not 0 <= i < len(prev.order):
            raise FormatError("corrupt delta frame")
        row_map.pop(prev.order[i], None)
        flagged.discard(prev.order[i])
    placed: dict[int, Key] = {}
    updates: list[tuple[int, list[Any]]] = []  # sockets that stayed: what changed
    for pos, value in meta.get("rows", []):
        if is_update(value):
            updates.append((pos, value))
            continue
        row = decode_row(value, interned)
        key = row_key(row)
        if key in row_map:
            raise FormatError("corrupt delta frame")
        placed[pos] = key
        row_map[key] = row
        updates.append((pos, []))
    order = _inserted(stayed, placed)
    changed = []
    for pos, values in updates:
        if not 0 <= pos < len(order):
            raise FormatError("corrupt delta frame")
        key = order[pos]
        if values:
            row_map[key] = merge_row(row_map[key], values, interned)
        changed.append(key)
        if row_map[key][R_FLAGS]:
            flagged.add(key)
        else:
            flagged.discard(key)
    return order, row_map, flagged, changed


def _inserted(stayed: list[Key], placed: dict[int, Key]) -> list[Key]:
    """`stayed` (in order) with each new socket put at its position in the new frame."""
    order = list(stayed)
    for pos in sorted(placed):
        if not 0 <= pos <= len(order):
            raise FormatError("corrupt delta frame")
        order.insert(pos, placed[pos])
    return order


def _apply_system(state: State, prev: State | None, meta: dict[str, Any]) -> None:
    whole = meta.get("system", {})
    changes = meta.get("system_changes", {})
    system: dict[str, Any] = {"interval": whole.get("interval", 0.0)}
    for name in SYSTEM_DICTS:
        if name in whole:
            system[name] = whole[name]
        elif prev is not None:
            system[name] = {**prev.system[name], **changes.get(name, {})}
        else:
            raise FormatError("corrupt frame (system facts)")
    state.system = system
    state.system_flags = [Flag(*f) for f in meta.get("system_flags", [])]
    state.notices = meta["notices"] if "notices" in meta else list(prev.notices if prev else [])
    state.namespaces = (
        meta["namespaces"] if "namespaces" in meta else list(prev.namespaces if prev else [])
    )
