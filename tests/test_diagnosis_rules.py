"""Unit tests of the diagnosis rules, hysteresis and history with synthetic sockets.

These test the pure logic: synthetic snapshots drive the clock (snap.time), so hold and
clear times are exact. Each condition is also made for real in test_diagnosis_real.py.
"""

from __future__ import annotations

import gc
import random
import re
from collections import Counter
from pathlib import Path

import pytest
from factories import make_sock, make_udp

from bufmon.diagnosis import Config, Diagnoser, load_config
from bufmon.diagnosis.history import FIELDS, History
from bufmon.diagnosis.system_rules import busiest_port_group, may_occur
from collectors.model import Process, Snapshot, Sock, SystemFacts, TcpInfo
from collectors.system import SystemReader

PRESSURE = Path(__file__).resolve().parent / "data" / "proc_pressure"  # /proc-like files

DEFAULT_INFO = {"rtt": 50, "min_rtt": 20, "snd_mss": 1448, "snd_wnd": 65536, "rcv_wnd": 65536}


def tcp(
    cookie: int,
    recv_q: int = 0,
    send_q: int = 0,
    *,
    state: str = "ESTAB",
    timer: str = "off",
    r: int = 0,
    rb: int = 131072,
    w: int = 0,
    tb: int = 87040,
    d: int = 0,
    local_port: int = 5000,
    peer_port: int = 40000,
    peer_addr: str = "10.0.0.2",
    **info: int,
) -> Sock:
    values = {**DEFAULT_INFO, **info}
    # Acks, data and window updates all arrive in segments: let any change of tcp_info
    # move segs_in, which the Diagnoser watches to tell a changed sample.
    values.setdefault("segs_in", hash(tuple(sorted(values.items()))) & 0xFFFFFFFF)
    return make_sock(
        state=state,
        local_port=local_port,
        peer_addr=peer_addr,
        peer_port=peer_port,
        recv_q=recv_q,
        send_q=send_q,
        skmem=(r, rb, 0, tb, 0, w, 0, 0, d),
        info=TcpInfo.from_fields(**values),
        timer=timer,
        cookie=cookie,
        process=Process(4242, "app", "root"),
    )


def udp(
    cookie: int, *, r: int = 0, rb: int = 16384, t: int = 0, tb: int = 212992, d: int = 0
) -> Sock:
    return make_udp(
        53,
        recv_q=r,
        send_q=t,
        skmem=(r, rb, t, tb, 0, 0, 0, 0, d),
        inode=2,
        cookie=cookie,
        process=Process(53, "dnsd", "root"),
    )


def bare(
    cookie: int,
    state: str,
    local_port: int,
    peer_port: int,
    local_addr: str = "10.0.0.1",
    peer_addr: str = "10.0.0.2",
) -> Sock:
    """TIME-WAIT or SYN-RECV: no skmem, no tcp_info."""
    return make_sock(
        state=state,
        local_addr=local_addr,
        local_port=local_port,
        peer_addr=peer_addr,
        peer_port=peer_port,
        inode=0,
        cookie=cookie,
    )


def snap(
    t: float,
    socks: list[Sock],
    deltas: dict[str, int] | None = None,
    sockstat: dict[str, int] | None = None,
    sysctls: dict[str, list[int]] | None = None,
) -> Snapshot:
    facts = SystemFacts(deltas=deltas or {}, sockstat=sockstat or {}, sysctls=sysctls or {})
    return Snapshot(time=t, host="test", sockets=socks, system=facts)


def kinds(s: Sock) -> dict[str, str]:
    """{kind: severity} of a socket's flags."""
    return {f.kind: f.severity for f in s.flags}


def run(diag: Diagnoser, times: list[float], make: object) -> list[Snapshot]:
    """Evaluate one snapshot per time; make(t) returns that time's sockets."""
    out = []
    for t in times:
        s = snap(t, make(t))  # type: ignore[operator]
        diag.evaluate(s)
        out.append(s)
    return out


def first_flagged(snaps: list[Snapshot], kind: str) -> float | None:
    for s in snaps:
        if any(f.kind == kind for sock in s.sockets for f in sock.flags):
            return s.time
    return None


# --- stalled and slow readers ---


def test_stalled_reader_rises_after_hold_and_is_critical_when_buffer_full() -> None:
    diag = Diagnoser(Config())
    # The app never reads: bytes_received - Recv-Q stays 1000.
    snaps = run(
        diag,
        [0, 1, 2, 3, 4, 5, 6],
        lambda t: [tcp(1, recv_q=131072, r=139264, rb=131072, rcv_wnd=0, bytes_received=132072)],
    )
    assert first_flagged(snaps, "stalled_reader") == 5
    flag = snaps[-1].sockets[0].flags[0]
    assert (flag.kind, flag.severity, flag.since) == ("stalled_reader", "critical", 6)
    reason = snaps[5].sockets[0].flags[0].reason  # the text is built as the flag rises
    assert "app (pid 4242)" in reason and "has not read for 5.0 s" in reason


