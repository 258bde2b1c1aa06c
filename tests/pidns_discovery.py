"""Namespace discovery seen from a PID namespace of its own (run by tests/test_netns.py).

    PYTHONPATH=. unshare --mount --pid --fork --mount-proc --propagation private \\
        .venv/bin/python tests/pidns_discovery.py SCENARIO

Here /proc holds only the processes this script starts and pids are handed out for
it alone (and can be steered through /proc/sys/kernel/ns_last_pid), so what a walk
reads does not depend on the rest of the host. Each scenario starts processes in
network namespaces of their own between walks of one Discovery and prints what the
walks found as one JSON object; the test judges it. When the script (PID 1 here)
ends, the kernel kills every process it left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from subprocess import PIPE

from collectors.netns import SCAN_MIN, Discovery, Namespace

HOST = os.stat("/proc/self/ns/net").st_ino
LAST_PID = Path("/proc/sys/kernel/ns_last_pid")  # this PID namespace's, writable by root
# a process whose second thread alone moves into a new network namespace
THREAD_ALONE = (
    "import ctypes, os, threading, time\n"
    "def alone():\n"
    "    ctypes.CDLL(None, use_errno=True).unshare(0x40000000)\n"
    "    print(os.stat('/proc/thread-self/ns/net').st_ino, threading.get_native_id(),"
    " flush=True)\n"
    "    time.sleep(600)\n"
    "threading.Thread(target=alone, daemon=True).start()\n"
    "time.sleep(600)\n"
)

# its pid and namespace as /proc numbers them
SAYS_WHERE = (
    "import os, time\n"
    "print(os.readlink('/proc/self'), os.stat('/proc/self/ns/net').st_ino, flush=True)\n"
    "time.sleep(600)\n"
)


def inode_of(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def moved(proc: subprocess.Popen[str]) -> int:
    """The new namespace of `proc`, once `unshare` has put it there."""
    deadline = time.monotonic() + 10
    while (inode := inode_of(proc.pid)) == HOST:
        assert time.monotonic() < deadline, "unshare never moved"
        time.sleep(0.01)
    return inode


def alone(stdin: bool = False) -> subprocess.Popen[str]:
    """A process alone in a new network namespace (pid kept: unshare execs sleep)."""
    pipe = subprocess.PIPE if stdin else None
    if stdin:  # it moves when told, long after it started
        cmd = ["sh", "-c", "read go && exec unshare --net sleep 600"]
    else:
        cmd = ["unshare", "--net", "sleep", "600"]
    return subprocess.Popen(cmd, stdin=pipe, text=True)


def holders(found: dict[int, Namespace]) -> dict[str, str]:
    return {str(inode): ns.holder for inode, ns in found.items()}


def last_pid() -> int:
    return int(LAST_PID.read_text())


def set_last_pid(pid: int) -> None:
    LAST_PID.write_text(str(pid))


def go(proc: subprocess.Popen[str]) -> int:
    """Tell an `alone(stdin=True)` process to move; its namespace once it has."""
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return moved(proc)


def end(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        proc.kill()
        proc.wait()


def walk_once(discovery: Discovery, procs: list[subprocess.Popen[str]]) -> dict[str, object]:
    """One walk once `procs` are each in a namespace of their own: what it found."""
    expected = {str(moved(p)): f"unshare/{p.pid}" for p in procs}
    listings, links = discovery.listings, discovery.links_read
    found = holders(discovery.walk({}))
    return {
        "pids": [p.pid for p in procs],
        "expected": expected,
        "found": found,
        "listings": discovery.listings - listings,
        "links_read": discovery.links_read - links,
    }


def walk_until(discovery: Discovery, proc: subprocess.Popen[str], inode: int) -> dict[str, object]:
    """Walks 0.1 s apart until one finds `inode` (for 8 s at most): what that took."""
    start, listings = time.monotonic(), discovery.listings
    while str(inode) not in (found := holders(discovery.walk({}))):
        if time.monotonic() > start + 8:
            break
        time.sleep(0.1)
    return {
        "found": found.get(str(inode), ""),
        "pid": proc.pid,
        "seconds": time.monotonic() - start,
        "listings": discovery.listings - listings,
    }


def new_processes(discovery: Discovery) -> dict[str, object]:
    """Started between two walks: found, by their own pids, without a listing."""
    discovery.walk({})
    procs = [alone() for _ in range(3)]
    out = walk_once(discovery, procs)
    end(procs)
    return out | {"after_end": holders(discovery.walk({}))}


def moves_later(discovery: Discovery) -> dict[str, object]:
    """A process read while still in the host namespace, moved before the next walk."""
    discovery.walk({})
    proc = alone(stdin=True)
    before = holders(discovery.walk({}))
    inode = go(proc)
    listings = discovery.listings
    found = holders(discovery.walk({}))
    return {"inode": str(inode), "before": before, "found": found, "pid": proc.pid} | {
        "listings": discovery.listings - listings
    }


def moves_much_later(discovery: Discovery) -> dict[str, object]:
    """A remembered process (no longer young) moves: a share of walks finds it."""
    discovery.recheck = 3.0  # each link read again within 3 s
    for _ in range(10):  # more links to go through
        subprocess.Popen(["sleep", "600"])
    discovery.walk({})
    proc = alone(stdin=True)
    for _ in range(2):  # read as new, then once more as young: now it is remembered
        discovery.walk({})
    return walk_until(discovery, proc, go(proc))


def holder_ends(discovery: Discovery) -> dict[str, object]:
    """The holder ends while a later process stays in its namespace; then that one ends."""
    first = alone()
    inode = moved(first)
    second = subprocess.Popen(
        ["nsenter", f"--net=/proc/{first.pid}/ns/net", "sleep", "600"], text=True
    )
    while inode_of(second.pid) != inode:
        time.sleep(0.01)
    walks = [holders(discovery.walk({}))]  # the first walk lists
    listings = discovery.listings
    for proc in (first, second):
        end([proc])
        walks.append(holders(discovery.walk({})))
    return {
        "inode": str(inode),
        "pids": [first.pid, second.pid],
        "walks": walks,
        "listings": discovery.listings - listings,
    }


def late_pid(discovery: Discovery) -> dict[str, object]:
    """A pid given out before a walk whose process shows in /proc only after it (as
    while a fork is under way): the next walk still tries it."""
    last = last_pid()
    set_last_pid(last + 5)  # pids up to last + 5 given out; none shows yet
    discovery.walk({})
    set_last_pid(last + 1)
    proc = alone()  # last + 2: the process that showed late
    moved(proc)
    set_last_pid(last + 5)  # back where the walk saw it: no new pid since
    return walk_once(discovery, [proc]) | {"last_seen": last + 5}


def missed_pid(discovery: Discovery) -> dict[str, object]:
    """A pid the tries missed (it showed long after the walk that tried it): the walks'
    shares of the /proc listing find it within a turn or two of `recheck` seconds."""
    discovery.recheck = 2.0
    last = last_pid()
    set_last_pid(last + 100)  # pids given out; far more than are tried again
    discovery.walk({})
    set_last_pid(last + 1)
    proc = alone()  # last + 2
    inode = moved(proc)
    set_last_pid(last + 100)
    return walk_until(discovery, proc, inode)


def pid_gap(discovery: Discovery) -> dict[str, object]:
    """Pids jumped further than a listing would go through: /proc is listed."""
    discovery.walk({})
    set_last_pid(last_pid() + 2 * SCAN_MIN)
    return walk_once(discovery, [alone()])


def wrapped(discovery: Discovery) -> dict[str, object]:
    """Pids wrap past pid_max between two walks: the new ones are still tried."""
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    set_last_pid(pid_max - 2)
    discovery.walk({})  # the pids jumped: this one lists
    procs = [alone() for _ in range(3)]  # pid_max - 1, then low pids again
    return walk_once(discovery, procs) | {"pid_max": pid_max}


def thread_alone(discovery: Discovery) -> dict[str, object]:
    """A thread alone in a namespace is no process: neither a walk nor a listing has it."""
    discovery.walk({})
    listings = discovery.listings
    proc = subprocess.Popen([sys.executable, "-c", THREAD_ALONE], stdout=PIPE, text=True)
    assert proc.stdout is not None
    inode, tid = proc.stdout.readline().split()
    return {
        "inode": inode,
        "tid": int(tid),
        "pid": proc.pid,
        "walked": holders(discovery.walk({})),
        "listings": discovery.listings - listings,
        "listed": holders(Discovery(HOST, recheck=0).walk({})),
    }


def foreign_proc(discovery: Discovery) -> dict[str, object]:
    """/proc numbers another PID namespace's pids (not remounted): /proc is listed."""
    discovery.walk({})
    listings = discovery.listings
    cmd = ["unshare", "--net", sys.executable, "-c", SAYS_WHERE]
    proc = subprocess.Popen(cmd, stdout=PIPE, text=True)
    assert proc.stdout is not None
    pid, inode = proc.stdout.readline().split()
    return {
        "expected": {inode: f"/{pid}"},
        "found": holders(discovery.walk({})),
        "listings": discovery.listings - listings,
    }


SCENARIOS: dict[str, Callable[[Discovery], dict[str, object]]] = {
    f.__name__: f
    for f in (
        new_processes,
        moves_later,
        moves_much_later,
        holder_ends,
        late_pid,
        missed_pid,
        pid_gap,
        wrapped,
        thread_alone,
        foreign_proc,
    )
}


def main() -> None:
    assert os.getpid() == 1, "run under unshare --pid --fork"
    print(json.dumps(SCENARIOS[sys.argv[1]](Discovery(HOST, recheck=3600))))


if __name__ == "__main__":
    main()
