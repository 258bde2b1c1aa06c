"""Finding the frames of one recording file: its header, then its frames.

The frames the file's index (bufmon.record.index) lists are taken from it once the
last of them checks out; the others are walked header by header through a mapping of
the file. The last frames are checked against their CRC: a torn or zeroed tail
(kill -9, power cut, full disk) ends the file at the last complete frame.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import NamedTuple

from bufmon.record.format import (
    DELTA,
    FRAME,
    FRAME_MAGIC,
    HEAD_CRC,
    KEYFRAME,
    MAX_SECTION,
    FrameHead,
    decode_header,
    frame_crc,
)
from bufmon.record.index import Frames, parse_index

HEADER_READ = 1 << 17  # more than any header


class FrameRef(NamedTuple):
    """A frame: where it starts, and its header's fields (magic and reserved aside)."""

    offset: int
    raw: tuple[bytes, int, int, int, float, int, int, int]  # FRAME.unpack_from

    @property
    def head(self) -> FrameHead:
        _, kind, bits, _, t, meta_len, blob_len, crc = self.raw
        return FrameHead(kind, bits, t, meta_len, blob_len, crc)


@dataclass(slots=True)
class Scanned:
    header: dict[str, object]
    header_crc: int  # names the file (its index names it too)
    frames: Frames
    end: int  # where the last complete frame ends: appends go here
    indexed: int  # how many of the frames the index held (the others were walked)

    def frame_end(self, i: int) -> int:
        """Frames follow each other: one ends where the next starts."""
        return self.frames.offsets[i + 1] if i + 1 < len(self.frames) else self.end


def read_exact(fd: int, size: int, offset: int) -> bytes:
    return os.pread(fd, size, offset)


def frame_at(fd: int, offset: int) -> FrameRef | None:
    raw = read_exact(fd, FRAME.size, offset)
    return FrameRef(offset, FRAME.unpack(raw)) if len(raw) == FRAME.size else None


def frame_ok(fd: int, ref: FrameRef) -> bool:
    data = read_exact(fd, ref.head.size, ref.offset)
    if len(data) != ref.head.size:
        return False
    return frame_crc(data[: FRAME.size], data[FRAME.size :]) == ref.head.crc


def scan(fd: int, index: bytes | None = None) -> Scanned:
    """Header and complete frames of the file open at `fd`; FormatError if not a recording.
    With the bytes of its index, only the frames after those it lists are walked."""
    size = os.fstat(fd).st_size
    start = read_exact(fd, min(size, HEADER_READ), 0)
    header, offset = decode_header(start)
    header_crc = HEAD_CRC.unpack_from(start, offset - HEAD_CRC.size)[0]
    frames = Frames() if index is None else parse_index(index, header_crc, offset)
    while frames and not _listed_ok(fd, frames, size):  # an index ahead of a torn tail
        frames.pop()
    indexed = len(frames)
    if frames:
        last = frame_at(fd, frames.offsets[-1])
        assert last is not None  # _listed_ok read it
        offset = last.offset + last.head.size
    tail = _frames(fd, offset, size) if size > offset else []
    while tail and not frame_ok(fd, tail[-1]):  # a torn tail costs only itself
        tail.pop()
    for ref in tail:
        frames.add(ref.offset, ref.raw[4], ref.raw[1], ref.raw[2])
    end = tail[-1].offset + tail[-1].head.size if tail else offset
    return Scanned(header, header_crc, frames, end, indexed)


def _listed_ok(fd: int, frames: Frames, size: int) -> bool:
    """Is the last frame the index lists in the file, whole, as the index says?"""
    ref = frame_at(fd, frames.offsets[-1])
    return (
        ref is not None
        and ref.raw[0] == FRAME_MAGIC
        and (ref.raw[1], ref.raw[4]) == (frames.kinds[-1], frames.times[-1])
        and ref.offset + ref.head.size <= size
        and frame_ok(fd, ref)
    )


def _frames(fd: int, offset: int, size: int) -> list[FrameRef]:
    """The frames whose headers are sound and whose sections fit in the file: the loop
    that opening a recording costs, so it does as little as it can per frame."""
    frames: list[FrameRef] = []
    append, unpack, head_size = frames.append, FRAME.unpack_from, FRAME.size
    kinds = (KEYFRAME, DELTA)
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as data:
        while offset + head_size <= size:
            raw = unpack(data, offset)
            end = offset + head_size + raw[5] + raw[6]
            if raw[0] != FRAME_MAGIC or raw[1] not in kinds or end > size:
                break
            if raw[5] > MAX_SECTION or raw[6] > MAX_SECTION:
                break
            append(FrameRef(offset, raw))
            offset = end
    return frames
