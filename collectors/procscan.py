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
from typing import BinaryIO, NoReturn

from collectors.netns import link_inode

SOCKET_PREFIX = "socket:["
PIPE_BYTES = 4 << 20  # holds 40,000 sockets' records: the child need not wait for the parent
PR_SET_PDEATHSIG = 1
HEADER = array("Q", (0, 0, 0))  # a record: pid, denied (0/1), inode count, then the inodes
END = HEADER.tobytes()  # pid 0: the walk is done
PAUSED = array("Q", (0, 1, 0)).tobytes()  # the chosen namespaces' processes are done


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


def scan_order(
    pids: list[int], skip: set[int], netns: set[int] | None, proc: str
) -> tuple[list[int], list[int]]:
    """`pids` but `skip` in the two parts a scan reads one after the other: those in
    the namespaces `netns`, then the others (one link read each); pid order within
    each. Every pid is in the first part when `netns` is None (every namespace)."""
    pids = [pid for pid in pids if pid not in skip]
    if netns is None:
        return pids, []
    inside: list[int] = []
    outside: list[int] = []
    for pid in pids:
        (inside if link_inode(f"{proc}/{pid}/ns/net") in netns else outside).append(pid)
    return inside, outside


class ForkedScan:
    """A child reading every process's socket inodes, in scan order; see the module.

    It reads the chosen namespaces' processes, then waits until the parent asks for
    the others: those usually own none of the sockets asked about."""

    def __init__(self, pid: int, records: int, go_on: int) -> None:
        self.pid = pid
        self.complete = False  # the child read every process and said so
        self._pipe = open(records, "rb")  # noqa: SIM115 (closed by close())
        self._go_on = go_on
        self._reaped = False

    @classmethod
    def start(
        cls, proc: str, netns: set[int] | None, pipe_bytes: int = PIPE_BYTES
    ) -> ForkedScan | None:
        """Fork the child; None when that fails (the caller then reads in-process)."""
        parent = os.getpid()
        pipes: list[int] = []
        try:
            pipes += os.pipe()  # records: child -> parent
            pipes += os.pipe()  # go on past the chosen namespaces: parent -> child
            _grow(pipes[1], pipe_bytes)
            pid = os.fork()
        except OSError:  # out of descriptors or processes
            for fd in pipes:
                os.close(fd)
            return None
        records, write, wait, go_on = pipes
        if pid == 0:
            os.close(records)
            os.close(go_on)
            _walk(write, wait, proc, netns, parent)
        os.close(write)
        os.close(wait)
        return cls(pid, records, go_on)

    def records(self) -> Iterator[tuple[int, Sequence[int], bool]]:
        """(pid, its socket inodes, whether some were denied), in scan order, until the
        child is done (then `complete`) or stops short."""
        read, size = self._pipe.read, len(END)
        while len(head := read(size)) == size:
            pid, denied, count = array("Q", head)
            if head == PAUSED:  # still asked for: the caller needs more
                with contextlib.suppress(OSError):  # the child died: EOF comes next
                    os.write(self._go_on, b"+")
                continue
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
        os.close(self._go_on)
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


def _walk(fd: int, wait: int, proc: str, netns: set[int] | None, parent: int) -> NoReturn:
    """The child: _serve the parent through `fd`, then exit; never returns."""
    code = 1
    try:
        gc.disable()  # a collection would touch, and so copy, every page of the parent's
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == parent:  # else the parent died before the prctl
            with open(fd, "wb") as out:
                _serve(out, wait, proc, netns)
            code = 0
    finally:
        os._exit(code)


def _serve(out: BinaryIO, wait: int, proc: str, netns: set[int] | None) -> None:
    """Each process's record, PAUSED between the two parts of scan_order (going on once
    `wait` gives a byte), then END."""
    inside, outside = scan_order(all_pids(proc), set(), netns, proc)
    _write_records(out, proc, inside)
    if outside:
        out.write(PAUSED)
        out.flush()
        if not os.read(wait, 1):  # the parent is done with us
            return
        _write_records(out, proc, outside)
    out.write(END)


def _write_records(out: BinaryIO, proc: str, pids: list[int]) -> None:
    for pid in pids:
        inodes, denied = pid_links(proc, pid)
        record = array("Q", (pid, denied, len(inodes)))
        record.extend(inodes)
        out.write(record)
        out.flush()  # the parent may stop reading at any process
