"""What limits a flow, judged for real in namespaces the tests make: a receive buffer
held at a tiny tcp_rmem ceiling or pinned by SO_RCVBUF raises buffer_limited (advice
naming the sysctl or the setsockopt); the same transfer with the namespace's normal
ceiling and a slow reader do not; a CLOSE-WAIT leak raises close_wait with the count of
its process. The detail screen's "Limited by" must name the limit the flag names.

netem is not in this kernel, so there is no path delay to make a send buffer matter:
on loopback a tiny send buffer does not slow a transfer down (measured, see the report),
and the ceilings tested are the receive side's.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest
from makers import BigWrites, CloseWaitLeak, buffer_option

from bufmon.diagnosis import Config, load_config
from bufmon.diagnosis.limits import local_peer
from bufmon.monitor import Monitor
from bufmon.scenarios import AcceptQueueFull, Netns, SlowReader
from collectors.model import Flag, Snapshot, Sock
from tui.detail import HISTORY_FIELDS
from tui.detail_text import LIMIT_VERDICTS, tcp_text

pytestmark = pytest.mark.root

POLL = 0.5
CFG = Config()
# budget for buffer_limited to rise: its hold, the first window of history, and room
# for a loaded machine (a refresh while the transfer runs can take seconds there)
SETTLE = CFG.buffer_limited.hold + 12.0
QUIET = CFG.buffer_limited.hold + 4.0  # how long a healthy case must stay unflagged
TINY_RMEM = "4096 8192 8192"


@pytest.fixture
def ns() -> Iterator[Netns]:
    with Netns("sizing") as namespace:
        yield namespace


def monitor_of(ns: Netns, config: Config = CFG) -> Monitor:
    monitor = Monitor(netns=ns.name, config=config)
    monitor.refresh()
    return monitor


def sock_on(snap: Snapshot, port: int) -> Sock | None:
    return next(
        (s for s in snap.sockets if s.local_port == port and s.state != "LISTEN" and not s.closed),
        None,
    )


def flag_of(s: Sock | None, kind: str) -> Flag | None:
    return None if s is None else next((f for f in s.flags if f.kind == kind), None)


def detail(monitor: Monitor, snap: Snapshot, s: Sock) -> str:
    """The detail screen's tcp_info part for `s`, from what the app hands it."""
    history = monitor.diagnoser.history
    series = {name: history.series(s.key, name) for name in HISTORY_FIELDS}
    peer = local_peer(snap.sockets, s)
    cfg = monitor.diagnoser.config.send_queue_full
    return tcp_text(s.info, 400, series, cfg, s, peer, snap.system.sysctls).plain


def watch(monitor: Monitor, port: int, seconds: float) -> Iterator[tuple[Snapshot, Sock]]:
    """Refresh every POLL for `seconds`, yielding the snapshot and the socket on `port`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        snap = monitor.refresh()
        s = sock_on(snap, port)
        if s is not None:
            yield snap, s
        time.sleep(POLL)


def until_flag(monitor: Monitor, port: int, kind: str, seconds: float) -> tuple[Flag, str]:
    """The `kind` flag on the socket at `port` and the detail text of the same refresh."""
    seen: set[str] = set()
    for snap, s in watch(monitor, port, seconds):
        flag = flag_of(s, kind)
        seen |= {f.kind for f in s.flags}
        if flag is not None:
            return flag, detail(monitor, snap, s)
    pytest.fail(f"no {kind} on port {port} within {seconds} s; flags seen: {sorted(seen)}")


def never_flag(monitor: Monitor, port: int, kind: str, seconds: float) -> str:
    """Assert no `kind` flag on `port` for `seconds`; the last detail text."""
    text = ""
    for snap, s in watch(monitor, port, seconds):
        flag = flag_of(s, kind)
        assert flag is None, flag.reason
        text = detail(monitor, snap, s)
    assert text, f"port {port} never seen"
    return text


def test_tiny_rmem_ceiling_is_buffer_limited(ns: Netns) -> None:
    ns.sysctl("net.ipv4.tcp_rmem", TINY_RMEM)
    monitor = monitor_of(ns)
    with BigWrites(ns) as sc:
        flag, text = until_flag(monitor, sc.client_port, "buffer_limited", SETTLE)
        assert flag.severity == "warning"
        assert "net.ipv4.tcp_rmem" in flag.advice and "8 KB" in flag.advice
        for number in ("min_rtt", "BDP", "Delivery", "autotuning ceiling 8 KB"):
            assert number in flag.reason
        assert LIMIT_VERDICTS["rcvbuf"][0] in text  # the detail agrees
        assert "at the autotuning ceiling: buffer_limited" in text
        assert sc.read_bytes > 0
    monitor.close()


def test_normal_ceiling_is_not_buffer_limited(ns: Netns) -> None:
    monitor = monitor_of(ns)
    with BigWrites(ns) as sc:
        text = never_flag(monitor, sc.client_port, "buffer_limited", QUIET)
        assert "buffer_limited" not in text
        assert LIMIT_VERDICTS["rcvbuf"][0] not in text
        assert sc.read_bytes > 0
    monitor.close()


def test_pinned_so_rcvbuf_is_buffer_limited(ns: Netns) -> None:
    monitor = monitor_of(ns)
    pin = buffer_option(socket.SO_RCVBUF, 4096)
    with BigWrites(ns, server_setup=pin) as sc:
        flag, text = until_flag(monitor, sc.client_port, "buffer_limited", SETTLE)
        assert "SO_RCVBUF" in flag.advice and "setsockopt" in flag.advice
        assert f"(pid {os.getpid()})" in flag.advice  # the receiving process pins it
        assert "set by SO_RCVBUF" in flag.reason
        assert LIMIT_VERDICTS["rcvbuf"][0] in text
        assert "fixed by the application: buffer_limited" in text
        zero = [
            f
            for _, s in watch(monitor, sc.client_port, 3.0)
            if (f := flag_of(s, "peer_zero_window"))
        ]
        # a window below one MSS here is the pinned buffer's, not a slow reader's
        assert all("reads too slowly" not in f.advice for f in zero), zero[0].advice
        assert all("receive buffer is the limit" in f.reason for f in zero), zero[0].reason
    monitor.close()


def test_slow_reader_is_the_application_not_a_buffer(ns: Netns) -> None:
    """The receiver pins a big SO_RCVBUF and reads slowly: the sender waits on the
    peer's window, the reader is the limit; no buffer is to blame."""
    monitor = monitor_of(ns)
    with SlowReader(ns) as sc:
        until_flag(monitor, sc.server_port, "slow_reader", CFG.slow_reader.window + 10.0)
        text = never_flag(monitor, sc.client_port, "buffer_limited", QUIET)
        assert LIMIT_VERDICTS["peer"][0] in text  # the peer application reads slowly
        snap = monitor.refresh()
        reader = next(s for s in snap.sockets if s.local_port == sc.server_port and s.peer_port)
        assert flag_of(reader, "buffer_limited") is None
        assert "the application reads too slowly" in detail(monitor, snap, reader)
        assert sc.read_bytes > 0
    monitor.close()


