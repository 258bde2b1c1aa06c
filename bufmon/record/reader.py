"""Reading a recording: FILE and its rotated parts FILE.N ... FILE.1 as one timeline.

Opening reads only headers. A frame is rebuilt from the keyframe at or before it,
or from the frame decoded last when that is closer (stepping forward costs one frame).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator, Sequence
from typing import Any

from bufmon.record.codec import State, apply_frame
from bufmon.record.format import (
    BIT_FLAG_ROSE,
    FRAME,
    KEYFRAME,
    FormatError,
    Interned,
    frame_crc,
)
from bufmon.record.scan import FrameRef, scan
from bufmon.record.writer import rotated_name
from bufmon.textout import shown, watch_document
from collectors.model import Snapshot


class RecordingError(Exception):
    """A file that cannot be read as a recording: one line; the CLI exits 2."""


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
    def __init__(self, path: str, fds: list[int], frames: list[tuple[int, FrameRef]]) -> None:
        self.path = path
        self._fds = fds
        self._frames = frames  # (part, frame)
        self.times: Sequence[float] = [ref.raw[4] for _, ref in frames]
        self._keyframes = [i for i, (_, ref) in enumerate(frames) if ref.raw[1] == KEYFRAME]
        self._state: State | None = None
        self._state_index = -1
        self._interned = Interned()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Recording:
        name = os.fspath(path)
        parts = recording_files(name)
        if not parts:
            raise RecordingError(f"{name}: no such file")
        fds: list[int] = []
        frames: list[tuple[int, FrameRef]] = []
        try:
            for part, part_name in enumerate(parts):
                fd = _open_part(part_name)
                fds.append(fd)
                try:
                    found = scan(fd)
                except FormatError as exc:
                    raise RecordingError(f"{part_name}: {exc}") from None
                except OSError as exc:
                    raise RecordingError(f"{part_name}: cannot read: {exc.strerror}") from None
                frames.extend((part, ref) for ref in found.frames)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        if not frames:
            for fd in fds:
                os.close(fd)
            raise RecordingError(f"{name}: the recording holds no complete frame")
        return cls(name, fds, frames)

    def __len__(self) -> int:
        return len(self._frames)

    def index_at(self, t: float) -> int:
        """The last frame at or before t (0 if t is before the start)."""
        return max(bisect.bisect_right(self.times, t) - 1, 0)

    def flag_times(self) -> list[float]:
        """Times of the frames in which a flag was raised, ascending."""
        return [ref.raw[4] for _, ref in self._frames if ref.raw[2] & BIT_FLAG_ROSE]

    def snapshot(self, i: int) -> Snapshot:
        """Frame i as a Snapshot: sockets with their flags as recorded (closed ones too)."""
        return self.state(i).snapshot()

    def document(self, i: int) -> dict[str, Any]:
        """Frame i's `watch --json` document."""
        snap = self.snapshot(i)
        return watch_document(snap, shown(snap))

    def state(self, i: int) -> State:
        if not 0 <= i < len(self._frames):
            raise IndexError(f"frame {i} of {len(self._frames)}")
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
        for j in range(len(self._frames)):
            state = self._decode(j, state, with_infos)
            yield state

    def _decode(self, j: int, prev: State | None, with_infos: bool = True) -> State:
        part, ref = self._frames[j]
        head = ref.head
        data = os.pread(self._fds[part], head.size, ref.offset)
        if len(data) != head.size or frame_crc(data[: FRAME.size], data[FRAME.size :]) != head.crc:
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
