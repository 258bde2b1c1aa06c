"""Per-socket history in packed records: one bytearray per socket, no object per sample.

A record is stored only when a field changed, so an idle socket costs one record.
Records older than the window are trimmed; when the whole history passes its byte
budget, every socket keeps at most its share of it (the busiest lose old records).
"""

from __future__ import annotations

import struct

from collectors.tcpinfo import U32

# Field order of a record. Times are centiseconds since the history's first sample;
# fills are r/rb and w/tb times 10,000 (capped); COUNTERS (bytes, microseconds) are
# stored modulo 2**32 and read back as increments, so they never overflow a field.
# The rates (bufmon.rates) are bytes/s and retransmitted segments/s times 100 (capped).
FIELDS = (
    "time",
    "recv_q",
    "send_q",
    "rtt",
    "rfill",
    "sfill",
    "drops",
    "snd_wnd",
    "rcv_wnd",
    "retrans",
    "acked",
    "received",
    "busy",
    "rwnd_limited",
    "sndbuf_limited",
    "rx_rate",
    "tx_rate",
    "retr_rate",
)
COUNTERS = frozenset({"acked", "received", "busy", "rwnd_limited", "sndbuf_limited"})
RECORD = struct.Struct("<IIIIHHIIIIIIIIIIII")
SIZE = RECORD.size
FILL_SCALE = 10000.0
RETR_SCALE = 100.0
SCALES = {"rfill": FILL_SCALE, "sfill": FILL_SCALE, "retr_rate": RETR_SCALE}
U16 = 0xFFFF
# What a tracked socket costs beyond its records: bytearray header plus dict entry.
OVERHEAD = 160
_INDEX = {name: i for i, name in enumerate(FIELDS)}


def clamp32(value: int) -> int:
    return value if 0 <= value <= U32 else (0 if value < 0 else U32)


def fill16(fill: float) -> int:
    return min(int(fill * FILL_SCALE), U16)


class History:
    """Packed records by socket key; `series` decodes one field for charts and rules."""

    def __init__(self, window: float = 600.0, max_bytes: int = 48 << 20) -> None:
        self.window = window
        self.max_bytes = max_bytes
        self._data: dict[tuple[str, int], bytearray] = {}
        self._epoch: float | None = None
        self._record_bytes = 0
        self._cap = max_bytes  # bytes one socket may keep; set by set_budget()

    def __len__(self) -> int:
        return len(self._data)

    def nbytes(self) -> int:
        """Approximate memory used: record bytes plus a fixed cost per tracked socket."""
        return self._record_bytes + OVERHEAD * len(self._data)

    def _ticks(self, now: float) -> int:
        if self._epoch is None:
            self._epoch = now
        return clamp32(round((now - self._epoch) * 100))

    def append(self, key: tuple[str, int], now: float, values: tuple[int, ...]) -> None:
        """Store one record; values are every field after "time", already clamped."""
        buf = self._data.get(key)
        if buf is None:
            buf = self._data[key] = bytearray()
        tick = self._ticks(now)
        buf += RECORD.pack(tick, *values)
        self._record_bytes += SIZE
        # Trim rarely: only once the oldest record is a tenth of a window past due.
        limit = tick - int(self.window * 110)
        if RECORD.unpack_from(buf, 0)[0] < limit or len(buf) > self._cap:
            self._trim(buf, tick - int(self.window * 100))

    def _trim(self, buf: bytearray, oldest: int) -> None:
        cut = 0
        end = len(buf) - SIZE
        while cut < end and RECORD.unpack_from(buf, cut)[0] < oldest:
            cut += SIZE
        cut = max(cut, len(buf) - self._cap // SIZE * SIZE)
        if cut > 0:
            del buf[:cut]
            self._record_bytes -= cut

    def set_budget(self) -> None:
        """Share max_bytes among the tracked sockets (at least one minute of records each)."""
        per_socket = self.max_bytes // max(len(self._data), 1)
        self._cap = max(per_socket // SIZE, 60) * SIZE

    def forget(self, key: tuple[str, int]) -> None:
        buf = self._data.pop(key, None)
        if buf is not None:
            self._record_bytes -= len(buf)

    def records(self, key: tuple[str, int], since: float) -> list[tuple[float, tuple[int, ...]]]:
        """(time, record) from `since` on, plus the record in force at `since`."""
        buf = self._data.get(key)
        if not buf or self._epoch is None:
            return []
        epoch = self._epoch
        out: list[tuple[float, tuple[int, ...]]] = []
        for record in RECORD.iter_unpack(buf):
            t = epoch + record[0] / 100
            if t <= since and out:
                out.clear()
            out.append((t, record))
        return out

    def series(
        self, key: tuple[str, int], field: str, since: float = float("-inf")
    ) -> list[tuple[float, float]]:
        """(time, value) of one field over the window (or from `since` on, with the
        record in force at `since`); rtt in microseconds, fills 0..1+, rates per second."""
        i = _INDEX.get(field)
        if i is None or i == 0:
            raise KeyError(f"unknown history field {field!r}; known: {', '.join(FIELDS[1:])}")
        records = self.records(key, since)
        if field in COUNTERS:  # stored modulo 2**32: the increment since the record before
            out, before = [], None
            for t, record in records:
                value = record[i]
                out.append((t, 0.0 if before is None else float((value - before) & U32)))
                before = value
            return out
        scale = SCALES.get(field, 1.0)
        return [(t, record[i] / scale) for t, record in records]
