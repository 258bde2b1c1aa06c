"""SystemReader against this machine's /proc, a namespace the test makes, and recorded files."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.model import SystemFacts
from collectors.system import SYSCTL_PATHS, SystemReader

DATA = Path(__file__).parent / "data"

# Listen with backlog 2, never accept, eight non-blocking connects: LISTEN 3 2, overflows.
OVERFLOW_SCRIPT = """
import os, socket, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(2)
print(os.getpid(), flush=True)
sys.stdin.readline()
clients = []
for _ in range(8):
    client = socket.socket()
    client.setblocking(False)
    client.connect_ex(server.getsockname())
    clients.append(client)
print("connected", flush=True)
sys.stdin.readline()
"""


def loopback_connections(count: int) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        for _ in range(count):
            with socket.create_connection(server.getsockname()) as client:
                peer, _ = server.accept()
                with peer:
                    client.sendall(b"x" * 1000)
                    assert peer.recv(1000)


def test_reads_this_machine() -> None:
    facts = SystemReader().read(time.monotonic())
    for key in ("TcpExt.ListenOverflows", "Tcp.RetransSegs", "Udp.RcvbufErrors", "IpExt.InOctets"):
        assert isinstance(facts.counters[key], int)
    assert "Udp6.RcvbufErrors" in facts.counters
    assert not any(key.startswith(("UdpLite", "Ip.", "Icmp")) for key in facts.counters)
    for key in ("TCP.inuse", "TCP.orphan", "TCP.tw", "TCP.alloc", "TCP.mem", "UDP.inuse"):
        assert isinstance(facts.sockstat[key], int)
    assert {"TCP6.inuse", "UDP6.inuse", "sockets.used"} <= facts.sockstat.keys()
    assert len(facts.sysctls["tcp_rmem"]) == 3
    assert len(facts.sysctls["ip_local_port_range"]) == 2
    assert facts.sysctls["somaxconn"][0] > 0
    assert facts.deltas == {} and facts.interval == 0.0


def test_deltas_follow_loopback_traffic() -> None:
    reader = SystemReader()
    reader.read(100.0)
    loopback_connections(5)
    facts = reader.read(101.5)
    assert facts.interval == 1.5
    assert facts.deltas["Tcp.ActiveOpens"] >= 5
    assert facts.deltas["Tcp.OutSegs"] >= 15
    assert all(delta >= 0 for delta in facts.deltas.values())


def test_counter_going_backwards_gives_zero(tmp_path: Path) -> None:
    # A recreated namespace restarts its counters; files stand in for the two namespaces.
    netstat = tmp_path / "netstat"
    netstat.write_text("TcpExt: ListenOverflows ListenDrops\nTcpExt: 10 4\n")
    reader = SystemReader(proc_net=str(tmp_path), proc_sys=str(tmp_path))
    reader.read(1.0)
    netstat.write_text("TcpExt: ListenOverflows ListenDrops\nTcpExt: 3 7\n")
    facts = reader.read(2.0)
    assert facts.deltas == {"TcpExt.ListenOverflows": 0, "TcpExt.ListenDrops": 3}


def test_missing_and_garbled_files_are_left_out(tmp_path: Path) -> None:
    empty = SystemReader(proc_net=str(tmp_path / "none"), proc_sys=str(tmp_path / "none"))
    assert empty.read(1.0).to_json() == SystemFacts().to_json()
    (tmp_path / "netstat").write_text(
        "TcpExt: ListenOverflows ListenDrops\nTcpExt: 5\n"  # too few values
        "IpExt: InOctets OutOctets\nIpExt: 12 x\n"  # one bad value
        "garbage\n"
    )
    (tmp_path / "snmp").write_bytes(b"\xff\xfe\x00binary")
    (tmp_path / "sockstat").write_text("TCP: inuse 3 orphan\nsockets:\n")
    (tmp_path / "net" / "ipv4").mkdir(parents=True)
    (tmp_path / "net" / "ipv4" / "tcp_mem").write_text("1 two 3\n")
    (tmp_path / "net" / "ipv4" / "tcp_rmem").write_text("")
    (tmp_path / "net" / "ipv4" / "tcp_wmem").mkdir()  # EISDIR
    facts = SystemReader(proc_net=str(tmp_path), proc_sys=str(tmp_path)).read(1.0)
    assert facts.counters == {"IpExt.InOctets": 12}
    assert facts.sockstat == {"TCP.inuse": 3}
    assert facts.sysctls == {}


def test_recorded_pressure_files_parse() -> None:
    # System memory pressure (sockstat TCP mem near tcp_mem) cannot be created on a
    # shared machine, so the flag test uses these recorded files (TCP mem 95000 pages
    # against tcp_mem 50000 100000 150000; TCPMemoryPressures 3).
    root = DATA / "proc_pressure"
    facts = SystemReader(proc_net=str(root / "net"), proc_sys=str(root / "sys")).read(1.0)
    assert facts.sockstat["TCP.mem"] == 95000
    assert facts.sockstat["TCP.inuse"] == 5
    assert facts.sockstat["TCP.alloc"] == 6
    assert facts.sysctls["tcp_mem"] == [50000, 100000, 150000]
    assert facts.sysctls.keys() == SYSCTL_PATHS.keys()
    assert facts.counters["TcpExt.TCPMemoryPressures"] == 3
    assert facts.counters["TcpExt.TCPAbortOnMemory"] == 1
    assert facts.counters["Udp6.RcvbufErrors"] == 0
    assert "Tcp.RetransSegs" in facts.counters


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"bufmon-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.mark.root
def test_listen_overflow_in_another_namespace(netns: str) -> None:
    child = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", OVERFLOW_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        pid = int(child.stdout.readline())
        reader = SystemReader(proc_net=f"/proc/{pid}/net")
        baseline = reader.read(time.monotonic())
        # A fresh namespace: counters start at zero and only our listener exists.
        assert baseline.counters["Tcp.ActiveOpens"] == 0
        assert baseline.counters["TcpExt.ListenOverflows"] == 0
        assert baseline.sockstat["TCP.inuse"] == 1
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "connected\n"
        overflows = 0
        deadline = time.monotonic() + 5
        while overflows == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
            facts = reader.read(time.monotonic())
            overflows += facts.deltas["TcpExt.ListenOverflows"]
        assert overflows > 0
        assert facts.counters["Tcp.ActiveOpens"] == 8
    finally:
        child.kill()
        child.wait()
