"""The recording file format, version 1 (docs/recording-format.md describes it in full).

A file is a header followed by frames. Each frame holds one snapshot, either whole
(a keyframe) or as the difference to the frame before it (a delta). Frames carry a
CRC, so a torn last frame is recognised and costs that frame only.

Everything here is pure encoding: no files, no kernel.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence
from operator import attrgetter
from typing import Any, NamedTuple, TypeVar

from collectors.model import Flag, Process, Rates, Sock, UnixSock
from collectors.tcpinfo import TIME_PART

VERSION = 1
MAGIC = b"\x89BUFMON\n"  # 8 bytes; the high first byte catches text-mode mangling
# magic, version (u16), reserved (u16), JSON length (u32)
HEAD = struct.Struct("<8sHHI")
HEAD_CRC = struct.Struct("<I")
MAX_HEADER_JSON = 1 << 16

FRAME_MAGIC = b"BFRM"
# magic, kind, bits, reserved, time (f64), meta length, blob length, crc32
FRAME = struct.Struct("<4sBBHdIII")
KEYFRAME, DELTA = ord("K"), ord("D")
BIT_FLAG_ROSE = 1  # a flag (socket or system) was raised in this frame
MAX_SECTION = 1 << 30

# A socket row: these attributes in this order, then the tcp_info length (-1: none)
# and the rates (a list, or None; rows of older writers end before them).
ROW_FIELDS = (
    "proto",
    "family",
    "state",
    "local_addr",
    "local_port",
    "peer_addr",
    "peer_port",
    "recv_q",
    "send_q",
    "skmem",
    "timer",
    "uid",
    "inode",
    "cookie",
    "netns",
    "process",
    "flags",
    "closed",
    "unix_fields",
)
row_of = attrgetter(*ROW_FIELDS)
# What a socket's row can change in from one frame to the next (one C call per socket).
# The key (netns, cookie, closed) first.
dynamic_of = attrgetter(
    "netns",
    "cookie",
    "closed",
    "state",
    "recv_q",
    "send_q",
    "skmem",
    "timer",
    "process",
    "flags",
    "unix_fields",
    "rates",
)
R_SKMEM, R_COOKIE, R_NETNS, R_PROCESS, R_FLAGS, R_CLOSED = 9, 13, 14, 15, 16, 17
R_UNIX, R_INFO_LEN, R_RATES = 18, 19, 20
# The fields a delta stores of a socket that stayed and changed: state, recv_q, send_q,
# skmem, timer, process, flags, unix, tcp_info length, rates (the others never change).
DYNAMIC_ROW = (2, 7, 8, 9, 10, 15, 16, 18, 19, 20)
ROW_LEN = R_RATES + 1
OLD_ROW_LEN = R_RATES  # written before rates were recorded: read with rates None
Row = tuple[Any, ...]
S = TypeVar("S", bound=Sock)
Key = tuple[str, int, bool]  # netns, cookie, closed: a closed copy is a socket of its own


class FormatError(Exception):
    """The bytes are not what the format says: one line."""


def row_key(row: Row) -> Key:
    return (row[R_NETNS], row[R_COOKIE], row[R_CLOSED])


def encode_header(meta: dict[str, Any]) -> bytes:
    body = json.dumps(meta, separators=(",", ":")).encode()
    head = HEAD.pack(MAGIC, VERSION, 0, len(body)) + body
    return head + HEAD_CRC.pack(zlib.crc32(head))


def decode_header(data: bytes) -> tuple[dict[str, Any], int]:
    """(header JSON, header size) from the start of a file; FormatError if it is none."""
    if not data:
        raise FormatError("empty file, not a bufmon recording")
    if not MAGIC.startswith(data[: len(MAGIC)]):
        raise FormatError("not a bufmon recording")
    if len(data) < HEAD.size:
        raise FormatError("truncated recording header")
    _, version, _, length = HEAD.unpack_from(data)
    if version > VERSION:
        raise FormatError(
            f"recording format version {version} is newer than this bufmon reads ({VERSION})"
        )
    if version < 1 or length > MAX_HEADER_JSON:
        raise FormatError("corrupt recording header")
    end = HEAD.size + length
    if len(data) < end + HEAD_CRC.size:
        raise FormatError("truncated recording header")
    if HEAD_CRC.unpack_from(data, end)[0] != zlib.crc32(data[:end]):
        raise FormatError("corrupt recording header (checksum)")
    try:
        meta = json.loads(data[HEAD.size : end])
    except ValueError:
        raise FormatError("corrupt recording header") from None
    if not isinstance(meta, dict):
        raise FormatError("corrupt recording header")
    return meta, end + HEAD_CRC.size


class FrameHead(NamedTuple):
    kind: int
    bits: int
    time: float
    meta_len: int
    blob_len: int
    crc: int

    @property
    def size(self) -> int:
        return FRAME.size + self.meta_len + self.blob_len


def frame_crc(head_bytes: bytes, body: bytes) -> int:
    """CRC32 of the frame header without its CRC field, then both sections."""
    return zlib.crc32(body, zlib.crc32(head_bytes[: FRAME.size - 4]))


def encode_frame(kind: int, bits: int, t: float, meta: bytes, blob: bytes) -> bytes:
    head = FRAME.pack(FRAME_MAGIC, kind, bits, 0, t, len(meta), len(blob), 0)
    body = meta + blob
    return head[:-4] + struct.pack("<I", frame_crc(head, body)) + body


# -- sockets -------------------------------------------------------------------------


def row_json(row: Row) -> list[Any]:
    """A row as JSON values: process as [pid, comm, user], flags and rates as lists."""
    out = list(row)
    proc: Process | None = row[R_PROCESS]
    out[R_PROCESS] = _process_json(proc)
    flags: Sequence[Flag] = row[R_FLAGS]
    out[R_FLAGS] = [[f.kind, f.severity, f.since, f.reason, f.advice] for f in flags]
    unix = row[R_UNIX]
    if unix is not None:
        sock_type, peer_inode, icons, senders_q, peer = unix
        out[R_UNIX] = [sock_type, peer_inode, list(icons), senders_q, _process_json(peer)]
    return out


def _process_json(proc: Process | None) -> list[Any] | None:
    return None if proc is None else [proc.pid, proc.comm, proc.user]


class Interned:
    """Process and flag objects of decoded rows, shared while they are equal."""

    def __init__(self) -> None:
        self.processes: dict[tuple[int, str, str], Process] = {}

    def process(self, value: list[Any] | None) -> Process | None:
        if value is None:
            return None
        pid, comm, user = value
        key = (pid, comm, user)
        proc = self.processes.get(key)
        if proc is None:
            proc = self.processes[key] = Process(pid, comm, user)
        return proc


def full_row(sock: Sock) -> Row:
    """What a frame stores of a socket: its ROW_FIELDS, tcp_info length and rates."""
    return (*row_of(sock), -1 if sock.info is None else len(sock.info), sock.rates)


def is_update(value: Any) -> bool:
    """Whether a delta's row is the DYNAMIC_ROW values of a socket that stayed (with
    or without the rates), rather than a new socket's whole row."""
    return isinstance(value, list) and len(value) in (len(DYNAMIC_ROW), len(DYNAMIC_ROW) - 1)


