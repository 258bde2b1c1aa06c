"""Every flag made for real, each in a network namespace of its own, and detected by a
Monitor of that namespace within its hold time plus two refreshes; healthy controls
raise nothing worse than info.

A Monitor of one namespace reads that namespace's counters and sysctls, so the
counter-based rules see what the conditions here do to it, not to the host.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest
from makers import (
    BulkOverTbf,
    HealthyReader,
    NagleDelayedAck,
    PortExhaustion,
    RcvbufPrune,
    SynBacklog,
    TbfLink,
    ZeroWindowSender,
)

from bufmon.diagnosis import Config, load_config
from bufmon.monitor import Monitor
from bufmon.scenarios import (
    AcceptQueueFull,
    BulkTransfer,
    IdleKeepalive,
    Netns,
    Scenario,
    SlowReader,
    StalledReader,
    UdpDrops,
)
from collectors.model import SEVERITY_RANK, Flag, Snapshot, Sock

pytestmark = pytest.mark.root

REFRESH = 1.0  # the default refresh interval: budgets are hold + 2 of these
POLL = 0.5  # we refresh faster than that, so a detection is never late by our polling
CFG = Config()
FAMILIES = ["inet", "inet6"]


@pytest.fixture
def ns() -> Iterator[Netns]:
    with Netns("diag") as namespace:
        yield namespace


def monitor_of(ns: Netns) -> Monitor:
    """A Monitor of `ns` that has already taken its first sample (the counter baseline)."""
    monitor = Monitor(netns=ns.name)
    monitor.refresh()
    return monitor


@pytest.fixture
def monitor(ns: Netns) -> Iterator[Monitor]:
    m = monitor_of(ns)
    yield m
    m.close()


Found = tuple[Sock | None, Flag]


def find(snap: Snapshot, kind: str, where: Callable[[Sock], bool]) -> Found | None:
    for s in snap.sockets:
        if not s.closed and where(s):
            for f in s.flags:
                if f.kind == kind:
                    return s, f
    return None


def wait_for(
    monitor: Monitor,
    kind: str,
    hold: float,
    where: Callable[[Sock], bool],
    severity: str | None = None,
) -> Found:
    """Refresh until a `kind` flag (of `severity`) is on a socket matching `where`."""
    budget = hold + 2 * REFRESH
    start = time.monotonic()
    seen: list[str] = []
    while True:
        snap = monitor.refresh()
        hit = find(snap, kind, where)
        if hit and (severity is None or hit[1].severity == severity):
            return hit
        seen = sorted({f"{f.kind}:{f.severity}" for s in snap.sockets for f in s.flags})
        if time.monotonic() - start > budget:
            pytest.fail(f"no {kind} {severity or ''} within {budget} s; flags seen: {seen}")
        time.sleep(POLL)


def port(n: int) -> Callable[[Sock], bool]:
    return lambda s: s.local_port == n


@pytest.mark.parametrize("family", FAMILIES)
def test_stalled_reader(ns: Netns, monitor: Monitor, family: str) -> None:
    with StalledReader(ns, family) as sc:
        sock, flag = wait_for(
            monitor, "stalled_reader", CFG.stalled_reader.hold, port(sc.server_port)
        )
        assert flag.severity == "critical"  # r >= rb and rcv_wnd 0
        assert f"(pid {os.getpid()})" in flag.reason and "Recv-Q" in flag.reason
        assert sock is not None and sock.family == family


class QuietStall(Scenario):
    """10 KB sent once and never read: the server side's sample stays the same."""

    def build(self) -> None:
        self.connect_pair()
        self.client.sendall(b"x" * 10_000)


def test_unchanged_stalled_reader_keeps_counting_and_clears_on_a_read(
    ns: Netns, monitor: Monitor
) -> None:
    """The flag of a sample that does not change is carried over: `since` still grows,
    and reading the queue empty is seen and clears it after `clear`."""
    with QuietStall(ns) as sc:
        where = port(sc.server_port)
        wait_for(monitor, "stalled_reader", CFG.stalled_reader.hold, where)
        sinces = []
        for _ in range(3):
            time.sleep(REFRESH)
            hit = find(monitor.refresh(), "stalled_reader", where)
            assert hit is not None
            sinces.append(hit[1].since)
        assert sinces[0] < sinces[1] < sinces[2]
        read = 0
        while read < 10_000:
            read += len(sc.server.recv(65536))
        deadline = time.monotonic() + CFG.stalled_reader.clear + 2 * REFRESH
        while find(monitor.refresh(), "stalled_reader", where) is not None:
            assert time.monotonic() < deadline, "a read did not clear the stalled reader"
            time.sleep(POLL)


@pytest.mark.parametrize("family", FAMILIES)
def test_peer_zero_window(ns: Netns, monitor: Monitor, family: str) -> None:
    with ZeroWindowSender(ns, family) as sc:
        _, flag = wait_for(
            monitor, "peer_zero_window", CFG.peer_zero_window.hold, port(sc.client_port)
        )
        assert "TCP_USER_TIMEOUT" in flag.advice
        if family == "inet":  # bytes_acked frozen: critical after 10 s
            wait_for(
                monitor,
                "peer_zero_window",
                CFG.peer_zero_window.critical,
                port(sc.client_port),
                "critical",
            )