def test_an_idle_connection_that_starts_to_stall_is_evaluated_at_once() -> None:
    """Unchanged idle samples are skipped; the first changed one (its queue fills and the
    app stops reading) is looked at, so the flag rises after the same hold, and a
    socket in CLOSE-WAIT is looked at on every sample although it never changes."""
    diag = Diagnoser(Config())
    full = {"recv_q": 131072, "r": 139264, "rcv_wnd": 0, "bytes_received": 132072}

    def sockets(t: float) -> list[Sock]:
        stalled = tcp(1, **full) if t >= 3 else tcp(1, bytes_received=1000)
        return [stalled, tcp(2, state="CLOSE-WAIT", local_port=5001)]

    snaps = run(diag, [float(t) for t in range(40)], sockets)
    assert first_flagged(snaps, "stalled_reader") == 8  # 3 + the 5 s hold
    assert kinds(snaps[-1].sockets[1]) == {"close_wait": "info"}


def test_stalled_reader_is_warning_with_room_left() -> None:
    diag = Diagnoser(Config())
    snaps = run(diag, range(7), lambda t: [tcp(1, recv_q=1000, r=2304, bytes_received=5000)])
    assert kinds(snaps[-1].sockets[0]) == {"stalled_reader": "warning"}


def test_reader_that_keeps_reading_is_not_stalled_but_slow() -> None:
    diag = Diagnoser(Config())
    # Recv-Q stays high (80% of rb) but 4 KB are read every second.
    snaps = run(
        diag,
        range(15),
        lambda t: [
            tcp(1, recv_q=100_000, r=105_000, rb=131072, bytes_received=100_000 + 4096 * int(t))
        ],
    )
    assert first_flagged(snaps, "stalled_reader") is None
    assert kinds(snaps[-1].sockets[0]) == {"slow_reader": "info"}
    # "most of a 10 s window": above half the window needs more than 5 s of samples
    assert first_flagged(snaps, "slow_reader") == 5


def test_slow_reader_ignores_small_queues() -> None:
    diag = Diagnoser(Config())
    snaps = run(
        diag,
        range(15),
        lambda t: [tcp(1, recv_q=30_000, r=30_000, rb=32768, bytes_received=30_000 + 100 * int(t))],
    )
    assert first_flagged(snaps, "slow_reader") is None


# --- flag texts and flags carried over unchanged samples ---


def idle_in(reason: str) -> float:
    match = re.search(r"has not read for ([\d.]+) s", reason)
    assert match, reason
    return float(match.group(1))


def test_flag_text_numbers_are_current_on_every_sample() -> None:
    """The reason's "has not read for N s" is the flag's own age on every sample, also
    when the sample does not change (carried flags): no lag behind `since`."""
    diag = Diagnoser(Config())
    snaps = run(diag, range(25), lambda t: [tcp(1, recv_q=5000, r=8000, bytes_received=10_000)])
    flags = [s.sockets[0].flags[0] for s in snaps[5:]]
    assert [f.since for f in flags] == list(range(5, 25))  # since: current on every sample
    assert [idle_in(f.reason) for f in flags] == [float(t) for t in range(5, 25)]


def test_clearing_flag_text_stops_at_its_last_true_sample() -> None:
    """The app read its queue empty at t=8: while the flag clears, its text does not
    claim a longer stall."""
    diag = Diagnoser(Config())
    snaps = run(
        diag,
        range(10),
        lambda t: [tcp(1, recv_q=0 if t >= 8 else 5000, r=8000, bytes_received=10_000)],
    )
    flag = snaps[9].sockets[0].flags[0]
    assert flag.since == 9 and idle_in(flag.reason) == 7.0


# A change of severity or kind of reason is seen on the very next sample, however soon.
SOON = 0.25


def test_severity_change_rebuilds_the_text_at_once() -> None:
    """Recv-Q fills up to rb while the app still reads nothing: critical, new numbers."""
    diag = Diagnoser(Config())

    def make(t: float) -> list[Sock]:
        queued = 5000 if t < 5 + SOON else 131072
        return [tcp(1, recv_q=queued, r=queued + 3000, bytes_received=5000 + queued)]

    snaps = run(diag, [0, 1, 2, 3, 4, 5, 5 + SOON], make)
    assert kinds(snaps[5].sockets[0]) == {"stalled_reader": "warning"}
    flag = snaps[6].sockets[0].flags[0]
    assert (flag.severity, flag.since) == ("critical", 5 + SOON)
    assert "128 KB wait in Recv-Q" in flag.reason and "has not read for 5.2 s" in flag.reason


