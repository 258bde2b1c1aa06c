"""What limits a connection over the recent past, and where its buffer sizes come from:
the one judgement behind send_queue_full's cause, buffer_limited, the peer_zero_window
rule's small-window case, nagle_hint's exclusion and the detail screen's "Limited by".

The kernel's chrono counters (tcp_info busy_time, rwnd_limited, sndbuf_limited) count
microseconds since the connection began; their increments over the last CHRONO_WINDOW
seconds of history tell what limits the sender now. Lifetime totals are used only
while there is no such history yet, and the verdict says so.

Causes: "application" (busy less than `busy_share` of the window: little to send),
"peer" (the peer's receive window: the peer reads slowly, or is not in view),
"rcvbuf" (the receive window of a peer in view that keeps up and whose buffer cannot
grow by itself: its receive buffer; one autotuning can still grow follows the reading
application's pace, so that window is the peer's),
"buffer" (our send buffer) and "network" (none of those: cwnd, loss, the path).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from bufmon.diagnosis.config import SendQueueFull
from collectors.model import SK_RCVBUF, SK_RMEM, SK_SNDBUF, SK_WQUEUED, Sock, TcpInfo

CHRONO_WINDOW = 10.0  # seconds of history behind a verdict
CHRONO_FIELDS = ("busy", "rwnd_limited", "sndbuf_limited")  # history fields (increments)
LIMIT_FIELDS = (*CHRONO_FIELDS, "sfill")  # the history a verdict reads
_INFO_FIELDS = ("busy_time", "rwnd_limited", "sndbuf_limited")
READER_KINDS = frozenset({"stalled_reader", "slow_reader"})  # the receiving app is behind

Series = Sequence[tuple[float, float]]
Sysctls = Mapping[str, list[int]]


class Window(NamedTuple):
    """Chrono increments (µs) over `span` seconds (None: lifetime totals), and the
    seconds of it the send buffer was full (w >= tb)."""

    busy: int
    rwnd: int
    sndbuf: int
    span: float | None = None
    full: float = 0.0


class Source(NamedTuple):
    """Where one buffer's size comes from, as far as the kernel's numbers tell."""

    kind: str  # "autotuned", "ceiling", "application", "system" or "unknown"
    size: int  # rb or tb (bytes)
    ceiling: int | None  # tcp_rmem[2] / tcp_wmem[2]
    how: str  # how it was inferred (or why it cannot be)

    @property
    def fixed(self) -> bool:
        """The buffer cannot grow by itself: at the autotuning ceiling or set by the app."""
        return self.kind in ("ceiling", "application")


class Receiver(NamedTuple):
    """The local socket on the receiving end of a sender, when it is in view."""

    rcvbuf: Source
    behind: bool  # its application does not keep up (flagged reader, or r >= rb)


class Limit(NamedTuple):
    cause: str  # see the module docstring
    rwnd_share: float  # rwnd_limited / busy
    sndbuf_share: float  # sndbuf_limited / busy
    busy: int  # microseconds of busy time judged
    recent: bool  # False: judged by the lifetime totals (no recent history)
    busy_share: float | None = None  # busy / window; None for lifetime totals
    buffer: Source | None = None  # the buffer that limits ("buffer", "rcvbuf")
    bdp: int | None = None  # bytes: delivery_rate x min_rtt

    @property
    def share(self) -> float:
        """The share of busy time of the named cause (0 for the others)."""
        if self.cause in ("peer", "rcvbuf"):
            return self.rwnd_share
        return self.sndbuf_share if self.cause == "buffer" else 0.0

    @property
    def rwnd(self) -> bool:
        """The receive window held the sender back."""
        return self.cause in ("peer", "rcvbuf")


def sysctl(sysctls: Sysctls, name: str) -> int | None:
    """The first value of a sysctl, None when it was not readable."""
    values = sysctls.get(name)
    return values[0] if values else None


def totals(info: TcpInfo) -> Window | None:
    """The lifetime chrono counters, None on kernels without them (before 4.10)."""
    busy, rwnd, sndbuf = (info.get(name) for name in _INFO_FIELDS)
    if busy is None:
        return None
    return Window(busy, rwnd or 0, sndbuf or 0)


def recent(series: Mapping[str, Series], since: float) -> Window:
    """Sum of the chrono increments recorded after `since` (History.series of
    LIMIT_FIELDS: each chrono value is the increase since the record before), the
    seconds they cover (from the record in force at `since` to the last one), and the
    seconds of those the send fill was at least 1."""
    sums = [0, 0, 0]
    start, end = float("inf"), float("-inf")
    for i, name in enumerate(CHRONO_FIELDS):
        values = series.get(name, ())
        sums[i] = int(sum(value for t, value in values if t > since))
        if values:  # from the record in force at `since` (or the first) to the last
            first = max((t for t, _ in values if t <= since), default=values[0][0])
            start, end = min(start, first), max(end, values[-1][0])
    fills = series.get("sfill", ())
    full = sum(
        max(fills[i + 1][0] - max(t, since), 0.0)
        for i, (t, fill) in enumerate(fills[:-1])
        if fill >= 1.0
    )
    return Window(sums[0], sums[1], sums[2], max(end - start, 0.0), full)


def bdp(info: TcpInfo) -> int | None:
    """Bandwidth-delay product: delivery rate (bytes/s) times min_rtt (µs)."""
    rate, min_rtt = info.get("delivery_rate"), info.get("min_rtt")
    if not rate or not min_rtt:
        return None
    return rate * min_rtt // 1_000_000


def buffer_source(size: int, side: str, sysctls: Sysctls) -> Source:
    """Where rb (side "recv") or tb ("send") comes from, from the sysctls.

    SO_RCVBUF/SO_SNDBUF store twice the value asked for, capped at 2 x rmem_max/wmem_max,
    and turn autotuning off; autotuning grows a buffer from tcp_rmem[1]/tcp_wmem[1] up to
    tcp_rmem[2]/tcp_wmem[2]. sock_diag does not show the lock bit, so a size autotuning
    could have reached is ambiguous, and the text says so."""
    prefix = "tcp_rmem" if side == "recv" else "tcp_wmem"
    option = "SO_RCVBUF" if side == "recv" else "SO_SNDBUF"
    core = "rmem_max" if side == "recv" else "wmem_max"
    limits = sysctls.get(prefix)
    if limits is None or len(limits) != 3:
        return Source("unknown", size, None, f"{prefix} is not readable here: cannot tell")
    default, ceiling = limits[1], limits[2]
    core_max = sysctl(sysctls, core)
    if size > ceiling:
        capped = f", at the 2 x {core} cap" if core_max and size >= 2 * core_max else ""
        how = f"above {prefix}[2] {ceiling}, which autotuning never passes: set by {option}"
        return Source("application", size, ceiling, how + capped)
    if size == ceiling:
        how = f"equals {prefix}[2]: autotuned to the ceiling (or {option} asked for half of it)"
        return Source("ceiling", size, ceiling, how)
    if size < default:
        how = f"below {prefix}[1] {default}, where autotuning starts: set by {option}"
        return Source("application", size, ceiling, how + " (or shrunk under memory pressure)")
    if side == "recv" and sysctl(sysctls, "tcp_moderate_rcvbuf") == 0:
        how = "tcp_moderate_rcvbuf is 0: no receive autotuning, the size stays as set"
        return Source("system", size, ceiling, how)
    how = f"between {prefix}[1] and [2]: autotuned with room to grow (unless {option} pinned it)"
    return Source("autotuned", size, ceiling, how)


def ends_key(s: Sock) -> tuple[object, ...]:
    """A connection's namespace, protocol and both ends, as seen from `s`."""
    return (s.netns, s.proto, s.local_addr, s.local_port, s.peer_addr, s.peer_port)


