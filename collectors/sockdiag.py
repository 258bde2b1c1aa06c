"""TCP and UDP sockets from NETLINK_SOCK_DIAG (inet_diag), decoded with struct.

The hot path is hand-rolled: pyroute2's DiagSocket costs ~250 us per socket with
these extensions; a struct decoder over a raw netlink socket costs a few us.
"""

from __future__ import annotations

import errno
import functools
import operator
import os
import socket
import struct
from collections.abc import Callable, Iterable, Iterator
from itertools import repeat, starmap
from typing import Any

from collectors import tcpinfo
from collectors.checkpoint import Checkpoint, no_pause
from collectors.gcpolicy import gc_paused
from collectors.model import STATE_NAMES, TIMER_NAMES, Sock, TcpInfo, buffer_fills, listener_fills
from collectors.replyruns import Fixed, run_length

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
TCPDIAG_GETSOCK = 18  # the compat request: one dump of IPv4 and IPv6 TCP together
REPLY_TYPES = (SOCK_DIAG_BY_FAMILY, TCPDIAG_GETSOCK)
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_DUMP_INTR = 0x10

INET_DIAG_MEMINFO, INET_DIAG_INFO, INET_DIAG_SKMEMINFO = 1, 2, 7
EXT_SKMEMINFO = 1 << (INET_DIAG_SKMEMINFO - 1)
EXT_MEMINFO = 1 << (INET_DIAG_MEMINFO - 1)  # asked only of kernels without SKMEMINFO (< 3.6)
EXT_TCP = (1 << (INET_DIAG_INFO - 1)) | EXT_SKMEMINFO
EXT_UDP = EXT_SKMEMINFO
ALL_STATES = 0xFFFFFFFF
TCP_LISTEN = 10  # the state code of a listener, UNIX ones too

NLMSGHDR = struct.Struct("=IHHII")
REQ_V2 = struct.Struct("=BBBBI48s")  # inet_diag_req_v2
REQ_COMPAT = struct.Struct("=BBBB48sII")  # inet_diag_req
DIAG_MSG = struct.Struct("=BBBBHH16s16sIIIIIIII")  # inet_diag_msg, 72 bytes
RTATTR = struct.Struct("=HH")
MIN_REPLY = 16 + DIAG_MSG.size  # nlmsghdr + inet_diag_msg
MEMINFO = struct.Struct("=4I")
SKMEMINFO = struct.Struct("=9I")
SKMEM_LEN = SKMEMINFO.size
RECV_BUF = 1 << 20
MAX_SKMEMS = 65536  # skmem tuples kept per protocol (Skmems); cleared when full

PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
_FAMILY_NAMES: dict[int, str] = {socket.AF_INET: "inet", socket.AF_INET6: "inet6"}


class DiagError(RuntimeError):
    """The kernel refused or broke a dump; the message is one line for the user."""


def open_diag_socket() -> socket.socket:
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    except OSError as exc:
        raise DiagError(f"cannot open a netlink sock_diag socket: {exc.strerror}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUF)
        sock.bind((0, 0))
    except OSError as exc:
        sock.close()
        raise DiagError(f"cannot set up a netlink sock_diag socket: {exc.strerror}") from exc
    return sock


def _request(family: int, protocol: int, ext: int, seq: int) -> bytes:
    """A dump request; family AF_UNSPEC with TCP asks for both families at once."""
    if family == socket.AF_UNSPEC:
        mtype, body = TCPDIAG_GETSOCK, REQ_COMPAT.pack(family, 0, 0, ext, b"\0" * 48, ALL_STATES, 0)
    else:
        mtype, body = (
            SOCK_DIAG_BY_FAMILY,
            REQ_V2.pack(family, protocol, ext, 0, ALL_STATES, b"\0" * 48),
        )
    flags = NLM_F_REQUEST | NLM_F_DUMP
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), mtype, flags, seq, 0) + body


class _AddrCache(dict[bytes, str]):
    """Formatted addresses by raw bytes: a host has few distinct addresses."""

    def __init__(self, family: int) -> None:
        super().__init__()
        self.family = family

    def __missing__(self, raw: bytes) -> str:
        text = socket.inet_ntop(self.family, raw[:4] if self.family == socket.AF_INET else raw)
        self[raw] = text
        return text