def test_new_kind_of_reason_rebuilds_the_text_at_once() -> None:
    """A full UDP receive buffer, then a full send buffer: both warnings, other words."""
    diag = Diagnoser(Config())
    snaps = run(
        diag,
        [0, 1, 2, 2 + SOON],
        lambda t: [udp(1, r=16000, t=0) if t < 2 + SOON else udp(1, r=0, t=212992)],
    )
    assert "Receive buffer" in snaps[2].sockets[0].flags[0].reason
    flag = snaps[3].sockets[0].flags[0]
    assert flag.severity == "warning" and flag.reason.startswith("Send buffer")


def test_unchanged_stalled_reader_still_gets_refresh_wide_findings() -> None:
    """Its sample never changes, yet a receive-buffer overrun is pinned on it."""
    diag = Diagnoser(Config())
    for t in [0, 1, 2, 3, 4, 5, 5 + SOON]:
        deltas = {"TcpExt.TCPRcvQDrop": 3} if t == 5 + SOON else {}
        sock = tcp(1, recv_q=40_000, r=43_000, rb=8192, bytes_received=40_000)
        diag.evaluate(snap(t, [sock], deltas=deltas))
    assert kinds(sock) == {"stalled_reader": "critical", "rcvbuf_overrun": "warning"}


def test_send_side_is_judged_on_every_sample() -> None:
    """snd_wnd reopens while queues, skmem and segs_in stay the same: the zero-window
    flag still clears exactly `clear` seconds later."""
    diag = Diagnoser(Config())
    reopen = 3 + SOON
    times = [0, 1, 2, 3, reopen, 4, 5, 6, reopen + Config().peer_zero_window.clear]
    snaps = run(
        diag, times, lambda t: [tcp(1, send_q=5000, snd_wnd=0 if t < reopen else 65536, segs_in=7)]
    )
    assert "peer_zero_window" in kinds(snaps[7].sockets[0])  # held through `clear`
    assert kinds(snaps[-1].sockets[0]) == {}


def test_flagged_snapshots_stay_acyclic() -> None:
    """Flags build their texts late, yet point at no Sock: replaced snapshots are freed by
    reference counting alone (the GC policy freezes what is live after each refresh)."""
    diag = Diagnoser(Config())
    gc.collect()
    gc.disable()
    try:
        for t in range(12):
            socks = [
                tcp(1, recv_q=5000, r=8000, bytes_received=10_000),  # carried when unchanged
                tcp(2, send_q=5000, snd_wnd=0, bytes_acked=t),  # evaluated every sample
                udp(3, r=16000),
            ]
            s = snap(t, socks, deltas={"TcpExt.TCPRcvQDrop": 1})
            diag.evaluate(s)
            assert t < 5 or all(sock.flags for sock in socks)
            if t % 2:
                _ = [f.reason for sock in socks for f in sock.flags]
            del s, socks
        unreachable = gc.collect()
    finally:
        gc.enable()
    assert unreachable == 0


# --- hysteresis ---


def test_flickering_condition_does_not_flap() -> None:
    """Once raised, a condition false for less than `clear` keeps the flag."""
    diag = Diagnoser(Config())
    recvd = {"n": 10_000}

    def make(t: float) -> list[Sock]:
        if 8 <= t < 10:  # the app reads a little, twice
            recvd["n"] += 10
        return [tcp(1, recv_q=5000, r=8000, bytes_received=recvd["n"])]

    snaps = run(diag, range(20), make)
    flagged = [bool(s.sockets[0].flags) for s in snaps]
    assert flagged == [False] * 5 + [True] * 15
    # held continuously from t=0 to t=19 even through the short reads
    assert snaps[-1].sockets[0].flags[0].since == 19


def test_flag_clears_after_clear_time() -> None:
    diag = Diagnoser(Config())
    snaps = run(
        diag,
        range(16),
        lambda t: [tcp(1, recv_q=5000 if t < 8 else 0, r=8000, bytes_received=10_000)],
    )
    flagged = [bool(s.sockets[0].flags) for s in snaps]
    # raised at 5; false from 8 (the app read everything); clear = 3 s -> gone at 11
    assert flagged == [False] * 5 + [True] * 6 + [False] * 5


def test_hold_restarts_when_condition_breaks_before_raising() -> None:
    diag = Diagnoser(Config())
    recvd = {"n": 10_000}

    def make(t: float) -> list[Sock]:
        if t in (3, 7):  # reads before 5 s pass
            recvd["n"] += 1
        return [tcp(1, recv_q=5000, r=8000, bytes_received=recvd["n"])]

    snaps = run(diag, range(13), make)
    assert first_flagged(snaps, "stalled_reader") == 12  # 5 s after the last read