def peer_key(s: Sock) -> tuple[object, ...]:
    """ends_key() of the socket on the other end of `s` (when it is local)."""
    return (s.netns, s.proto, s.peer_addr, s.peer_port, s.local_addr, s.local_port)


def local_peer(socks: Iterable[Sock], s: Sock) -> Sock | None:
    """The other end of TCP connection `s` among `socks` (one scan; rules keep an index)."""
    if s.proto != "tcp" or not s.peer_port:
        return None
    key = peer_key(s)
    return next((o for o in socks if o.info is not None and ends_key(o) == key), None)


def reader_behind(flag_kinds: Iterable[str], sock: Sock) -> bool:
    """The receiving application does not keep up: flagged as a stalled or slow reader,
    or its receive memory is at its buffer."""
    sk = sock.skmem
    full = sk is not None and sk[SK_RCVBUF] > 0 and sk[SK_RMEM] >= sk[SK_RCVBUF]
    return full or not READER_KINDS.isdisjoint(flag_kinds)


def receiver_of(peer: Sock | None, flag_kinds: Iterable[str], sysctls: Sysctls) -> Receiver | None:
    """The Receiver judgement of a local peer socket (None when it is not in view)."""
    if peer is None or peer.skmem is None:
        return None
    source = buffer_source(peer.skmem[SK_RCVBUF], "recv", sysctls)
    return Receiver(source, reader_behind(flag_kinds, peer))


