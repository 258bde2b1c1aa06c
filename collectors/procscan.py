"""Reading processes' descriptor links for a scan, here or in a forked child.

A scan reads one link per descriptor of every process it visits, in one order
(scan_order). A one-shot command (`snapshot`) knows no process yet and reads them all
after the dump; the reads do not depend on the dump, so a child forked just before it
(ForkedScan) does them on another core and streams each process's socket inodes back
through a pipe, in that same order. The parent takes them pid by pid exactly as it
would have read them, and stops the child once every socket has its owner. The child
never outlives the parent (PR_SET_PDEATHSIG; a write to a pipe nobody reads ends it
too). When the fork fails or the child stops short, the parent reads the rest itself,
so the outcome and any error are those of a scan without the child.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gc
import os
import signal
from array import array
from collections.abc import Iterator, Sequence
from typing import NoReturn

from collectors.netns import link_inode

SOCKET_PREFIX = "socket:["
PIPE_BYTES = 4 << 20  # holds 40,000 sockets' records: the child need not wait for the parent
PR_SET_PDEATHSIG = 1
HEADER = array("Q", (0, 0, 0))  # a record: pid, denied (0/1), inode count, then the inodes
END = HEADER.tobytes()  # pid 0: the walk is done


def socket_links(fd_path: str) -> tuple[list[int], bool]:
    """The socket inodes among a process's descriptors, and whether some could not be
    read. Each link is read relative to the opened directory (no path per descriptor:
    ~10% of a scan that reads 40,000 of them)."""
    inodes: list[int] = []
    denied = False
    fd_dir = os.open(fd_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        readlink, skip = os.readlink, len(SOCKET_PREFIX)
        for name in os.listdir(fd_dir):
            try:
                target = readlink(name, dir_fd=fd_dir)
            except PermissionError:
                denied = True
                continue
            except OSError:  # the fd was closed meanwhile
                continue
            if target.startswith(SOCKET_PREFIX):
                inodes.append(int(target[skip:-1]))
    finally:
        os.close(fd_dir)
    return inodes, denied


def pid_links(proc: str, pid: int) -> tuple[list[int], bool]:
    """socket_links of a process; a process gone meanwhile has none and hides nothing."""
    try:
        return socket_links(f"{proc}/{pid}/fd")
    except PermissionError:
        return [], True
    except OSError:  # the process is gone
        return [], False


def all_pids(proc: str) -> list[int]:
    with os.scandir(proc) as entries:
        return [int(entry.name) for entry in entries if entry.name.isdigit()]


def scan_order(pids: list[int], skip: set[int], netns: set[int] | None, proc: str) -> list[int]:
    """`pids` but `skip`, those in the namespaces `netns` (when given) first: pid order
    within each part (one link read each)."""
    rest = [pid for pid in pids if pid not in skip]
    if netns is not None:
        rest.sort(key=lambda pid: link_inode(f"{proc}/{pid}/ns/net") not in netns)
    return rest


class ForkedScan:
    """A child reading every process's socket inodes, in scan order; see the module."""

    def __init__(self, pid: int, read_fd: int) -> None:
        self.pid = pid
        self.complete = False  # the child read every process and said so
        self._pipe = open(read_fd, "rb")  # noqa: SIM115 (closed by close())
        self._reaped = False

    @classmethod
    def start(
        cls, proc: str, netns: set[int] | None, pipe_bytes: int = PIPE_BYTES
    ) -> ForkedScan | None:
        """Fork the child; None when that fails (the caller then reads in-process)."""
        parent = os.getpid()
        try:
            read_fd, write_fd = os.pipe()
        except OSError:  # out of descriptors
            return None
        try:
            _grow(write_fd, pipe_bytes)
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            return None
        if pid == 0:
            os.close(read_fd)
            _walk(write_fd, proc, netns, parent)
        os.close(write_fd)
        return cls(pid, read_fd)

    def records(self) -> Iterator[tuple[int, Sequence[int], bool]]:
        """(pid, its socket inodes, whether some were denied), in scan order, until the
        child is done (then `complete`) or stops short."""
        read, size = self._pipe.read, len(END)
        while len(head := read(size)) == size:
            pid, denied, count = array("Q", head)
            if pid == 0:
                self.complete = True
                return
            body = read(count * HEADER.itemsize)
            if len(body) != count * HEADER.itemsize:
                return
            yield pid, array("Q", body), bool(denied)

    def close(self) -> None:
        """Stop the child (unless it is done) and reap it."""
        if self._reaped:
            return
        self._reaped = True
        self._pipe.close()
        if not self.complete:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # reaped elsewhere
            os.waitpid(self.pid, 0)


def _grow(fd: int, size: int) -> None:
    """A pipe of `size` bytes if allowed (root may pass fs.pipe-max-size), else as is."""
    for want in (size, min(size, 1 << 20)):
        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, want)
            return
        except OSError:
            continue


def _walk(fd: int, proc: str, netns: set[int] | None, parent: int) -> NoReturn:
    """The child: write each process's record to `fd`, then END; never returns."""
    code = 1
    try:
        gc.disable()  # a collection would touch, and so copy, every page of the parent's
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == parent:  # else the parent died before the prctl
            with open(fd, "wb") as out:
                for pid in scan_order(all_pids(proc), set(), netns, proc):
                    inodes, denied = pid_links(proc, pid)
                    record = array("Q", (pid, denied, len(inodes)))
                    record.extend(inodes)
                    out.write(record)
                    out.flush()  # the parent may stop reading at any process
                out.write(END)
            code = 0
    finally:
        os._exit(code)
