"""Finding the frames of one recording file: header, then frame headers one by one.

The file is mapped and only frame headers are touched, so opening a day-long
recording (86,400 frames) does not read the day. The last frames are checked against
their CRC: a torn or zeroed tail (kill -9, power cut, full disk) ends the file at the
last complete frame.
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
    KEYFRAME,
    MAX_SECTION,
    FrameHead,
    decode_header,
    frame_crc,
)

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
    frames: list[FrameRef]
    end: int  # where the last complete frame ends: appends go here


def read_exact(fd: int, size: int, offset: int) -> bytes:
    return os.pread(fd, size, offset)


def frame_ok(fd: int, ref: FrameRef) -> bool:
    data = read_exact(fd, ref.head.size, ref.offset)
    if len(data) != ref.head.size:
        return False
    return frame_crc(data[: FRAME.size], data[FRAME.size :]) == ref.head.crc


def scan(fd: int) -> Scanned:
    """Header and complete frames of the file open at `fd`; FormatError if not a recording."""
    size = os.fstat(fd).st_size
    header, offset = decode_header(read_exact(fd, min(size, HEADER_READ), 0))
    frames = _frames(fd, offset, size) if size > offset else []
    while frames and not frame_ok(fd, frames[-1]):  # a torn tail costs only itself
        frames.pop()
    end = frames[-1].offset + frames[-1].head.size if frames else offset
    return Scanned(header, frames, end)


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