def decode_row(value: list[Any], interned: Interned) -> Row:
    """A row from its JSON form (the inverse of row_json of a full_row)."""
    if not isinstance(value, list) or len(value) not in (ROW_LEN, OLD_ROW_LEN):
        raise FormatError("corrupt socket row")
    return _objects([*value, None][:ROW_LEN], interned)


def merge_row(row: Row, values: list[Any], interned: Interned) -> Row:
    """`row` with the DYNAMIC_ROW fields of a delta (JSON values) put in; an older
    writer's delta has no rates."""
    out = list(row)
    for n, value in zip(DYNAMIC_ROW, [*values, None][: len(DYNAMIC_ROW)], strict=True):
        out[n] = value
    return _objects(out, interned)


def _objects(out: list[Any], interned: Interned) -> Row:
    """skmem, process and flags of a row from their JSON values."""
    try:
        skmem = out[R_SKMEM]
        out[R_SKMEM] = None if skmem is None else tuple(skmem)
        out[R_PROCESS] = interned.process(out[R_PROCESS])
        out[R_FLAGS] = tuple(Flag(*f) for f in out[R_FLAGS])
        unix = out[R_UNIX]
        if unix is not None:
            sock_type, peer_inode, icons, senders_q, peer = unix
            out[R_UNIX] = (sock_type, peer_inode, tuple(icons), senders_q, interned.process(peer))
        rates = out[R_RATES]
        out[R_RATES] = None if rates is None else Rates(*rates)
    except (TypeError, ValueError):
        raise FormatError("corrupt socket row") from None
    return tuple(out)


