"""UNIX domain sockets from NETLINK_SOCK_DIAG (unix_diag), over SockDiag's dump path.

Like the inet decoder, replies of one dump mostly repeat a few shapes (which
attributes, how long the path), so a layout learned from the first message of a shape
decodes it in one unpack, and the run of messages of that shape after it in one
iter_unpack. A message no layout fits is decoded attribute by attribute
(_decode_slow), which is also the reference the tests hold the layouts to.
"""

from __future__ import annotations

import functools
import operator
import socket
import struct
from collections.abc import Iterable
from itertools import repeat, starmap
from typing import Any

from collectors.gcpolicy import gc_paused
from collectors.model import STATE_NAMES, UNIX_TYPES, Sock, UnixSock
from collectors.replyruns import Fixed, run_length
from collectors.sockdiag import (
    ALL_STATES,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGHDR,
    NLMSGHDR_HEAD,
    NO_SKMEM,
    RTATTR,
    SKMEM_LEN,
    SKMEMS,
    SOCK_DIAG_BY_FAMILY,
    TCP_LISTEN,
    DiagError,
    SockDiag,
    _check_control,
    attribute_codes,
    covering,
    listening,
)
from collectors.untrusted import decode

UNIX_REQ = struct.Struct("=BBHIII8s")  # unix_diag_req
UNIX_MSG = struct.Struct("=BBBxIII")  # unix_diag_msg: family, type, state, ino, cookie
MIN_REPLY = NLMSGHDR.size + UNIX_MSG.size
U32 = struct.Struct("=I")
RQLEN = struct.Struct("=II")

# unix_diag attributes and the UDIAG_SHOW_* bit asking for each
UNIX_DIAG_NAME, UNIX_DIAG_PEER, UNIX_DIAG_ICONS = 0, 2, 3
UNIX_DIAG_RQLEN, UNIX_DIAG_MEMINFO, UNIX_DIAG_UID = 4, 5, 7
SHOW = 0x01 | 0x04 | 0x08 | 0x10 | 0x20 | 0x40  # name, peer, icons, rqlen, meminfo, uid
MAX_SHAPES = 8  # layouts kept per message length
MAX_NAMES = 65536  # decoded paths kept; cleared when full

_STATES = tuple(STATE_NAMES.get(code, str(code)) for code in range(256))
_TYPES = tuple(UNIX_TYPES.get(code, str(code)) for code in range(256))
_SKMEMS = SKMEMS["unix"]


def request(seq: int) -> bytes:
    body = UNIX_REQ.pack(socket.AF_UNIX, 0, 0, ALL_STATES, 0, SHOW, b"\0" * 8)
    flags = NLM_F_REQUEST | NLM_F_DUMP
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, flags, seq, 0) + body


def decode_path(raw: bytes) -> str:
    """A sun_path as ss prints it: abstract names start with "@" (ss shows every NUL of
    one as "@"), a filesystem path ends at its NUL. Decoded like every untrusted name
    (untrusted.decode: never raises); front ends show it through printable."""
    abstract = raw[:1] == b"\0"
    return decode(raw.replace(b"\0", b"@") if abstract else raw.split(b"\0", 1)[0])


class _Names(dict[bytes, str]):
    """Decoded paths by raw bytes: accepted sockets repeat their listener's path."""

    def __missing__(self, raw: bytes) -> str:
        if len(self) >= MAX_NAMES:
            self.clear()
        text = self[raw] = decode_path(raw)
        return text


_NAMES = _Names()


Fields = tuple[bytes | None, int, int, int, bytes | None, int, tuple[int, ...]]


def _attrs(data: bytes | memoryview, pos: int, length: int) -> list[tuple[int, int, int]]:
    """(offset, length, type) of each attribute, validated against the message."""
    out = []
    apos, mend = pos + MIN_REPLY, pos + length
    while apos + 4 <= mend:
        alen, atype = RTATTR.unpack_from(data, apos)
        if alen < 4 or apos + alen > mend:
            raise DiagError(f"malformed netlink attribute (length {alen})")
        out.append((apos, alen, atype & 0x3FFF))
        apos += (alen + 3) & ~3
    return out


