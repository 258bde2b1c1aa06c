"""Which process owns a socket: inode -> pid from /proc/PID/fd, kept across refreshes.

Only unknown inodes cause a scan. The pids that already own sockets are scanned first
(new connections usually belong to the same servers), then the processes of the chosen
namespaces, the rest only while inodes are still missing. Inodes nobody visible owns
are looked for again at most every full_scan_interval seconds, unless new ones appear.
Command lines are never read.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator

import psutil

from collectors.model import Process, Sock
from collectors.netns import link_inode
from collectors.untrusted import read_comm

SOCKET_PREFIX = "socket:["
NOT_ROOT_NOTICE = "not running as root: processes of other users are not shown"


# Processes and fds come and go while we look: skipping them is normal.
GONE = (OSError, psutil.NoSuchProcess, psutil.AccessDenied)


def unreadable_notice(count: int) -> str:
    processes = "1 process" if count == 1 else f"{count} processes"
    return f"{processes} could not be inspected (permission denied): their sockets show no process"


class ProcessIndex:
    """inode -> owning Process, cached across refreshes; see the module docstring."""

    def __init__(self, proc: str = "/proc", full_scan_interval: float = 5.0) -> None:
        self.proc = proc
        self.full_scan_interval = full_scan_interval
        self.scans = 0  # /proc/PID/fd directories read so far
        self._owner: dict[int, int] = {}  # inode -> pid
        self._process_of: dict[int, Process] = {}  # inode -> facts, rebuilt on changes
        self._processes: dict[int, tuple[float, Process]] = {}  # pid -> (create_time, facts)
        self._unresolved: set[int] = set()  # inodes the last scan could not attribute
        self._last_full_pass = float("-inf")
        self._unreadable: set[int] = set()  # pids whose fds we may not read

    @property
    def notice(self) -> str | None:
        if os.geteuid() != 0:
            return NOT_ROOT_NOTICE
        return unreadable_notice(len(self._unreadable)) if self._unreadable else None

    def attribute(self, socks: list[Sock], netns: set[int] | None = None) -> None:
        """Set sock.process for every socket whose owner is visible, else None.

        The common refresh (no socket closed, no new one) is one pass over the sockets.
        `netns`: the inodes of the namespaces the sockets come from, when not all: a scan
        reads their processes before the others (which usually own none of them).
        """
        process_of = self._process_of.get
        unknown: set[int] = set()
        found = 0
        for sock in socks:
            process = sock.process = process_of(sock.inode)
            if process is not None:
                found += 1
            elif sock.inode:  # 0: TIME-WAIT, SYN-RECV
                unknown.add(sock.inode)
        changed = self._forget_dead()
        if found != len(self._owner):  # some known sockets are gone
            self._forget_gone({sock.inode for sock in socks})
            changed = True
        retry_all = time.monotonic() - self._last_full_pass >= self.full_scan_interval
        targets = unknown if retry_all else unknown - self._unresolved
        if targets:
            self._scan(unknown, targets, netns)
            changed = True
        self._unresolved = unknown - self._owner.keys()
        if changed:
            processes = self._processes
            self._process_of = {inode: processes[pid][1] for inode, pid in self._owner.items()}
            process_of = self._process_of.get
            for sock in socks:
                sock.process = process_of(sock.inode)

    def _forget_gone(self, present: set[int]) -> None:
        """Drop inodes no longer present, and processes that own none any more."""
        self._owner = {inode: pid for inode, pid in self._owner.items() if inode in present}
        owners = set(self._owner.values())
        self._processes = {pid: p for pid, p in self._processes.items() if pid in owners}

    def _forget_dead(self) -> bool:
        """Drop pids that died or were reused (another start time); True if any."""
        dead = {
            pid for pid, (started, _) in self._processes.items() if create_time_of(pid) != started
        }
        if dead:
            self._processes = {pid: p for pid, p in self._processes.items() if pid not in dead}
            self._owner = {inode: pid for inode, pid in self._owner.items() if pid not in dead}
        return bool(dead)

    def _scan(self, unknown: set[int], targets: set[int], netns: set[int] | None) -> None:
        """Look for the unknown inodes; stop once every target inode is found."""
        remaining = set(targets)
        owners_first = set(self._owner.values())
        visited = set()
        for pid in self._pids_in_order(owners_first, netns):
            visited.add(pid)
            found = [inode for inode in self._socket_inodes(pid) if inode in unknown]
            if found and self._learn(pid):
                for inode in found:
                    self._owner.setdefault(inode, pid)
                remaining.difference_update(found)
                if not remaining:
                    return
        self._unreadable &= visited  # a full pass: forget pids that are gone
        self._last_full_pass = time.monotonic()

    def _pids_in_order(self, owners_first: set[int], netns: set[int] | None) -> Iterator[int]:
        """Known owners; then the processes in `netns` (one link read each), then the rest."""
        yield from owners_first
        rest = [pid for pid in self._all_pids() if pid not in owners_first]
        if netns is not None:  # stable: pid order within each part
            rest.sort(key=lambda pid: link_inode(f"{self.proc}/{pid}/ns/net") not in netns)
        yield from rest

    def _all_pids(self) -> Iterable[int]:
        with os.scandir(self.proc) as entries:
            return [int(entry.name) for entry in entries if entry.name.isdigit()]

    def _socket_inodes(self, pid: int) -> list[int]:
        self.scans += 1
        try:
            inodes, denied = socket_links(f"{self.proc}/{pid}/fd")
        except PermissionError:
            inodes, denied = [], True
        except OSError:  # the process is gone
            inodes, denied = [], False
        if denied:
            self._unreadable.add(pid)
        else:
            self._unreadable.discard(pid)
        return inodes

    def _learn(self, pid: int) -> bool:
        """Record the facts of pid unless already known; False when it is gone."""
        if pid in self._processes:
            return True
        try:
            proc = psutil.Process(pid)
            created = proc.create_time()
            user = proc.username()
            comm = read_comm(f"{self.proc}/{pid}/comm")
        except GONE:
            return False
        self._processes[pid] = (created, Process(pid=pid, comm=comm, user=user))
        return True


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


def create_time_of(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except GONE:
        return None
