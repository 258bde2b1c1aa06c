"""The first process scan read by a forked child (collectors.procscan) against the
in-process scan, over real sockets held by real processes in a namespace of the test's
own; the child's death with its parent; the fallbacks when the fork fails or the child
stops short."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import termios
import time
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from conftest import AS_NOBODY, Readable

from bufmon.monitor import Monitor
from bufmon.scenarios import Netns
from collectors.model import Sock
from collectors.netns import NamespaceSet
from collectors.procs import NOT_ROOT_NOTICE, ProcessIndex
from collectors.procscan import PAUSED, ForkedScan, all_pids, scan_order

pytestmark = pytest.mark.root  # namespaces, other processes' fds, other users

ROOT = Path(__file__).resolve().parents[1]

# A listener and `argv[1]` connections to it; then a forked child shares every one of
# them (two owners per inode: the scan's order decides which is shown).
HOLDER = """
import os, socket, sys, time
server = socket.create_server(("127.0.0.1", 0))
pairs = []
for _ in range(int(sys.argv[1])):
    client = socket.create_connection(server.getsockname())
    pairs.append((client, server.accept()[0]))
parent = os.getpid()
if os.fork() == 0:
    while os.getppid() == parent:  # ends with the holder
        time.sleep(0.05)
    os._exit(0)
print("ready", flush=True)
time.sleep(120)
"""

# Starts a ForkedScan with a one-page pipe and never reads it, holding enough sockets
# that the child's records cannot fit: the child stays blocked on its write.
ABANDONING_PARENT = """
import resource, socket, time
from collectors.procscan import ForkedScan
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
held = [socket.socket() for _ in range(1000)]
scan = ForkedScan.start("/proc", None, pipe_bytes=4096)
print(scan.pid, flush=True)
time.sleep(120)
"""

# As a user that may start no process: the fork fails and the index reads in-process.
NO_FORK = """
import json, os, resource, socket
from collectors.procs import NOT_ROOT_NOTICE, ProcessIndex
from collectors.procscan import PAUSED, ForkedScan, all_pids, scan_order
from factories import make_sock
own = socket.create_server(("127.0.0.1", 0))
resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
try:
    os.fork()
    fork_failed = False
except OSError:
    fork_failed = True
index = ProcessIndex()
started = index.prefetch()
socks = [make_sock(inode=os.fstat(own.fileno()).st_ino)]
index.attribute(socks)
process = socks[0].process
print(json.dumps({"fork_failed": fork_failed, "started": started, "pid": os.getpid(),
                  "owner": process.pid if process else None, "notice": index.notice}))
"""


@pytest.fixture(scope="module")
def held() -> Iterator[Netns]:
    """A namespace of the test's own with three holders (six processes) of 40 sockets."""
    ns = Netns("procscan").open()
    holders = []
    try:
        for _ in range(3):
            holder = subprocess.Popen(
                ns.command(sys.executable, "-c", HOLDER, "20"), stdout=subprocess.PIPE, text=True
            )
            holders.append(holder)
            assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        settle(ns, len(holders) * 2)
        yield ns
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
        ns.close()


def settle(ns: Netns, processes: int) -> None:
    """Wait until the namespace holds just its holders (the commands that set it up
    have ended): the two scans list the processes at different times."""
    nsset = NamespaceSet(ns.name)
    chosen = nsset.chosen()
    nsset.close()
    deadline = time.monotonic() + 5
    while len(scan_order(all_pids("/proc"), set(), chosen, "/proc")[0]) != processes:
        assert time.monotonic() < deadline, "the namespace's processes did not settle"
        time.sleep(0.05)


def owners(socks: list[Sock]) -> dict[int, tuple[int, str] | None]:
    return {
        s.inode: None if s.process is None else (s.process.pid, s.process.comm)
        for s in socks
        if s.inode
    }


class Visits(ProcessIndex):
    """Records the pids whose descriptors a scan takes, in order, wherever read."""

    def __init__(self) -> None:
        super().__init__()
        self.visited: list[int] = []

    def _noted(self, pid: int, inodes: Sequence[int], denied: bool) -> Sequence[int]:
        self.visited.append(pid)
        return super()._noted(pid, inodes, denied)