def test_hold_times_come_from_config() -> None:
    diag = Diagnoser(load_config(None, ["stalled_reader.hold=2"]))
    snaps = run(diag, range(4), lambda t: [tcp(1, recv_q=10, r=2000, bytes_received=50)])
    assert first_flagged(snaps, "stalled_reader") == 2


# --- zero window and send queue ---


def test_peer_zero_window_warning_then_critical_without_ack_progress() -> None:
    diag = Diagnoser(Config())
    snaps = run(
        diag,
        range(12),
        lambda t: [
            tcp(
                1,
                send_q=500_000,
                w=520_000,
                tb=4194304,
                timer="persist",
                snd_wnd=0,
                bytes_acked=777,
                busy_time=10**6,
                rwnd_limited=10**6,
            )
        ],
    )
    assert first_flagged(snaps, "peer_zero_window") == 3
    assert kinds(snaps[5].sockets[0]) == {"peer_zero_window": "warning"}
    assert kinds(snaps[10].sockets[0]) == {"peer_zero_window": "critical"}
    assert "TCP_USER_TIMEOUT" in snaps[10].sockets[0].flags[0].advice


def test_zero_window_stays_warning_while_acks_move() -> None:
    diag = Diagnoser(Config())
    snaps = run(
        diag,
        range(15),
        lambda t: [tcp(1, send_q=5000, timer="persist", snd_wnd=0, bytes_acked=1000 * int(t))],
    )
    assert {kinds(s.sockets[0]).get("peer_zero_window") for s in snaps[3:]} == {"warning"}


def small_window_sender(t: float, rwnd_share: float) -> list[Sock]:
    """A sender whose peer holds its window at 1 KB (mss 1448), timer "on", Send-Q growing;
    the chrono counters say the peer's window limited it `rwnd_share` of the busy time."""
    busy = int((t + 1) * 1_000_000)  # busy from the start: the totals judge t=0
    return [
        tcp(
            1,
            send_q=2000 + int(t) * 13_000,
            w=4000 + int(t) * 13_000,
            timer="on",
            snd_wnd=1024,
            busy_time=busy,
            rwnd_limited=int(busy * rwnd_share),
            bytes_acked=1000 + int(t) * 1024,
        )
    ]


def test_window_held_below_one_mss_is_a_peer_zero_window() -> None:
    """Not 0, no persist timer: the window in the reason, raised after the usual hold."""
    diag = Diagnoser(Config())
    snaps = run(diag, range(8), lambda t: small_window_sender(t, 0.98))
    assert first_flagged(snaps, "peer_zero_window") == Config().peer_zero_window.hold
    flag = snaps[-1].sockets[0].flags[0]
    assert flag.severity == "warning"  # acks still move
    assert "holds its window at 1,024 bytes, below one MSS (1,448 bytes)" in flag.reason


def test_small_window_that_does_not_limit_the_sender_is_no_flag() -> None:
    diag = Diagnoser(Config())
    snaps = run(diag, range(8), lambda t: small_window_sender(t, 0.1))
    assert first_flagged(snaps, "peer_zero_window") is None


def test_unaccepted_connection_is_no_stalled_reader() -> None:
    """inode 0: still in a listener's accept queue; nobody can read it yet."""
    diag = Diagnoser(Config())

    def make(t: float) -> list[Sock]:
        child = tcp(1, recv_q=5000, r=8000, bytes_received=5000)
        child.inode, child.process = 0, None
        return [child]

    snaps = run(diag, range(12), make)
    assert first_flagged(snaps, "stalled_reader") is None
    assert first_flagged(snaps, "slow_reader") is None


def test_handshake_send_q_is_not_a_zero_window() -> None:
    diag = Diagnoser(Config())
    snaps = run(diag, range(12), lambda t: [tcp(1, send_q=1, state="SYN-SENT", snd_wnd=0)])
    assert all(not s.sockets[0].flags for s in snaps)


@pytest.mark.parametrize(
    ("chrono", "cause", "severity"),
    [
        ({"busy_time": 1000, "rwnd_limited": 900}, "peer's receive window", "warning"),
        ({"busy_time": 1000, "sndbuf_limited": 700}, "our send buffer", "warning"),
        ({"busy_time": 1000}, "the network (cwnd)", "info"),
    ],
)
def test_send_queue_full_names_the_cause(chrono: dict[str, int], cause: str, severity: str) -> None:
    diag = Diagnoser(Config())
    snaps = run(
        diag, range(6), lambda t: [tcp(1, send_q=80_000, w=85_000, tb=87040, timer="on", **chrono)]
    )
    flag = snaps[-1].sockets[0].flags[0]
    assert (flag.kind, flag.severity) == ("send_queue_full", severity)
    assert cause in flag.reason


