"""The sizing judgement's pure parts: where a buffer's size comes from, the verdict's
order (application, receiver's buffer, peer, send buffer, network), the texts that
name the knob, the orphan rule and the new settings. Real sockets: test_sizing_real."""

from __future__ import annotations

import os

import pytest

from bufmon.diagnosis import load_config
from bufmon.diagnosis.config import Config, ConfigError, SendQueueFull
from bufmon.diagnosis.limits import Receiver, Source, Window, buffer_source, recent, send_limit
from bufmon.diagnosis.system_rules import orphan_finding
from bufmon.diagnosis.text import Named, accept_queue, buffer_limited
from collectors.model import TcpInfo

SYSCTLS = {
    "tcp_rmem": [4096, 131072, 6291456],
    "tcp_wmem": [4096, 16384, 4194304],
    "rmem_max": [212992],
    "wmem_max": [212992],
    "tcp_moderate_rcvbuf": [1],
}
NAMED = Named(None, "127.0.0.1", 1, "127.0.0.1", 2, 0, 100)


@pytest.mark.parametrize(
    ("size", "side", "kind", "words"),
    [
        (8192, "recv", "application", "below tcp_rmem[1] 131072"),
        (131072, "recv", "autotuned", "room to grow"),
        (6291456, "recv", "ceiling", "equals tcp_rmem[2]"),
        (7000000, "recv", "application", "above tcp_rmem[2]"),
        (2 * 4194304, "send", "application", "above tcp_wmem[2]"),
        (4096, "send", "application", "below tcp_wmem[1] 16384"),
        (4194304, "send", "ceiling", "equals tcp_wmem[2]"),
        (1000000, "send", "autotuned", "unless SO_SNDBUF pinned it"),
    ],
)
def test_buffer_source(size: int, side: str, kind: str, words: str) -> None:
    source = buffer_source(size, side, SYSCTLS)
    assert (source.kind, source.size) == (kind, size)
    assert words in source.how
    assert source.fixed == (kind in ("ceiling", "application"))


def test_buffer_source_names_the_core_cap_and_what_it_cannot_tell() -> None:
    assert "2 x rmem_max cap" in buffer_source(2 * 212992 + 6291456, "recv", SYSCTLS).how
    assert (
        "2 x rmem_max" not in buffer_source(7000000, "recv", {**SYSCTLS, "rmem_max": [1 << 30]}).how
    )
    unknown = buffer_source(8192, "recv", {})
    assert unknown.kind == "unknown" and "cannot tell" in unknown.how
    off = buffer_source(200000, "recv", {**SYSCTLS, "tcp_moderate_rcvbuf": [0]})
    assert off.kind == "system" and "tcp_moderate_rcvbuf is 0" in off.how


def info(**fields: int) -> TcpInfo:
    base = {"busy_time": 1, "rwnd_limited": 0, "sndbuf_limited": 0, "unacked": 1, "snd_cwnd": 10}
    return TcpInfo.from_fields(**{**base, **fields})


SECOND = 1_000_000
CEILING = Source("ceiling", 8192, 8192, "equals tcp_rmem[2]")
GROWING = Source("autotuned", 131072, 6291456, "between tcp_rmem[1] and [2]")