_ADDRS: dict[int, _AddrCache] = {
    socket.AF_INET: _AddrCache(socket.AF_INET),
    socket.AF_INET6: _AddrCache(socket.AF_INET6),
}


Attr = tuple[int, int, int]  # (offset, length, type) of one attribute


def _attributes(data: bytes | memoryview, pos: int, length: int) -> list[Attr]:
    """The attributes after an inet_diag_msg, validated against the message bounds."""
    attrs = []
    apos = pos + 16 + DIAG_MSG.size
    mend = pos + length
    while apos + 4 <= mend:
        alen, atype = RTATTR.unpack_from(data, apos)
        if alen < 4 or apos + alen > mend:
            raise DiagError(f"malformed netlink attribute (length {alen})")
        attrs.append((apos, alen, atype))
        apos += (alen + 3) & ~3
    return attrs


def attribute_codes(
    alen: int, item: str, used: int, size: int, length: int, header: str = "HH"
) -> tuple[str, int]:
    """Struct codes of one attribute: its header (read, or "4x" to skip it), `item`
    reading the first `used` bytes of its payload, the rest and the padding skipped
    (the last attribute of a message may come without its padding). Returns them and
    the message size covered so far."""
    padded = (alen + 3) & ~3
    size += padded
    skip = min(padded, length - size + padded) - 4 - used
    return header + item + (f"{skip}x" if skip else ""), size


def covering(codes: str, size: int, length: int) -> struct.Struct:
    """The struct of `codes`, whatever follows `size` skipped, exactly `length` long."""
    if size < length:
        codes += f"{length - size}x"
    layout = struct.Struct("=" + codes)
    if layout.size != length:
        raise ValueError("layout does not cover the message")
    return layout


# The inet_diag_msg fields a socket needs, the interface skipped: family, state,
# timer, retransmits, ports, addresses, cookie (2 words), expires, queues, uid, inode.
ROW_MSG = "16xBBBBHH16s16s4xIIIIIII"
ROW_MSG_VALUES = 15
NO_ATTRIBUTE = (None,)  # what a row picks for an attribute its message lacks


class _Layout:
    """How to read every reply message of one shape: one unpack per message, one
    iter_unpack per run of them.

    Replies of one dump repeat the same attributes in the same order. `head` reads a
    message's netlink type and flags and every attribute header, which must equal
    `checks` (the first message's); a message of the same length but another shape
    is decoded attribute by attribute (_slow_row). The messages after it that repeat
    its `fixed` bytes (netlink header, attribute headers; run_length compares them
    column by column in C) have its shape too. `rows` reads _Decoded's arguments after
    the protocol: the inet_diag_msg fields, then the raw skmem and tcp_info in the
    order the kernel sent them; `args` puts them in _Decoded's order when that is
    another (each row then ends with NO_ATTRIBUTE, picked for a missing one).
    """

    __slots__ = ("args", "checks", "fixed", "head", "rows")

    def __init__(self, data: bytes | memoryview, pos: int, length: int) -> None:
        head, lean = "4xHH8x" + f"{DIAG_MSG.size}x", ROW_MSG
        size = MIN_REPLY
        checks = list(NLMSGHDR.unpack_from(data, pos)[1:3])
        fixed = list(range(NLMSGHDR.size))
        attrs = _attributes(data, pos, length)
        has_skmem = any(
            atype & 0x3FFF == INET_DIAG_SKMEMINFO and alen - 4 >= SKMEM_LEN
            for _apos, alen, atype in attrs
        )
        found: list[str] = []  # the attributes a row holds, in the kernel's order
        for apos, alen, atype in attrs:
            if apos != pos + size:
                raise ValueError("attributes are not contiguous")
            plen, kind = alen - 4, atype & 0x3FFF
            item, used, name = "", 0, ""
            if kind == INET_DIAG_SKMEMINFO and plen >= SKMEM_LEN:
                item, used, name = f"{SKMEM_LEN}s", SKMEM_LEN, "skmem"
            elif kind == INET_DIAG_INFO and plen >= tcpinfo.MIN_LEN:
                item, used, name = f"{plen}s", plen, "info"
            elif kind == INET_DIAG_MEMINFO and not has_skmem:
                raise ValueError("MEMINFO instead of SKMEMINFO (kernels before 3.6)")
            if name in found:
                raise ValueError(f"two {name} attributes")
            if name:
                found.append(name)
            checks += [alen, atype]
            fixed += range(apos - pos, apos - pos + 4)
            head += attribute_codes(alen, "", 0, size, length)[0]
            lean_codes, size = attribute_codes(alen, item, used, size, length, "4x")
            lean += lean_codes
        self.head = covering(head, size, length).unpack_from
        self.rows = covering(lean, size, length)
        self.checks = tuple(checks)
        self.fixed = Fixed(fixed)
        self.args: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = None
        if found != ["skmem", "info"][: len(found)]:
            missing = ROW_MSG_VALUES + len(found)  # where NO_ATTRIBUTE sits
            self.args = operator.itemgetter(
                *range(ROW_MSG_VALUES),
                *(
                    ROW_MSG_VALUES + found.index(n) if n in found else missing
                    for n in ("skmem", "info")
                ),
            )


