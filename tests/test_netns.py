"""Every network namespace in one view: named, unnamed (held by a process), host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bufmon.scenarios import Netns, StalledReader
from collectors.cgroups import label_from_cgroup
from collectors.netns import Discovery, NamespaceSet, NetnsError
from collectors.procs import ProcessIndex

pytestmark = pytest.mark.root

LISTENER = (
    "import socket, sys, time\n"
    "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(4)\n"
    "print('ready', flush=True); time.sleep(120)\n"
)


def _start(cmd: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
def two_namespaces() -> Iterator[dict[str, object]]:
    """A named namespace with a listener, and an unnamed one held only by a process."""
    ns = Netns("nstest").open()
    name = ns.name
    named = _start(ns.command(sys.executable, "-c", LISTENER, "7001"))
    unnamed = _start(
        [
            "unshare",
            "--net",
            "sh",
            "-c",
            f'ip link set lo up && exec {sys.executable} -c "$0" 7002',
            LISTENER,
        ]
    )
    inode = os.stat(f"/proc/{unnamed.pid}/ns/net").st_ino
    try:
        yield {"name": name, "named": named, "unnamed": unnamed, "inode": inode}
    finally:
        for proc in (named, unnamed):
            proc.kill()
            proc.wait()
        ns.close()


def _listeners(socks: list, port: int) -> list:
    return [s for s in socks if s.local_port == port and s.state == "LISTEN"]


def test_all_namespaces_listed_with_labels(two_namespaces: dict) -> None:
    nsset = NamespaceSet("all")
    try:
        socks = nsset.dump()
        ProcessIndex().attribute(socks)
    finally:
        nsset.close()
    named = _listeners(socks, 7001)
    unnamed = _listeners(socks, 7002)
    assert [s.netns for s in named] == [two_namespaces["name"]]
    assert [s.netns for s in unnamed] == [f"net:[{two_namespaces['inode']}]"]
    # Process attribution works across namespaces (socket inodes are global).
    assert named[0].process is not None and named[0].process.pid == two_namespaces["named"].pid
    assert unnamed[0].process is not None
    assert unnamed[0].process.pid == two_namespaces["unnamed"].pid
    labels = {ns.label for ns in nsset.namespaces.values()}
    assert {"host", two_namespaces["name"], f"net:[{two_namespaces['inode']}]"} <= labels
    holder = next(
        ns.holder for ns in nsset.namespaces.values() if ns.inode == two_namespaces["inode"]
    )
    assert holder.endswith(f"/{two_namespaces['unnamed'].pid}")


def test_select_by_name_and_pid(two_namespaces: dict) -> None:
    by_name = NamespaceSet(two_namespaces["name"])
    by_pid = NamespaceSet(str(two_namespaces["unnamed"].pid))
    try:
        assert {s.local_port for s in by_name.dump() if s.state == "LISTEN"} == {7001}
        assert {s.local_port for s in by_pid.dump() if s.state == "LISTEN"} == {7002}
    finally:
        by_name.close()
        by_pid.close()


def test_current_excludes_other_namespaces(two_namespaces: dict) -> None:
    nsset = NamespaceSet("current")
    try:
        socks = nsset.dump()
    finally:
        nsset.close()
    assert not _listeners(socks, 7001) and not _listeners(socks, 7002)
    assert {s.netns for s in socks} <= {"host"}


def test_unknown_namespace_is_one_clear_error() -> None:
    with pytest.raises(NetnsError, match="no such network namespace: namespace 'nope-x'"):
        NamespaceSet("nope-x")


def test_namespaces_appear_and_vanish_between_refreshes() -> None:
    ns = Netns("nsgone")
    name = ns.name
    nsset = NamespaceSet("all")
    try:
        before = nsset.dump()
        ns.open()
        proc = _start(ns.command(sys.executable, "-c", LISTENER, "7003"))
        appeared = nsset.dump()
        assert [s.netns for s in _listeners(appeared, 7003)] == [name]
        proc.kill()
        proc.wait()
        ns.close()
        time.sleep(0.05)
        after = nsset.dump()
        assert not _listeners(after, 7003)
        assert name not in {ns.label for ns in nsset.namespaces.values()}
        assert len(nsset._diags) == len(nsset.namespaces)  # vanished sockets were closed
        assert not _listeners(before, 7003)
    finally:
        nsset.close()
        ns.close()


def _in_own_pid_namespace(scenario: str, own_proc: bool = True) -> dict:
    """What tests/pidns_discovery.py SCENARIO saw, run where /proc has only its processes
    (or, own_proc False, where /proc is still the host's)."""
    tests = Path(__file__).resolve().parent
    script, env = tests / "pidns_discovery.py", {**os.environ, "PYTHONPATH": str(tests.parent)}
    proc = ["--mount", "--mount-proc", "--propagation", "private"] if own_proc else []
    cmd = ["unshare", "--pid", "--fork", *proc, sys.executable, str(script), scenario]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True, env=env)
    return json.loads(done.stdout)