def test_close_wait_leak(ns: Netns) -> None:
    config = load_config(os.devnull, ["close_wait.hold=1", "close_wait.warn=3"])
    monitor = monitor_of(ns, config)
    with CloseWaitLeak(ns) as sc:
        flag, _ = until_flag(monitor, sc.server_port, "close_wait", 10.0)
        assert flag.severity == ("info" if flag.since < 3 else "warning")
        assert f"holds {sc.LEAKS} connections in CLOSE-WAIT" in flag.reason
        assert "close()" in flag.advice
        flags = [
            flag_of(s, "close_wait")
            for snap, _ in watch(monitor, sc.server_port, 6.0)
            for s in snap.sockets
            if s.state == "CLOSE-WAIT"
        ]
        assert flags and all(f is not None for f in flags)
        assert flags[-1] is not None and flags[-1].severity == "warning"
    monitor.close()


TINY_WMEM = "4096 8192 8192"


def test_tiny_wmem_ceiling_is_buffer_limited(ns: Netns) -> None:
    ns.sysctl("net.ipv4.tcp_wmem", TINY_WMEM)
    monitor = monitor_of(ns)
    with BigWrites(ns) as sc:
        flag, text = until_flag(monitor, sc.client_port, "buffer_limited", SETTLE)
        assert "net.ipv4.tcp_wmem" in flag.advice and "our send buffer" in flag.reason
        assert LIMIT_VERDICTS["buffer"][0] in text
        assert "at the autotuning ceiling: buffer_limited" in text
    monitor.close()


def test_pinned_so_sndbuf_is_buffer_limited(ns: Netns) -> None:
    monitor = monitor_of(ns)
    with BigWrites(ns, setup=buffer_option(socket.SO_SNDBUF, 4096)) as sc:
        flag, text = until_flag(monitor, sc.client_port, "buffer_limited", SETTLE)
        assert "SO_SNDBUF" in flag.advice and "setsockopt" in flag.advice
        assert LIMIT_VERDICTS["buffer"][0] in text
        assert "fixed by the application: buffer_limited" in text
    monitor.close()


@pytest.mark.parametrize(("abort", "words"), [(0, "dropped silently"), (1, "is reset")])
def test_accept_queue_advice_reads_tcp_abort_on_overflow(ns: Netns, abort: int, words: str) -> None:
    ns.sysctl("net.ipv4.tcp_abort_on_overflow", abort)
    monitor = monitor_of(ns)
    with AcceptQueueFull(ns) as sc:
        snap = monitor.refresh(single_sample=True)
        listener = next(s for s in snap.sockets if s.local_port == sc.listen_port)
        flag = flag_of(listener, "accept_queue_full")
        assert flag is not None and words in flag.advice
        assert snap.system.sysctls["tcp_abort_on_overflow"] == [abort]
    monitor.close()