def _decode_slow(data: bytes | memoryview, pos: int, length: int) -> Fields:
    """(name, peer, rqueue, wqueue, raw skmem, uid, icons), one attribute at a time."""
    name: bytes | None = None
    peer = rq = wq = uid = 0
    icons: tuple[int, ...] = ()
    skmem = None
    for apos, alen, kind in _attrs(data, pos, length):
        start, plen = apos + 4, alen - 4
        if kind == UNIX_DIAG_NAME:
            name = bytes(data[start : start + plen])
        elif kind == UNIX_DIAG_PEER and plen >= 4:
            peer = U32.unpack_from(data, start)[0]
        elif kind == UNIX_DIAG_ICONS:
            icons = struct.unpack_from(f"={plen // 4}I", data, start)
        elif kind == UNIX_DIAG_RQLEN and plen >= RQLEN.size:
            rq, wq = RQLEN.unpack_from(data, start)
        elif kind == UNIX_DIAG_MEMINFO and plen >= SKMEM_LEN:
            skmem = bytes(data[start : start + SKMEM_LEN])
        elif kind == UNIX_DIAG_UID and plen >= 4:
            uid = U32.unpack_from(data, start)[0]
    return name, peer, rq, wq, skmem, uid, icons


# What a row of a shape without them gets appended before `args` picks: peer, rqueue,
# wqueue, uid, skmem. A missing name is an empty one, read by a "0s" struct code.
DEFAULTS = (0, 0, 0, 0, None)
DEFAULTED = ("peer", "rq", "wq", "uid", "skmem")
# _Decoded's arguments after the cookie, in the order the kernel sends them
ATTRIBUTE_ARGS = ("name", "peer", "rq", "wq", "skmem", "uid")


class _Layout:
    """One struct for a whole reply of one shape, and where each field sits in it.

    `checks` holds the netlink type/flags and every attribute header: a message of the
    same length but another shape does not pass them. `fixed` are the byte offsets a
    run of messages of this shape repeats: the netlink header, the family and every
    attribute header. `rows` reads only the values a socket needs (headers skipped,
    checked by `struct` or `fixed`; skmem as its raw bytes). The usual shape (every
    attribute, no pending inodes) reads _Decoded's arguments but the namespace in
    their order: `args` is None. Otherwise `args` takes them from a row (followed by
    DEFAULTS unless `complete`): fields, and a slice for the pending inodes."""

    __slots__ = ("args", "check_at", "checks", "complete", "fixed", "rows", "struct")

    def __init__(self, data: bytes | memoryview, pos: int, length: int) -> None:
        attrs = _attrs(data, pos, length)
        codes = "IHHII" + UNIX_MSG.format.lstrip("=")
        at = 11  # values so far: 5 header + 6 unix_diag_msg
        # the row: type, state, inode, cookie; b"" for an unbound socket; payloads
        named = any(kind == UNIX_DIAG_NAME for _apos, _alen, kind in attrs)
        lean, got = ("17xBBxIII", 5) if named else ("17xBBxIII0s", 6)
        found = {} if named else {"name": 5}
        size = MIN_REPLY
        check_at, checks = [1, 2], list(NLMSGHDR.unpack_from(data, pos)[1:3])
        fixed = list(range(NLMSGHDR.size + 1))
        icons = slice(0, 0)
        for apos, alen, kind in attrs:
            if apos != pos + size:
                raise ValueError("attributes are not contiguous")
            plen = alen - 4
            item, count, used = "", 0, 0
            lean_item = ""  # the row's code, when not item
            if kind == UNIX_DIAG_NAME:
                item, count, used, found["name"] = f"{plen}s", 1, plen, got
            elif kind == UNIX_DIAG_PEER and plen >= 4:
                item, count, used, found["peer"] = "I", 1, 4, got
            elif kind == UNIX_DIAG_ICONS:
                n = plen // 4
                item, count, used, icons = f"{n}I", n, n * 4, slice(got, got + n)
            elif kind == UNIX_DIAG_RQLEN and plen >= RQLEN.size:
                item, count, used, found["rq"] = "II", 2, RQLEN.size, got
                found["wq"] = got + 1
            elif kind == UNIX_DIAG_MEMINFO and plen >= SKMEM_LEN:
                item, count, used, found["skmem"] = "9I", 9, SKMEM_LEN, got
                lean_item = f"{SKMEM_LEN}s"
            elif kind == UNIX_DIAG_UID and plen >= 4:
                item, count, used, found["uid"] = "I", 1, 4, got
            check_at += [at, at + 1]
            checks += [alen, kind]
            fixed += range(apos - pos, apos - pos + 4)
            at += 2 + count
            got += 1 if lean_item else count
            lean_codes, _ = attribute_codes(alen, lean_item or item, used, size, length, "4x")
            item_codes, size = attribute_codes(alen, item, used, size, length)
            codes += item_codes
            lean += lean_codes
        self.struct = covering(codes, size, length)
        self.rows = covering(lean, size, length)
        self.check_at = operator.itemgetter(*check_at)
        self.fixed = Fixed(fixed)
        self.checks = tuple(checks)
        self.complete = len(found) == len(ATTRIBUTE_ARGS)
        at_ = dict(zip(DEFAULTED, range(got, got + len(DEFAULTS)), strict=True)) | found
        picks = [*range(5), *(at_[name] for name in ATTRIBUTE_ARGS)]
        in_order = self.complete and picks == list(range(got)) and icons.start == icons.stop
        self.args = None if in_order else operator.itemgetter(*picks, icons)


