"""ProcessIndex against real sockets of this process and of child processes."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import AS_NOBODY, Readable
from factories import make_sock

import collectors.checkpoint as checkpoints
from collectors.model import Sock
from collectors.procs import NOT_ROOT_NOTICE, ProcessIndex, unreadable_notice

pytestmark = pytest.mark.root  # reads other processes' fds, switches users

# Names itself, then opens one listener per line read and prints its port.
CHILD_SCRIPT = """
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, b"bufmon-kid", 0, 0, 0)  # PR_SET_NAME
listeners = []
for _ in sys.stdin:
    listeners.append(socket.create_server(("127.0.0.1", 0)))
    print(listeners[-1].getsockname()[1], flush=True)
"""

# Run under setpriv: attributes its own socket and a foreign one (inode in argv).
RESTRICTED_SCRIPT = """
import ctypes, json, os, socket, sys
from collectors.procs import ProcessIndex
from factories import make_sock
ctypes.CDLL(None).prctl(15, b"bufmon-restrict", 0, 0, 0)  # PR_SET_NAME
own = socket.create_server(("127.0.0.1", 0))
socks = [make_sock(inode=os.fstat(own.fileno()).st_ino), make_sock(inode=int(sys.argv[1]))]
index = ProcessIndex()
index.attribute(socks)
print(json.dumps({
    "notice": index.notice,
    "own": socks[0].process.to_json() if socks[0].process else None,
    "foreign": socks[1].process.to_json() if socks[1].process else None,
    "pid": os.getpid(),
}))
"""


def sock_of(inode: int) -> Sock:
    return make_sock(inode=inode, cookie=inode)


def inode_of(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


def listener_inode(port: int) -> int:
    """The inode of a 127.0.0.1 listener as /proc/net/tcp reports it."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
            return int(fields[9])
    raise AssertionError(f"no listener on port {port}")


def closed_socket_inode() -> int:
    """An inode no process owns any more."""
    with socket.socket() as sock:
        return inode_of(sock)


class Child:
    def __init__(self) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-c", CHILD_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = self.popen.pid

    def open_listener(self) -> Sock:
        assert self.popen.stdin is not None and self.popen.stdout is not None
        self.popen.stdin.write("open\n")
        self.popen.stdin.flush()
        return sock_of(listener_inode(int(self.popen.stdout.readline())))

    def stop(self) -> None:
        self.popen.kill()
        self.popen.wait()


@pytest.fixture
def child() -> Iterator[Child]:
    started = Child()
    yield started
    started.stop()


def test_attributes_own_and_child_sockets(child: Child) -> None:
    child_sock = child.open_listener()
    with socket.socket() as own:
        socks = [child_sock, sock_of(inode_of(own)), sock_of(0)]
        index = ProcessIndex()
        index.attribute(socks)
    assert socks[0].process is not None
    assert socks[0].process.pid == child.pid
    assert socks[0].process.comm == "bufmon-kid"
    assert socks[0].process.user == pwd.getpwuid(os.geteuid()).pw_name
    assert socks[1].process is not None and socks[1].process.pid == os.getpid()
    assert socks[2].process is None  # inode 0: TIME-WAIT / SYN-RECV
    assert_notice_counts_only_unreadable(index)


