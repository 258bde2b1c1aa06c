"""struct tcp_info (include/uapi/linux/tcp.h), decoded by the length the kernel sent.

Older kernels send a prefix of the struct; fields past the end are simply absent.
A TcpInfo keeps the raw bytes and decodes a field when asked: most sockets of a
refresh are never looked at field by field, so this saves both time and memory.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import lru_cache
from typing import Any

# (name, struct code) in kernel order after the first 8 bytes of u8 fields.
_FIELDS: tuple[tuple[str, str], ...] = (
    ("rto", "I"),
    ("ato", "I"),
    ("snd_mss", "I"),
    ("rcv_mss", "I"),
    ("unacked", "I"),
    ("sacked", "I"),
    ("lost", "I"),
    ("retrans", "I"),
    ("fackets", "I"),
    ("last_data_sent", "I"),
    ("last_ack_sent", "I"),
    ("last_data_recv", "I"),
    ("last_ack_recv", "I"),
    ("pmtu", "I"),
    ("rcv_ssthresh", "I"),
    ("rtt", "I"),
    ("rttvar", "I"),
    ("snd_ssthresh", "I"),
    ("snd_cwnd", "I"),
    ("advmss", "I"),
    ("reordering", "I"),
    ("rcv_rtt", "I"),
    ("rcv_space", "I"),
    ("total_retrans", "I"),
    ("pacing_rate", "Q"),
    ("max_pacing_rate", "Q"),
    ("bytes_acked", "Q"),
    ("bytes_received", "Q"),
    ("segs_out", "I"),
    ("segs_in", "I"),
    ("notsent_bytes", "I"),
    ("min_rtt", "I"),
    ("data_segs_in", "I"),
    ("data_segs_out", "I"),
    ("delivery_rate", "Q"),
    ("busy_time", "Q"),
    ("rwnd_limited", "Q"),
    ("sndbuf_limited", "Q"),
    ("delivered", "I"),
    ("delivered_ce", "I"),
    ("bytes_sent", "Q"),
    ("bytes_retrans", "Q"),
    ("dsack_dups", "I"),
    ("reord_seen", "I"),
    ("rcv_ooopack", "I"),
    ("snd_wnd", "I"),
    ("rcv_wnd", "I"),
    ("rehash", "I"),
    ("total_rto", "H"),
    ("total_rto_recoveries", "H"),
    ("total_rto_time", "I"),
    ("received_ce", "I"),
    ("delivered_e1_bytes", "I"),
    ("delivered_e0_bytes", "I"),
    ("delivered_ce_bytes", "I"),
    ("received_e1_bytes", "I"),
    ("received_e0_bytes", "I"),
    ("received_ce_bytes", "I"),
    ("accecn_fail_mode", "H"),
    ("accecn_opt_seen", "H"),
)
U32 = 0xFFFFFFFF  # tcp_info's __u32 counters wrap at this mask
_HEAD = ("state", "ca_state", "retransmits", "probes", "backoff", "options")
# Bytes 6 and 7 are bitfields: name -> (byte offset, shift, mask).
_BITFIELDS = {
    "snd_wscale": (6, 0, 0xF),
    "rcv_wscale": (6, 4, 0xF),
    "delivery_rate_app_limited": (7, 0, 1),
    "fastopen_client_fail": (7, 1, 3),
}


def _bits_of(byte: int) -> tuple[tuple[int, ...], ...]:
    """Each value of a bitfield byte -> its fields' values, in _BITFIELDS order."""
    fields = [(shift, mask) for at, shift, mask in _BITFIELDS.values() if at == byte]
    return tuple(tuple((value >> shift) & mask for shift, mask in fields) for value in range(256))


_BITS_OF_BYTE = {6: _bits_of(6), 7: _bits_of(7)}  # looked up, not shifted, per socket
_SIZES = {"B": 1, "I": 4, "Q": 8, "H": 2}
CODES = {size: code for code, size in _SIZES.items()}  # struct code by field size
MIN_LEN = 8

Unpack = Callable[[Any, int], tuple[int, ...]]