def attributed(
    ns: Netns, prefetch: bool
) -> tuple[dict[int, tuple[int, str] | None], list[int], str | None]:
    nsset = NamespaceSet(ns.name)
    try:
        index = Visits()
        if prefetch:
            assert index.prefetch(nsset.chosen())
        socks = nsset.dump()
        index.attribute(socks, nsset.chosen())
    finally:
        nsset.close()
    return owners(socks), index.visited, index.notice


def test_forked_scan_finds_the_same_owners_as_the_in_process_scan(held: Netns) -> None:
    plain, plain_visits, plain_notice = attributed(held, prefetch=False)
    forked, forked_visits, forked_notice = attributed(held, prefetch=True)
    assert len(plain) == 3 * (1 + 2 * 20)
    assert all(owner is not None for owner in plain.values())
    assert len({owner for owner in plain.values()}) == 3  # the holders, not their children
    assert forked == plain
    assert forked_visits == plain_visits  # the same processes read, in the same order
    assert forked_notice == plain_notice


def test_a_snapshot_refresh_with_a_prefetch_reaps_its_child(held: Netns) -> None:
    monitor = Monitor(held.name)
    try:
        monitor.prefetch_processes()
        scan = monitor.procs._prefetch
        assert scan is not None
        snap = monitor.refresh(single_sample=True)
    finally:
        monitor.close()
    assert all(s.process is not None for s in snap.sockets if s.inode)
    with pytest.raises(ChildProcessError):  # reaped: no zombie left behind
        os.waitpid(scan.pid, os.WNOHANG)


def test_a_child_stopped_short_leaves_the_rest_to_the_parent(held: Netns) -> None:
    plain, _, _ = attributed(held, prefetch=False)
    nsset = NamespaceSet(held.name)
    try:
        index = ProcessIndex()
        assert index.prefetch(nsset.chosen())
        assert index._prefetch is not None
        os.kill(index._prefetch.pid, signal.SIGKILL)  # dies at some point of its walk
        socks = nsset.dump()
        index.attribute(socks, nsset.chosen())
    finally:
        nsset.close()
    assert owners(socks) == plain


def test_the_child_waits_before_reading_other_namespaces(held: Netns) -> None:
    nsset = NamespaceSet(held.name)
    chosen = nsset.chosen()
    nsset.close()
    inside, outside = scan_order(all_pids("/proc"), set(), chosen, "/proc")
    assert len(inside) >= 6 and os.getpid() in outside
    scan = ForkedScan.start("/proc", chosen)
    assert scan is not None
    try:
        records = scan.records()
        first = [next(records)[0] for _ in inside]
        assert set(first) <= set(inside)
        time.sleep(0.3)  # a child that went on would have written records by now
        waiting = array("i", [0])
        fcntl.ioctl(scan._pipe.fileno(), termios.FIONREAD, waiting)
        assert waiting[0] <= len(PAUSED)  # at most the pause, not the other processes'
        rest = [pid for pid, _, _ in records]  # asks the child to go on
        assert os.getpid() in rest and scan.complete
    finally:
        scan.close()


def state_of(pid: int) -> str | None:
    """The process's state letter (Z: a zombie), None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return None
    return status.split("State:")[1].split()[0]


def test_the_child_dies_with_its_parent() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen(
        [sys.executable, "-c", ABANDONING_PARENT], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        time.sleep(0.3)
        assert state_of(child) not in (None, "Z")  # still walking: blocked on the full pipe
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5
        while state_of(child) not in (None, "Z") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert state_of(child) in (None, "Z")
    finally:
        parent.kill()
        parent.wait()


def test_a_failed_fork_falls_back_to_the_in_process_scan(readable: Readable) -> None:
    report = readable.run_json(AS_NOBODY, NO_FORK)
    assert report["fork_failed"]  # the limit really stops a fork
    assert report["started"] is False
    assert report["owner"] == report["pid"]
    assert report["notice"] == NOT_ROOT_NOTICE