# --- receive-buffer overrun ---


def test_rcvbuf_overrun_blames_sockets_over_their_buffer() -> None:
    diag = Diagnoser(Config())
    over = tcp(1, recv_q=40_000, r=43_000, rb=8192, bytes_received=40_000)
    fine = tcp(2, recv_q=1000, r=2000, rb=131072, bytes_received=1000)
    s = snap(1.0, [over, fine], deltas={"TcpExt.PruneCalled": 3, "TcpExt.TCPRcvQDrop": 2})
    diag.evaluate(s)
    assert kinds(over) == {"rcvbuf_overrun": "warning"}
    assert "thrown away" in over.flags[0].reason and "TCPRcvQDrop +2" in over.flags[0].reason
    assert kinds(fine) == {}
    assert s.system_flags == []


def test_rcvbuf_overrun_without_a_culprit_is_a_system_flag() -> None:
    diag = Diagnoser(Config())
    s = snap(1.0, [tcp(1)], deltas={"TcpExt.RcvPruned": 1})
    diag.evaluate(s)
    assert [f.kind for f in s.system_flags] == ["rcvbuf_overrun"]


@pytest.mark.parametrize("loss", ["RcvPruned", "OfoPruned", "TCPRcvQDrop", "TCPZeroWindowDrop"])
def test_each_loss_counter_is_a_loss_claim(loss: str) -> None:
    diag = Diagnoser(Config())
    over = tcp(1, recv_q=40_000, r=43_000, rb=8192, bytes_received=40_000)
    diag.evaluate(snap(1.0, [over], deltas={f"TcpExt.{loss}": 1}))
    assert kinds(over) == {"rcvbuf_overrun": "warning"} and "thrown away" in over.flags[0].reason


def test_pruning_alone_is_an_info_without_a_loss_claim() -> None:
    """PruneCalled (and TCPRcvCollapsed) without a loss counter: the kernel made room by
    collapsing the queue; an info on the full socket, no system flag, no "lost"."""
    diag = Diagnoser(Config())
    over = tcp(1, recv_q=40_000, r=43_000, rb=8192, bytes_received=40_000)
    s = snap(1.0, [over], deltas={"TcpExt.PruneCalled": 212, "TcpExt.TCPRcvCollapsed": 4})
    diag.evaluate(s)
    assert kinds(over) == {"rcvbuf_overrun": "info"}
    reason = over.flags[0].reason
    assert "PruneCalled +212" in reason and "nothing was lost" in reason
    assert "thrown away" not in reason and "retransmit" not in reason
    assert s.system_flags == []
    alone = snap(2.0, [tcp(2)], deltas={"TcpExt.PruneCalled": 5})
    Diagnoser(Config()).evaluate(alone)
    assert alone.system_flags == []


def test_collapse_alone_and_tcp_drops_are_not_loss() -> None:
    """TCPRcvCollapsed is CPU work; a TCP socket's rising d counts zero-window probes."""
    diag = Diagnoser(Config())
    for t in range(6):
        s = snap(t, [tcp(1, recv_q=0, d=t * 10)], deltas={"TcpExt.TCPRcvCollapsed": 5})
        diag.evaluate(s)
        assert s.system_flags == [] and list(s.sockets[0].flags) == []


# --- listeners ---


def test_accept_queue_full_is_critical_after_a_short_hold() -> None:
    diag = Diagnoser(Config())
    snaps = run(diag, [0, 0.5, 1.0], lambda t: [tcp(1, 3, 2, state="LISTEN", peer_port=0)])
    assert first_flagged(snaps, "accept_queue_full") == 1.0
    assert kinds(snaps[-1].sockets[0]) == {"accept_queue_full": "critical"}


def test_accept_queue_warning_at_80_percent_for_2_s() -> None:
    diag = Diagnoser(Config())
    snaps = run(diag, range(4), lambda t: [tcp(1, 82, 100, state="LISTEN", peer_port=0)])
    assert first_flagged(snaps, "accept_queue_full") == 2
    assert kinds(snaps[-1].sockets[0]) == {"accept_queue_full": "warning"}


def test_rising_listener_drops_mean_dropped_syns() -> None:
    diag = Diagnoser(Config())
    snaps = run(
        diag, range(3), lambda t: [tcp(1, 0, 128, state="LISTEN", peer_port=0, d=int(t) * 5)]
    )
    assert kinds(snaps[-1].sockets[0]) == {"accept_queue_full": "critical"}
    assert "SYNs are being dropped (5 on this listener" in snaps[-1].sockets[0].flags[0].reason


