"""tcp_info as the `--json` outputs write it, sharing what sockets have in common.

The fields of a document's sockets are looked at in a sample first: a field that takes
only a few values there is steady, and runs of steady fields side by side (idle
connections share most of theirs: state, options, scales, MSS, windows, counters of
rare events) become one text, made once per distinct run of bytes and then shared.
The other fields go in as numbers. orjson writes from it the same JSON as from
TcpInfo.to_json(); a busy host, where most fields move, only shares less.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
from typing import Any

import orjson

from bufmon.memo import Memo
from collectors.tcpinfo import CODES, Layout, TcpInfo

STEADY_SHARE = 64  # a steady run: at most 1/64 as many values as sampled sockets
MIN_RUN = 3  # fewer steady fields side by side are cheaper as numbers
SHARED_MAX = 4096  # values kept per Memo of shared texts

Field = tuple[tuple[str, ...], int, int]  # JSON names, offset, end (Layout.fields)


def after_first_key(doc: dict[str, Any]) -> orjson.Fragment:
    """`doc`'s JSON text from its first value on, without the closing brace,
    `v0,"k1":v1,...`: stored under the first key, orjson writes `doc`'s members."""
    text = orjson.dumps(doc)
    return orjson.Fragment(text[len(orjson.dumps(next(iter(doc)))) + 2 : -1])  # + `{` `:`


def _run_text(offset: int, names: tuple[str, ...], raw: bytes) -> orjson.Fragment:
    """The JSON text of the run of fields `names` at `offset`, whose bytes are `raw`."""
    values = TcpInfo(bytes(offset) + raw).to_json()  # the run alone, in its place
    return after_first_key({name: values[name] for name in names})


class SharedInfo:
    """tcp_info of one length: its runs of steady fields as shared texts, the moving
    fields as numbers. `sample`: tcp_info of sockets of the same document and length."""

    __slots__ = ("moving", "runs", "template", "unpack_moving")

    def __init__(self, lay: Layout, sample: Sequence[bytes]) -> None:
        self.runs: tuple[tuple[str, slice, Memo[bytes, orjson.Fragment]], ...] = ()
        self.moving: tuple[str, ...] = ()
        codes = "="
        for steady, fields in _runs(lay.fields, sample):
            start, end = fields[0][1], fields[-1][2]
            if steady:
                names = tuple(name for names, _, _ in fields for name in names)
                texts = Memo(functools.partial(_run_text, start, names), SHARED_MAX)
                self.runs += ((names[0], slice(start, end), texts),)
                codes += f"{end - start}x"
            else:
                self.moving += tuple(names[0] for names, _, _ in fields)
                codes += "".join(CODES[stop - at] for _, at, stop in fields)
        self.unpack_moving = struct.Struct(codes).unpack_from
        keys = {*self.moving, *(key for key, _, _ in self.runs)}
        self.template = dict.fromkeys(name for name in lay.names if name in keys)  # in order

    def object(self, info: TcpInfo) -> dict[str, Any]:
        """The JSON object of `info` (of this length): shared texts and numbers."""
        out = self.template.copy()
        out.update(zip(self.moving, self.unpack_moving(info), strict=True))
        for key, cut, texts in self.runs:
            out[key] = texts[info[cut]]
        return out


def _runs(fields: Sequence[Field], sample: Sequence[bytes]) -> list[tuple[bool, list[Field]]]:
    """`fields` in order, cut into (steady, fields): a steady run grows while its bytes
    take at most 1/STEADY_SHARE as many values as the sample holds sockets. The first
    8 bytes (bitfields) always start a run."""
    most = max(1, len(sample) // STEADY_SHARE)

    def few(start: int, end: int) -> bool:
        return len({info[start:end] for info in sample}) <= most

    out: list[tuple[bool, list[Field]]] = []
    for field in fields:
        _, start, end = field
        steady, last = out[-1] if out else (False, [])
        if steady and few(last[0][1], end):
            last.append(field)
        elif start == 0 or few(start, end):
            out.append((True, [field]))
        elif not steady and out:
            last.append(field)
        else:
            out.append((False, [field]))
    # short runs cost more as texts than as numbers (the first one always is one)
    return [
        (steady and (i == 0 or len(run) >= MIN_RUN), run) for i, (steady, run) in enumerate(out)
    ]
