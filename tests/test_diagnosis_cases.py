"""Cases where a verdict once went wrong against real servers, each made for real in a
namespace of the test's own, with the kernel's numbers asserted beside bufmon's verdict:
pruning that lost nothing, connections still in a stopped server's accept queue, a peer
window held below one MSS, and the Nagle hint on senders the peer's window holds back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from makers import RcvbufPrune

from bufmon.diagnosis import Config, load_config
from bufmon.diagnosis.limits import LIMIT_FIELDS
from bufmon.monitor import Monitor
from bufmon.scenarios import Netns, Scenario, recv_available, send_until_full
from collectors.model import Flag, Snapshot, Sock
from tui.detail_text import tcp_text
from tui.view import GROUPINGS

pytestmark = pytest.mark.root

CFG = Config()
POLL = 0.5
LOSS = ("RcvPruned", "OfoPruned", "TCPRcvQDrop", "TCPZeroWindowDrop", "TCPOFODrop")


@pytest.fixture
def ns() -> Iterator[Netns]:
    with Netns("cases") as namespace:
        yield namespace


@pytest.fixture
def monitor(ns: Netns) -> Iterator[Monitor]:
    m = Monitor(netns=ns.name)
    m.refresh()  # the counter baseline
    yield m
    m.close()


def counter(snap: Snapshot, name: str) -> int:
    return snap.system.counters.get(name, 0)


def flags_of(snap: Snapshot) -> list[tuple[Sock | None, Flag]]:
    found: list[tuple[Sock | None, Flag]] = [(None, f) for f in snap.system_flags]
    return found + [(s, f) for s in snap.sockets if not s.closed for f in s.flags]


# --- pruning is not loss -----------------------------------------------------------------


class OneByteMessages(Scenario):
    """A reader that never reads under 1-byte messages every millisecond (TCP_NODELAY):
    the kernel collapses the queue and clamps the window (PruneCalled) and drops nothing."""

    def build(self) -> None:
        self.connect_pair(lambda s: s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1))
        self.client.setblocking(False)
        self.every(0.001, self._send)

    def _send(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self.client.send(b"z")


def test_pruning_without_loss_raises_no_loss_claim(ns: Netns, monitor: Monitor) -> None:
    base = monitor.refresh()
    with OneByteMessages(ns) as sc:
        deadline = time.monotonic() + 20
        infos: list[Flag] = []
        while time.monotonic() < deadline:
            snap = monitor.refresh()
            for sock, flag in flags_of(snap):
                if flag.kind == "rcvbuf_overrun":
                    assert flag.severity == "info", flag.reason
                    assert "thrown away" not in flag.reason and "nothing was lost" in flag.reason
                    assert sock is not None and sock.local_port == sc.server_port
                    infos.append(flag)
            if counter(snap, "TcpExt.PruneCalled") >= 20 and infos:
                break
            time.sleep(POLL)
    # the kernel's side: pruning ran, no loss counter moved, nothing was retransmitted
    assert counter(snap, "TcpExt.PruneCalled") - counter(base, "TcpExt.PruneCalled") >= 20
    for name in LOSS:
        assert counter(snap, f"TcpExt.{name}") == counter(base, f"TcpExt.{name}"), name
    # Retransmitted segments, if any, came from tail loss probes (sent on a timer when
    # acks are slow, answered here as duplicates), none from loss recovery: no fast
    # retransmit, no retransmission timeout.
    moved = {k: v - counter(base, k) for k, v in snap.system.counters.items()}
    assert moved.get("Tcp.RetransSegs", 0) <= moved.get("TcpExt.TCPLossProbes", 0)
    assert moved.get("TcpExt.TCPFastRetrans", 0) == moved.get("TcpExt.TCPTimeouts", 0) == 0
    assert infos, "no info verdict on the pruned socket"
    assert "PruneCalled +" in infos[-1].reason


def test_real_loss_still_claims_loss(ns: Netns, monitor: Monitor) -> None:
    base = monitor.refresh()
    with RcvbufPrune(ns) as sc:
        deadline = time.monotonic() + 5
        hit = None
        while hit is None and time.monotonic() < deadline:
            snap = monitor.refresh()
            on_server = [f for s, f in flags_of(snap) if s and s.local_port == sc.server_port]
            hit = next((f for f in on_server if f.kind == "rcvbuf_overrun"), None)
            time.sleep(POLL)
    dropped = sum(
        counter(snap, f"TcpExt.{n}") - counter(base, f"TcpExt.{n}")
        for n in ("RcvPruned", "TCPRcvQDrop")
    )
    assert dropped > 0  # the kernel threw data away
    assert hit is not None and hit.severity == "warning"
    assert "thrown away" in hit.reason and "PruneCalled" not in hit.reason


# --- connections in the accept queue of a stopped server ----------------------------------

REQUEST = b"GET / HTTP/1.0\r\nHost: test\r\n\r\n"
HTTP_BACKLOG = 5  # http.server's request_queue_size: the queue holds 6 before it overflows


def test_rate_limited_download_blames_the_client_not_nagle(ns: Netns, tmp_path: Path) -> None:
    """A real download: http.server feeds `curl --limit-rate`, which reads a burst and
    then waits. The server's socket sits in zero window with the persist timer, limited
    by curl's window: peer_zero_window on it, no Nagle hint even with the hint's srtt
    and segment tests switched off; curl's socket is a stalled reader while it waits."""
    assert shutil.which("curl"), "curl is missing: scripts/setup test installs it"
    (tmp_path / "big").write_bytes(os.urandom(1 << 20) * 32)
    cfg = load_config(
        None, ["nagle_hint.min_srtt_ms=0", "nagle_hint.rtt_ratio=0", "nagle_hint.hold=0"]
    )
    monitor = Monitor(netns=ns.name, config=cfg)
    url = "http://127.0.0.1:8000/big"
    argv = ns.command("curl", "-s", "--limit-rate", "100k", "-o", os.devnull, url)
    try:
        monitor.refresh()
        with http_server(ns, tmp_path) as (server, port):
            curl = subprocess.Popen(argv)
            try:
                kernel_held, zero, stalled = 0, None, None
                deadline = time.monotonic() + CFG.peer_zero_window.hold + 8
                while time.monotonic() < deadline and (zero is None or stalled is None):
                    time.sleep(POLL)
                    snap = monitor.refresh()
                    conns = [s for s in snap.sockets if s.state == "ESTAB"]
                    ours = next(s for s in conns if s.local_port == port)
                    theirs = next(s for s in conns if s.peer_port == port)
                    assert ours.info is not None
                    if ours.info.get("snd_wnd") == 0 or ours.timer == "persist":
                        kernel_held += 1
                    assert "nagle_hint" not in [f.kind for f in ours.flags]
                    zero = next((f for f in ours.flags if f.kind == "peer_zero_window"), zero)
                    hit = [f for f in theirs.flags if f.kind == "stalled_reader"]
                    stalled = hit[0] if hit else stalled
            finally:
                curl.kill()
                curl.wait()
    finally:
        monitor.close()
    assert kernel_held > 0 and ours.send_q > 0
    busy, rwnd = ours.info.get("busy_time") or 0, ours.info.get("rwnd_limited") or 0
    assert rwnd >= 0.8 * busy > 0  # the peer's window held the server back
    assert zero is not None and ours.process is not None and ours.process.pid == server.pid
    assert stalled is not None and theirs.process is not None
    assert theirs.process.pid == curl.pid and f"(pid {curl.pid})" in stalled.reason