def test_syn_backlog_counts_half_open_connections_per_listener() -> None:
    diag = Diagnoser(Config())

    def make(t: float) -> list[Sock]:
        listener = tcp(1, 0, 4, state="LISTEN", peer_port=0, local_port=80)
        listener.local_addr = "0.0.0.0"
        other = tcp(2, 0, 4, state="LISTEN", peer_port=0, local_port=81)
        half_open = [bare(100 + i, "SYN-RECV", 80, 1000 + i) for i in range(5)]
        return [listener, other, *half_open]

    snaps = run(diag, range(3), make)
    assert kinds(snaps[-1].sockets[0]) == {"syn_backlog": "warning"}
    assert kinds(snaps[-1].sockets[1]) == {}
    assert "5 half-open connections" in snaps[-1].sockets[0].flags[0].reason


def test_syn_cookies_blame_the_busiest_listener_or_the_system() -> None:
    diag = Diagnoser(Config())
    s = snap(0, [tcp(1, 0, 4, state="LISTEN", peer_port=0)], deltas={"TcpExt.SyncookiesSent": 7})
    diag.evaluate(s)
    assert [f.kind for f in s.system_flags] == ["syn_backlog"]
    assert "SyncookiesSent +7" in s.system_flags[0].reason


# --- UDP ---


def test_udp_rising_drops_are_critical_at_once() -> None:
    diag = Diagnoser(Config())
    snaps = run(diag, range(3), lambda t: [udp(1, r=4000, d=int(t) * 10)])
    assert kinds(snaps[0].sockets[0]) == {}
    assert kinds(snaps[1].sockets[0]) == {"udp_drops": "critical"}
    assert "10 datagrams dropped" in snaps[1].sockets[0].flags[0].reason


def test_udp_nearly_full_is_a_warning_and_old_drops_info() -> None:
    diag = Diagnoser(Config())
    snaps = run(diag, range(3), lambda t: [udp(1, r=15_000, d=186), udp(2, d=3)])
    assert kinds(snaps[-1].sockets[0]) == {"udp_drops": "warning"}
    assert kinds(snaps[-1].sockets[1]) == {"udp_drops": "info"}


def test_udp_counter_rise_without_socket_is_a_system_flag() -> None:
    diag = Diagnoser(Config())
    s = snap(0, [udp(1)], deltas={"Udp.RcvbufErrors": 4})
    diag.evaluate(s)
    assert [(f.kind, f.severity) for f in s.system_flags] == [("udp_drops", "warning")]


# --- system rules ---

TCP_MEM = {"tcp_mem": [1000, 2000, 3000]}


@pytest.mark.parametrize(
    ("pages", "severity", "words"),
    [
        (1500, None, ""),
        (1600, "warning", "80%"),
        (2500, "warning", "pressure threshold"),
        (3000, "critical", "hard limit"),
    ],
)
def test_memory_pressure_levels(pages: int, severity: str | None, words: str) -> None:
    diag = Diagnoser(Config())
    s = snap(0, [], sockstat={"TCP.mem": pages}, sysctls=TCP_MEM)
    diag.evaluate(s)
    got = [(f.kind, f.severity) for f in s.system_flags]
    assert got == ([] if severity is None else [("memory_pressure", severity)])
    if words:
        assert words in s.system_flags[0].reason


def test_memory_pressure_state_lasts_until_below_low() -> None:
    diag = Diagnoser(load_config(None, ["memory_pressure.clear=0"]))
    reasons = []
    for t, pages in enumerate([2100, 1200, 900]):
        s = snap(t, [], sockstat={"TCP.mem": pages}, sysctls=TCP_MEM)
        diag.evaluate(s)
        reasons.append(s.system_flags[0].reason if s.system_flags else "")
    assert "pressure threshold" in reasons[0] and "pressure threshold" in reasons[1]
    assert reasons[2] == ""


def test_memory_counters_alone_raise_the_flag() -> None:
    diag = Diagnoser(Config())
    s = snap(0, [], deltas={"TcpExt.TCPAbortOnMemory": 2})
    diag.evaluate(s)
    assert [(f.kind, f.severity) for f in s.system_flags] == [("memory_pressure", "critical")]


def test_memory_pressure_from_recorded_proc_files() -> None:
    """Memory pressure cannot be made on a shared machine: recorded /proc files
    (tests/data/proc_pressure: TCP mem 95000 pages, tcp_mem 50000 100000 150000)."""
    reader = SystemReader(proc_net=str(PRESSURE / "net"), proc_sys=str(PRESSURE / "sys"))
    s = Snapshot(time=0, host="test", sockets=[], system=reader.read(0))
    Diagnoser(Config()).evaluate(s)
    assert [(f.kind, f.severity) for f in s.system_flags] == [("memory_pressure", "warning")]
    assert "95000 pages" in s.system_flags[0].reason