def test_slow_reader_is_not_stalled(ns: Netns, monitor: Monitor) -> None:
    with SlowReader(ns) as sc:
        deadline = time.monotonic() + CFG.slow_reader.window + 2 * REFRESH
        while time.monotonic() < deadline:
            hit = find(monitor.refresh(), "stalled_reader", port(sc.server_port))
            assert hit is None, hit[1].reason if hit else ""
            time.sleep(POLL)
        _, flag = wait_for(monitor, "slow_reader", 0, port(sc.server_port))
        assert flag.severity == "info" and sc.read_bytes > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_accept_queue_full(ns: Netns, monitor: Monitor, family: str) -> None:
    with AcceptQueueFull(ns, family) as sc:
        sock, flag = wait_for(
            monitor, "accept_queue_full", CFG.accept_queue_full.full_hold, port(sc.listen_port)
        )
        assert sock is not None and sock.state == "LISTEN"
        assert flag.severity == "critical" and "backlog 2" in flag.reason


@pytest.mark.parametrize("family", FAMILIES)
def test_udp_drops(ns: Netns, monitor: Monitor, family: str) -> None:
    with UdpDrops(ns, family, keep_sending=True) as sc:
        _, flag = wait_for(monitor, "udp_drops", 0, port(sc.port), "critical")
        assert "datagrams dropped" in flag.reason and "SO_RCVBUF" in flag.advice


def test_rcvbuf_overrun(ns: Netns, monitor: Monitor) -> None:
    with RcvbufPrune(ns) as sc:
        _, flag = wait_for(monitor, "rcvbuf_overrun", 0, port(sc.server_port))
        assert "PruneCalled" in flag.reason or "TCPRcvQDrop" in flag.reason


def test_port_exhaustion(ns: Netns, monitor: Monitor) -> None:
    with PortExhaustion(ns) as sc:
        assert sc.exhausted
        sock, flag = wait_for(
            monitor,
            "port_exhaustion",
            CFG.port_exhaustion.hold,
            lambda s: s.peer_port == sc.listen_port,
        )
        assert flag.severity == "critical" and "10 of 10 local ports" in flag.reason
        assert sock is not None and 40000 <= sock.local_port <= 40009
        snap = monitor.refresh()
        assert [f.kind for f in snap.system_flags] == ["port_exhaustion"]


# --- healthy controls ------------------------------------------------------------------------

CONTROL_SECONDS = CFG.stalled_reader.hold + 2 * REFRESH


def worst_flags(monitors: list[Monitor], seconds: float) -> list[str]:
    """Every flag above info seen while refreshing for `seconds`."""
    bad: set[str] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for m in monitors:
            snap = m.refresh()
            for f in snap.system_flags + [f for s in snap.sockets for f in s.flags]:
                if SEVERITY_RANK[f.severity] > SEVERITY_RANK["info"]:
                    bad.add(f"{f.kind}:{f.severity}: {f.reason}")
        time.sleep(POLL)
    return sorted(bad)


@pytest.mark.parametrize(
    ("maker", "family"),
    [
        (HealthyReader, "inet"),
        (BulkTransfer, "inet"),
        (BulkTransfer, "inet6"),
        (IdleKeepalive, "inet6"),
    ],
)
def test_healthy_controls_raise_nothing(
    ns: Netns, monitor: Monitor, maker: type[Scenario], family: str
) -> None:
    with maker(ns, family):
        assert worst_flags([monitor], CONTROL_SECONDS) == []


def test_bulk_over_tbf_link_is_healthy() -> None:
    with TbfLink() as link, BulkOverTbf(link) as sc:
        monitors = [monitor_of(link.sender_ns), monitor_of(link.receiver_ns)]
        try:
            assert worst_flags(monitors, CONTROL_SECONDS) == []
            assert sc.read_bytes > 0
        finally:
            for m in monitors:
                m.close()


def test_syn_backlog(ns: Netns, monitor: Monitor) -> None:
    # Raw SYNs from silent peers on a veth of this namespace: SYN-RECV above the
    # backlog and syncookies sent, for real.
    with SynBacklog(ns) as sc:
        _, flag = wait_for(
            monitor, "syn_backlog", CFG.syn_backlog.hold, lambda s: s.local_port == sc.PORT
        )
    assert "SYN" in flag.reason


def test_nagle_hint(ns: Netns) -> None:
    # Nagle meeting delayed ACKs, made for real. Loopback's srtt settles near 20 ms,
    # right on the default floor, so the floor is lowered to 10 ms here (a setting).
    cfg = load_config(None, ["nagle_hint.min_srtt_ms=10"])
    monitor = Monitor(netns=ns.name, config=cfg)
    try:
        with NagleDelayedAck(ns) as sc:
            # + 5 s: srtt first has to climb out of the quick-ack start of the connection
            _, flag = wait_for(monitor, "nagle_hint", cfg.nagle_hint.hold + 5, port(sc.client_port))
        assert flag.severity == "info" and "TCP_NODELAY" in flag.reason + flag.advice
    finally:
        monitor.close()
