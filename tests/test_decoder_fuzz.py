"""Fuzz the sock_diag and tcp_info decoders, starting from real captured dumps.

Whatever the bytes, decode_messages either decodes, skips, or raises DiagError: never
another exception, never a hang (hypothesis deadline). Growing a known attribute or
adding unknown ones (what a newer kernel does) must not change what is decoded.
"""

from __future__ import annotations

import signal
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scenes import Scene  # the same sockets in every state that test_vs_ss compares

from bufmon.scenarios import Netns
from collectors import tcpinfo
from collectors.model import Sock
from collectors.netns import entered
from collectors.sockdiag import (
    ALL_STATES,
    DIAG_MSG,
    EXT_MEMINFO,
    EXT_TCP,
    EXT_UDP,
    INET_DIAG_INFO,
    INET_DIAG_MEMINFO,
    INET_DIAG_SKMEMINFO,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGHDR,
    PROTOCOLS,
    REQ_V2,
    RTATTR,
    SKMEMS,
    SOCK_DIAG_BY_FAMILY,
    DiagError,
    _Decoded,
    _slow_row,
    decode_messages,
    open_diag_socket,
)

pytestmark = pytest.mark.root

FUZZ = settings(
    max_examples=400,
    deadline=timedelta(milliseconds=500),  # a decoder that loops forever fails here
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KNOWN_ATTRS = {INET_DIAG_MEMINFO, INET_DIAG_INFO, INET_DIAG_SKMEMINFO}
NO_SUCH_PROTOCOL = 200  # no inet_diag handler: the kernel answers NLMSG_ERROR


@dataclass(frozen=True)
class Seed:
    proto: str
    data: bytes


def _request(family: int, protocol: int, ext: int) -> bytes:
    body = REQ_V2.pack(family, protocol, ext, 0, ALL_STATES, bytes(48))
    flags = NLM_F_REQUEST | NLM_F_DUMP
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, flags, 1, 0) + body


def _capture(sock: socket.socket, family: int, protocol: int, ext: int) -> list[bytes]:
    """Every datagram the kernel sends for one dump request, as received."""
    sock.send(_request(family, protocol, ext))
    chunks: list[bytes] = []
    while True:
        chunks.append(sock.recv(1 << 20))
        try:
            if decode_messages(chunks[-1], "capture", "seed", []):
                return chunks
        except DiagError:
            return chunks


@pytest.fixture(scope="module")
def seeds() -> Iterator[list[Seed]]:
    with Netns("fuzz") as ns:
        scene = Scene(ns.name)
        try:
            with entered(f"/run/netns/{ns.name}"):
                scene.build()
                sock = open_diag_socket()
            with sock:
                found = [
                    Seed(proto, chunk)
                    # MEMINFO too, as old kernels' fallback asks: seeds carry both attributes
                    for proto, ext in (
                        ("tcp", EXT_TCP | EXT_MEMINFO),
                        ("udp", EXT_UDP | EXT_MEMINFO),
                    )
                    for family in (socket.AF_INET, socket.AF_INET6)
                    for chunk in _capture(sock, family, PROTOCOLS[proto], ext)
                ]
                found += [
                    Seed("raw", chunk)
                    for chunk in _capture(sock, socket.AF_INET, NO_SUCH_PROTOCOL, 0)
                ]
            yield found
        finally:
            scene.close()


# --- a tiny netlink (de)serializer, to mutate messages and attributes on purpose -----


@dataclass
class Msg:
    mtype: int
    flags: int
    seq: int
    pid: int
    body: bytes  # inet_diag_msg, or the payload of DONE / ERROR
    attrs: list[tuple[int, bytes]]


def split(data: bytes) -> list[Msg]:
    msgs, pos = [], 0
    while pos + NLMSGHDR.size <= len(data):
        length, mtype, flags, seq, pid = NLMSGHDR.unpack_from(data, pos)
        end = pos + length
        if mtype != SOCK_DIAG_BY_FAMILY:
            msgs.append(Msg(mtype, flags, seq, pid, data[pos + 16 : end], []))
        else:
            apos, attrs = pos + 16 + DIAG_MSG.size, []
            while apos + 4 <= end:
                alen, atype = RTATTR.unpack_from(data, apos)
                attrs.append((atype, data[apos + 4 : apos + alen]))
                apos += (alen + 3) & ~3
            body = data[pos + 16 : pos + 16 + DIAG_MSG.size]
            msgs.append(Msg(mtype, flags, seq, pid, body, attrs))
        pos += (length + 3) & ~3
    return msgs


def _pad(raw: bytes) -> bytes:
    return raw + bytes(-len(raw) % 4)


def join(msgs: list[Msg]) -> bytes:
    out = b""
    for m in msgs:
        payload = m.body + b"".join(
            _pad(RTATTR.pack(4 + len(p), t) + p) for t, p in m.attrs
        )  # fmt: skip
        out += _pad(NLMSGHDR.pack(16 + len(payload), m.mtype, m.flags, m.seq, m.pid) + payload)
    return out


