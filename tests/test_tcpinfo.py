"""tcp_info decoded by length, from a real socket's getsockopt(TCP_INFO).

The struct grew over kernel releases; an older kernel sends a prefix of it. Cut to
each historical length, the decoder must yield exactly the fields that fit, with
the same values as the full decode, and None for the rest.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import pytest

from collectors import tcpinfo
from collectors.model import TcpInfo

SENT, RECEIVED = 3000, 1000  # payload the client sends / receives, all read

# Offsets from include/uapi/linux/tcp.h (C layout), independent of the decoder's list.
KERNEL_OFFSETS: dict[str, tuple[int, str]] = {
    "state": (0, "B"),
    "options": (5, "B"),
    "rto": (8, "I"),
    "snd_mss": (16, "I"),
    "unacked": (24, "I"),
    "last_data_recv": (52, "I"),
    "pmtu": (60, "I"),
    "rtt": (68, "I"),
    "rttvar": (72, "I"),
    "snd_cwnd": (80, "I"),
    "rcv_space": (96, "I"),
    "total_retrans": (100, "I"),
    "pacing_rate": (104, "Q"),
    "bytes_acked": (120, "Q"),
    "bytes_received": (128, "Q"),
    "segs_out": (136, "I"),
    "notsent_bytes": (144, "I"),
    "min_rtt": (148, "I"),
    "data_segs_out": (156, "I"),
    "delivery_rate": (160, "Q"),
    "busy_time": (168, "Q"),
    "sndbuf_limited": (184, "Q"),
    "delivered": (192, "I"),
    "bytes_sent": (200, "Q"),
    "reord_seen": (220, "I"),
    "snd_wnd": (228, "I"),
    "rcv_wnd": (232, "I"),
    "total_rto": (240, "H"),
    "total_rto_time": (244, "I"),
    "accecn_opt_seen": (278, "H"),
}

# sizeof(struct tcp_info) by kernel release, and the last field each one has.
KERNEL_LENGTHS = [
    (104, "total_retrans", "3.14"),
    (120, "max_pacing_rate", "3.15"),
    (136, "bytes_received", "4.1"),
    (144, "segs_in", "4.2"),
    (160, "data_segs_out", "4.6"),
    (168, "delivery_rate", "4.9"),
    (192, "sndbuf_limited", "4.10"),
    (200, "delivered_ce", "4.18"),
    (224, "reord_seen", "4.19"),
    (232, "snd_wnd", "5.4"),
    (240, "rehash", "6.2"),
    (248, "total_rto_time", "6.7"),
]


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A quiet loopback connection; the client's small SO_RCVBUF makes the scales differ."""
    srv = socket.create_server(("127.0.0.1", 0))
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(srv.getsockname())
    server, _ = srv.accept()
    srv.close()
    try:
        client.sendall(b"c" * SENT)
        got = b""
        while len(got) < SENT:
            got += server.recv(SENT)
        server.sendall(b"s" * RECEIVED)
        got = b""
        while len(got) < RECEIVED:
            got += client.recv(RECEIVED)
        time.sleep(0.1)  # the last ACKs
        yield client, server
    finally:
        client.close()
        server.close()


def raw_info(sock: socket.socket) -> bytes:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 512)


def decoded(raw: bytes) -> TcpInfo:
    info = tcpinfo.decode(raw, 0, len(raw))
    assert info is not None
    return info


def test_real_values_at_full_length(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    raw = raw_info(client)
    info = decoded(raw)
    get = info.get
    assert get("state") == 1  # TCP_ESTABLISHED
    assert (get("bytes_sent"), get("bytes_acked")) == (SENT, SENT + 1)  # +1: the SYN
    assert get("bytes_received") == RECEIVED
    assert get("unacked") == get("notsent_bytes") == get("total_retrans") == 0
    assert 0 < get("min_rtt", 0) <= get("rtt", 0)
    assert get("segs_out", 0) >= get("data_segs_out", 0) >= 1
    assert get("snd_mss", 0) > 0 and get("pmtu") == 65535
    # Window scales are bitfields of byte 6: each side's send scale is the other's receive
    # scale, and the small SO_RCVBUF makes the client's receive scale the smaller one.
    peer = decoded(raw_info(server))
    assert get("snd_wscale") == peer.get("rcv_wscale")
    assert get("rcv_wscale") == peer.get("snd_wscale")
    assert get("rcv_wscale", 99) < get("snd_wscale", 0)


def test_fields_sit_at_the_kernel_offsets(pair: tuple[socket.socket, socket.socket]) -> None:
    raw = raw_info(pair[0])
    info = decoded(raw)
    for name, (offset, code) in KERNEL_OFFSETS.items():
        if offset + struct.calcsize(code) <= len(raw):
            assert info.get(name) == struct.unpack_from("=" + code, raw, offset)[0], name


@pytest.mark.parametrize(("length", "last", "release"), KERNEL_LENGTHS)
def test_older_kernel_lengths(
    pair: tuple[socket.socket, socket.socket], length: int, last: str, release: str
) -> None:
    raw = raw_info(pair[0])
    if len(raw) < length:
        pytest.skip(f"this kernel sends {len(raw)} bytes")
    full = decoded(raw).to_json()
    names = list(full)
    fits = names[: names.index(last) + 1]
    for cut in (length, length + 1):  # one byte of the next field is not a field
        short = decoded(raw[:cut])
        assert short.to_json() == {name: full[name] for name in fits}, f"Linux {release}"
        for name in names[len(fits) :]:
            assert short.get(name) is None
            assert short.get(name, -1) == -1


def test_decode_at_an_offset(pair: tuple[socket.socket, socket.socket]) -> None:
    """Inside a netlink message the struct starts after the attribute header."""
    raw = raw_info(pair[0])
    inner = tcpinfo.decode(b"hdr!" + raw + b"next", 4, len(raw))
    assert inner is not None and inner.to_json() == decoded(raw).to_json()


def test_too_short_is_none(pair: tuple[socket.socket, socket.socket]) -> None:
    raw = raw_info(pair[0])
    assert [tcpinfo.decode(raw, 0, n) for n in range(tcpinfo.MIN_LEN)] == [None] * 8
    head = decoded(raw[:8])
    assert head.get("state") == 1 and head.get("rto") is None


def test_to_json_bitfields_match_get_for_every_byte_value() -> None:
    """to_json looks bytes 6 and 7 up in tables; get() shifts and masks: they agree."""
    names = ("snd_wscale", "rcv_wscale", "delivery_rate_app_limited", "fastopen_client_fail")
    for value in range(256):
        info = TcpInfo(bytes(6) + bytes([value, 255 - value]) + bytes(96))
        doc = info.to_json()
        assert {name: doc[name] for name in names} == {name: info.get(name) for name in names}