def _accessors() -> dict[str, tuple[Unpack, int, int, int, int]]:
    """name -> (unpack_from, offset, end, shift, mask) for every field."""
    out: dict[str, tuple[Unpack, int, int, int, int]] = {}
    byte = struct.Struct("=B").unpack_from
    for offset, name in enumerate(_HEAD):
        out[name] = (byte, offset, offset + 1, 0, 0xFF)
    for name, (offset, shift, mask) in _BITFIELDS.items():
        out[name] = (byte, offset, offset + 1, shift, mask)
    offset = MIN_LEN
    for name, code in _FIELDS:
        size = _SIZES[code]
        out[name] = (struct.Struct("=" + code).unpack_from, offset, offset + size, 0, -1)
        offset += size
    return out


_ACCESSORS = _accessors()
FULL_SIZE = max(end for _, _, end, _, _ in _ACCESSORS.values())


def span(name: str) -> tuple[int, int]:
    """(offset, end) of a field in the struct."""
    _, offset, end, _, _ = _ACCESSORS[name]
    return offset, end


# The four "milliseconds since" fields move on every idle socket at every refresh; the
# bytes around them rarely do (the recorder and `watch --json` keep what did not move).
TIME_FIELDS = ("last_data_sent", "last_ack_sent", "last_data_recv", "last_ack_recv")
TIME_PART = slice(span(TIME_FIELDS[0])[0], span(TIME_FIELDS[-1])[1])


class TcpInfo(bytes):
    """One socket's tcp_info, the raw struct itself: fields are decoded on access, and
    fields the kernel did not send read as `default`. One object per socket."""

    __slots__ = ()

    @property
    def raw(self) -> bytes:
        return bytes(self)

    def get(self, name: str, default: int | None = None) -> int | None:
        acc = _ACCESSORS.get(name)
        if acc is None:
            return default
        unpack, offset, end, shift, mask = acc
        if end > len(self):
            return default
        return (unpack(self, offset)[0] >> shift) & mask

    def to_json(self) -> dict[str, int]:
        """Every field the kernel sent, by the kernel's names without the tcpi_ prefix."""
        lay = layout(len(self))
        values = lay.struct.unpack_from(self, 0)
        bits = _BITS_OF_BYTE[6][values[6]] + _BITS_OF_BYTE[7][values[7]]
        return dict(zip(lay.names, values[: len(_HEAD)] + bits + values[MIN_LEN:], strict=True))

    @classmethod
    def from_json(cls, doc: dict[str, int]) -> TcpInfo:
        """The tcp_info a to_json() document describes, as long as the fields it holds."""
        end = max(_ACCESSORS[name][2] for name in doc)
        return cls(cls.from_fields(**doc)[: max(end, MIN_LEN)])

    @classmethod
    def from_fields(cls, **fields: int) -> TcpInfo:
        """A full-length tcp_info with the given fields (others 0): for synthetic data."""
        raw = bytearray(FULL_SIZE)
        for name, value in fields.items():
            _, offset, end, shift, mask = _ACCESSORS[name]
            if name in _BITFIELDS:
                raw[offset] |= (value & mask) << shift
            else:
                code = CODES[end - offset]
                struct.pack_into("=" + code, raw, offset, value)
        return cls(bytes(raw))


class Layout:
    """The whole fields of one tcp_info length, as one struct (for to_json), and the
    names of its JSON fields: the bitfields of bytes 6 and 7 in the kernel's order."""

    __slots__ = ("fields", "names", "struct")

    def __init__(self, length: int) -> None:
        codes, size, names = "8B", MIN_LEN, [*_HEAD, *_BITFIELDS]
        # (JSON names, offset, end) of each whole field; the first 8 bytes are one
        fields = [(tuple(names), 0, MIN_LEN)]
        for name, code in _FIELDS:
            if size + _SIZES[code] > length:
                break
            codes += code
            fields.append(((name,), size, size + _SIZES[code]))
            size += _SIZES[code]
            names.append(name)
        self.struct = struct.Struct("=" + codes)
        self.names = tuple(names)
        self.fields = tuple(fields)


@lru_cache(maxsize=16)
def layout(length: int) -> Layout:
    return Layout(min(length, 512))


def decode(data: bytes | memoryview, offset: int, length: int) -> TcpInfo | None:
    """tcp_info at data[offset:offset+length]; None when too short to hold anything."""
    if length < MIN_LEN:
        return None
    return TcpInfo(memoryview(data)[offset : offset + length])