_LAYOUTS: dict[str, dict[int, _Layout | None]] = {"tcp": {}, "udp": {}}  # proto -> length


def _layout_for(proto: str, data: bytes | memoryview, pos: int, length: int) -> _Layout | None:
    """The layout of this message's length when this message has its shape, else None."""
    layouts = _LAYOUTS.setdefault(proto, {})
    if length not in layouts:
        if len(layouts) > 256:
            layouts.clear()
        try:
            layouts[length] = _Layout(data, pos, length)
        except ValueError:
            layouts[length] = None
    lay = layouts[length]
    return lay if lay is not None and lay.head(data, pos) == lay.checks else None


def _names(known: dict[int, str]) -> tuple[str, ...]:
    """Names indexed by a u8 code; unknown codes read as their number."""
    return tuple(known.get(code, str(code)) for code in range(256))


def _port_table() -> tuple[int, ...]:
    """ntohs of every 16-bit value, built from bytes (65,536 calls took ~15 ms of start-up):
    each value's big-endian bytes read in host order."""
    big_endian = bytearray(2 * 65536)
    big_endian[0::2] = b"".join(bytes([high]) * 256 for high in range(256))
    big_endian[1::2] = bytes(range(256)) * 256
    return tuple(memoryview(big_endian).cast("H"))


_STATES = _names(STATE_NAMES)
# Ports arrive in network byte order: a table is cheaper than a call per port.
_PORTS = _port_table()
_TIMERS = _names(TIMER_NAMES)
NLMSGHDR_HEAD = struct.Struct("=IHHI")  # length, type, flags, seq
_KNOWN_FAMILIES = bytes(_ADDRS)
SEGS_IN_AT, SEGS_IN_END = tcpinfo.span("segs_in")
_U32 = struct.Struct("=I").unpack_from


Filled = tuple[tuple[int, ...] | None, float | None, float | None]  # skmem, its fills


class Skmems(dict[bytes, Filled]):
    """One protocol's skmem tuples by their raw bytes, with their fills: idle sockets of
    one kind repeat the same buffer sizes, so most sockets share a tuple and its fills
    instead of making them each."""

    def __init__(self, proto: str) -> None:
        super().__init__()
        self.proto = proto

    def __missing__(self, raw: bytes) -> Filled:
        if len(self) >= MAX_SKMEMS:
            self.clear()
        skmem = SKMEMINFO.unpack(raw)
        filled = self[raw] = (skmem, *buffer_fills(self.proto, skmem))
        return filled


class _SkmemsByProto(dict[str, Skmems]):
    def __missing__(self, proto: str) -> Skmems:
        made = self[proto] = Skmems(proto)
        return made


SKMEMS = _SkmemsByProto()  # a protocol's Skmems, made when first asked for
NO_SKMEM: Filled = (None, None, None)