_LAYOUTS: dict[int, list[_Layout]] = {}  # by message length, most recent shape first


def _layout_for(data: bytes | memoryview, pos: int, length: int) -> _Layout | None:
    """A layout that decodes this message (made from it when none of its length
    does), or None when one struct cannot (e.g. attributes with gaps)."""
    layouts = _LAYOUTS.get(length)
    if layouts is None:
        if len(_LAYOUTS) > 256:
            _LAYOUTS.clear()
        layouts = _LAYOUTS[length] = []
    for lay in layouts:
        if lay.check_at(lay.struct.unpack_from(data, pos)) == lay.checks:
            return lay
    try:
        lay = _Layout(data, pos, length)
    except ValueError:
        return None
    if lay.check_at(lay.struct.unpack_from(data, pos)) != lay.checks:
        raise DiagError("inconsistent unix_diag message")  # a layout of itself passes
    layouts.insert(0, lay)
    del layouts[MAX_SHAPES:]
    return lay


def _slow_row(data: bytes | memoryview, pos: int, length: int) -> tuple[Any, ...]:
    """_Decoded's arguments (but the namespace) of one message, attribute by attribute."""
    return UNIX_MSG.unpack_from(data, pos + 16)[1:] + _decode_slow(data, pos, length)


def decode_messages(
    data: bytes | memoryview, proto: str, netns: str, out: list[Sock], seq: int | None = None
) -> bool:
    """Decode one netlink datagram of unix_diag replies into `out` (see
    sockdiag.decode_messages: the same contract, the same errors).

    A run of messages that repeat the first one's netlink header (length, type, flags,
    sequence), family and attribute headers is read with one iter_unpack."""
    data = bytes(data)  # one copy of the datagram: bytes index and slice faster
    end = len(data)
    pos = 0
    view = memoryview(data)
    hdr_unpack = NLMSGHDR_HEAD.unpack_from
    make = functools.partial(_Decoded, netns)
    add = tuple.__add__
    while pos + 16 <= end:
        length, mtype, mflags, mseq = hdr_unpack(data, pos)
        if length < 16 or pos + length > end:
            raise DiagError(f"malformed netlink message (length {length})")
        if (mtype != SOCK_DIAG_BY_FAMILY) or (seq is not None and mseq != seq):
            ours = seq is None or mseq == seq
            if (
                ours
                and mtype in (NLMSG_DONE, NLMSG_ERROR)
                and _check_control(data, pos, length, mtype, "unix")
            ):
                return True
            pos += (length + 3) & ~3
            continue
        if mflags & NLM_F_DUMP_INTR:
            raise DiagError("unix dump was interrupted by concurrent changes")
        if length < MIN_REPLY:
            raise DiagError(f"malformed unix_diag message (length {length})")
        stride = (length + 3) & ~3
        if data[pos + 16] != socket.AF_UNIX:
            pos += stride
            continue
        lay = _layout_for(data, pos, length)
        if lay is None:
            rows: Iterable[tuple[Any, ...]] = (_slow_row(data, pos, length),)
            args, count, complete = None, 1, True
        elif length & 3:  # padded: rows are not back to back
            rows, count = (lay.rows.unpack_from(data, pos),), 1
            args, complete = lay.args, lay.complete
        else:  # every row repeats the first one's headers and family (_run_length)
            count = run_length(data, pos, end, length, lay.fixed)
            rows = lay.rows.iter_unpack(view[pos : pos + count * length])
            args, complete = lay.args, lay.complete
        if not complete:
            rows = map(add, rows, repeat(DEFAULTS))
        if args is not None:
            rows = map(args, rows)
        out.extend(starmap(make, rows))
        pos += count * stride
    return False


