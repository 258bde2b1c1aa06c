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
from collections.abc import Callable, Iterator

from collectors import tcpinfo
from collectors.gcpolicy import gc_paused
from collectors.model import STATE_NAMES, TIMER_NAMES, Sock, TcpInfo

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

PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
_FAMILY_NAMES = {socket.AF_INET: "inet", socket.AF_INET6: "inet6"}


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


_ADDRS = {socket.AF_INET: _AddrCache(socket.AF_INET), socket.AF_INET6: _AddrCache(socket.AF_INET6)}


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


class _Layout:
    """One struct for a whole reply message: header, inet_diag_msg and attributes.

    Replies of one dump repeat the same attributes in the same order, so the layout
    of the first message of a length decodes the rest in one unpack. `checks` holds
    the positions of the netlink type/flags and of every attribute header; a message
    whose headers differ is decoded attribute by attribute instead.
    tcp_info stays raw bytes, except segs_in: it moves with every segment received,
    the cheapest sign that a connection changed.
    """

    __slots__ = (
        "check_at",
        "checks",
        "info_end",
        "info_start",
        "mem_at",
        "segs_in_at",
        "skmem_at",
        "struct",
    )

    def __init__(self, data: bytes | memoryview, pos: int, length: int) -> None:
        codes = "IHHII" + DIAG_MSG.format.lstrip("=")
        index = 21  # values so far: 5 header + 16 inet_diag_msg
        size = 16 + DIAG_MSG.size
        check_at, checks = [1, 2], list(NLMSGHDR.unpack_from(data, pos)[1:3])
        self.skmem_at = self.mem_at = self.segs_in_at = -1
        self.info_start = self.info_end = -1  # tcp_info bytes, relative to the message
        for apos, alen, atype in _attributes(data, pos, length):
            if apos != pos + size:
                raise ValueError("attributes are not contiguous")
            plen, kind = alen - 4, atype & 0x3FFF
            item, count, used = "", 0, 0  # struct codes read from the payload
            if kind == INET_DIAG_SKMEMINFO and plen >= SKMEM_LEN:
                item, count, used, self.skmem_at = "9I", 9, SKMEM_LEN, index + 2
            elif kind == INET_DIAG_MEMINFO and plen >= MEMINFO.size:
                item, count, used, self.mem_at = "4I", 4, MEMINFO.size, index + 2
            elif kind == INET_DIAG_INFO and plen >= tcpinfo.MIN_LEN:
                self.info_start = apos - pos + 4
                self.info_end = self.info_start + plen
                offset, end = tcpinfo.span("segs_in")
                if end <= plen:
                    item, count, used, self.segs_in_at = f"{offset}xI", 1, end, index + 2
            check_at += [index, index + 1]  # every header: a malformed one must not pass
            checks += [alen, atype]
            index += 2 + count
            item_codes, size = attribute_codes(alen, item, used, size, length)
            codes += item_codes
        self.struct = covering(codes, size, length)
        self.check_at = operator.itemgetter(*check_at)
        self.checks = tuple(checks)


_LAYOUTS: dict[str, dict[int, _Layout | None]] = {"tcp": {}, "udp": {}}  # proto -> length


def _layout_for(proto: str, data: bytes | memoryview, pos: int, length: int) -> _Layout | None:
    layouts = _LAYOUTS.setdefault(proto, {})
    if length not in layouts:
        if len(layouts) > 256:
            layouts.clear()
        try:
            layouts[length] = _Layout(data, pos, length)
        except ValueError:
            layouts[length] = None
    return layouts[length]


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


def _decode_slow(
    data: bytes | memoryview, pos: int, length: int
) -> tuple[tuple[int, ...] | None, TcpInfo | None]:
    """skmem and tcp_info, one attribute at a time (messages of an unusual shape)."""
    skmem = None
    info = None
    for apos, alen, atype in _attributes(data, pos, length):
        kind = atype & 0x3FFF
        if kind == INET_DIAG_SKMEMINFO and alen >= 4 + SKMEM_LEN:
            skmem = SKMEMINFO.unpack_from(data, apos + 4)
        elif kind == INET_DIAG_INFO:
            info = tcpinfo.decode(data, apos + 4, alen - 4)
        elif kind == INET_DIAG_MEMINFO and skmem is None and alen >= 4 + MEMINFO.size:
            skmem = _from_meminfo(MEMINFO.unpack_from(data, apos + 4))
    return skmem, info


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