class Hang(Exception):
    pass


def _hang(_signum: int, _frame: object) -> None:
    raise Hang("the decoder did not return within 1 s")


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt a loop that never ends (the hypothesis deadline only measures afterwards)."""
    previous = signal.signal(signal.SIGALRM, _hang)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def decode(data: bytes | memoryview, proto: str) -> list[Sock] | None:
    """Decoded sockets, or None for a clean DiagError; any other exception fails the test."""
    out: list[Sock] = []
    try:
        with time_limit(1.0):
            decode_messages(data, proto, "fuzz", out)
    except DiagError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None
    assert all(isinstance(s, Sock) for s in out)
    return out


def _as_json(socks: list[Sock] | None) -> list[dict[str, object]]:
    assert socks is not None
    return [s.to_json() for s in socks]


def _diag_seed(data: st.DataObject, seeds: list[Seed]) -> Seed:
    return data.draw(st.sampled_from([s for s in seeds if s.proto != "raw"]))


# --- tests -----------------------------------------------------------------------------


def test_seeds_are_real_dumps(seeds: list[Seed]) -> None:
    """The split/join round trip is exact, and the seeds hold every kind of record."""
    decoded = []
    for seed in seeds:
        assert join(split(seed.data)) == seed.data
        if seed.proto == "raw":
            # This kernel reports a failed dump start as NLMSG_DONE with -ENOENT.
            assert split(seed.data)[0].mtype in (NLMSG_DONE, NLMSG_ERROR)
            assert decode(seed.data, seed.proto) is None
        else:
            decoded += _as_json(decode(seed.data, seed.proto))
    states = {(s["proto"], s["family"], s["state"]) for s in decoded}
    assert {("tcp", "inet", "LISTEN"), ("tcp", "inet6", "ESTAB"), ("tcp", "inet", "TIME-WAIT"),
            ("tcp", "inet", "SYN-SENT"), ("udp", "inet6", "UNCONN")} <= states  # fmt: skip
    assert any(s["tcp_info"] and len(s["tcp_info"]) > 60 for s in decoded)


@FUZZ
@given(data=st.data())
def test_truncated(seeds: list[Seed], data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(seeds))
    cut = data.draw(st.integers(0, len(seed.data)))
    decode(seed.data[:cut], seed.proto)
    # As SockDiag passes it: a memoryview slice of a larger receive buffer.
    buf = bytearray(seed.data) + b"\xff" * 64
    decode(memoryview(buf)[:cut], seed.proto)


@FUZZ
@given(data=st.data())
def test_garbled_bytes(seeds: list[Seed], data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(seeds))
    raw = bytearray(seed.data)
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)),
                               min_size=1, max_size=16))  # fmt: skip
    for index, value in flips:
        raw[index] = value
    decode(bytes(raw), seed.proto)


def _header_fields(data: bytes) -> list[tuple[int, str]]:
    """(offset, struct code) of every length, type and flags field in a real dump."""
    found, pos = [], 0
    while pos + 16 <= len(data):
        length, mtype = struct.unpack_from("=IH", data, pos)
        found += [(pos, "I"), (pos + 4, "H"), (pos + 6, "H")]
        end = pos + length
        if mtype == SOCK_DIAG_BY_FAMILY:
            found += [(pos + 16, "B"), (pos + 17, "B")]  # family, state
            apos = pos + 16 + DIAG_MSG.size
            while apos + 4 <= end:
                alen = struct.unpack_from("=H", data, apos)[0]
                found += [(apos, "H"), (apos + 2, "H")]
                apos += max(4, (alen + 3) & ~3)
        pos += (length + 3) & ~3
    return found


@FUZZ
@given(data=st.data())
def test_garbled_headers_and_attributes(seeds: list[Seed], data: st.DataObject) -> None:
    """Lengths, types and flags of messages and attributes set to anything."""
    seed = data.draw(st.sampled_from(seeds))
    raw = bytearray(seed.data)
    fields = _header_fields(seed.data)
    for offset, code in data.draw(st.lists(st.sampled_from(fields), min_size=1, max_size=4)):
        bits = struct.calcsize(code) * 8
        struct.pack_into("=" + code, raw, offset, data.draw(st.integers(0, (1 << bits) - 1)))
    decode(bytes(raw), seed.proto)


@FUZZ
@given(data=st.data(), tail=st.binary(min_size=1, max_size=400))
def test_oversized_attributes_decode_the_same(
    seeds: list[Seed], data: st.DataObject, tail: bytes
) -> None:
    """A longer tcp_info / skmem (a newer kernel) and unknown attributes change nothing."""
    seed = _diag_seed(data, seeds)
    msgs = split(seed.data)
    unknown = data.draw(st.integers(8, 0x3FFF).filter(lambda t: t not in KNOWN_ATTRS))
    grown = [
        replace(m, attrs=[(t, p + tail if t in KNOWN_ATTRS else p) for t, p in m.attrs])
        for m in msgs
    ]
    for m in grown:
        if m.mtype == SOCK_DIAG_BY_FAMILY:
            m.attrs.append((unknown, tail))
    assert _as_json(decode(join(grown), seed.proto)) == _as_json(decode(seed.data, seed.proto))


@FUZZ
@given(data=st.data())
def test_shuffled_and_repeated_messages(seeds: list[Seed], data: st.DataObject) -> None:
    """Messages in any order and number: every diag message before DONE is decoded."""
    pool = [m for seed in seeds for m in split(seed.data) if m.mtype == SOCK_DIAG_BY_FAMILY]
    picked = data.draw(st.lists(st.sampled_from(pool), max_size=60))
    decoded = decode(join(picked), "tcp")
    assert decoded is not None and len(decoded) == len(picked)


def _attributes(data: bytes) -> list[tuple[int, int]]:
    """(offset of rta_len, bytes left in its message from there) for every attribute."""
    found, pos = [], 0
    while pos + 16 <= len(data):
        length, mtype = struct.unpack_from("=IH", data, pos)
        apos = pos + 16 + DIAG_MSG.size
        while mtype == SOCK_DIAG_BY_FAMILY and apos + 4 <= pos + length:
            found.append((apos, pos + length - apos))
            apos += (struct.unpack_from("=H", data, apos)[0] + 3) & ~3
        pos += (length + 3) & ~3
    return found


@FUZZ
@given(data=st.data(), extra=st.integers(1, 4096))
def test_overrunning_lengths_are_errors(seeds: list[Seed], data: st.DataObject, extra: int) -> None:
    """An attribute longer than its message, or a message longer than the datagram: DiagError."""
    seed = data.draw(st.sampled_from([s for s in seeds if _attributes(s.data)]))
    raw = bytearray(seed.data)
    if data.draw(st.booleans(), label="attribute"):
        offset, left = data.draw(st.sampled_from(_attributes(seed.data)))
        struct.pack_into("=H", raw, offset, min(left + extra, 0xFFFF))
    else:
        struct.pack_into("=I", raw, 0, len(raw) + extra)
    assert decode(bytes(raw), seed.proto) is None


@FUZZ
@given(raw=st.binary(max_size=2048), proto=st.sampled_from(["tcp", "udp"]))
def test_random_bytes(raw: bytes, proto: str) -> None:
    decode(raw, proto)


@settings(max_examples=200, deadline=timedelta(milliseconds=500))
@given(raw=st.binary(min_size=308, max_size=308), offset=st.integers(0, 7))
def test_tcpinfo_every_length(raw: bytes, offset: int) -> None:
    """tcp_info of every length 0..300 at any offset: None below 8 bytes, else a prefix."""
    previous: list[str] = []
    for length in range(301):
        info = tcpinfo.decode(raw[: offset + length], offset, length)
        if length < tcpinfo.MIN_LEN:
            assert info is None
            continue
        assert info is not None
        names = list(info.to_json())
        assert names[: len(previous)] == previous  # more bytes never lose a field
        assert info.get("state") == raw[offset]
        assert info.get("snd_wscale") == raw[offset + 6] & 0xF
        assert info.get("rcv_wscale") == raw[offset + 6] >> 4
        previous = names


def _fields(socks: list[Sock] | None) -> list[tuple[object, ...]]:
    """Everything a decoded socket holds, the fields JSON leaves out too."""
    assert socks is not None
    return [(s.to_json(), s.segs_in, s.timer_expires_ms, s.retrans, type(s)) for s in socks]


def _one_by_one(data: bytes, proto: str) -> list[Sock]:
    """The reference decode: each reply read attribute by attribute (_slow_row)."""
    out: list[Sock] = []
    for m in split(data):
        if m.mtype == SOCK_DIAG_BY_FAMILY and m.body[0] in (socket.AF_INET, socket.AF_INET6):
            one = join([m])
            out.append(_Decoded("fuzz", proto, SKMEMS[proto], *_slow_row(one, 0, len(one))))
    return out


@FUZZ
@given(data=st.data())
def test_runs_of_any_shapes_decode_as_one_by_one(seeds: list[Seed], data: st.DataObject) -> None:
    """Replies whose attributes come in any order, some missing, of unknown families,
    in runs of one shape broken anywhere: the runs read with one iter_unpack give the
    sockets that reading each reply attribute by attribute gives."""
    seed = _diag_seed(data, seeds)
    msgs = []
    for m in split(seed.data):
        if m.mtype == SOCK_DIAG_BY_FAMILY:
            attrs = data.draw(st.permutations(m.attrs)) if data.draw(st.booleans()) else m.attrs
            keep = [a for a in attrs if a[0] != INET_DIAG_SKMEMINFO or data.draw(st.booleans())]
            family = data.draw(st.sampled_from([m.body[0]] * 4 + [socket.AF_UNIX]))
            m = replace(m, body=bytes([family]) + m.body[1:], attrs=keep)
        msgs.append(m)
    raw = join(msgs)
    decoded = decode(raw, seed.proto)
    assert _fields(decoded) == _fields(_one_by_one(raw, seed.proto))