def test_attribution_steps_through_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each pass over the sockets calls the checkpoint between steps (a key's View may
    hold a refresh back there), and every socket is still attributed."""
    monkeypatch.setattr(checkpoints, "STEP", 7)
    owned = [socket.socket() for _ in range(30)]
    calls = 0

    def checkpoint() -> None:
        nonlocal calls
        calls += 1

    try:
        socks = [sock_of(inode_of(s)) for s in owned]
        ProcessIndex().attribute(socks, checkpoint=checkpoint)
    finally:
        for s in owned:
            s.close()
    assert calls == 2 * 4  # 30 sockets in steps of 7: 4 checkpoints a pass, 2 passes
    assert {sock.process.pid if sock.process else None for sock in socks} == {os.getpid()}


def test_cache_is_reused_and_owners_are_scanned_first(child: Child) -> None:
    socks = [child.open_listener()]
    index = ProcessIndex()
    index.attribute(socks)
    cold = index.scans
    assert cold >= 1
    socks[0].process = None
    index.attribute(socks)
    assert index.scans == cold  # nothing unknown: no /proc scan
    assert socks[0].process is not None and socks[0].process.pid == child.pid
    socks.append(child.open_listener())
    index.attribute(socks)
    assert index.scans == cold + 1  # found in the known owner, no other pid read
    assert socks[1].process is not None and socks[1].process.pid == child.pid


def test_lookup_table_follows_the_order_of_the_sockets(child: Child) -> None:
    """After a change the inode -> process table is rebuilt in the order the sockets
    came in (a dump's, which the next dump repeats), so the next refresh's lookups walk
    it in order; not in the order a scan found the owners (another process's first)."""
    owned = [socket.socket() for _ in range(3)]
    try:
        kid = [child.open_listener() for _ in range(3)]
        mine = [sock_of(inode_of(s)) for s in owned]
        socks = [kid[2], mine[1], kid[0], mine[2], sock_of(0), mine[0], kid[1]]
        index = ProcessIndex()
        index.attribute(socks)
    finally:
        for s in owned:
            s.close()
    assert list(index._process_of) == [s.inode for s in socks if s.inode]
    assert [s.process.pid if s.process else None for s in socks] == [
        child.pid,
        os.getpid(),
        child.pid,
        os.getpid(),
        None,
        os.getpid(),
        child.pid,
    ]


def test_unresolved_inodes_are_retried_only_after_the_interval(child: Child) -> None:
    socks = [sock_of(closed_socket_inode())]
    index = ProcessIndex(full_scan_interval=60.0)
    index.attribute(socks)
    full_pass = index.scans
    assert full_pass >= 2  # every visible pid, at least ours and the child's
    index.attribute(socks)
    assert index.scans == full_pass
    socks.append(child.open_listener())  # a new inode is looked for at once
    index.attribute(socks)
    assert socks[1].process is not None and socks[1].process.pid == child.pid
    after_new = index.scans
    index.attribute(socks)
    assert index.scans == after_new
    index.full_scan_interval = 0.0  # the interval has passed
    index.attribute(socks)
    assert index.scans >= after_new + 2  # a full pass again: the owner, then the others
    assert socks[0].process is None


def test_exited_process_is_dropped(child: Child) -> None:
    socks = [child.open_listener()]
    index = ProcessIndex()
    index.attribute(socks)
    assert socks[0].process is not None
    child.stop()
    index.attribute(socks)  # a stale dump still lists the inode
    assert socks[0].process is None
    assert child.pid not in index._processes
    assert socks[0].inode not in index._owner
    index.attribute([])
    assert not index._owner and not index._processes


def test_process_vanishing_mid_scan_is_skipped(child: Child) -> None:
    socks = [child.open_listener()]
    gone = subprocess.Popen(["true"])
    gone.wait()

    class DyingIndex(ProcessIndex):
        def _all_pids(self) -> Iterable[int]:
            return [gone.pid, *super()._all_pids()]  # listed, then gone before its fds

        def _socket_inodes(self, pid: int) -> list[int]:
            inodes = super()._socket_inodes(pid)
            if pid == child.pid:
                child.stop()  # dies between reading its fds and reading its facts
            return inodes

    index = DyingIndex()
    index.attribute(socks)
    assert socks[0].process is None
    assert_notice_counts_only_unreadable(index)  # a vanished process is not "unreadable"


def test_full_passes_while_processes_come_and_go() -> None:
    churn = subprocess.Popen(["sh", "-c", "while :; do /bin/true; done"])
    try:
        index = ProcessIndex(full_scan_interval=0)
        socks = [sock_of(closed_socket_inode())]
        for _ in range(30):
            index.attribute(socks)
        assert index.scans >= 30 * 2
    finally:
        churn.kill()
        churn.wait()


def unreadable_pids() -> set[int]:
    """Processes whose fd links we may not read (as root: none on most hosts; a
    sandbox's own pid 1 may be one)."""
    denied = set()
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                os.readlink(f"/proc/{pid}/fd/{fd}")
        except PermissionError:
            denied.add(pid)
        except OSError:
            pass
    return denied


def assert_notice_counts_only_unreadable(index: ProcessIndex) -> None:
    """No notice, or one counting at most the processes that really are unreadable."""
    possible = {None, *(unreadable_notice(n) for n in range(1, len(unreadable_pids()) + 1))}
    assert index.notice in possible


def run_restricted(
    readable: Readable, setpriv_options: list[str], foreign_inode: int
) -> dict[str, Any]:
    """Run RESTRICTED_SCRIPT under setpriv and return its report."""
    report: dict[str, Any] = readable.run_json(
        setpriv_options, RESTRICTED_SCRIPT, str(foreign_inode)
    )
    return report


def test_not_root_sees_own_sockets_and_says_so(readable: Readable) -> None:
    with socket.create_server(("127.0.0.1", 0)) as root_owned:
        report = run_restricted(readable, AS_NOBODY, inode_of(root_owned))
    assert report["notice"] == NOT_ROOT_NOTICE
    assert report["own"] == {"pid": report["pid"], "comm": "bufmon-restrict", "user": "nobody"}
    assert report["foreign"] is None


def test_root_without_capabilities_reports_unreadable_processes(readable: Readable) -> None:
    # uid 0 without CAP_SYS_PTRACE may not read the fds of another user's process.
    other_user = subprocess.Popen(["setpriv", *AS_NOBODY, "sleep", "60"])
    try:
        while os.stat(f"/proc/{other_user.pid}").st_uid != pwd.getpwnam("nobody").pw_uid:
            time.sleep(0.01)  # setpriv has not switched user yet
        no_caps = ["--bounding-set=-all", "--inh-caps=-all"]
        report = run_restricted(readable, no_caps, closed_socket_inode())
    finally:
        other_user.kill()
        other_user.wait()
    # at least the other user's process; on a shared host also everyone else's
    pids = len([p for p in os.listdir("/proc") if p.isdigit()])
    assert report["notice"] in {unreadable_notice(n) for n in range(1, pids + 1)}
    assert report["own"] is not None and report["own"]["user"] == "root"