SMALL_FLIGHT = 2  # packets in flight: a buffer this small hides from sndbuf_limited


def waits_on_sndbuf(info: TcpInfo, full_share: float, cfg: SendQueueFull) -> bool:
    """The kernel's own sndbuf_limited condition, judged by bufmon where the chrono
    counter cannot see it: one or two segments (64 KB each on loopback) fill the
    buffer, so the writer blocks only after they left and the ack frees room before
    the kernel looks. Full most of the window, all of it sent, cwnd not used up."""
    unacked, cwnd = info.get("unacked"), info.get("snd_cwnd")
    if full_share < cfg.buffer_share or info.get("notsent_bytes") != 0:
        return False
    return unacked is not None and cwnd is not None and unacked <= min(SMALL_FLIGHT, cwnd - 1)


def send_limit(
    info: TcpInfo,
    window: Window | None,
    cfg: SendQueueFull | None = None,
    skmem: tuple[int, ...] | None = None,
    sysctls: Sysctls | None = None,
    receiver: Receiver | None = None,
) -> Limit | None:
    """What limits the sender: the recent `window` increments when the sender was busy
    in it, else the lifetime totals; None when the kernel has no chrono counters.
    With `sysctls` (and `skmem`) the limiting buffer's source is named; with a
    `receiver` that keeps up, a receive window limit is blamed on its buffer unless
    autotuning can still grow it."""
    cfg = cfg or SendQueueFull()
    total = totals(info)
    if total is None:
        return None
    is_recent = window is not None and window.busy > 0
    busy, rwnd, sndbuf, span, full = window if is_recent and window is not None else total
    busy_share = min(busy / (span * 1e6), 1.0) if span else None
    if span:
        full_share = full / span
    else:  # lifetime: the sample at hand
        fill = 0.0 if not skmem or not skmem[SK_SNDBUF] else skmem[SK_WQUEUED] / skmem[SK_SNDBUF]
        full_share = 1.0 if fill >= 1.0 else 0.0
    if busy <= 0:
        return Limit("network", 0.0, 0.0, 0, is_recent, busy_share)
    rwnd_share, sndbuf_share = rwnd / busy, sndbuf / busy
    keeps_up = receiver is not None and not receiver.behind
    source = None
    if busy_share is not None and busy_share < cfg.busy_share:
        cause = "application"
    elif (
        keeps_up
        and receiver is not None
        and receiver.rcvbuf.kind != "autotuned"
        and rwnd_share >= cfg.buffer_share
    ):
        cause, source = "rcvbuf", receiver.rcvbuf
    elif rwnd_share >= cfg.peer_share:
        cause = "peer"
    elif sndbuf_share >= cfg.buffer_share or waits_on_sndbuf(info, full_share, cfg):
        cause = "buffer"
        if skmem is not None and sysctls is not None:
            source = buffer_source(skmem[SK_SNDBUF], "send", sysctls)
    else:
        cause = "network"
    return Limit(cause, rwnd_share, sndbuf_share, busy, is_recent, busy_share, source, bdp(info))
