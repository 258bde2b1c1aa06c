"""The frame index of a recording file: FILE.idx next to FILE (and FILE.1.idx next to
FILE.1 ...), so that opening a day-long recording is one read instead of a walk over
86,400 frame headers.

It is a cache, never the truth: it names the file it indexes (by the CRC of that
file's header), every entry is checked against the frame it points to when the frame
is read, and the recorder appends to it only after the frame is on disk. An index
that is missing, foreign, torn or behind costs only a walk over the frames it lacks.
"""

from __future__ import annotations

import os
import stat
import struct
import sys
from array import array
from dataclasses import dataclass, field
from operator import lt

from bufmon.record.format import DELTA, KEYFRAME

INDEX_MAGIC = b"BUFMONIX"
INDEX_VERSION = 1
# magic, version (u16), reserved (u16), CRC-32 of the recording's header (u32)
INDEX_HEAD = struct.Struct("<8sHHI")
# one frame: offset in FILE (i64), time (f64), kind, bits, 6 bytes reserved
ENTRY = struct.Struct("<qdBB6x")
_WORDS = ENTRY.size // 8  # an entry as 8-byte words: offset, time, kind/bits
KINDS = bytes((KEYFRAME, DELTA))


def index_name(path: str) -> str:
    return f"{path}.idx"


@dataclass(slots=True)
class Frames:
    """Where each frame starts, its time, kind and bits (columns, frame order)."""

    offsets: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    kinds: bytearray = field(default_factory=bytearray)
    bits: bytearray = field(default_factory=bytearray)

    def __len__(self) -> int:
        return len(self.offsets)

    def add(self, offset: int, t: float, kind: int, bits: int) -> None:
        self.offsets.append(offset)
        self.times.append(t)
        self.kinds.append(kind)
        self.bits.append(bits)

    def pop(self) -> None:
        del self.offsets[-1], self.times[-1], self.kinds[-1], self.bits[-1]


def entry(offset: int, t: float, kind: int, bits: int) -> bytes:
    return ENTRY.pack(offset, t, kind, bits)


def index_bytes(header_crc: int, frames: Frames) -> bytes:
    head = INDEX_HEAD.pack(INDEX_MAGIC, INDEX_VERSION, 0, header_crc)
    return head + b"".join(map(entry, frames.offsets, frames.times, frames.kinds, frames.bits))


def read_index(path: str) -> bytes | None:
    """The bytes of PATH.idx, or None when there is none (or not a regular file)."""
    try:
        fd = os.open(index_name(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        return os.pread(fd, info.st_size, 0)
    except OSError:
        return None
    finally:
        os.close(fd)


def parse_index(data: bytes, header_crc: int, first: int) -> Frames:
    """The whole entries of an index of the recording whose header has this CRC and
    whose first frame starts at `first`; no frames when it is of another file or does
    not hold together (offsets not rising, an unknown kind)."""
    if len(data) < INDEX_HEAD.size:
        return Frames()
    magic, version, _, crc = INDEX_HEAD.unpack_from(data)
    if magic != INDEX_MAGIC or version != INDEX_VERSION or crc != header_crc:
        return Frames()
    count = (len(data) - INDEX_HEAD.size) // ENTRY.size
    body = data[INDEX_HEAD.size : INDEX_HEAD.size + count * ENTRY.size]
    words, reals = array("q"), array("d")
    words.frombytes(body)
    reals.frombytes(body)
    if sys.byteorder == "big":
        words.byteswap()
        reals.byteswap()
    offsets = words[0::_WORDS].tolist()
    frames = Frames(
        offsets,
        reals[1::_WORDS].tolist(),
        bytearray(body[16 :: ENTRY.size]),
        bytearray(body[17 :: ENTRY.size]),
    )
    if not offsets or offsets[0] != first or not all(map(lt, offsets, offsets[1:])):
        return Frames()
    if frames.kinds.translate(None, KINDS):
        return Frames()
    return frames


class IndexWriter:
    """Appends an entry per frame written; stops (the index then lags) on any error."""

    def __init__(self, path: str) -> None:
        self.name = index_name(path)
        self.fd = -1

    def start(self, header_crc: int, frames: Frames, current: bool) -> None:
        """Continue the index (`current`: it holds exactly `frames`) or write it anew."""
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self.fd = os.open(self.name, flags, 0o600)
            if not stat.S_ISREG(os.fstat(self.fd).st_mode):
                raise OSError("not a regular file")
        except OSError:
            self.close()
            return
        if not current:
            self._write(index_bytes(header_crc, frames), truncate=True)

    def add(self, offset: int, t: float, kind: int, bits: int) -> None:
        if self.fd >= 0:
            self._write(entry(offset, t, kind, bits))

    def _write(self, data: bytes, truncate: bool = False) -> None:
        try:
            if truncate:
                os.ftruncate(self.fd, 0)
            if os.write(self.fd, data) != len(data):
                raise OSError("short write")
        except OSError:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