def listening(filled: Filled, recv_q: int, send_q: int) -> Filled:
    """A listener's skmem with its own fills (listener_fills), not its buffers'."""
    return (filled[0], *listener_fills(recv_q, send_q))


def _slow_row(data: bytes | memoryview, pos: int, length: int) -> tuple[Any, ...]:
    """_Decoded's arguments (after the protocol) of one message, attribute by attribute
    (messages of an unusual shape); the last of a repeated attribute counts."""
    msg = DIAG_MSG.unpack_from(data, pos + 16)
    skmem: bytes | None = None
    meminfo: bytes | None = None
    info: bytes | None = None
    for apos, alen, atype in _attributes(data, pos, length):
        kind, start = atype & 0x3FFF, apos + 4
        if kind == INET_DIAG_SKMEMINFO and alen >= 4 + SKMEM_LEN:
            skmem = bytes(data[start : start + SKMEM_LEN])
        elif kind == INET_DIAG_INFO:
            info = tcpinfo.decode(data, start, alen - 4)
        elif kind == INET_DIAG_MEMINFO and alen >= 4 + MEMINFO.size:
            meminfo = SKMEMINFO.pack(*_from_meminfo(MEMINFO.unpack_from(data, start)))
    return (*msg[:8], *msg[9:], skmem or meminfo, info)


def _from_meminfo(mem: tuple[int, ...]) -> tuple[int, ...]:
    """Old kernels' MEMINFO (rmem, wmem, fmem, tmem) in SKMEMINFO order; limits unknown."""
    rmem, wmem, fmem, tmem = mem
    return (rmem, 0, tmem, 0, fmem, wmem, 0, 0, 0)


def _check_control(data: bytes | memoryview, pos: int, length: int, mtype: int, proto: str) -> bool:
    """Handle NLMSG_DONE / NLMSG_ERROR: True when the dump is over, raise on errors."""
    code = struct.unpack_from("=i", data, pos + 16)[0] if length >= 20 else 0
    if mtype == NLMSG_DONE:
        if code < 0:  # newer kernels report a failed dump start here
            raise DiagError(_error_text(proto, -code))
        return True
    if length < 20:
        raise DiagError(_error_text(proto, errno.EIO))
    if code != 0:
        raise DiagError(_error_text(proto, -code))
    return False


def _known_family(row: tuple[Any, ...]) -> bool:
    return row[0] in _ADDRS


def decode_messages(
    data: bytes | memoryview, proto: str, netns: str, out: list[Sock], seq: int | None = None
) -> bool:
    """Decode one netlink datagram of dump replies into `out`.

    Returns True when the dump is complete (NLMSG_DONE). Raises DiagError for a
    kernel error and for a malformed message (never reads past the buffer).
    Messages of another request (a `seq` other than ours), of unknown types and of
    families other than IPv4 and IPv6 are skipped. A run of messages of one shape is
    read with one iter_unpack and made into sockets with one call each (_Decoded).
    """
    data = bytes(data)  # one copy of the datagram: bytes index and slice faster
    end = len(data)
    pos = 0
    view = memoryview(data)
    hdr_unpack = NLMSGHDR_HEAD.unpack_from
    make = functools.partial(_Decoded, netns, proto, SKMEMS[proto])
    while pos + 16 <= end:
        length, mtype, mflags, mseq = hdr_unpack(data, pos)
        if length < 16 or pos + length > end:
            raise DiagError(f"malformed netlink message (length {length})")
        if (
            (mtype not in REPLY_TYPES)
            or (seq is not None and mseq != seq)
            or (mflags & NLM_F_DUMP_INTR)
        ):  # the rare messages: the end, errors, others' replies
            if seq is not None and mseq != seq:
                pass
            elif mtype in (NLMSG_DONE, NLMSG_ERROR):
                if _check_control(data, pos, length, mtype, proto):
                    return True
            elif mtype in REPLY_TYPES:
                raise DiagError(f"{proto} dump was interrupted by concurrent changes")
            pos += (length + 3) & ~3
            continue
        if length < MIN_REPLY:
            raise DiagError(f"malformed inet_diag message (length {length})")
        stride = (length + 3) & ~3
        lay = _layout_for(proto, data, pos, length)
        rows: Iterable[tuple[Any, ...]]
        if lay is None:
            rows, count, args = (_slow_row(data, pos, length),), 1, None
        elif length & 3:  # padded: rows are not back to back
            rows, count, args = (lay.rows.unpack_from(data, pos),), 1, lay.args
        else:  # every row repeats the first one's headers (run_length)
            count = run_length(data, pos, end, length, lay.fixed)
            rows, args = lay.rows.iter_unpack(view[pos : pos + count * length]), lay.args
        if data[pos + 16 : pos + count * stride : stride].translate(None, _KNOWN_FAMILIES):
            rows = filter(_known_family, rows)
        if args is not None:
            rows = map(args, map(tuple.__add__, rows, repeat(NO_ATTRIBUTE)))
        out.extend(starmap(make, rows))
        pos += count * stride
    return False


