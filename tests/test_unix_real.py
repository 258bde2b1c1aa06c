"""UNIX socket trouble made by real programs, found with the right process.

socat (Debian's, a third-party server) listens on a UNIX socket with a small backlog
and is stopped with SIGSTOP: clients pile up in its accept queue. socat also reads a
datagram socket and is stopped while a sender floods it. A stream reader that stops
reading is the third case. Everything runs in a namespace of the test's own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_diagnosis_real import CFG, find, wait_for

from bufmon.monitor import Monitor
from bufmon.scenarios import Netns
from collectors.model import Sock, UnixSock
from collectors.netns import entered

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("socat") is None, reason="needs socat (scripts/setup test)"),
]

BUFMON = str(Path(sys.executable).with_name("bufmon"))
BACKLOG = 4
QLEN = 64  # net.unix.max_dgram_qlen in the test's namespace: room for a loaded machine


@pytest.fixture
def ns() -> Iterator[Netns]:
    with Netns("unixreal") as namespace:
        yield namespace


@pytest.fixture
def tmp() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as path:
        yield path


def at(path: str) -> Callable[[Sock], bool]:
    return lambda s: isinstance(s, UnixSock) and s.path == path


def start_socat(ns: Netns, *args: str) -> subprocess.Popen[bytes]:
    """socat inside the namespace (`ip netns exec` execs it: the pid is socat's)."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns.name, "socat", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc


def until_bound(monitor: Monitor, path: str, proc: subprocess.Popen[bytes]) -> UnixSock:
    """Wait until socat's socket is there and attributed to it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for s in monitor.refresh().sockets:
            if at(path)(s) and s.process is not None:
                assert isinstance(s, UnixSock)
                return s
        assert proc.poll() is None, "socat exited"
        time.sleep(0.1)
    pytest.fail(f"socat never bound {path}")


def until_clear(monitor: Monitor, kind: str, where: Callable[[Sock], bool]) -> None:
    clear = getattr(CFG, kind).clear
    deadline = time.monotonic() + clear + 3
    while find(monitor.refresh(), kind, where) is not None:
        assert time.monotonic() < deadline, f"{kind} did not clear within {clear + 3} s"
        time.sleep(0.5)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGCONT)
    proc.kill()
    proc.wait()


def test_stopped_socat_listener_fills_its_backlog(ns: Netns, tmp: str) -> None:
    path = f"{tmp}/upstream.sock"
    proc = start_socat(ns, f"UNIX-LISTEN:{path},backlog={BACKLOG},fork", "OPEN:/dev/null")
    monitor = Monitor(ns.name)
    clients: list[socket.socket] = []
    try:
        until_bound(monitor, path, proc)
        proc.send_signal(signal.SIGSTOP)  # the accept loop stops
        refused = 0
        with entered(f"/run/netns/{ns.name}"):
            for _ in range(BACKLOG + 3):
                client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                client.setblocking(False)
                clients.append(client)
                try:
                    client.connect(path)
                except BlockingIOError:
                    refused += 1  # the queue is over the backlog: connect() would block
        assert refused == 2
        listener, flag = wait_for(
            monitor, "accept_queue_full", CFG.accept_queue_full.full_hold, at(path), "critical"
        )
        assert listener is not None and listener.process is not None
        assert (listener.process.comm, listener.process.pid) == ("socat", proc.pid)
        assert (listener.recv_q, listener.send_q) == (BACKLOG + 1, BACKLOG)
        assert f"backlog {BACKLOG}" in flag.reason and "somaxconn" in flag.reason
        assert "socat (pid" in flag.reason
        assert "listen.backlog" in flag.advice and "somaxconn" in flag.advice
        # the waiting clients know who will accept them
        waiting = [s for s in monitor.refresh().sockets if s.inode in listener.icons]
        assert len(waiting) == BACKLOG + 1
        assert all(isinstance(s, UnixSock) and s.peer_process is not None for s in waiting)
        assert {s.peer_process.pid for s in waiting if isinstance(s, UnixSock)} == {proc.pid}
        # the same from the command line, one sample, as JSON
        out = subprocess.run(
            [BUFMON, "snapshot", "--json", "--netns", ns.name, "proto:unix", "state:listen"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        (doc,) = json.loads(out.stdout)["sockets"]
        assert doc["path"] == path and doc["type"] == "stream"
        assert doc["process"]["comm"] == "socat"
        assert [f["kind"] for f in doc["flags"]] == ["accept_queue_full"]
    finally:
        stop(proc)
        for client in clients:
            client.close()
        monitor.close()


def test_stopped_dgram_reader_while_a_sender_floods(ns: Netns, tmp: str) -> None:
    path = f"{tmp}/log.sock"
    subprocess.run(
        ["ip", "netns", "exec", ns.name, "sysctl", "-q", f"net.unix.max_dgram_qlen={QLEN}"],
        check=True,
    )
    proc = start_socat(ns, "-u", f"UNIX-RECV:{path}", "OPEN:/dev/null")
    monitor = Monitor(ns.name)
    done = threading.Event()
    dropped = [0]
    with entered(f"/run/netns/{ns.name}"):
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setblocking(False)

    def flood() -> None:  # about 500 lines a second: socat keeps up until stopped
        while not done.is_set():
            try:
                sender.send(b"log line " * 20)
            except BlockingIOError:
                dropped[0] += 1  # what a logger that must not block does
            time.sleep(0.002)

    flooder = threading.Thread(target=flood)
    try:
        until_bound(monitor, path, proc)
        sender.connect(path)
        flooder.start()
        quiet_until = time.monotonic() + CFG.dgram_queue_full.hold + 1
        while time.monotonic() < quiet_until:  # a reader that keeps up raises nothing
            assert find(monitor.refresh(), "dgram_queue_full", at(path)) is None
            time.sleep(0.5)
        assert dropped[0] == 0
        proc.send_signal(signal.SIGSTOP)
        receiver, flag = wait_for(
            monitor, "dgram_queue_full", CFG.dgram_queue_full.hold, at(path), "critical"
        )
        assert dropped[0] > 0
        assert isinstance(receiver, UnixSock) and receiver.process is not None
        assert (receiver.process.comm, receiver.process.pid) == ("socat", proc.pid)
        assert receiver.peer_process is not None and receiver.peer_process.pid == os.getpid()
        assert f"max_dgram_qlen {QLEN}" in flag.reason and "no read counter" in flag.reason
        proc.send_signal(signal.SIGCONT)  # reading again: the flag clears
        until_clear(monitor, "dgram_queue_full", at(path))
    finally:
        done.set()
        if flooder.is_alive():
            flooder.join()
        sender.close()
        stop(proc)
        monitor.close()


def test_stream_reader_that_stops(ns: Netns) -> None:
    with entered(f"/run/netns/{ns.name}"):
        writer, reader = socket.socketpair()
    monitor = Monitor(ns.name)
    try:
        writer.sendall(b"w" * 20000)
        found, flag = wait_for(
            monitor,
            "stalled_reader",
            CFG.stalled_reader.hold,
            lambda s: s.inode == os.fstat(reader.fileno()).st_ino,
        )
        assert isinstance(found, UnixSock) and found.recv_q == 20000
        assert found.process is not None and found.process.pid == os.getpid()
        assert "no read counter" in flag.reason
        reader.recv(30000)  # a read empties the queue: the flag clears
        until_clear(monitor, "stalled_reader", lambda s: s.inode == found.inode)
    finally:
        writer.close()
        reader.close()
        monitor.close()
