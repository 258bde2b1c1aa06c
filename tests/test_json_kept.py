"""`watch --json` writes a quiet socket's text of the last document again, with its
new time fields (bufmon.jsonkept): every document must be the bytes that encoding
each socket afresh gives, over real loopback connections whose time fields move,
one of which sends between two documents."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bufmon import jsonkept
from bufmon.jsonkept import SAMPLED, KeptTexts
from bufmon.monitor import Monitor
from bufmon.scenarios import Netns
from bufmon.textout import json_chunks, shown
from collectors.model import Snapshot, Sock
from collectors.netns import entered
from collectors.tcpinfo import TIME_FIELDS
from tui.synthetic import synthetic_snapshot

PAIRS = 6
GAP = 0.1  # s between refreshes: the time fields move (milliseconds since)


def test_a_kept_text_is_compared_on_every_field_it_shows() -> None:
    """A field added to the JSON must be added to the sample, or a kept text would
    show its old value."""
    apart = {"tcp_info", "netns", "cookie", "flags", "accept_queue_of"}  # compared apart
    for sock in synthetic_snapshot(50).sockets:
        assert set(sock.to_json()) - apart == set(SAMPLED)


@pytest.fixture
def pairs() -> Iterator[tuple[str, list[tuple[socket.socket, socket.socket]]]]:
    """Idle loopback connections in a namespace of their own, plus a UDP socket."""
    with Netns("jsonkept") as ns:
        with entered(f"/run/netns/{ns.name}"):
            server = socket.create_server(("127.0.0.1", 0))
            made = []
            for _ in range(PAIRS):
                client = socket.create_connection(server.getsockname())
                made.append((client, server.accept()[0]))
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
        try:
            yield ns.name, made
        finally:
            for sock in [server, udp, *(end for pair in made for end in pair)]:
                sock.close()


def _encoding(snap: Snapshot, socks: list[Sock], texts: KeptTexts) -> tuple[bytes, list[int]]:
    """The document written with `texts`, and the cookies of the sockets encoded
    afresh (Sock.to_json called) for it."""
    cookies: list[int] = []
    plain = Sock.to_json

    def counted(sock: Sock, *args: Any) -> dict[str, Any]:
        cookies.append(sock.cookie)
        return plain(sock, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Sock, "to_json", counted)
        return b"".join(json_chunks(snap, socks, texts)), cookies


def _documents(
    netns: str, count: int, between: dict[int, Callable[[], object]]
) -> Iterator[tuple[list[Sock], bytes, list[int]]]:
    """`count` documents of `netns` written with one KeptTexts: (the sockets, the
    document, cookies encoded afresh), each checked against the plain document.
    between[n]() runs before refresh n."""
    monitor = Monitor(netns)
    texts = KeptTexts()
    try:
        for n in range(count):
            if n in between:
                between[n]()
            time.sleep(GAP)
            snap = monitor.refresh()
            socks = shown(snap)
            doc, fresh = _encoding(snap, socks, texts)
            assert doc == b"".join(json_chunks(snap, socks)), n
            yield socks, doc, fresh
    finally:
        monitor.close()


def _cookie(socks: list[Sock], end: socket.socket) -> int:
    port = end.getsockname()[1]
    return next(s.cookie for s in socks if s.proto == "tcp" and s.local_port == port)


@pytest.mark.root
def test_quiet_sockets_are_written_again_moved_ones_afresh(
    pairs: tuple[str, list[tuple[socket.socket, socket.socket]]],
) -> None:
    netns, made = pairs
    sender, receiver = made[0]
    docs = list(_documents(netns, 5, {3: lambda: sender.sendall(b"x" * 3000)}))
    socks = docs[-1][0]
    assert len(socks) == 2 * PAIRS + 2
    time_moved = {
        name: {s.info.get(name) for doc_socks, _, _ in docs for s in doc_socks if s.info}
        for name in TIME_FIELDS
    }
    assert len(time_moved["last_data_recv"]) > 1  # else writing them again proves nothing
    # 1: first sample, nothing known; 2: quiet (no counter moved): cut and kept
    assert all(len(fresh) == len(socks) for _, _, fresh in docs[:2])
    # 3: the kept texts are written again; 4: the sender and receiver moved
    assert docs[2][2] == []
    moved = {_cookie(socks, sender), _cookie(socks, receiver)}
    assert moved <= set(docs[3][2]) and len(docs[3][2]) < len(socks)
    assert b'"recv_q":3000' in docs[3][1]


@pytest.mark.root
def test_kept_texts_are_bounded(
    pairs: tuple[str, list[tuple[socket.socket, socket.socket]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jsonkept, "KEEP_MAX", 3)
    netns, _ = pairs
    docs = list(_documents(netns, 4, {}))
    assert [len(socks) - len(fresh) for socks, _, fresh in docs] == [0, 0, 3, 3]
