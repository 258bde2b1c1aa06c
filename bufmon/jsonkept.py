"""`watch --json`: what a socket's text keeps from one document to the next.

Most sockets of a big host are idle, and between two of their samples only the four
"milliseconds since" fields of tcp_info move (tcpinfo.TIME_FIELDS). KeptTexts
remembers the text of each quiet socket (no flags, not waiting in an accept queue, not
a UNIX socket) cut around those fields, with the sample it was written from. When the
next document holds the same sample but for them, the text is written again with the
new numbers: byte for byte what encoding the socket would give, without building its
dicts again (tests/test_json_kept.py checks it). At most KEEP_MAX sockets are kept,
about 2.5 KB each (an idle loopback connection): at most about 165 MB, so that a host
of 40,000 sockets is kept whole (a socket not kept costs its encoding every document).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from operator import attrgetter
from typing import NamedTuple

import orjson

from bufmon.jsonparts import SharedParts
from collectors.model import IDLE, Sock
from collectors.tcpinfo import TIME_FIELDS, TIME_PART, TcpInfo

KEEP_MAX = 65536  # sockets whose text is kept (each document's first ones)

# Every attribute a socket's JSON is written from, but its key (netns, cookie), its
# tcp_info (compared apart, without the time fields) and what a kept socket lacks
# (flags, a listener): the socket's attributes but those and the ones the JSON does not
# show. tests/test_json_kept.py checks the result covers to_json().
_NOT_SAMPLED = frozenset(
    ("netns", "cookie", "info", "flags", "listener")  # compared apart, or never kept
    + ("timer_expires_ms", "retrans", "netns_name", "segs_in")  # not in the JSON
    + ("recv_fill", "send_fill")  # made of the queues and skmem, which are sampled
)
SAMPLED = tuple(name for name in Sock.__slots__ if name not in _NOT_SAMPLED)
_SAMPLE = attrgetter(*SAMPLED)
_TIMES = struct.Struct(f"={len(TIME_FIELDS)}I").unpack_from
_HEAD, _TAIL = TIME_PART.start, TIME_PART.stop
# the time fields' text from the first one's value to the last one's
_TIME_TEXT = b"%d" + b"".join(b',"%s":%%d' % name.encode() for name in TIME_FIELDS[1:])
_TIME_KEY = b',"%s":' % TIME_FIELDS[0].encode()
START = b'{"proto":'  # every socket's text starts so; no JSON string holds `,{"proto":`
_SPLIT = b"," + START


class Kept(NamedTuple):
    """A socket's sample and, once the sample repeated, its text (without START) cut
    around the values of its time fields."""

    attrs: tuple[object, ...]  # its SAMPLED attributes
    info: TcpInfo | None  # compared without the time fields
    before: bytes | None  # all of the text when the socket has no tcp_info
    after: bytes


def _keeps(s: Sock) -> bool:
    """Whether the socket's text may be kept: not with flags (their `since` moves),
    a listener, UNIX fields, or a tcp_info too short to hold the time fields."""
    info = s.info
    return not (
        s.flags
        or s.listener is not None
        or s.unix_fields is not None
        or (info is not None and len(info) < _TAIL)
    )


def _same(kept: Kept | None, attrs: tuple[object, ...], info: TcpInfo | None) -> bool:
    """Whether `kept` was written from this sample, but for the time fields."""
    if kept is None or kept.attrs != attrs:
        return False
    old = kept.info
    if old is None or info is None:
        return old is info
    return old[:_HEAD] == info[:_HEAD] and old[_TAIL:] == info[_TAIL:]


def _cut(text: bytes, start: int, end: int, s: Sock, attrs: tuple[object, ...]) -> Kept:
    """The socket's text `text[start:end]` (without START) cut around its time fields'
    values."""
    if s.info is None:
        return Kept(attrs, None, text[start:end], b"")
    at = text.index(_TIME_KEY, start, end) + len(_TIME_KEY)
    return Kept(attrs, s.info, text[start:at], text[at + len(_time_text(s.info)) : end])


def _seen(
    text: bytes, start: int, end: int, s: Sock, attrs: tuple[object, ...], kept: Kept | None
) -> Kept:
    """The entry of a socket written afresh as `text[start:end]`: its sample, and its
    text when the socket is quiet (its counters did not move since the sample before)
    or `kept` says its sample repeated."""
    if kept is None and s.rates is not IDLE:
        return Kept(attrs, s.info, None, b"")
    return _cut(text, start, end, s, attrs)


def _spans(text: bytes) -> Iterator[tuple[int, int]]:
    """Where each socket's text is in orjson's array `text` of them (without START)."""
    start = len(START) + 1
    while (end := text.find(_SPLIT, start)) >= 0:
        yield start, end
        start = end + len(_SPLIT)
    yield start, len(text) - 1


def _time_text(info: TcpInfo) -> bytes:
    return _TIME_TEXT % _TIMES(info, _HEAD)


class KeptTexts:
    """The kept texts of one `watch --json` run (see module doc). A socket's text is
    cut and kept when it is quiet or its sample repeats: a socket that moves at every
    refresh costs its sample only."""

    def __init__(self) -> None:
        self._old: dict[tuple[str, int], Kept] = {}
        self._new: dict[tuple[str, int], Kept] = {}

    def next_document(self) -> None:
        """Sockets not written since the last call are forgotten."""
        self._old, self._new = self._new, {}

    def members(self, socks: Sequence[Sock], parts: SharedParts) -> bytes | memoryview | None:
        """The members of the JSON array of `socks`, without its brackets; None when
        orjson cannot write them as ASCII (the caller writes them the standard way
        then, and nothing of them is kept)."""
        old = self._old
        samples: list[tuple[object, ...] | None] = []
        same: list[Kept | None] = []  # the entry of a socket whose sample repeated
        for s in socks:
            if not _keeps(s):
                samples.append(None)
                same.append(None)
                continue
            attrs = _SAMPLE(s)
            samples.append(attrs)
            kept = old.get((s.netns, s.cookie))
            same.append(kept if _same(kept, attrs, s.info) else None)
        fresh = [
            s.to_json(parts)
            for s, kept in zip(socks, same, strict=True)
            if kept is None or kept.before is None
        ]
        try:
            text = orjson.dumps(fresh)
        except orjson.JSONEncodeError:
            return None
        if not text.isascii():
            return None
        again = len(fresh) < len(socks)  # else orjson's text is the members as they are
        spans = _spans(text)
        view = memoryview(text)
        new = self._new
        out: list[bytes | memoryview] = []
        for s, sample, kept in zip(socks, samples, same, strict=True):
            if kept is not None and kept.before is not None:
                out += (_SPLIT, kept.before)
                if s.info is not None:
                    out += (_time_text(s.info), kept.after)
            else:
                start, end = next(spans)
                if again:
                    out += (_SPLIT, view[start:end])
                if sample is not None:
                    kept = _seen(text, start, end, s, sample, kept)
            if kept is not None and len(new) < KEEP_MAX:
                new[(s.netns, s.cookie)] = kept
        if not again:
            return view[len(b"[") : -1]
        out[0] = START
        return b"".join(out)