class _Decoded(Sock):
    """A Sock made straight from one row's raw values: the decoder's hot path, one
    Python frame per socket (Sock.__init__ is the readable constructor). skmem and
    tcp_info come as their raw bytes; equal skmem bytes share one tuple and its
    fills (Skmems)."""

    __slots__ = ()

    def __init__(
        self,
        netns: str,
        proto: str,
        skmems: Skmems,
        family: int,
        state: int,
        timer: int,
        retrans: int,
        sport: int,
        dport: int,
        src: bytes,
        dst: bytes,
        ck0: int,
        ck1: int,
        expires: int,
        rq: int,
        wq: int,
        uid: int,
        inode: int,
        skmem: bytes | None = None,
        info: bytes | None = None,
    ) -> None:
        addrs = _ADDRS[family]
        self.proto = proto
        self.family = _FAMILY_NAMES[family]
        self.state = _STATES[state]
        self.local_addr = addrs[src]
        self.local_port = _PORTS[sport]
        self.peer_addr = addrs[dst]
        self.peer_port = _PORTS[dport]
        self.recv_q, self.send_q = rq, wq
        filled = NO_SKMEM if skmem is None else skmems[skmem]
        if state == TCP_LISTEN:
            filled = listening(filled, rq, wq)
        self.skmem, self.recv_fill, self.send_fill = filled
        # segs_in moves with every segment received: the cheapest sign of a change
        if info is None:
            self.info = self.segs_in = None
        else:
            self.info = TcpInfo(info)
            self.segs_in = _U32(info, SEGS_IN_AT)[0] if len(info) >= SEGS_IN_END else None
        self.timer = _TIMERS[timer]
        self.timer_expires_ms, self.retrans = expires, retrans
        self.uid, self.inode, self.netns = uid, inode, netns
        self.cookie = ck1 << 32 | ck0
        self.netns_name = self.process = self.listener = self.rates = None
        self.flags = ()
        self.closed = False


# decode(chunk, proto, netns, out, seq) -> True at the end of the dump
Decoder = Callable[[memoryview, str, str, list[Sock], int | None], bool]


def _error_text(proto: str, err: int) -> str:
    if err in (errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL):
        return (
            f"the kernel has no {proto}_diag support ({os.strerror(err)}): "
            f"try `modprobe {proto}_diag`"
        )
    if err == errno.EPERM or err == errno.EACCES:
        return f"not permitted to dump {proto} sockets ({os.strerror(err)})"
    # -INT_MIN does not fit strerror's C int: a garbled reply must still read as one
    reason = os.strerror(err) if err <= 0x7FFFFFFF else f"error {err}"
    return f"{proto} dump failed: {reason}"


def _lacks_skmem(socks: list[Sock]) -> bool:
    """True when full sockets came without SKMEMINFO (TIME-WAIT and SYN-RECV never have it)."""
    return any(s.skmem is None and s.state not in ("TIME-WAIT", "SYN-RECV") for s in socks)