def _found(seen: dict) -> dict[str, str]:
    """The expected namespaces as the walk found them: inode -> holder's pid."""
    return {i: h.rpartition("/")[2] for i, h in seen["found"].items() if i in seen["expected"]}


def _pids(expected: dict[str, str]) -> dict[str, str]:
    return {i: h.rpartition("/")[2] for i, h in expected.items()}


def test_discovery_finds_new_processes_without_listing_proc() -> None:
    seen = _in_own_pid_namespace("new_processes")
    assert _found(seen) == _pids(seen["expected"])
    assert seen["listings"] == 0  # the pids since the last walk were tried, /proc not listed
    # the new pids, plus each namespace's holder checked: not every process's link
    assert seen["links_read"] <= len(seen["expected"]) + len(seen["found"]) + 2
    assert not set(seen["expected"]) & set(seen["after_end"])  # their processes ended: gone


def test_discovery_finds_a_process_that_moves_after_it_started() -> None:
    seen = _in_own_pid_namespace("moves_later")
    assert seen["inode"] not in seen["before"]  # still in the host namespace when first read
    assert seen["found"][seen["inode"]].endswith(f"/{seen['pid']}")
    assert seen["listings"] == 0


def test_discovery_finds_a_remembered_process_that_moved_within_recheck() -> None:
    seen = _in_own_pid_namespace("moves_much_later")
    assert seen["found"].endswith(f"/{seen['pid']}")
    # each walk read its share of the links again: found within recheck, never listing /proc
    assert seen["seconds"] < 3.0 and seen["listings"] == 0


def test_discovery_follows_a_namespace_whose_holder_ends() -> None:
    seen = _in_own_pid_namespace("holder_ends")
    first, second = seen["pids"]
    inode = seen["inode"]
    holders = [walk.get(inode, "gone").rpartition("/")[2] for walk in seen["walks"]]
    assert holders == [str(first), str(second), "gone"]
    assert seen["listings"] == 0


def test_discovery_tries_again_a_pid_that_showed_after_the_walk() -> None:
    seen = _in_own_pid_namespace("late_pid")
    assert seen["pids"][0] < seen["last_seen"]  # given out before the first walk's stamp
    assert _found(seen) == _pids(seen["expected"])
    assert seen["listings"] == 0


def test_discovery_finds_a_missed_pid_by_listing_proc_a_share_a_walk() -> None:
    seen = _in_own_pid_namespace("missed_pid")
    assert seen["found"].endswith(f"/{seen['pid']}")
    assert seen["listings"] == 0  # never listed at once
    assert seen["seconds"] < 2 * 2.0 + 1  # the share it was behind, then its turn


def test_discovery_lists_proc_when_pids_jumped_far() -> None:
    seen = _in_own_pid_namespace("pid_gap")
    assert _found(seen) == _pids(seen["expected"])
    assert seen["listings"] == 1


def test_discovery_tries_new_pids_across_the_pid_max_wrap() -> None:
    seen = _in_own_pid_namespace("wrapped")
    assert seen["pids"][0] == seen["pid_max"] - 1 and seen["pids"][1] < seen["pids"][0]
    assert _found(seen) == _pids(seen["expected"])
    assert seen["listings"] == 0


def test_discovery_counts_processes_not_threads() -> None:
    seen = _in_own_pid_namespace("thread_alone")
    assert seen["tid"] != seen["pid"]
    # /proc/TID/ns/net opens, but /proc lists processes: both ways agree, without it
    assert seen["inode"] not in seen["walked"] and seen["inode"] not in seen["listed"]
    assert seen["listings"] == 0


def test_discovery_lists_proc_when_proc_numbers_another_pid_namespace() -> None:
    seen = _in_own_pid_namespace("foreign_proc", own_proc=False)
    assert _found(seen) == _pids(seen["expected"])
    assert seen["listings"] == 1  # /proc/loadavg's last pid is not in /proc's numbering


