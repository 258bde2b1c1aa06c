"""Synthetic snapshots (made up, not read from a kernel) for screenshots and benchmarks.

The same seed always gives the same sockets, so SVG snapshots stay stable.
"""

from __future__ import annotations

import copy
import random
from typing import TYPE_CHECKING

from bufmon.diagnosis.engine import record_values
from bufmon.diagnosis.history import History
from bufmon.diagnosis.limits import LIMIT_FIELDS
from collectors.checkpoint import Checkpoint, no_pause
from collectors.model import Flag, Process, Rates, Snapshot, Sock, SystemFacts, TcpInfo
from tui.source import Series, SockKey
from tui.trail import Trail
from tui.view import summarize

if TYPE_CHECKING:
    from bufmon.monitor import FirstLook

TIME = 1_700_000_000.0
HOST = "synthetic"
PROCESSES = (
    Process(812, "nginx", "www-data"),
    Process(1200, "postgres", "postgres"),
    Process(1377, "redis-server", "redis"),
    Process(2044, "python3", "app"),
    Process(911, "sshd", "root"),
)
RCVBUF, SNDBUF = 131072, 87040
FILLS = ("rfill", "sfill")  # history fields that are a fraction of a buffer


def _info(rng: random.Random, stalled: bool) -> TcpInfo:
    rtt = rng.choice((45, 80, 120, 2500, 31000))
    busy = rng.randrange(1000, 900000)
    values = {
        "rto": 204000,
        "ato": 40000,
        "snd_mss": 32768,
        "rcv_mss": 1460,
        "rtt": rtt,
        "rttvar": rtt // 2,
        "snd_ssthresh": 2147483647,
        "snd_cwnd": 10,
        "rcv_space": 65483,
        "pacing_rate": 2_000_000_000,
        "bytes_acked": rng.randrange(10**9),
        "bytes_received": rng.randrange(10**9),
        "min_rtt": max(rtt // 4, 10),
        "delivery_rate": rng.randrange(10**8),
        "busy_time": busy,
        "rwnd_limited": busy if stalled else 0,
        "snd_wnd": 0 if stalled else 65536,
        "rcv_wnd": 65536,
        "bytes_sent": rng.randrange(10**9),
    }
    return TcpInfo.from_fields(**values)


def _flag(kind: str, severity: str, age: float) -> Flag:
    reasons = {
        "stalled_reader": (
            "Recv-Q 128K has not been read for 12 s (rcv_wnd 0)",
            "the owning process is not calling recv(); check if it is blocked",
        ),
        "peer_zero_window": (
            "peer advertises a zero window; Send-Q 2.5M waits",
            "the peer is not reading; set TCP_USER_TIMEOUT to bound the wait",
        ),
        "udp_drops": (
            "37 datagrams dropped in the last 5 s (receive buffer full)",
            "read faster or raise SO_RCVBUF (net.core.rmem_max)",
        ),
        "accept_queue_full": (
            "accept queue 129/128 full for 4 s; SYNs are being dropped",
            "accept() faster or raise the backlog and net.core.somaxconn",
        ),
    }
    reason, advice = reasons[kind]
    return Flag(kind, severity, age, reason, advice)


def synthetic_socket(n: int, rng: random.Random) -> Sock:
    kind = n % 10
    process = PROCESSES[n % len(PROCESSES)]
    netns = "host" if n % 7 else "bufmon-demo"
    cookie = 1000 + n
    if kind == 0:
        backlog = 128
        s = Sock(
            "tcp",
            "inet",
            "LISTEN",
            "0.0.0.0",
            8000 + n % 50,
            "0.0.0.0",
            0,
            rng.randrange(backlog + 2) if n % 40 == 0 else 0,
            backlog,
            (0, RCVBUF, 0, SNDBUF, 0, 0, 0, 0, 0),
            None,
            "off",
            0,
            0,
            0,
            20000 + n,
            cookie,
            netns,
        )
        if s.recv_q > backlog:
            s.flags = [*s.flags, _flag("accept_queue_full", "critical", 4)]
    elif kind == 1:
        s = Sock(
            "tcp",
            "inet",
            "TIME-WAIT",
            "10.0.0.5",
            40000 + n % 20000,
            "10.0.3.9",
            5432,
            0,
            0,
            None,
            None,
            "timewait",
            30000,
            0,
            0,
            0,
            cookie,
            netns,
        )
    elif kind == 2:
        rmem = rng.randrange(0, 200000) if n % 20 == 2 else rng.randrange(0, 4000)
        drops = 37 if rmem > 150000 else 0
        s = Sock(
            "udp",
            "inet6" if n % 4 else "inet",
            "UNCONN",
            "::" if n % 4 else "0.0.0.0",
            5353 + n % 100,
            "*",
            0,
            rmem,
            0,
            (rmem, 212992, 0, 212992, 0, 0, 0, 0, drops),
            None,
            "off",
            0,
            0,
            0,
            30000 + n,
            cookie,
            netns,
        )
        if drops:
            s.flags = [*s.flags, _flag("udp_drops", "warning", 5)]
    else:
        stalled = n % 97 == 3
        zero = n % 89 == 4
        rmem = RCVBUF if stalled else rng.randrange(0, RCVBUF // (1 if n % 13 == 0 else 40))
        wqueued = SNDBUF if zero else rng.randrange(0, 8192)
        s = Sock(
            "tcp",
            "inet",
            "ESTAB",
            f"10.0.{n % 4}.{n % 250 + 1}",
            443 if n % 3 else 5432,
            f"192.168.{n % 200}.{n % 251 + 1}",
            30000 + n % 30000,
            rmem,
            wqueued,
            (rmem, RCVBUF, 0, SNDBUF, 4096, wqueued, 0, 0, 0),
            _info(rng, zero),
            "persist" if zero else "on",
            200,
            0,
            1000,
            40000 + n,
            cookie,
            netns,
        )
        if stalled:
            s.flags = [*s.flags, _flag("stalled_reader", "critical", 12)]
        if zero:
            s.flags = [*s.flags, _flag("peer_zero_window", "warning", 65)]
        s.rates = _rates(n)
    s.process = None if kind == 1 else process
    return s


def _rates(n: int) -> Rates | None:
    """Made-up rates (none for every 11th connection, as on a first sample); from `n`
    alone so they leave the random draws of the other fields as they were."""
    if n % 11 == 0:
        return None
    retrans = 2.5 if n % 17 == 0 else 0.0
    return Rates(float(n * 7919 % 2000 * 512), float(n * 104729 % 1500 * 256), retrans, 0.01)


def synthetic_snapshot(count: int, seed: int = 7) -> Snapshot:
    rng = random.Random(seed)
    socks = [synthetic_socket(n, rng) for n in range(count)]
    system = SystemFacts(
        counters={"TcpExt.ListenOverflows": 1200, "Tcp.RetransSegs": 51000},
        deltas={
            "TcpExt.ListenOverflows": 3,
            "TcpExt.PruneCalled": 0,
            "TcpExt.TCPRcvQDrop": 0,
            "Tcp.RetransSegs": 12,
            "Udp.RcvbufErrors": 37,
        },
        interval=1.0,
        sockstat={"TCP.mem": 4210},
        sysctls={"tcp_mem": [188088, 250784, 376176]},
    )
    return Snapshot(
        TIME,
        HOST,
        socks,
        system,
        notices=["synthetic data: not from this host"],
        namespaces=[
            {"label": "host", "inode": 4026531840, "holder": ""},
            {"label": "bufmon-demo", "inode": 4026532300, "holder": ""},
        ],
    )


class StaticSource:
    """Hands out the given snapshots in turn, then keeps repeating the last one."""

    def __init__(self, *snapshots: Snapshot) -> None:
        self.snapshots = list(snapshots)
        self.refreshes = 0
        self.trail = Trail()
        self.checkpoint: Checkpoint = no_pause  # not called: a refresh here has no steps

    def refresh(self, first_look: FirstLook | None = None) -> Snapshot:
        snap = self.snapshots[min(self.refreshes, len(self.snapshots) - 1)]
        self.refreshes += 1
        return snap

    def series(self, key: SockKey, field: str) -> Series:
        """A made-up rising ramp, the same for every socket (fills rise to full); no
        chrono counter history (the detail screen then judges the sender by its lifetime
        totals)."""
        if field in LIMIT_FIELDS:
            return []
        if field in FILLS:
            return [(TIME - 30 + t, t / 29) for t in range(30)]
        return [(TIME - 30 + t, float(t * t * 100)) for t in range(30)]

    def close(self) -> None:
        """Nothing to release."""


FOCUS_PORT = 7000  # the recorded socket whose reader stalled and recovered
FRAME_STEP = 5.0  # seconds between recorded frames


def _focus_socket(frame: int, rng: random.Random) -> Sock:
    """A reader that keeps up, stalls from frame 20 (full by 36, flagged from 40), and
    catches up at frame 84; its rtt rises with the queue."""
    base = synthetic_socket(3, rng)  # an ESTAB socket (kind 3)
    stalled = 20 <= frame < 84
    rmem = min((frame - 20) * 8192 + 4096, RCVBUF) if stalled else 1024 * (frame % 3)
    s = copy.copy(base)
    s.local_port, s.cookie, s.inode = FOCUS_PORT, 999_999, 999_999
    s.recv_q = rmem
    s.skmem = (rmem, RCVBUF, 0, SNDBUF, 4096, 0, 0, 0, 0)
    s.refill()
    rtt = 2000 + (rmem // 64 if stalled else 0)
    s.info = TcpInfo.from_fields(rtt=rtt, min_rtt=1500, rcv_wnd=0 if rmem >= RCVBUF else 65536)
    s.flags = []
    if 40 <= frame < 84:
        s.flags = [_flag("stalled_reader", "critical", (frame - 36) * FRAME_STEP)]
    return s


class RecordedSource(StaticSource):
    """Ten minutes of made-up history ending at TIME, one frame every FRAME_STEP s, held
    in a real History and Trail: a reader stalls and recovers (a flag rose and cleared),
    tcp_mem pressure comes and goes, listen overflows spike. refresh() gives the last
    frame; series() reads the History as the Monitor's does."""

    def __init__(self, count: int = 300) -> None:
        base = synthetic_snapshot(count)
        frames = int(600 / FRAME_STEP)
        snapshots = [self._frame(base, n, frames) for n in range(frames + 1)]
        super().__init__(snapshots[-1])
        self.history = History(window=600.0)
        for snap in snapshots:
            for s in snap.sockets:
                if s.skmem is not None:
                    self.history.append(s.key, snap.time, record_values(s))
            self.trail.observe(snap, summarize(snap))

    @staticmethod
    def _frame(base: Snapshot, n: int, frames: int) -> Snapshot:
        rng = random.Random(n)
        now = TIME - (frames - n) * FRAME_STEP
        pressure = 60 <= n < 90
        pages = 250_784 + 20_000 if pressure else 120_000 + 1000 * (n % 7)
        system = copy.copy(base.system)
        system.sockstat = {"TCP.mem": pages}
        system.deltas = {**base.system.deltas, "TcpExt.ListenOverflows": 40 if 50 <= n < 56 else 0}
        snap = Snapshot(now, HOST, [*base.sockets, _focus_socket(n, rng)], system)
        snap.notices = list(base.notices)
        snap.namespaces = base.namespaces
        if pressure:
            snap.system_flags = [
                Flag(
                    "memory_pressure",
                    "warning",
                    (n - 60) * FRAME_STEP,
                    "TCP memory 1.1G is past tcp_mem pressure 980M",
                    "find the sockets holding memory (sort by RECV-Q); raise tcp_mem",
                )
            ]
        return snap

    def series(self, key: SockKey, field: str) -> Series:
        return self.history.series(key, field)