class SockDiag:
    """A reusable sock_diag socket (bound to the namespace it was opened in)."""

    def __init__(self, netns: str = "host", sock: socket.socket | None = None) -> None:
        self.netns = netns
        self.sock = sock if sock is not None else open_diag_socket()
        self._buf = bytearray(RECV_BUF)
        self._seq = 0
        self._pending = False  # a dump whose replies were not all read (an error)
        self._compat_tcp = True  # one TCP dump for both families, until the kernel refuses
        self._extra_ext = 0  # EXT_MEMINFO where the kernel sends no SKMEMINFO
        self._skmem_checked: set[str] = set()
        self._decode: Decoder = decode_messages  # of the dump in progress

    def close(self) -> None:
        self.sock.close()

    def dump(self, protos: tuple[str, ...] = ("tcp", "udp")) -> list[Sock]:
        out: list[Sock] = []
        self.dump_into(out, protos)
        return out

    def dump_into(
        self,
        out: list[Sock],
        protos: tuple[str, ...] = ("tcp", "udp"),
        checkpoint: Checkpoint = no_pause,
    ) -> None:
        """Append every socket of `protos`, IPv4 and IPv6, all states, to `out`;
        `checkpoint()` after each receive's replies are decoded."""
        with gc_paused():
            for proto in protos:
                first = len(out)
                self._dump_proto(proto, out, checkpoint)
                if proto not in self._skmem_checked:
                    self._skmem_checked.add(proto)
                    if _lacks_skmem(out[first:]):  # an old kernel: fall back to MEMINFO
                        self._extra_ext = EXT_MEMINFO
                        del out[first:]
                        self._dump_proto(proto, out, checkpoint)

    def _dump_proto(self, proto: str, out: list[Sock], checkpoint: Checkpoint = no_pause) -> None:
        ext = (EXT_TCP if proto == "tcp" else EXT_UDP) | self._extra_ext
        if proto == "tcp" and self._compat_tcp:
            try:
                self._dump_one(socket.AF_UNSPEC, socket.IPPROTO_TCP, ext, proto, out, checkpoint)
                return
            except DiagError:
                self._compat_tcp = False
        for family in (socket.AF_INET, socket.AF_INET6):
            self._dump_one(family, PROTOCOLS[proto], ext, proto, out, checkpoint)

    def _dump_one(
        self,
        family: int,
        protocol: int,
        ext: int,
        proto: str,
        out: list[Sock],
        checkpoint: Checkpoint = no_pause,
    ) -> None:
        request = functools.partial(_request, family, protocol, ext)
        self.run_dump(request, decode_messages, proto, out, checkpoint)

    def run_dump(
        self,
        request: Callable[[int], bytes],
        decode: Decoder,
        proto: str,
        out: list[Sock],
        checkpoint: Checkpoint = no_pause,
    ) -> None:
        """Send request(seq) and decode its replies into `out`: all of them, or none.
        `checkpoint()` between receives: a dump held back there goes on at the next
        receive (the kernel makes each receive's replies when it is asked for them)."""
        if self._pending:
            self._drain()
        self._seq += 1
        self.sock.send(request(self._seq))
        self._pending = True
        self._decode = decode
        first = len(out)
        try:
            for chunk in self._chunks():
                if decode(chunk, proto, self.netns, out, self._seq):
                    self._pending = False
                    return
                checkpoint()
        except BaseException:
            del out[first:]  # no half dumps
            raise

    def _drain(self) -> None:
        """Read what is left of a dump that an error abandoned, up to its end.

        Non-blocking: a dump the kernel already ended (an error reply) has nothing
        left, and the kernel produces the rest of a live one on each receive."""
        self._pending = False
        try:
            for chunk in self._chunks(socket.MSG_DONTWAIT):
                if self._decode(chunk, "drain", self.netns, [], self._seq):
                    return
        except DiagError:
            return

    def _chunks(self, flags: int = 0) -> Iterator[memoryview]:
        view = memoryview(self._buf)
        recv_into = self.sock.recv_into
        while True:
            try:
                n = recv_into(view, 0, flags)
            except OSError as exc:
                raise DiagError(f"netlink receive failed: {exc.strerror}") from exc
            if n == 0:
                raise DiagError("netlink socket closed during a dump")
            yield view[:n]
