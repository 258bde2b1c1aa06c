"""Per-socket rates from two consecutive samples of the same socket (by cookie).

The one place rates are computed: JSON, the view, filters and the detail history all
read `Sock.rates` as the RateMeter left it. A socket's first sample, and a socket
without tcp_info counters, has no rates (None).

At 40,000 sockets this runs every refresh, so a socket costs little: its counters are
kept as the raw bytes of tcp_info they sit in (one bytes object per socket, keyed by
cookie per namespace), an idle socket is told by comparing those bytes and gets the
shared IDLE rates, and only a socket whose counters moved is decoded.
"""

from __future__ import annotations

import struct

from collectors.checkpoint import Checkpoint, in_steps, no_pause
from collectors.model import IDLE, Rates, Sock
from collectors.tcpinfo import U32, span

# total_retrans .. segs_out of struct tcp_info, in one unpack: total_retrans,
# (pacing_rate, max_pacing_rate), bytes_acked, bytes_received, segs_out.
_OFFSET = span("total_retrans")[0]
_END = span("segs_out")[1]
_COUNTERS = struct.Struct("=I16xQQI")
assert _OFFSET + _COUNTERS.size == _END, "tcp_info layout moved"
_unpack = _COUNTERS.unpack_from

Counters = tuple[int, int, int, int]  # retrans, acked, received, segs_out


def rates_between(before: Counters, after: Counters, seconds: float) -> Rates:
    """Rates over `seconds` from one sample's counters to the next one's."""
    retrans = (after[0] - before[0]) & U32
    sent = (after[3] - before[3]) & U32
    return Rates(
        max(after[2] - before[2], 0) / seconds,
        max(after[1] - before[1], 0) / seconds,
        retrans / seconds,
        retrans / sent if sent else 0.0,
    )


class RateMeter:
    """Keeps each socket's last counters; `measure` sets `rates` on a new sample."""

    def __init__(self) -> None:
        self._last: dict[str, dict[int, bytes]] = {}  # netns -> cookie -> counter bytes
        self._then = 0.0  # time of the last sample: every kept socket's

    @property
    def started(self) -> bool:
        """Some sample's counters are kept for the next one's rates."""
        return self._then != 0.0

    def measure(self, socks: list[Sock], now: float, checkpoint: Checkpoint = no_pause) -> None:
        """Set s.rates on every socket from its previous sample (None on the first).
        Sockets gone since are forgotten. `checkpoint()` is called between steps."""
        seconds = now - self._then
        olds = self._last if seconds > 0 else {}  # a clock stepped back: start over
        news: dict[str, dict[int, bytes]] = {}
        netns: str | None = None
        old: dict[int, bytes] = {}
        new: dict[int, bytes] = {}
        for s in in_steps(socks, checkpoint):
            info = s.info
            if info is None or len(info) < _END:
                continue
            if s.netns is not netns:  # a dump lists each namespace's sockets together
                netns = s.netns
                old = olds.get(netns, {})
                new = news.setdefault(netns, {})
            counters = info[_OFFSET:_END]
            cookie = s.cookie
            new[cookie] = counters
            before = old.get(cookie)
            if before is None:
                continue
            if before == counters:
                s.rates = IDLE
            else:
                s.rates = rates_between(_unpack(before), _unpack(counters), seconds)
        self._last = news
        self._then = now


def rx_rate(s: Sock) -> float | None:
    """Bytes received per second; None without rates (what filters, columns and sorts
    read)."""
    return None if s.rates is None else s.rates.rx_bytes_per_s


def tx_rate(s: Sock) -> float | None:
    """Bytes sent and acknowledged per second."""
    return None if s.rates is None else s.rates.tx_bytes_per_s


def retr_rate(s: Sock) -> float | None:
    """Retransmitted segments per second."""
    return None if s.rates is None else s.rates.retrans_per_s