def test_discovery_rereads_every_link_after_recheck_seconds() -> None:
    discovery = Discovery(os.stat("/proc/self/ns/net").st_ino, recheck=0)
    for _ in range(2):
        before = discovery.links_read
        discovery.walk({})
        assert discovery.links_read - before >= len(discovery._inode_of) - 5  # pids may end


def test_selected_namespace_deleted_mid_run_is_a_notice() -> None:
    ns = Netns("nsdel").open()
    nsset = NamespaceSet(ns.name)
    try:
        nsset.dump()
        ns.close()
        assert nsset.dump() == []
        assert any("is gone" in n for n in nsset.notices)
    finally:
        nsset.close()
        ns.close()


@pytest.mark.parametrize(
    ("cgroup", "label"),
    [
        ("0::/system.slice/docker-" + "a" * 64 + ".scope", "docker:aaaaaaaaaaaa"),
        ("12:pids:/docker/" + "b" * 64, "docker:bbbbbbbbbbbb"),
        (
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
            "1234abcd_5678_90ab_cdef_1234567890ab.slice/cri-containerd-" + "c" * 64 + ".scope",
            "pod:1234abcd-5678-90ab-cdef-1234567890ab",
        ),
        (
            "0::/kubepods/besteffort/pod1234abcd-5678-90ab-cdef-1234567890ab/" + "d" * 64,
            "pod:1234abcd-5678-90ab-cdef-1234567890ab",
        ),
        ("0::/system.slice/cri-containerd-" + "e" * 64 + ".scope", "containerd:eeeeeeeeeeee"),
        ("0::/machine.slice/crio-" + "f" * 64 + ".scope", "crio:ffffffffffff"),
        ("0::/system.slice/nginx.service", "unit:nginx.service"),
        ("0::/user.slice/user-0.slice/session-3.scope", None),
        ("0::/", None),
    ],
)
def test_cgroup_labels(cgroup: str, label: str | None) -> None:
    # Container runtimes cannot run here (no Docker engine): recorded cgroup paths.
    assert label_from_cgroup(cgroup) == label


def test_stalled_reader_inside_a_namespace_is_flagged() -> None:
    from bufmon.monitor import Monitor

    with Netns("nsflag") as ns, StalledReader(ns) as case:
        monitor = Monitor("all")
        try:
            deadline = time.monotonic() + 5.0 + 2 * 1.0 + 2.0  # hold + two refreshes + slack
            flagged: list = []
            while time.monotonic() < deadline and not flagged:
                snap = monitor.refresh()
                flagged = [
                    s
                    for s in snap.sockets
                    if s.netns == ns.name
                    and s.local_port == case.server_port
                    and any(f.kind == "stalled_reader" for f in s.flags)
                ]
                time.sleep(1.0)
        finally:
            monitor.close()
    assert flagged, "stalled reader in a namespace was not flagged"
    assert flagged[0].process is not None and flagged[0].process.pid == os.getpid()


class _Visits(ProcessIndex):
    """Records the pids whose descriptors a scan reads, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.visited: list[int] = []

    def _socket_inodes(self, pid: int) -> list[int]:
        self.visited.append(pid)
        return super()._socket_inodes(pid)


def test_a_scan_reads_the_chosen_namespaces_processes_first() -> None:
    # a process outside the namespace, started first (a lower pid, read first in pid
    # order) and holding sockets, must not be read when the namespace's process owns all
    outside = _start([sys.executable, "-c", LISTENER, "7003"])
    ns = Netns("nsfirst").open()
    inside = _start(ns.command(sys.executable, "-c", LISTENER, "7004"))
    nsset = NamespaceSet(ns.name)
    try:
        socks = nsset.dump()
        in_order, chosen = _Visits(), _Visits()
        in_order.attribute(socks)
        chosen.attribute(socks, nsset.chosen())
    finally:
        nsset.close()
        for proc in (outside, inside):
            proc.kill()
            proc.wait()
        ns.close()
    (listener,) = _listeners(socks, 7004)
    assert listener.process is not None and listener.process.pid == inside.pid
    assert chosen.visited == [inside.pid]  # found there: no other process read
    assert outside.pid in in_order.visited  # pid order reads it on the way
    assert nsset.chosen() == set(nsset.namespaces) and NamespaceSet("all").chosen() is None