class _Decoded(UnixSock):
    """A UnixSock made straight from one row's raw values: the decoder's hot path, one
    Python frame per socket (UnixSock.__init__ is the readable constructor). Its
    parameters after the namespace come in the order the kernel sends the values, so
    the row of a connected socket is its arguments as unpacked."""

    __slots__ = ()

    def __init__(
        self,
        netns: str,
        stype: int,
        state: int,
        inode: int,
        ck0: int,
        ck1: int,
        name: bytes | None,
        peer: int,
        rq: int,
        wq: int,
        skmem: bytes | None,
        uid: int,
        icons: tuple[int, ...] = (),
    ) -> None:
        self.proto = self.family = "unix"
        self.state = _STATES[state]
        self.local_addr = "" if not name else _NAMES[name]
        self.local_port = self.peer_port = self.timer_expires_ms = self.retrans = 0
        self.peer_addr = ""
        self.recv_q, self.send_q = rq, wq
        filled = NO_SKMEM if skmem is None else _SKMEMS[skmem]
        if state == TCP_LISTEN:
            filled = listening(filled, rq, wq)
        self.skmem, self.recv_fill, self.send_fill = filled
        self.info = self.segs_in = self.process = self.peer_process = self.listener = self.rates = (
            None
        )
        self.netns_name = None
        self.timer = "off"
        self.uid, self.inode, self.netns = uid, inode, netns
        self.cookie = ck1 << 32 | ck0
        self.flags = ()
        self.closed = False
        self.sock_type = _TYPES[stype]
        self.peer_inode, self.icons, self.senders_q = peer, icons, 0


def dump_into(diag: SockDiag, out: list[Sock]) -> None:
    """Append every UNIX socket of diag's namespace (all types, all states) to `out`."""
    with gc_paused():
        diag.run_dump(request, decode_messages, "unix", out)


def link_peers(socks: list[Sock]) -> None:
    """Fill what one UNIX socket knows only through others: the peer's path and
    process, and the bytes its peers have queued to it (charged to their send
    buffers). A client still waiting in a listener's queue has as its peer a socket
    no process holds yet: the listener's process will accept it. The peer process of a
    listener is that of its first waiting client, of a datagram receiver that of a
    sender with queued data. Inodes are unique across namespaces."""
    by_inode = {s.inode: s for s in socks if isinstance(s, UnixSock)}
    for s in by_inode.values():
        s.senders_q = 0
    for s in by_inode.values():
        peer = by_inode.get(s.peer_inode)
        if peer is not None:
            s.peer_addr = peer.local_addr
            s.peer_process = peer.process
            peer.senders_q += s.send_q
            if not peer.peer_inode and (peer.peer_process is None or s.send_q):
                peer.peer_process = s.process  # a receiver many senders connect to
        if s.state == "LISTEN":
            for rank, client_inode in enumerate(s.icons):
                client = by_inode.get(client_inode)
                if client is None:
                    continue
                if client.peer_process is None:
                    client.peer_process = s.process
                    client.peer_addr = s.local_addr
                if rank == 0:
                    s.peer_process = client.process
