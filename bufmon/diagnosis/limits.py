"""What held a sender back over the recent past: the peer's window, our send buffer,
or neither (the network). The one judgement behind send_queue_full's cause, the
peer_zero_window rule's small-window case, nagle_hint's exclusion and the detail
screen's "Limited by" line.

The kernel's chrono counters (tcp_info busy_time, rwnd_limited, sndbuf_limited) count
microseconds since the connection began; their increments over the last CHRONO_WINDOW
seconds of history tell what limits the sender now. Lifetime totals are used only
while there is no such history yet, and the verdict says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bufmon.diagnosis.config import SendQueueFull
from collectors.model import TcpInfo

CHRONO_WINDOW = 10.0  # seconds of history behind a verdict
CHRONO_FIELDS = ("busy", "rwnd_limited", "sndbuf_limited")  # history fields (increments)
_INFO_FIELDS = ("busy_time", "rwnd_limited", "sndbuf_limited")

Chrono = tuple[int, int, int]  # busy, rwnd_limited, sndbuf_limited (µs)
Series = Sequence[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class Limit:
    cause: str  # "peer", "buffer" or "network"
    rwnd_share: float  # rwnd_limited / busy
    sndbuf_share: float  # sndbuf_limited / busy
    busy: int  # microseconds of busy time judged
    recent: bool  # False: judged by the lifetime totals (no recent history)

    @property
    def share(self) -> float:
        """The share of busy time of the named cause (0 for the network)."""
        return {"peer": self.rwnd_share, "buffer": self.sndbuf_share}.get(self.cause, 0.0)


def totals(info: TcpInfo) -> Chrono | None:
    """The lifetime chrono counters, None on kernels without them (before 4.10)."""
    busy, rwnd, sndbuf = (info.get(name) for name in _INFO_FIELDS)
    if busy is None:
        return None
    return busy, rwnd or 0, sndbuf or 0


def recent(series: Mapping[str, Series], since: float) -> Chrono:
    """Sum of the chrono increments recorded after `since` (History.series of
    CHRONO_FIELDS: each value is the increase since the record before)."""
    sums = [0, 0, 0]
    for i, name in enumerate(CHRONO_FIELDS):
        sums[i] = int(sum(value for t, value in series.get(name, ()) if t > since))
    return sums[0], sums[1], sums[2]


def send_limit(
    info: TcpInfo, window: Chrono | None, cfg: SendQueueFull | None = None
) -> Limit | None:
    """What limits the sender: the recent `window` increments when the sender was busy
    in it, else the lifetime totals; None when the kernel has no chrono counters."""
    cfg = cfg or SendQueueFull()
    total = totals(info)
    if total is None:
        return None
    is_recent = window is not None and window[0] > 0
    busy, rwnd, sndbuf = window if is_recent and window is not None else total
    if busy <= 0:
        return Limit("network", 0.0, 0.0, 0, is_recent)
    rwnd_share, sndbuf_share = rwnd / busy, sndbuf / busy
    if rwnd_share >= cfg.peer_share:
        cause = "peer"
    elif sndbuf_share >= cfg.buffer_share:
        cause = "buffer"
    else:
        cause = "network"
    return Limit(cause, rwnd_share, sndbuf_share, busy, is_recent)
