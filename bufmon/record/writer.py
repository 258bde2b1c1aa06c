"""The recorder's file side: create 0600 without following symlinks, append frames
durably, continue after the last good frame of an existing recording, rotate at
--max-size, and stop with one clear line when the disk fills or the file goes away.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from typing import Any

from bufmon import __version__
from bufmon.record.codec import Encoder
from bufmon.record.errors import RecorderError
from bufmon.record.format import (
    HEAD_CRC,
    KEYFRAME,
    FormatError,
    encode_frame,
    encode_header,
)
from bufmon.record.index import ENTRY, INDEX_HEAD, Frames, IndexWriter, index_name, read_index
from bufmon.record.scan import scan
from collectors.model import Snapshot, Sock

KEYFRAME_EVERY = 60  # frames between keyframes: how far a reader decodes to reach a frame


def rotated_name(path: str, n: int) -> str:
    return path if n == 0 else f"{path}.{n}"


def _index_of_rotated(path: str, n: int) -> str:
    return index_name(rotated_name(path, n))


class Recorder:
    def __init__(
        self,
        path: str,
        interval: float,
        max_size: int | None = None,
        keep: int = 2,
        keyframe_every: int = KEYFRAME_EVERY,
    ) -> None:
        self.path = path
        self.interval = interval
        self.max_size = max_size
        self.keep = keep
        self.keyframe_every = keyframe_every
        self.encoder = Encoder()
        self.fd = -1
        self.size = 0  # bytes of the current file up to its last complete frame
        self.frames_in_file = 0
        self.since_keyframe = 0
        self.written = 0  # frames written by this run
        self.host = ""
        self.index = IndexWriter(path)

    # -- opening ---------------------------------------------------------------------

    def open(self, host: str) -> None:
        """Open FILE for appending: a new recording, or after the last good frame."""
        self.host = host
        fd = self._open_fd(create_new=False)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                self._start_file(fd)
            else:
                try:
                    found = scan(fd, read_index(self.path))
                except FormatError as exc:
                    raise RecorderError(
                        f"{self.path}: {exc}; refusing to append to it", 2
                    ) from None
                os.ftruncate(fd, found.end)  # drop a torn last frame
                self.size, self.frames_in_file = found.end, len(found.frames)
                current = found.indexed == len(found.frames) and self._index_size(found.indexed)
                self.index.start(found.header_crc, found.frames, current)
        except OSError as exc:
            os.close(fd)
            raise RecorderError(f"{self.path}: cannot write: {exc.strerror}", 1) from None
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.encoder.reset()

    def _start_file(self, fd: int) -> None:
        """The header of a new recording file, and a new index for it."""
        header = self._header()
        self._write_all(fd, header)
        self.size, self.frames_in_file = len(header), 0
        self.index.start(
            HEAD_CRC.unpack_from(header, len(header) - HEAD_CRC.size)[0], Frames(), False
        )

    def _index_size(self, entries: int) -> bool:
        """Does the index on disk hold exactly `entries` whole entries (no torn one)?"""
        data = read_index(self.path)
        return data is not None and len(data) == INDEX_HEAD.size + entries * ENTRY.size

    def _header(self) -> bytes:
        meta: dict[str, Any] = {
            "format": "bufmon recording",
            "created": time.time(),
            "host": self.host,
            "interval": self.interval,
            "keyframe_every": self.keyframe_every,
            "writer": f"bufmon {__version__}",
        }
        return encode_header(meta)

    def _open_fd(self, create_new: bool) -> int:
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        if create_new:
            flags |= os.O_EXCL
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RecorderError(
                    f"{self.path}: is a symbolic link; refusing to follow it", 2
                ) from None
            raise RecorderError(f"{self.path}: cannot open: {exc.strerror}", 2) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RecorderError(f"{self.path}: not a regular file", 2)
        os.set_blocking(fd, True)
        return fd

    # -- writing ---------------------------------------------------------------------

    def write(self, snap: Snapshot, socks: list[Sock]) -> None:
        """Append one frame (rotating first when it would pass --max-size)."""
        self._check_still_there()
        keyframe = self.since_keyframe + 1 >= self.keyframe_every or self.frames_in_file == 0
        frame = self._frame(snap, socks, keyframe)
        if self.max_size is not None and self.size + len(frame) > self.max_size:
            if self.frames_in_file:
                self._rotate()
                frame = self._frame(snap, socks, True)
            if self.size + len(frame) > self.max_size:
                raise RecorderError(
                    f"{self.path}: one frame takes {len(frame)} bytes, more than --max-size", 2
                )
        try:
            self._write_all(self.fd, frame)
            os.fdatasync(self.fd)
        except OSError as exc:
            self._cut_back()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise RecorderError(
                    f"{self.path}: disk full; recording stopped after {self.written} frames "
                    "(they stay readable)",
                    1,
                ) from None
            raise RecorderError(f"{self.path}: cannot write: {exc.strerror}", 1) from None
        kind, bits = frame[4], frame[5]  # as FRAME packs them
        self.index.add(self.size, snap.time, kind, bits)
        self.size += len(frame)
        self.frames_in_file += 1
        self.written += 1

    def _frame(self, snap: Snapshot, socks: list[Sock], keyframe: bool) -> bytes:
        kind, bits, meta, blob = self.encoder.encode(snap, socks, keyframe)
        self.since_keyframe = 0 if kind == KEYFRAME else self.since_keyframe + 1
        return encode_frame(kind, bits, snap.time, meta, blob)

    def _check_still_there(self) -> None:
        try:
            ours = os.fstat(self.fd)
            there = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            there = None
        if (
            there is None
            or ours.st_nlink == 0
            or (there.st_dev, there.st_ino)
            != (
                ours.st_dev,
                ours.st_ino,
            )
        ):
            raise RecorderError(
                f"{self.path}: the file was removed or replaced; recording stopped "
                f"after {self.written} frames",
                1,
            )

    def _cut_back(self) -> None:
        """Drop the part of a frame a failed write left behind (best effort)."""
        with contextlib.suppress(OSError):  # the reader ignores a torn tail anyway
            os.ftruncate(self.fd, self.size)

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    def _rotate(self) -> None:
        """FILE.(N-1) -> FILE.N, ..., FILE -> FILE.1, then a new FILE."""
        os.close(self.fd)
        self.fd = -1
        self.index.close()
        for n in range(self.keep, 0, -1):
            for name in (rotated_name, _index_of_rotated):
                source, target = name(self.path, n - 1), name(self.path, n)
                if os.path.lexists(source):
                    os.replace(source, target)
                elif name is _index_of_rotated:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(target)  # of the file replaced: no longer its index
        self.fd = self._open_fd(create_new=True)
        try:
            self._start_file(self.fd)
        except OSError as exc:
            raise RecorderError(f"{self.path}: cannot write: {exc.strerror}", 1) from None

    def close(self) -> None:
        self.index.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
