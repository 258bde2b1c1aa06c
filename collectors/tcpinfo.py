"""struct tcp_info (include/uapi/linux/tcp.h), decoded by the length the kernel sent.

Older kernels send a prefix of the struct; fields past the end are simply absent.
"""

from __future__ import annotations

import struct
from functools import lru_cache

from collectors.model import TcpInfo

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
_HEAD = ("state", "ca_state", "retransmits", "probes", "backoff", "options")
_BITS = ("_bits6", "_bits7")  # split by TcpInfo.get
_SIZES = {"I": 4, "Q": 8, "H": 2}
MIN_LEN = 8


class Layout:
    """The fields of one tcp_info length: the head bytes plus the fields that fit whole."""

    __slots__ = ("codes", "index", "size", "struct")

    def __init__(self, length: int) -> None:
        codes, size, names = "8B", 8, list(_HEAD) + list(_BITS)
        for name, code in _FIELDS:
            if size + _SIZES[code] > length:
                break
            codes += code
            size += _SIZES[code]
            names.append(name)
        self.codes = codes  # struct codes, without byte order, for embedding
        self.size = size
        self.struct = struct.Struct("=" + codes)
        self.index = {name: i for i, name in enumerate(names)}

    @lru_cache(maxsize=64)  # noqa: B019 - a handful of layouts live for the whole run
    def index_at(self, offset: int) -> dict[str, int]:
        """Field positions when the struct's values start at `offset` of a larger tuple."""
        return {name: i + offset for name, i in self.index.items()}


@lru_cache(maxsize=16)
def layout(length: int) -> Layout:
    return Layout(min(length, 512))


def decode(data: bytes | memoryview, offset: int, length: int) -> TcpInfo | None:
    """Decode tcp_info at data[offset:offset+length]; None when too short to hold anything."""
    if length < MIN_LEN:
        return None
    lay = layout(length)
    return TcpInfo(lay.index, lay.struct.unpack_from(data, offset))
