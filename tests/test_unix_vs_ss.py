"""bufmon's UNIX socket collector against `ss -xanmp`, socket by socket, on real sockets.

The test's own namespace holds a stream listener whose backlog is full, connected
pairs with unread data both ways, a datagram receiver with queued messages, abstract
and filesystem names, a seqpacket pair and unbound sockets. All are quiet, so every
value ss prints must equal bufmon's, keyed by inode.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bufmon.monitor import Monitor
from bufmon.scenarios import Netns
from collectors.model import SKMEM_FIELDS, UnixSock
from collectors.netns import entered

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("ss") is None, reason="needs iproute2 ss"),
]

BACKLOG = 2
WAITING = BACKLOG + 1  # the kernel queues one connection past the backlog
NETIDS = {"u_str": "stream", "u_dgr": "dgram", "u_seq": "seqpacket"}
SKMEM_LETTERS = ("r", "rb", "t", "tb", "f", "w", "o", "bl", "d")


class Scene:
    """Every kind of UNIX socket worth comparing, made inside the namespace."""

    def __init__(self, tmp: str) -> None:
        self.keep: list[socket.socket] = []
        self.paths: dict[str, int] = {}  # path as ss prints it -> inode
        self.tmp = tmp

    def add(self, *socks: socket.socket) -> None:
        self.keep.extend(socks)

    def build(self) -> None:
        unix, stream, dgram = socket.AF_UNIX, socket.SOCK_STREAM, socket.SOCK_DGRAM
        listener = socket.socket(unix, stream)
        listener.bind(f"{self.tmp}/full.sock")
        listener.listen(BACKLOG)
        self.add(listener)
        for _ in range(WAITING):  # nobody accepts: all of them wait in the queue
            client = socket.socket(unix, stream)
            client.setblocking(False)
            client.connect(f"{self.tmp}/full.sock")
            self.add(client)
        server = socket.socket(unix, stream)
        server.bind("\0bufmon-vsss-abstract")
        server.listen(8)
        client = socket.socket(unix, stream)
        client.connect("\0bufmon-vsss-abstract")
        accepted, _ = server.accept()
        client.sendall(b"c" * 3000)  # unread both ways
        accepted.sendall(b"s" * 7000)
        self.add(server, client, accepted)
        left, right = socket.socketpair(unix, stream)  # unbound, connected
        left.sendall(b"l" * 1234)
        self.add(left, right)
        seq_a, seq_b = socket.socketpair(unix, socket.SOCK_SEQPACKET)
        seq_a.send(b"q" * 100)
        seq_a.send(b"q" * 200)
        self.add(seq_a, seq_b)
        receiver = socket.socket(unix, dgram)
        receiver.bind(f"{self.tmp}/log.sock")
        sender = socket.socket(unix, dgram)
        sender.connect(f"{self.tmp}/log.sock")
        for size in (300, 500, 700):  # queued, unread datagrams
            sender.send(b"d" * size)
        loose = socket.socket(unix, dgram)  # unbound, unconnected: sendto only
        loose.sendto(b"x" * 40, f"{self.tmp}/log.sock")
        self.add(receiver, sender, loose, socket.socket(unix, stream))  # and one never used

    def close(self) -> None:
        for sock in self.keep:
            sock.close()


@dataclass
class SsUnix:
    netid: str
    state: str
    recv_q: int
    send_q: int
    path: str
    inode: int
    peer_inode: int
    pid: int | None
    skmem: dict[str, int]


def parse_ss(text: str) -> dict[int, SsUnix]:
    """`ss -xanmp` lines (a detail line starts with whitespace), by local inode."""
    found: dict[int, SsUnix] = {}
    joined = text.replace("\n\t", " ").replace("\n ", " ")
    for line in joined.splitlines()[1:]:
        netid, state, recv_q, send_q, path, inode, _peer, peer_inode, *rest = line.split()
        pid = None
        skmem: dict[str, int] = {}
        for token in rest:
            if token.startswith("users:"):
                pid = int(token.split("pid=", 1)[1].split(",", 1)[0])
            elif token.startswith("skmem:("):
                for part in token[len("skmem:(") : -1].split(","):
                    letters = part.rstrip("0123456789")
                    skmem[letters] = int(part[len(letters) :])
        found[int(inode)] = SsUnix(
            netid, state, int(recv_q), int(send_q), path, int(inode), int(peer_inode), pid, skmem
        )
    return found


@dataclass
class Views:
    ss: dict[int, SsUnix]
    bufmon: dict[int, UnixSock]
    scene: Scene


@pytest.fixture(scope="module")
def views() -> Iterator[Views]:
    with Netns("unixss") as ns, tempfile.TemporaryDirectory() as tmp:
        scene = Scene(tmp)
        monitor = Monitor(ns.name)
        try:
            with entered(f"/run/netns/{ns.name}"):
                scene.build()
            out = subprocess.run(
                ["ip", "netns", "exec", ns.name, "ss", "-xanmp"],
                capture_output=True,
                text=True,
                check=True,
            )
            snap = monitor.refresh()
            ours = {s.inode: s for s in snap.sockets if isinstance(s, UnixSock)}
            yield Views(parse_ss(out.stdout), ours, scene)
        finally:
            monitor.close()
            scene.close()


def test_same_sockets_as_ss(views: Views) -> None:
    assert len(views.ss) == len(views.scene.keep)
    assert views.bufmon.keys() == views.ss.keys()


def test_each_socket_matches_ss(views: Views) -> None:
    bad = []
    for inode, ss in views.ss.items():
        s = views.bufmon[inode]
        ours = {
            "type": s.sock_type,
            "state": s.state,
            "recv_q": s.recv_q,
            "send_q": s.send_q,
            "path": s.path or "*",
            "peer_inode": s.peer_inode,
            "pid": None if s.process is None else s.process.pid,
            "skmem": dict(zip(SKMEM_LETTERS, s.skmem or (), strict=False)),
        }
        theirs = {
            "type": NETIDS[ss.netid],
            "state": ss.state,
            "recv_q": ss.recv_q,
            "send_q": ss.send_q,
            "path": ss.path,
            "peer_inode": ss.peer_inode,
            "pid": ss.pid,
            "skmem": ss.skmem,
        }
        wrong = [k for k, v in ours.items() if v != theirs[k]]
        bad += [f"{inode} {k}: ss {theirs[k]} bufmon {ours[k]}" for k in wrong]
    assert not bad, "\n".join(bad)


def test_the_scene_is_what_it_should_be(views: Views) -> None:
    """The cases the comparison is meant to cover are really there."""
    socks = list(views.bufmon.values())
    listener = next(s for s in socks if s.path is not None and s.path.endswith("/full.sock"))
    assert (listener.state, listener.recv_q, listener.send_q) == ("LISTEN", WAITING, BACKLOG)
    assert len(listener.icons) == WAITING
    abstract = [s for s in socks if s.path == "@bufmon-vsss-abstract"]
    assert sorted(s.state for s in abstract) == ["ESTAB", "LISTEN"]  # listener, accepted
    receiver = next(s for s in socks if s.path is not None and s.path.endswith("/log.sock"))
    assert receiver.sock_type == "dgram" and receiver.recv_q == 300  # the first datagram
    assert {s.sock_type for s in socks} == {"stream", "dgram", "seqpacket"}
    assert any(s.path is None and not s.peer_inode for s in socks)
    assert len(SKMEM_FIELDS) == len(SKMEM_LETTERS)


def test_peers_link_both_ends(views: Views) -> None:
    """Each end's peer process and path come from the other end; a client still in a
    listener's queue gets the listener's process; queued bytes are charged to senders."""
    socks = views.bufmon
    me = os.getpid()
    for s in socks.values():
        peer = socks.get(s.peer_inode)
        if peer is not None:
            assert peer.peer_inode == s.inode or peer.sock_type == "dgram"
            assert s.peer_process is not None and s.peer_process.pid == me
            assert s.peer_addr == peer.local_addr
    listener = next(s for s in socks.values() if s.state == "LISTEN" and s.icons)
    for inode in listener.icons:
        assert socks[inode].peer_process is not None
        assert socks[inode].peer_addr == listener.path
    for s in socks.values():
        senders = sum(o.send_q for o in socks.values() if o.peer_inode == s.inode)
        assert s.senders_q == senders
    receiver = next(s for s in socks.values() if s.path and s.path.endswith("/log.sock"))
    assert receiver.senders_q > 0 and receiver.peer_process is not None


def test_json_fields(views: Views) -> None:
    slots = {name for cls in type(next(iter(views.bufmon.values()))).__mro__
             for name in getattr(cls, "__slots__", ())}  # fmt: skip
    for s in views.bufmon.values():
        assert all(hasattr(s, name) for name in slots)  # the decoder's constructor sets all
        doc = s.to_json()
        assert doc["proto"] == "unix" and doc["family"] == "unix"
        assert doc["type"] in ("stream", "dgram", "seqpacket")
        assert doc["path"] == doc["local_addr"] == s.path
        assert doc["local_port"] == 0 and doc["peer_port"] == 0
        assert doc["peer_inode"] == s.peer_inode
        assert doc["peer_addr"] is None or isinstance(doc["peer_addr"], str)