def test_port_exhaustion_flags_the_system_and_the_busiest_group() -> None:
    diag = Diagnoser(Config())
    ports = {"ip_local_port_range": [40000, 40009]}

    def make(t: float) -> list[Sock]:
        busy = [bare(i, "TIME-WAIT", 40000 + i, 5000) for i in range(8)]
        other = [tcp(100, local_port=40008, peer_port=6000)]
        return busy + other

    snaps = []
    for t in range(3):
        s = snap(t, make(t), sysctls=ports)
        diag.evaluate(s)
        snaps.append(s)
    assert snaps[1].system_flags == []  # hold 2 s
    s = snaps[2]
    assert [(f.kind, f.severity) for f in s.system_flags] == [("port_exhaustion", "critical")]
    assert "8 of 10 local ports" in s.system_flags[0].reason
    assert all(kinds(x) == {"port_exhaustion": "critical"} for x in s.sockets[:8])
    assert kinds(s.sockets[8]) == {}


def test_may_occur_says_what_a_count_says() -> None:
    """The gate before the port groups are counted: the same answer as a full count,
    for values that reach, just reach or miss `times`, in any order."""
    rng = random.Random(7)
    for _ in range(400):
        n = rng.randrange(0, 300)
        values = [rng.choice((80, 443, rng.randrange(1024, 1100))) for _ in range(n)]
        if rng.random() < 0.5:
            values.sort()
        most = max(Counter(values).values(), default=0)
        for times in {most - 1, most, most + 1, n / 2, n * 0.8, rng.uniform(0, n + 2)}:
            assert may_occur(values, times) == (most >= times), (values, times)


def test_busiest_port_group_counts_groups_not_remote_ports() -> None:
    """The remote-port count only rules groups out: 10 sockets on 10 remote ports
    cannot hold half a 10-port range; two groups sharing remote port 5000 are
    counted apart, and one at exactly half the range is found."""
    spread = [bare(i, "TIME-WAIT", 40000 + i, 5000 + i) for i in range(10)]
    assert busiest_port_group(spread, [40000, 40009], 0.5) is None
    group_a = [bare(i, "TIME-WAIT", 40000 + i, 5000, peer_addr="10.0.0.2") for i in range(5)]
    group_b = [bare(10 + i, "TIME-WAIT", 40005 + i, 5000, peer_addr="10.0.0.3") for i in range(4)]
    assert busiest_port_group(group_a[:3] + group_b, [40000, 40009], 0.5) == (
        ("host", "10.0.0.1", "10.0.0.3", 5000),
        4,
        10,
    )
    found = busiest_port_group(group_a + group_b, [40000, 40009], 0.5)
    assert found == (("host", "10.0.0.1", "10.0.0.2", 5000), 5, 10)


def test_nagle_hint_is_info_and_says_nodelay_is_invisible() -> None:
    diag = Diagnoser(Config())
    snaps = run(
        diag,
        range(11),
        lambda t: [
            tcp(
                1,
                rtt=40_000,
                min_rtt=50,
                delivery_rate_app_limited=1,
                data_segs_out=100,
                bytes_acked=10_000,
            )
        ],
    )
    assert first_flagged(snaps, "nagle_hint") == 10
    flag = snaps[-1].sockets[0].flags[0]
    assert flag.severity == "info" and "cannot see TCP_NODELAY" in flag.reason


NAGLE_INFO = {
    "rtt": 40_000,
    "min_rtt": 50,
    "delivery_rate_app_limited": 1,
    "data_segs_out": 100,
    "bytes_acked": 10_000,
}


@pytest.mark.parametrize(
    ("held", "fields"),
    [
        ("persist", {"timer": "persist", "send_q": 3000}),
        ("zero window", {"snd_wnd": 0, "send_q": 3000}),
        ("window below one MSS", {"snd_wnd": 1024}),
        ("rwnd-limited", {"busy_time": 5_000_000, "rwnd_limited": 4_900_000}),
    ],
)
def test_no_nagle_hint_on_a_sender_the_peer_window_holds(held: str, fields: dict) -> None:
    diag = Diagnoser(Config())
    snaps = run(diag, range(12), lambda t: [tcp(1, **{**NAGLE_INFO, **fields})])
    assert first_flagged(snaps, "nagle_hint") is None, held


def test_no_nagle_hint_for_bulk_with_big_segments() -> None:
    diag = Diagnoser(Config())
    snaps = run(
        diag,
        range(12),
        lambda t: [
            tcp(
                1,
                rtt=40_000,
                min_rtt=50,
                delivery_rate_app_limited=0,
                data_segs_out=100,
                bytes_acked=144_800,
            )
        ],
    )
    assert first_flagged(snaps, "nagle_hint") is None


