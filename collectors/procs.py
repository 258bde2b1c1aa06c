"""Which process owns a socket: inode -> pid from /proc/PID/fd, kept across refreshes.

Only unknown inodes cause a scan. The pids that already own sockets are scanned first
(new connections usually belong to the same servers), then the processes of the chosen
namespaces, the rest only while inodes are still missing. Inodes nobody visible owns
are looked for again at most every full_scan_interval seconds, unless new ones appear.
Command lines are never read.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Generator, Iterable, Iterator, Sequence

import psutil

from collectors.checkpoint import Checkpoint, in_steps, no_pause
from collectors.model import Process, Sock
from collectors.procscan import ForkedScan, all_pids, pid_links, scan_order
from collectors.untrusted import read_comm

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
        self._prefetch: ForkedScan | None = None  # the first scan's reads, in a child

    @property
    def notice(self) -> str | None:
        if os.geteuid() != 0:
            return NOT_ROOT_NOTICE
        return unreadable_notice(len(self._unreadable)) if self._unreadable else None

    def attribute(
        self, socks: list[Sock], netns: set[int] | None = None, checkpoint: Checkpoint = no_pause
    ) -> None:
        """Set sock.process for every socket whose owner is visible, else None.

        The common refresh (no socket closed, no new one) is one pass over the sockets.
        `netns`: the inodes of the namespaces the sockets come from, when not all: a scan
        reads their processes before the others (which usually own none of them).
        `checkpoint()` is called between steps of each pass (collectors.checkpoint).
        """
        process_of = self._process_of.get
        unknown: set[int] = set()
        found = 0
        for sock in in_steps(socks, checkpoint):
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
        self.close()  # a prefetch no scan needed
        self._unresolved = unknown - self._owner.keys()
        if changed:
            self._process_of = self._attributed(socks, checkpoint)

    def _attributed(self, socks: list[Sock], checkpoint: Checkpoint) -> dict[int, Process]:
        """Set sock.process from the owners known now; returns inode -> Process in the
        order of `socks`. A dump lists the same sockets in the same order, so the next
        refresh's lookups walk the dict in order: at 40,000 sockets about twice as fast
        as in the order the owners were found in (cache misses)."""
        owner, processes = self._owner.get, self._processes
        process_of: dict[int, Process] = {}
        for sock in in_steps(socks, checkpoint):
            pid = owner(sock.inode)
            if pid is None:
                sock.process = None
            else:
                process_of[sock.inode] = sock.process = processes[pid][1]
        return process_of

    def prefetch(self, netns: set[int] | None = None) -> bool:
        """Start the first scan's reads in a forked child (collectors.procscan), to run
        beside the dump that comes before attribute(); for one-shot commands. False
        when the index knows processes already or the fork failed."""
        if self._owner or self._prefetch is not None:
            return False
        self._prefetch = ForkedScan.start(self.proc, netns)
        return self._prefetch is not None

    def close(self) -> None:
        """Stop a prefetch that no scan took."""
        if self._prefetch is not None:
            self._prefetch.close()
            self._prefetch = None

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
        with contextlib.closing(self._links(owners_first, netns)) as links:
            for pid, inodes in links:
                visited.add(pid)
                found = unknown.intersection(inodes)  # sets in C: 40,000 inodes a process
                if found and self._learn(pid):
                    remaining -= found
                    found.difference_update(self._owner.keys())  # the first owner stays
                    self._owner.update(dict.fromkeys(found, pid))
                    if not remaining:
                        return
        self._unreadable &= visited  # a full pass: forget pids that are gone
        self._last_full_pass = time.monotonic()

    def _links(
        self, owners_first: set[int], netns: set[int] | None
    ) -> Generator[tuple[int, Sequence[int]]]:
        """Each pid a scan visits, in order, with its socket inodes: the prefetch's
        while it lasts (it starts only when no owner is known), the rest read here."""
        prefetch, self._prefetch = self._prefetch, None
        taken: set[int] = set()
        if prefetch is not None:
            try:
                for pid, inodes, denied in prefetch.records():
                    taken.add(pid)
                    yield pid, self._noted(pid, inodes, denied)
                if prefetch.complete:
                    return
            finally:
                prefetch.close()
        for pid in self._pids_in_order(owners_first, netns):
            if pid not in taken:
                yield pid, self._socket_inodes(pid)

    def _pids_in_order(self, owners_first: set[int], netns: set[int] | None) -> Iterator[int]:
        """Known owners; then the processes in `netns`, then the rest."""
        yield from owners_first
        for part in scan_order(list(self._all_pids()), owners_first, netns, self.proc):
            yield from part

    def _all_pids(self) -> Iterable[int]:
        return all_pids(self.proc)

    def _socket_inodes(self, pid: int) -> Sequence[int]:
        return self._noted(pid, *pid_links(self.proc, pid))

    def _noted(self, pid: int, inodes: Sequence[int], denied: bool) -> Sequence[int]:
        """`inodes`, having counted the read and noted whether pid's fds were denied."""
        self.scans += 1
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


def create_time_of(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except GONE:
        return None
