"""Reading a recording: FILE and its rotated parts FILE.N ... FILE.1 as one timeline.

Opening reads each file's index and walks only the frames it lacks. A frame is rebuilt
from the keyframe at or before it, or from the frame decoded last when that is closer
(stepping forward costs one frame).
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

from bufmon.record.codec import State, apply_frame
from bufmon.record.errors import RecordingError
from bufmon.record.format import (
    BIT_FLAG_ROSE,
    FRAME,
    FRAME_MAGIC,
    KEYFRAME,
    FormatError,
    FrameHead,
    Interned,
    frame_crc,
)
from bufmon.record.index import read_index
from bufmon.record.scan import Scanned, scan
from bufmon.record.writer import rotated_name
from bufmon.textout import shown, watch_document
from collectors.model import Snapshot


def recording_files(path: str) -> list[str]:
    """FILE.N ... FILE.1, FILE: the parts that exist, oldest first."""
    parts = []
    n = 1
    while os.path.lexists(rotated_name(path, n)):
        parts.append(rotated_name(path, n))
        n += 1
    parts.reverse()
    if os.path.lexists(path):
        parts.append(path)
    return parts


def _open_part(name: str) -> int:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise RecordingError(f"{name}: cannot open: {exc.strerror}") from None
    if not os.path.isfile(f"/proc/self/fd/{fd}"):
        os.close(fd)
        raise RecordingError(f"{name}: not a regular file")
    return fd


class Recording:
    def __init__(self, path: str, fds: list[int], parts: list[Scanned]) -> None:
        self.path = path
        self._fds = fds
        self._parts = parts
        self._starts: list[int] = []  # the index of each part's first frame
        times: list[float] = []
        for part in parts:
            self._starts.append(len(times))
            times += part.frames.times
        self.times: Sequence[float] = times
        kinds = b"".join(part.frames.kinds for part in parts)
        self._keyframes = [m.start() for m in re.finditer(re.escape(bytes([KEYFRAME])), kinds)]
        self._bits = b"".join(part.frames.bits for part in parts)
        self._state: State | None = None
        self._state_index = -1
        self._interned = Interned()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Recording:
        name = os.fspath(path)
        names = recording_files(name)
        if not names:
            raise RecordingError(f"{name}: no such file")
        fds: list[int] = []
        parts: list[Scanned] = []
        try:
            for part_name in names:
                fd = _open_part(part_name)
                fds.append(fd)
                try:
                    parts.append(scan(fd, read_index(part_name)))
                except FormatError as exc:
                    raise RecordingError(f"{part_name}: {exc}") from None
                except OSError as exc:
                    raise RecordingError(f"{part_name}: cannot read: {exc.strerror}") from None
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        if not any(part.frames for part in parts):
            for fd in fds:
                os.close(fd)
            raise RecordingError(f"{name}: the recording holds no complete frame")
        return cls(name, fds, parts)

    def __len__(self) -> int:
        return len(self.times)

    def index_at(self, t: float) -> int:
        """The last frame at or before t (0 if t is before the start)."""
        return max(bisect.bisect_right(self.times, t) - 1, 0)

    def flag_times(self) -> list[float]:
        """Times of the frames in which a flag was raised, ascending."""
        return [t for t, bits in zip(self.times, self._bits, strict=True) if bits & BIT_FLAG_ROSE]

    def snapshot(self, i: int) -> Snapshot:
        """Frame i as a Snapshot: sockets with their flags as recorded (closed ones too)."""
        return self.state(i).snapshot()

    def document(self, i: int) -> dict[str, Any]:
        """Frame i's `watch --json` document."""
        snap = self.snapshot(i)
        return watch_document(snap, shown(snap))

    def state(self, i: int) -> State:
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} of {len(self)}")
        start = self._keyframes[max(bisect.bisect_right(self._keyframes, i) - 1, 0)]
        state = None
        if self._state is not None and start <= self._state_index <= i:
            start, state = self._state_index + 1, self._state
        for j in range(start, i + 1):
            state = self._decode(j, state)
        assert state is not None
        self._state, self._state_index = state, i
        return state

    def states(self, with_infos: bool = False) -> Iterator[State]:
        """Every frame in order; without tcp_info (much cheaper) unless asked."""
        state = None
        for j in range(len(self)):
            state = self._decode(j, state, with_infos)
            yield state

    def _decode(self, j: int, prev: State | None, with_infos: bool = True) -> State:
        n = bisect.bisect_right(self._starts, j) - 1
        part, k = self._parts[n], j - self._starts[n]
        offset = part.frames.offsets[k]
        data = os.pread(self._fds[n], part.frame_end(k) - offset, offset)
        head = _head_of(data)
        if head is None or (head.kind, head.time) != (part.frames.kinds[k], part.frames.times[k]):
            raise RecordingError(f"{self.path}: frame {j} is damaged")
        meta = data[FRAME.size : FRAME.size + head.meta_len]
        blob = data[FRAME.size + head.meta_len :]
        try:
            sections = (meta, blob if with_infos else None)
            return apply_frame(prev, head.kind, head.time, sections, self._interned)
        except FormatError as exc:
            raise RecordingError(f"{self.path}: frame {j}: {exc}") from None

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


def _head_of(data: bytes) -> FrameHead | None:
    """The header of the frame that is `data`, exactly, when it is whole and sound."""
    if len(data) < FRAME.size:
        return None
    magic, kind, bits, _, t, meta_len, blob_len, crc = FRAME.unpack_from(data)
    head = FrameHead(kind, bits, t, meta_len, blob_len, crc)
    if magic != FRAME_MAGIC or head.size != len(data):
        return None
    return head if frame_crc(data[: FRAME.size], data[FRAME.size :]) == crc else None