@pytest.mark.parametrize(
    ("window", "receiver", "cause"),
    [
        (Window(SECOND // 4, 0, 0, 1.0), None, "application"),  # busy a quarter of the time
        (Window(SECOND, SECOND * 6 // 10, 0, 1.0), Receiver(CEILING, False), "rcvbuf"),
        (Window(SECOND, SECOND * 6 // 10, 0, 1.0), Receiver(CEILING, True), "network"),
        (Window(SECOND, SECOND * 9 // 10, 0, 1.0), Receiver(CEILING, True), "peer"),
        # a buffer autotuning can still grow follows the reader's pace: the peer's window
        (Window(SECOND, SECOND * 6 // 10, 0, 1.0), Receiver(GROWING, False), "network"),
        (Window(SECOND, SECOND * 9 // 10, 0, 1.0), Receiver(GROWING, False), "peer"),
        (Window(SECOND, SECOND * 9 // 10, 0, 1.0), None, "peer"),
        (Window(SECOND, 0, SECOND * 6 // 10, 1.0), None, "buffer"),
        (Window(SECOND, 0, 0, 1.0, full=0.8), None, "buffer"),  # full, all sent, cwnd free
        (Window(SECOND, 0, 0, 1.0, full=0.2), None, "network"),
        (Window(SECOND, 0, 0, 1.0), None, "network"),
    ],
)
def test_verdict_order(window: Window, receiver: Receiver | None, cause: str) -> None:
    limit = send_limit(info(notsent_bytes=0), window, SendQueueFull(), None, SYSCTLS, receiver)
    assert limit is not None and limit.cause == cause
    if cause == "rcvbuf":
        assert limit.buffer is CEILING


def test_a_full_buffer_with_unsent_data_is_the_network() -> None:
    """Data not yet sent waits on cwnd (a slow link), not on the buffer."""
    window = Window(SECOND, 0, 0, 1.0, full=1.0)
    limit = send_limit(info(notsent_bytes=5000), window, None, None, SYSCTLS)
    assert limit is not None and limit.cause == "network"


def test_send_buffer_source_and_bdp() -> None:
    skmem = (0, 131072, 0, 8192, 0, 9000, 0, 0, 0)
    fields = {"notsent_bytes": 0, "delivery_rate": 10_000_000, "min_rtt": 2000}
    limit = send_limit(info(**fields), Window(SECOND, 0, SECOND, 1.0), None, skmem, SYSCTLS)
    assert limit is not None and limit.cause == "buffer"
    assert limit.buffer is not None and limit.buffer.kind == "application"  # 8 KB < 16 KB
    assert limit.bdp == 20_000  # 10 MB/s x 2 ms


def test_buffer_limited_advice_names_the_knob() -> None:
    window = Window(SECOND, SECOND, 0, 1.0)
    receiver = Receiver(CEILING, False)
    limit = send_limit(info(), window, None, None, SYSCTLS, receiver)
    assert limit is not None
    reason, advice = buffer_limited(NAMED, limit, 1_000_000, 50, NAMED)
    assert "net.ipv4.tcp_rmem" in advice and "autotuning ceiling 8 KB" in reason
    assert "50 µs" in reason
    pinned = Receiver(Source("application", 8192, 6291456, "set by SO_RCVBUF"), False)
    limit = send_limit(info(), window, None, None, SYSCTLS, pinned)
    assert limit is not None
    _, advice = buffer_limited(NAMED, limit, 1_000_000, 50, NAMED)
    assert "SO_RCVBUF (setsockopt) at 4 KB" in advice and "net.core.rmem_max" in advice


def test_accept_queue_advice_follows_tcp_abort_on_overflow() -> None:
    listener = Named(None, "0.0.0.0", 80, "", 0, 3, 2)
    assert "dropped silently" in accept_queue(listener, True, 0, 1, 0)[1]
    assert "is reset" in accept_queue(listener, True, 0, 1, 1)[1]
    assert "tcp_abort_on_overflow" not in accept_queue(listener, True, 0, 1, None)[1]


def test_orphan_sockets_against_tcp_max_orphans() -> None:
    cfg = Config()
    limits = {"tcp_max_orphans": [1000]}
    assert orphan_finding(cfg, {"TCP.orphan": 400}, limits) is None
    warn = orphan_finding(cfg, {"TCP.orphan": 600}, limits)
    assert warn is not None and warn.severity == "warning"
    crit = orphan_finding(cfg, {"TCP.orphan": 950}, limits)
    assert crit is not None and crit.severity == "critical"
    assert "tcp_max_orphans 1000" in crit.text(*crit.args)[0]
    assert orphan_finding(cfg, {"TCP.orphan": 950}, {}) is None  # limit unreadable


def test_new_settings() -> None:
    config = load_config(
        os.devnull,
        ["buffer_limited.hold=2", "close_wait.warn=60", "send_queue_full.busy_share=0.3"],
    )
    assert config.buffer_limited.hold == 2.0
    assert config.close_wait.warn == 60.0
    assert config.send_queue_full.busy_share == 0.3
    with pytest.raises(ConfigError, match="fraction"):
        load_config(os.devnull, ["orphan_sockets.warn=2"])


def test_window_of_a_long_history_starts_at_since() -> None:
    """The detail screen hands over the whole history: the window still spans from the
    record in force at `since`, so busy 10 s over the last 10 s is 100% busy."""
    since = 100.0
    times = [float(t) for t in range(0, 111)]  # a record each second for 110 s
    series = {
        "busy": [(t, 0.0 if t == 0 else 1_000_000.0) for t in times],
        "rwnd_limited": [(t, 0.0) for t in times],
        "sndbuf_limited": [(t, 0.0) for t in times],
        "sfill": [(t, 1.0 if t >= 105 else 0.0) for t in times],
    }
    window = recent(series, since)
    assert window.busy == 10_000_000 and window.span == 10.0
    assert window.full == 5.0  # full from 105 s to the last record at 110 s


def test_a_full_buffer_with_many_packets_in_flight_is_left_to_the_kernel() -> None:
    """Many packets in flight: the chrono counter sees a send buffer limit itself."""
    window = Window(SECOND, 0, 0, 1.0, full=1.0)
    limit = send_limit(info(notsent_bytes=0, unacked=64, snd_cwnd=100), window, None, None)
    assert limit is not None and limit.cause == "network"