# --- closed sockets, single sample ---


def test_closed_flagged_socket_lingers_then_goes() -> None:
    diag = Diagnoser(load_config(None, ["history.linger=10"]))
    stalled = lambda t: [tcp(1, recv_q=10, r=2000, bytes_received=50)]  # noqa: E731
    run(diag, range(6), stalled)
    s = snap(6, [])
    diag.evaluate(s)
    assert [(x.cookie, x.closed, kinds(x)) for x in s.sockets] == [
        (1, True, {"stalled_reader": "warning"})
    ]
    s = snap(16, [])
    diag.evaluate(s)
    assert s.sockets == []


def test_single_sample_shows_only_what_one_sample_tells() -> None:
    diag = Diagnoser(Config())
    socks = [
        tcp(1, 3, 2, state="LISTEN", peer_port=0),
        tcp(2, send_q=9000, snd_wnd=0),
        tcp(3, recv_q=131072, r=139264, rb=131072, rcv_wnd=0),  # stalled? unknowable
        udp(4, r=15_000),
    ]
    s = snap(0, socks, sockstat={"TCP.mem": 1700}, sysctls=TCP_MEM)
    diag.evaluate(s, single_sample=True)
    assert [kinds(x) for x in s.sockets] == [
        {"accept_queue_full": "critical"},
        {"peer_zero_window": "warning"},
        {},
        {"udp_drops": "warning"},
    ]
    assert all(f.since == 0 for x in s.sockets for f in x.flags)
    assert "one sample cannot tell" in s.sockets[1].flags[0].reason
    assert [f.kind for f in s.system_flags] == ["memory_pressure"]
    assert len(diag.history) == 0


# --- history ---


def test_history_series_and_change_only_storage() -> None:
    diag = Diagnoser(Config())
    run(
        diag,
        range(10),
        lambda t: [
            tcp(1, recv_q=100 * int(t), r=1000 * int(t), rb=10_000, rtt=5000, bytes_received=9999),
            tcp(2),
        ],
    )  # idle: one record
    key1, key2 = ("host", 1), ("host", 2)
    assert len(diag.history) == 2
    assert diag.history.series(key1, "recv_q") == [(float(t), 100.0 * t) for t in range(10)]
    assert diag.history.series(key1, "rfill")[3] == (3.0, 0.3)
    assert diag.history.series(key1, "rtt")[0] == (0.0, 5000.0)
    assert diag.history.series(key2, "send_q") == [(0.0, 0.0)]
    with pytest.raises(KeyError):
        diag.history.series(key1, "nope")


def test_history_forgets_closed_sockets_and_trims_to_window() -> None:
    diag = Diagnoser(load_config(None, ["history.window=20"]))
    run(diag, range(40), lambda t: [tcp(1, recv_q=int(t) + 1, bytes_received=10**6 + int(t))])
    times = [t for t, _ in diag.history.series(("host", 1), "recv_q")]
    assert times[-1] == 39 and 17 <= times[0] <= 19
    s = snap(40, [])
    diag.evaluate(s)
    assert len(diag.history) == 0 and diag.history.nbytes() == 0


def test_history_forgets_a_socket_replaced_in_the_same_refresh() -> None:
    """As many sockets as before, one of them new: the closed one is still forgotten."""
    diag = Diagnoser(Config())
    run(diag, range(3), lambda t: [tcp(1), tcp(2)])
    run(diag, [3.0], lambda t: [tcp(1), tcp(3)])
    assert len(diag.history) == 2
    assert diag.history.series(("host", 3), "recv_q") == [(3.0, 0.0)]
    assert diag.history.series(("host", 2), "recv_q") == []


def test_history_counters_read_back_as_increments() -> None:
    h = History(window=600)
    zero = (0,) * 9
    for t, acked in enumerate([2**32 - 10, 2**32 + 90, 2**32 + 290]):
        h.append(("ns", 1), t, (*zero, acked & 0xFFFFFFFF, *(0,) * (len(FIELDS) - 11)))
    assert h.series(("ns", 1), "acked") == [(0.0, 0.0), (1.0, 100.0), (2.0, 200.0)]


def test_history_budget_caps_busy_sockets() -> None:
    h = History(window=600, max_bytes=1 << 16)  # tiny: each socket keeps the 60-record floor
    for key in range(200):
        h.append(("ns", key), 0, (0,) * (len(FIELDS) - 1))
    h.set_budget()
    for t in range(1, 300):
        h.append(("ns", 0), t, (t,) + (0,) * (len(FIELDS) - 2))
    assert len(h.series(("ns", 0), "recv_q")) == 60