@contextlib.contextmanager
def http_server(ns: Netns, root: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`python3 -m http.server` (a real server we did not write) inside `ns`."""
    port = 8000
    argv = ns.command(sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port))
    proc = subprocess.Popen(argv, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while f":{port} " not in ns.output("ss", "-Htln"):
            assert proc.poll() is None and time.monotonic() < deadline, "http.server did not start"
            time.sleep(0.05)
        yield proc, port
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(10)


def test_unaccepted_connections_raise_only_the_listener_flag(
    ns: Netns, monitor: Monitor, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("hello\n")
    with http_server(ns, tmp_path) as (proc, port):
        proc.send_signal(signal.SIGSTOP)  # the accept loop stops; the kernel still answers

        def clients() -> list[socket.socket]:
            made = []
            for _ in range(10):
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", port))
                made.append(c)
            time.sleep(0.3)
            for c in made:
                with contextlib.suppress(OSError):  # still SYN-SENT: the queue was full
                    c.send(REQUEST)
            return made

        conns = ns.run(clients)
        try:
            deadline = time.monotonic() + CFG.stalled_reader.hold + 3
            listener_flag = None
            while time.monotonic() < deadline:
                snap = monitor.refresh()
                waiting = [
                    s
                    for s in snap.sockets
                    if s.local_port == port and s.state == "ESTAB" and not s.closed
                ]
                for s in waiting:
                    assert list(s.flags) == [], [f.reason for f in s.flags]
                listener = next(s for s in snap.sockets if s.local_port == port and s.is_listener)
                hit = [f for f in listener.flags if f.kind == "accept_queue_full"]
                listener_flag = hit[0] if hit else listener_flag
                time.sleep(POLL)
        finally:
            for c in conns:
                c.close()
    # the kernel's side: the queue is over its backlog, its connections have no file
    assert listener.recv_q > listener.send_q == HTTP_BACKLOG
    assert len(waiting) == listener.recv_q
    for s in waiting:
        assert s.inode == 0 and s.process is None and s.recv_q == len(REQUEST)
        assert s.listener is listener
    # bufmon's verdict: only the listener is flagged, and it names the server
    assert listener_flag is not None and listener_flag.severity == "critical"
    assert listener.process is not None and listener.process.pid == proc.pid
    assert f"(pid {proc.pid})" in listener_flag.reason
    json_doc = waiting[0].to_json()["accept_queue_of"]
    assert json_doc["local_port"] == port and json_doc["process"]["pid"] == proc.pid
    by = GROUPINGS["process"]
    comm = listener.process.comm
    assert by.label(by.value(waiting[0])) == f"(accept queue of {comm}/{proc.pid})"


# --- a peer window held below one MSS -----------------------------------------------------


class SmallWindowPeer(Scenario):
    """The peer keeps reading, slowly, with a receive buffer shrunk after the handshake
    (SO_RCVBUF 4096: rb 8 KB) while the sender keeps writing: its window stays a few KB,
    far below the MSS both ends agreed on, and Send-Q grows (client_port is the sender).

    The reader first drains everything for half a second, so that the window the
    handshake offered is used up without loss; then it reads 1 KB every 100 ms."""

    def build(self) -> None:
        self.connect_pair()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.client.setblocking(False)
        self.every(0.01, lambda: send_until_full(self.client, b"y" * 4096, 1))
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            recv_available(self.server)
            time.sleep(0.005)
        self.every(0.1, lambda: recv_available(self.server, 1024, 1))


def sender_of(snap: Snapshot, port: int) -> Sock:
    return next(s for s in snap.sockets if s.local_port == port and s.state == "ESTAB")


def test_window_below_one_mss_is_flagged_on_the_sender(ns: Netns, monitor: Monitor) -> None:
    with SmallWindowPeer(ns) as sc:
        deadline = time.monotonic() + 25
        small: list[tuple[int, int, str]] = []  # (snd_wnd, mss, reason) while flagged
        send_qs = []
        while time.monotonic() < deadline and len(small) < 2:
            snap = monitor.refresh()
            s = sender_of(snap, sc.client_port)
            assert s.info is not None
            send_qs.append(s.send_q)
            wnd, mss = s.info.get("snd_wnd") or 0, s.info.get("snd_mss") or 0
            flag = next((f for f in s.flags if f.kind == "peer_zero_window"), None)
            if flag is not None and 0 < wnd < mss:
                small.append((wnd, mss, flag.reason))
            time.sleep(POLL)
        detail = tcp_text(
            s.info, 200, {n: monitor.diagnoser.history.series(s.key, n) for n in LIMIT_FIELDS}
        ).plain
    assert small, f"no flag while the window was below one MSS; Send-Q {send_qs}"
    wnd, mss, reason = small[-1]
    assert "below one MSS" in reason and "holds its window at" in reason
    assert send_qs[-1] > send_qs[0]  # Send-Q grew
    assert "peer's receive window" in detail  # the detail screen agrees with the flag


# --- nagle_hint never on a window-held sender ----------------------------------------------


def test_no_nagle_hint_on_a_sender_held_by_the_peer_window(ns: Netns) -> None:
    """The hint's srtt and segment-size tests are switched off (every setting at 0), so
    only the window exclusions stand between this sender and a Nagle hint."""
    cfg = load_config(
        None, ["nagle_hint.min_srtt_ms=0", "nagle_hint.rtt_ratio=0", "nagle_hint.hold=0"]
    )
    monitor = Monitor(netns=ns.name, config=cfg)
    try:
        monitor.refresh()
        held = 0
        with SmallWindowPeer(ns) as sc:
            deadline = time.monotonic() + 12
            while time.monotonic() < deadline:
                snap = monitor.refresh()
                s = sender_of(snap, sc.client_port)
                assert s.info is not None
                wnd, mss = s.info.get("snd_wnd") or 0, s.info.get("snd_mss") or 0
                if s.timer == "persist" or wnd < mss:
                    held += 1
                assert "nagle_hint" not in [f.kind for f in s.flags], s.flags
                time.sleep(POLL)
        assert held >= 10  # the kernel held the sender on the peer's window most samples
    finally:
        monitor.close()
