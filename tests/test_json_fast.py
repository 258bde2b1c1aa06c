"""The `--json` outputs share what sockets have in common (bufmon.jsonparts): they must
write exactly what the plain dicts of Sock.to_json() give, over real sockets of every
kind: TCP with tcp_info, UDP, UNIX, LISTEN, TIME-WAIT, flagged, with rates, with and
without a process, and a process whose name is not ASCII (the standard library path)."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import orjson
import pytest
from scenes import Scene

from bufmon import jsoninfo
from bufmon.jsoninfo import SharedInfo
from bufmon.jsonkept import KeptTexts
from bufmon.jsonparts import SharedParts
from bufmon.monitor import Monitor
from bufmon.scenarios import Netns, StalledReader
from bufmon.textout import BATCH, json_chunks, json_line, shown, watch_document
from collectors import tcpinfo
from collectors.model import IDLE, Snapshot, Sock, TcpInfo
from collectors.netns import entered

pytestmark = pytest.mark.root

NAME = "d\u00e9mon\u200e"  # past ASCII, with a bidi mark: JSON escapes it
# Runs inside the namespace: takes NAME as its process name, then holds a connection.
HOLDER = r"""
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)  # PR_SET_NAME
server = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(server.getsockname())
peer, _ = server.accept()
client.sendall(b"x" * 1000)
print(server.getsockname()[1], flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def snap() -> Iterator[Snapshot]:
    """Two refreshes of a namespace holding every kind of socket (rates need two)."""
    with Netns("jsonfast") as ns:
        scene = Scene(ns.name)
        with entered(f"/run/netns/{ns.name}"):
            unix = socket.socketpair()
        holder = subprocess.Popen(
            [*ns.command(sys.executable, "-c", HOLDER), NAME],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            with entered(f"/run/netns/{ns.name}"):
                scene.build()
            unix[0].sendall(b"u" * 300)
            assert holder.stdout is not None and int(holder.stdout.readline())
            with StalledReader(ns):
                monitor = Monitor(ns.name)
                try:
                    monitor.refresh()
                    time.sleep(1.2)  # the stalled pair's client sends again: rates move
                    yield monitor.refresh()
                finally:
                    monitor.close()
        finally:
            holder.kill()
            holder.wait()
            scene.close()
            for end in unix:
                end.close()


def test_the_namespace_holds_every_kind(snap: Snapshot) -> None:
    """What the comparisons below go through (else they would prove less than said)."""
    socks = snap.sockets
    assert {s.proto for s in socks} >= {"tcp", "udp", "unix"}
    assert {s.state for s in socks} >= {"ESTAB", "LISTEN", "TIME-WAIT", "CLOSE-WAIT", "UNCONN"}
    assert any(s.info is None for s in socks) and any(s.info is not None for s in socks)
    assert any(s.flags for s in socks) and any(not s.flags for s in socks)
    assert any(s.rates is IDLE for s in socks) and any(s.rates not in (None, IDLE) for s in socks)
    assert any(s.process is None for s in socks)
    assert any(s.process is not None and s.process.comm == NAME for s in socks)
    assert any(s.listener is not None for s in socks)  # waiting in a full accept queue


def test_each_socket_writes_as_its_plain_dict(snap: Snapshot) -> None:
    mixed = SharedParts(snap.sockets)
    for sock in snap.sockets:
        plain = orjson.dumps(sock.to_json())
        assert orjson.dumps(sock.to_json(mixed)) == plain, sock.state
        # alone in its document, every field of its tcp_info looks steady: one text
        assert orjson.dumps(sock.to_json(SharedParts([sock]))) == plain, sock.state


def test_documents_are_the_same_bytes(snap: Snapshot) -> None:
    """The whole `--json` document, with and without the non-ASCII process (which sends
    its batch through the standard library), against the plain one-piece document."""
    socks = shown(snap)
    ascii_only = [s for s in socks if s.process is None or s.process.comm != NAME]
    for chosen in (socks, ascii_only, socks * (BATCH // len(socks) + 1)):
        text = b"".join(json_chunks(snap, chosen))
        plain = json_line(watch_document(snap, chosen))
        assert text.decode("ascii") == plain
        assert json.loads(text) == json.loads(json.dumps(snap.to_json(chosen)))
    assert b"\\u00e9" in b"".join(json_chunks(snap, socks))


def test_kept_texts_write_every_kind_as_encoded(snap: Snapshot) -> None:
    """`watch --json` writes texts of the document before again (bufmon.jsonkept): the
    same documents, with and without the batch that goes the standard way."""
    socks = shown(snap)
    ascii_only = [s for s in socks if s.process is None or s.process.comm != NAME]
    for chosen in (socks, ascii_only, ascii_only * (BATCH // len(ascii_only) + 1)):
        plain = b"".join(json_chunks(snap, chosen))
        texts = KeptTexts()
        for _ in range(3):  # new, cut and kept, written again
            assert b"".join(json_chunks(snap, chosen, texts)) == plain


def _tcp_info() -> bytes:
    """The whole tcp_info of a live loopback connection that moved data both ways."""
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    with server, client, peer:
        client.sendall(b"c" * 3000)
        peer.recv(3000)
        return client.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 512)


def _variants(raw: bytes, count: int = 64) -> list[bytes]:
    """`raw` with about half of its fields (a random choice) random in each copy."""
    rng = random.Random(15)
    fields = tcpinfo.layout(len(raw)).fields
    moving = [field for field in fields if rng.random() < 0.5]
    out = []
    for _ in range(count):
        copy = bytearray(raw)
        for _, start, end in moving:
            copy[start:end] = rng.randbytes(end - start)
        out.append(bytes(copy))
    return out


def test_tcp_info_of_every_length_writes_as_its_dict() -> None:
    """Every length an older kernel may send, and odd ones that cut a field; steady
    runs and moving fields as a sample of sockets tells them apart."""
    variants = _variants(_tcp_info())
    for length in range(tcpinfo.MIN_LEN, len(variants[0]) + 1):
        infos = [TcpInfo(raw[:length]) for raw in variants]
        shared = SharedInfo(tcpinfo.layout(length), infos)
        for info in infos:
            assert orjson.dumps(shared.object(info)) == orjson.dumps(info.to_json()), length
    assert len(shared.runs) > 1 and len(shared.moving) > 1  # both ways were taken


def test_steady_texts_start_over_when_too_many(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sockets that differ where the sample saw one value still get their own text,
    however many there are; the texts kept per run stay bounded."""
    monkeypatch.setattr(jsoninfo, "SHARED_MAX", 3)
    raw = _tcp_info()
    shared = SharedInfo(tcpinfo.layout(len(raw)), [raw])  # one value each: all steady
    for rto in range(200000, 200010):
        info = TcpInfo(raw[:8] + rto.to_bytes(4, sys.byteorder) + raw[12:])
        assert orjson.dumps(shared.object(info)) == orjson.dumps(info.to_json())
        assert all(len(texts) <= 3 for _, _, texts in shared.runs)


def test_a_name_orjson_refuses_goes_the_standard_way(snap: Snapshot) -> None:
    """A lone surrogate (never from the collectors, which decode names) makes orjson
    refuse the batch: the standard library writes it from the plain dicts."""
    sock = next(s for s in snap.sockets if s.process is not None)
    odd = Sock.from_json(sock.to_json())
    odd.local_addr = "\udcff"
    text = b"".join(json_chunks(snap, [odd]))
    assert json.loads(text)["sockets"] == [json.loads(json.dumps(odd.to_json()))]