def decode_messages(
    data: bytes | memoryview, proto: str, netns: str, out: list[Sock], seq: int | None = None
) -> bool:
    """Decode one netlink datagram of dump replies into `out`.

    Returns True when the dump is complete (NLMSG_DONE). Raises DiagError for a
    kernel error and for a malformed message (never reads past the buffer).
    Messages of another request (a `seq` other than ours) or of unknown types are
    skipped.
    """
    end = len(data)
    pos = 0
    hdr_unpack = NLMSGHDR_HEAD.unpack_from
    ports = _PORTS
    states, timers, families = _STATES, _TIMERS, _FAMILY_NAMES
    layouts = _LAYOUTS.setdefault(proto, {})
    view = memoryview(data)  # slicing it copies nothing before TcpInfo copies once
    lay: _Layout | None = None
    lay_length = -1
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
        if length != lay_length:  # replies of one dump mostly share one length
            lay = layouts.get(length) or _layout_for(proto, data, pos, length)
            lay_length = length
            if lay is not None:
                unpack, check_at, checks = lay.struct.unpack_from, lay.check_at, lay.checks
                sk_at, mem_at, seg_at = lay.skmem_at, lay.mem_at, lay.segs_in_at
                info_start, info_end = lay.info_start, lay.info_end
        vals = unpack(data, pos) if lay is not None else None
        if vals is not None and check_at(vals) == checks:
            if sk_at >= 0:
                skmem: tuple[int, ...] | None = vals[sk_at : sk_at + 9]
            elif mem_at >= 0:
                skmem = _from_meminfo(vals[mem_at : mem_at + 4])
            else:
                skmem = None
            info = None if info_start < 0 else TcpInfo(view[pos + info_start : pos + info_end])
            segs_in = None if seg_at < 0 else vals[seg_at]
            msg = vals[5:21]
        else:
            skmem, info = _decode_slow(data, pos, length)
            segs_in = None if info is None else info.get("segs_in")
            msg = DIAG_MSG.unpack_from(data, pos + 16)
        (fam, state, timer, retrans, sport, dport, src, dst, _if, ck0, ck1,
         expires, rqueue, wqueue, uid, inode) = msg  # fmt: skip
        pos += (length + 3) & ~3
        addrs = _ADDRS.get(fam)
        if addrs is None:
            continue
        out.append(
            Sock(
                proto,
                families[fam],
                states[state],
                addrs[src],
                ports[sport],
                addrs[dst],
                ports[dport],
                rqueue,
                wqueue,
                skmem,
                info,
                timers[timer],
                expires,
                retrans,
                uid,
                inode,
                ck1 << 32 | ck0,
                netns,
                segs_in,
            )
        )
    return False


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

    def dump_into(self, out: list[Sock], protos: tuple[str, ...] = ("tcp", "udp")) -> None:
        """Append every socket of `protos`, IPv4 and IPv6, all states, to `out`."""
        with gc_paused():
            for proto in protos:
                first = len(out)
                self._dump_proto(proto, out)
                if proto not in self._skmem_checked:
                    self._skmem_checked.add(proto)
                    if _lacks_skmem(out[first:]):  # an old kernel: fall back to MEMINFO
                        self._extra_ext = EXT_MEMINFO
                        del out[first:]
                        self._dump_proto(proto, out)

    def _dump_proto(self, proto: str, out: list[Sock]) -> None:
        ext = (EXT_TCP if proto == "tcp" else EXT_UDP) | self._extra_ext
        if proto == "tcp" and self._compat_tcp:
            try:
                self._dump_one(socket.AF_UNSPEC, socket.IPPROTO_TCP, ext, proto, out)
                return
            except DiagError:
                self._compat_tcp = False
        for family in (socket.AF_INET, socket.AF_INET6):
            self._dump_one(family, PROTOCOLS[proto], ext, proto, out)

    def _dump_one(self, family: int, protocol: int, ext: int, proto: str, out: list[Sock]) -> None:
        request = functools.partial(_request, family, protocol, ext)
        self.run_dump(request, decode_messages, proto, out)

    def run_dump(
        self, request: Callable[[int], bytes], decode: Decoder, proto: str, out: list[Sock]
    ) -> None:
        """Send request(seq) and decode its replies into `out`: all of them, or none."""
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