def sock_of(row: Row, info: bytes | None) -> Sock:
    from collectors.tcpinfo import TcpInfo

    (proto, family, state, laddr, lport, paddr, pport, rq, sq, skmem, timer) = row[:11]
    uid, inode, cookie, netns = row[11:15]
    unix = row[R_UNIX]
    if unix is not None:
        return _unix_sock_of(row, unix)
    sock = Sock(
        proto,
        family,
        state,
        laddr,
        lport,
        paddr,
        pport,
        rq,
        sq,
        skmem,
        None if info is None else TcpInfo(info),
        timer,
        0,  # timer expiry and retransmits are not in the JSON schema and not recorded
        0,
        uid,
        inode,
        cookie,
        netns,
    )
    return _with_row_objects(sock, row)


def _unix_sock_of(row: Row, unix: tuple[Any, ...]) -> UnixSock:
    (_, _, state, path, _, peer_addr, _, rq, sq, skmem, _, uid, inode, cookie, netns) = row[:15]
    sock_type, peer_inode, icons, senders_q, peer = unix
    sock = UnixSock(state, sock_type, path, peer_inode, rq, sq, skmem, uid, inode, cookie, netns)
    sock.icons = icons
    sock.peer_addr = peer_addr
    sock.senders_q = senders_q
    sock.peer_process = peer
    return _with_row_objects(sock, row)


def _with_row_objects(sock: S, row: Row) -> S:
    sock.rates = row[R_RATES]
    sock.process = row[R_PROCESS]
    sock.flags = row[R_FLAGS]
    sock.closed = row[R_CLOSED]
    return sock


# -- tcp_info ----------------------------------------------------------------------------

HEAD_PART = slice(0, TIME_PART.start)
TAIL_PART = slice(TIME_PART.stop, None)


def time_part_len(info_len: int) -> int:
    return max(0, min(info_len, TIME_PART.stop) - TIME_PART.start)


def with_time_part(info: bytes, part: bytes) -> bytes:
    return info[: TIME_PART.start] + part + info[TIME_PART.stop :]


def subtract(new: bytes, base: bytes) -> bytes:
    """new - base as little-endian numbers, modulo the length: counters that moved by
    the same amount on every socket become one repeated pattern."""
    n = len(new)
    diff = int.from_bytes(new, "little") - int.from_bytes(base, "little")
    if diff < 0:
        diff += 1 << (8 * n)
    return diff.to_bytes(n, "little")


def add(diff: bytes, base: bytes) -> bytes:
    n = len(diff)
    total = int.from_bytes(diff, "little") + int.from_bytes(base, "little")
    return (total & ((1 << (8 * n)) - 1)).to_bytes(n, "little")


def split_by(data: bytes, lengths: Sequence[int]) -> list[bytes]:
    """`data` cut into pieces of these lengths; FormatError when they do not add up."""
    out = []
    pos = 0
    for n in lengths:
        out.append(data[pos : pos + n])
        pos += n
    if pos != len(data):
        raise FormatError("tcp_info section does not match its sockets")
    return out


# -- dictionaries of the system facts ----------------------------------------------------


def dict_change(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any] | None:
    """The changed entries of `new`, or None when its keys differ from `old`'s (then it
    is stored whole, which also keeps the key order)."""
    if old is None or list(old) != list(new):
        return None
    return {k: v for k, v in new.items() if old[k] != v}


def pack(data: bytes, level: int) -> bytes:
    """zlib of `data`; nothing for nothing."""
    return zlib.compress(data, level) if data else b""


def decompress(data: bytes) -> bytes:
    if not data:
        return b""
    try:
        return zlib.decompress(data)
    except zlib.error:
        raise FormatError("corrupt frame (compression)") from None
