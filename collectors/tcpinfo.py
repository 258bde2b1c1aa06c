"""struct tcp_info (include/uapi/linux/tcp.h), decoded by the length the kernel sent.

Older kernels send a prefix of the struct; fields past the end are simply absent.
A TcpInfo keeps the raw bytes and decodes a field when asked: most sockets of a
refresh are never looked at field by field, so this saves both time and memory.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import lru_cache
from itertools import groupby
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
_CODES = {size: code for code, size in _SIZES.items()}
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
                code = {1: "B", 2: "H", 4: "I", 8: "Q"}[end - offset]
                struct.pack_into("=" + code, raw, offset, value)
        return cls(bytes(raw))


class Layout:
    """The whole fields of one tcp_info length, as one struct (for to_json), and the
    names of its JSON fields: the bitfields of bytes 6 and 7 in the kernel's order."""

    __slots__ = ("_shared", "fields", "names", "struct")

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
        self._shared: SharedJson | None = None

    def shared(self) -> SharedJson:
        """This length's SharedJson, made the first time a JSON output asks for it."""
        if self._shared is None:
            self._shared = SharedJson(self)
        return self._shared


# Fields that most connections of a host have in common: the first ones up to fackets
# (state, options, scales, timeouts, MSS, loss counters) and the last ones from rehash
# (counters of rare events). The fields between move with traffic and time.
_STEADY_UNTIL, _STEADY_FROM = "fackets", "rehash"
RUN_TEXTS_MAX = 4096  # texts kept per steady run; past it the run's texts start over


class _RunTexts(dict[bytes, Any]):
    """The JSON text of one steady run of fields by the run's bytes: `v0,"n1":v1,...`,
    an orjson Fragment to store under the run's first name."""

    def __init__(self, offset: int, names: tuple[str, ...]) -> None:
        super().__init__()
        self.offset = offset
        self.names = names

    def __missing__(self, raw: bytes) -> Any:
        import orjson  # late: only the JSON outputs need it

        if len(self) >= RUN_TEXTS_MAX:
            self.clear()
        values = TcpInfo(bytes(self.offset) + raw).to_json()  # the run alone, in its place
        text = orjson.dumps({name: values[name] for name in self.names})
        piece = self[raw] = orjson.Fragment(text[len(orjson.dumps(self.names[0])) + 2 : -1])
        return piece


class SharedJson:
    """tcp_info of one length as the `--json` outputs write it: each steady run of
    fields (see _STEADY_UNTIL) is one text, made once for all the sockets with the same
    bytes there; the moving fields are numbers. orjson writes from it the same JSON as
    from TcpInfo.to_json()."""

    __slots__ = ("moving", "runs", "template", "unpack_moving")

    def __init__(self, lay: Layout) -> None:
        names = lay.names
        until = names.index(_STEADY_UNTIL) + 1 if _STEADY_UNTIL in names else len(names)
        after = names.index(_STEADY_FROM) if _STEADY_FROM in names else len(names)
        steady = {*names[:until], *names[after:]}
        runs: list[tuple[str, slice, _RunTexts]] = []
        moving: list[str] = []
        codes = "="
        for is_steady, group in groupby(lay.fields, key=lambda field: field[0][0] in steady):
            fields = list(group)
            start, end = fields[0][1], fields[-1][2]
            if is_steady:
                run = tuple(name for field_names, _, _ in fields for name in field_names)
                runs.append((run[0], slice(start, end), _RunTexts(start, run)))
                codes += f"{end - start}x"
            else:
                moving += [field_names[0] for field_names, _, _ in fields]
                codes += "".join(_CODES[stop - at] for _, at, stop in fields)
        self.runs = tuple(runs)
        self.moving = tuple(moving)
        self.unpack_moving = struct.Struct(codes).unpack_from
        keys = {*self.moving, *(key for key, _, _ in self.runs)}
        self.template = dict.fromkeys(name for name in names if name in keys)  # their order

    def object(self, info: TcpInfo) -> dict[str, Any]:
        """The JSON object of `info` (of this length): shared texts and numbers."""
        out = self.template.copy()
        out.update(zip(self.moving, self.unpack_moving(info), strict=True))
        for key, cut, texts in self.runs:
            out[key] = texts[info[cut]]
        return out


@lru_cache(maxsize=16)
def layout(length: int) -> Layout:
    return Layout(min(length, 512))


def decode(data: bytes | memoryview, offset: int, length: int) -> TcpInfo | None:
    """tcp_info at data[offset:offset+length]; None when too short to hold anything."""
    if length < MIN_LEN:
        return None
    return TcpInfo(memoryview(data)[offset : offset + length])
