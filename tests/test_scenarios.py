"""The trouble makers build real kernel state (checked with ss) and leave nothing behind."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from makers import (
    BulkOverTbf,
    HealthyReader,
    PortExhaustion,
    RcvbufPrune,
    TbfLink,
    ZeroWindowSender,
)

from bufmon.diagnosis import Config
from bufmon.scenarios import (
    AcceptQueueFull,
    BulkTransfer,
    IdleKeepalive,
    Netns,
    SlowReader,
    StalledReader,
    UdpDrops,
    remove_stale_namespaces,
)

pytestmark = pytest.mark.root

FAMILIES = ["inet", "inet6"]


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


@pytest.fixture
def ns() -> Iterator[Netns]:
    with Netns("test") as netns:
        yield netns
    assert netns.name not in namespaces()


def ss(ns: Netns, opts: str, *filters: str) -> list[str]:
    """ss records (socket line plus its detail lines joined) matching the filter."""
    out = ns.output("ss", "-H", opts, *filters)
    records: list[str] = []
    for line in out.splitlines():
        if line[:1].isspace() and records:
            records[-1] += " " + line.strip()
        elif line.strip():
            records.append(line)
    return records


def one(ns: Netns, opts: str, port: int, *state: str) -> str:
    records = ss(ns, opts, *state, f"sport = :{port}")
    assert len(records) == 1, records
    return records[0]


def field(record: str, pattern: str) -> int:
    match = re.search(pattern, record)
    assert match, f"{pattern} not in {record}"
    return int(match[1])


def wait_for(ns: Netns, opts: str, port: int, text: str, timeout: float = 3.0) -> str:
    """The established socket on `port` once its record shows `text`."""
    deadline = time.monotonic() + timeout
    while True:
        record = one(ns, opts, port, "state", "established")
        if text in record or time.monotonic() > deadline:
            return record
        time.sleep(0.05)


def queues(record: str) -> tuple[int, int]:
    """(Recv-Q, Send-Q) of a record (ss -H with a state filter drops the state column)."""
    cols = record.split()
    return int(cols[0]), int(cols[1])


def test_netns_runs_inside_and_cleans_up_on_error() -> None:
    with pytest.raises(ZeroDivisionError), Netns("test") as netns:
        assert re.fullmatch(rf"bufmon-test-{os.getpid()}-\d+", netns.name)
        assert netns.name in namespaces()
        inode = netns.run(os.stat, "/proc/thread-self/ns/net").st_ino
        assert inode != os.stat("/proc/self/ns/net").st_ino
        netns.run(lambda: 1 / 0)
    assert netns.name not in namespaces()
    netns.close()  # idempotent


def test_current_namespace_mode_runs_in_place() -> None:
    current = Netns.current()
    with current, UdpDrops(current) as udp:
        assert current.run(os.getpid) == os.getpid()
        record = one(current, "-uanm", udp.port)
        assert field(record, r",d(\d+)\)") >= 150
        with pytest.raises(RuntimeError):
            current.sysctl("net.ipv4.tcp_tw_reuse", 0)
    assert udp.receiver.fileno() == -1


@pytest.mark.parametrize("family", FAMILIES)
def test_stalled_reader_fills_server_and_client_persists(ns: Netns, family: str) -> None:
    with StalledReader(ns, family) as case:
        server = one(ns, "-tanmio", case.server_port, "state", "established")
        assert queues(server)[0] > 100000
        client = wait_for(ns, "-tanmio", case.client_port, "timer:(persist")
        assert "timer:(persist" in client
        assert queues(client)[1] > 0


def test_zero_window_sender_is_rwnd_limited(ns: Netns) -> None:
    with ZeroWindowSender(ns) as case:
        client = wait_for(ns, "-tanmio", case.client_port, "timer:(persist")
        assert "timer:(persist" in client
        # The peer's window is the limit when it holds most of the busy time: the share
        # send_queue_full's peer_share names the peer at (0.8), not an exact 100%.
        share = re.search(r"rwnd_limited:\d+ms\(([\d.]+)%\)", client)
        assert share is not None, client
        assert float(share.group(1)) >= Config().send_queue_full.peer_share * 100, client


def test_slow_reader_stays_half_full_while_reading(ns: Netns) -> None:
    with SlowReader(ns) as case:
        time.sleep(0.5)
        samples = []
        for _ in range(5):
            record = one(ns, "-tanmi", case.server_port, "state", "established")
            recv_q = queues(record)[0]
            rb = field(record, r"rb(\d+)")
            samples.append((recv_q, rb, field(record, r"bytes_received:(\d+)") - recv_q))
            time.sleep(0.3)
    assert all(q >= 65536 and q >= rb / 2 for q, rb, _ in samples), samples
    assert samples[-1][2] > samples[0][2], "the reader made no progress"


@pytest.mark.parametrize("family", FAMILIES)
def test_accept_queue_full(ns: Netns, family: str) -> None:
    with AcceptQueueFull(ns, family) as case:
        time.sleep(0.2)
        listener = one(ns, "-tan", case.listen_port, "state", "listening")
        assert queues(listener) == (3, 2)
        assert len(ss(ns, "-tan", "state", "syn-sent")) == 5


@pytest.mark.parametrize("family", FAMILIES)
def test_udp_drops(ns: Netns, family: str) -> None:
    with UdpDrops(ns, family) as case:
        assert field(one(ns, "-uanm", case.port), r",d(\d+)\)") >= 150


def test_udp_drops_keep_rising_when_asked(ns: Netns) -> None:
    with UdpDrops(ns, keep_sending=True) as case:
        first = field(one(ns, "-uanm", case.port), r",d(\d+)\)")
        time.sleep(1.2)
        assert field(one(ns, "-uanm", case.port), r",d(\d+)\)") > first


def tcp_ext(ns: Netns) -> dict[str, int]:
    lines = [line.split() for line in ns.output("cat", "/proc/net/netstat").splitlines()]
    names, values = (row for row in lines if row[0] == "TcpExt:")
    return dict(zip(names[1:], map(int, values[1:]), strict=True))


def test_rcvbuf_prune_drops_data(ns: Netns) -> None:
    with RcvbufPrune(ns) as case:
        server = one(ns, "-tanm", case.server_port, "state", "established")
        assert field(server, r"\(r(\d+)") > field(server, r"rb(\d+)")
        counters = tcp_ext(ns)
    assert counters["PruneCalled"] > 0
    assert counters["RcvPruned"] + counters["TCPRcvQDrop"] > 0


def test_port_exhaustion_after_ten_connects(ns: Netns) -> None:
    before = ns.output("cat", "/proc/sys/net/ipv4/ip_local_port_range")
    with PortExhaustion(ns) as case:
        assert case.exhausted
        assert case.connected == 10
        assert len(ss(ns, "-tan", "state", "time-wait")) == 10
    assert ns.output("cat", "/proc/sys/net/ipv4/ip_local_port_range") == before


def test_healthy_reader_keeps_up(ns: Netns) -> None:
    with HealthyReader(ns) as case:
        time.sleep(0.3)
        for _ in range(5):
            record = one(ns, "-tan", case.server_port, "state", "established")
            assert queues(record)[0] <= 2 * HealthyReader.CHUNK_SIZE
            time.sleep(0.1)
        assert case.read_bytes > 0


def test_bulk_transfer_moves_data_and_stops(ns: Netns) -> None:
    with BulkTransfer(ns) as case:
        time.sleep(0.3)
        moved = case.read_bytes
        time.sleep(0.3)
        assert case.read_bytes > moved > 0
    assert not any(t.is_alive() for t in case._threads)
    assert ss(ns, "-tan", "state", "established") == []


def test_idle_keepalive(ns: Netns) -> None:
    with IdleKeepalive(ns) as case:
        record = one(ns, "-tano", case.client_port, "state", "established")
        assert "timer:(keepalive" in record
        assert queues(record) == (0, 0)


def test_scenario_closes_everything_when_the_body_raises(ns: Netns) -> None:
    with pytest.raises(RuntimeError), StalledReader(ns) as case:
        raise RuntimeError("body failed")
    assert case.client.fileno() == -1 and case.server.fileno() == -1
    assert not any(t.is_alive() for t in case._threads)
    assert ss(ns, "-tan") == []


def test_tbf_link_limits_a_bulk_transfer() -> None:
    with TbfLink() as link:
        assert "tbf" in link.sender_ns.output("tc", "qdisc", "show", "dev", link.dev)
        with BulkOverTbf(link) as bulk:
            time.sleep(1.0)
            moved = bulk.read_bytes
        # 1 Mbit/s is 125 KB/s; the 32 kbit burst adds little.
        assert 0 < moved < 250_000
        names = {link.sender_ns.name, link.receiver_ns.name}
    assert not names & namespaces()


def demo(*extra: str) -> subprocess.Popen[str]:
    code = "from bufmon.demo import run_demo; raise SystemExit(run_demo(True{}))"
    return subprocess.Popen(
        [sys.executable, "-c", code.format("".join(", " + e for e in extra))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def demo_namespace(line: str, pid: int) -> str:
    """The namespace a demo names in its first line: bufmon-demo-<pid>-<random>."""
    match = re.search(rf"namespace (bufmon-demo-{pid}-[0-9a-f]{{8}}):", line)
    assert match is not None, line
    return match.group(1)


def test_demo_headless_runs_for_its_duration_and_cleans_up() -> None:
    proc = demo("duration=3")
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "stalled reader" in out
    assert demo_namespace(out, proc.pid) not in namespaces()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_demo_cleans_up_on_signal(sig: signal.Signals) -> None:
    proc = demo()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the cases are built
        name = demo_namespace(line, proc.pid)
        assert name in namespaces()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert name not in namespaces()


def in_own_pid_namespace(code: str) -> subprocess.Popen[str]:
    """python -c code as pid 1 of a new PID namespace: its pid means nothing outside."""
    return subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) missing")
def test_demo_namespace_killed_with_9_in_a_pid_namespace_is_removed_live_one_kept() -> None:
    # Two demos, each pid 1 of its own PID namespace: same pid, distinct names. Once
    # one is killed with -9 only its namespace is stale; the live one holds its lock.
    code = "from bufmon.demo import run_demo; run_demo(True)"
    live, killed = in_own_pid_namespace(code), in_own_pid_namespace(code)
    try:
        assert live.stdout is not None and killed.stdout is not None
        live_name = re.search(r"namespace (\S+):", live.stdout.readline())
        killed_name = re.search(r"namespace (\S+):", killed.stdout.readline())
        assert live_name is not None and killed_name is not None
        assert live_name.group(1) != killed_name.group(1)
        killed.kill()  # SIGKILL to unshare; --kill-child sends SIGKILL on to the demo
        killed.wait()
        deadline = time.monotonic() + 10
        while killed_name.group(1) not in remove_stale_namespaces():
            assert time.monotonic() < deadline, "the killed demo's namespace was never removed"
            time.sleep(0.1)  # the demo inside may take a moment to die with its parent
        assert killed_name.group(1) not in namespaces()
        assert live_name.group(1) in namespaces()
        os.kill(only_child(live.pid), signal.SIGTERM)  # the demo itself: a clean exit
        live.wait(timeout=20)
        assert live_name.group(1) not in namespaces()  # removed by the demo itself
    finally:
        for proc in (live, killed):
            proc.kill()
            proc.wait()
        remove_stale_namespaces()


def only_child(pid: int) -> int:
    return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])


def test_demo_shaped_namespace_nobody_holds_is_removed() -> None:
    stale = f"bufmon-demo-{os.getpid()}-0123abcd"  # what a demo killed with -9 leaves
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in remove_stale_namespaces()
        assert stale not in namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True)


def test_other_bufmon_namespaces_are_left_alone() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    other = f"bufmon-prod-{child.pid}"  # a user's namespace that only looks like ours
    subprocess.run(["ip", "netns", "add", other], check=True)
    try:
        assert other not in remove_stale_namespaces()
        assert other in namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", other], capture_output=True)
