"""Trouble makers only the tests use, beside the demo's in bufmon.scenarios.

Each builds one condition for real (raw SYNs, a pruned receive buffer, exhausted
ports, a tbf-limited link...) inside a Netns the test owns.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import socket
import struct
import time
from collections.abc import Callable
from typing import Self

from bufmon.scenarios import (
    CHUNK,
    FAMILIES,
    BulkTransfer,
    Netns,
    Scenario,
    StalledReader,
    nodelay,
    recv_available,
    send_until_full,
)

_subnets = itertools.count(1)  # 10.77.N.0/24 of each TbfLink


class ZeroWindowSender(StalledReader):
    """The stalled pair seen from the client (client_port): the peer is not reading."""


class RcvbufPrune(Scenario):
    """Receiver with a 2 MB buffer that never reads shrinks it to 4096 under 40 small
    segments; 20 more force prune/collapse/drop (TcpExt PruneCalled, TCPRcvQDrop...)."""

    BIG_RCVBUF = 2 * 1024 * 1024
    SMALL_RCVBUF = 4096
    SIZE = 1000

    def build(self) -> None:
        self.connect_pair(self._setup)
        self._write(40)
        self._wait_queued(40 * self.SIZE)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.SMALL_RCVBUF)
        self._write(20)
        time.sleep(0.2)

    def _setup(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.BIG_RCVBUF)
        nodelay(sock)

    def _write(self, count: int) -> None:
        for _ in range(count):
            self.client.send(CHUNK[: self.SIZE], socket.MSG_DONTWAIT)

    def _wait_queued(self, size: int) -> None:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and recv_queue(self.server) < size:
            time.sleep(0.01)


def recv_queue(sock: socket.socket) -> int:
    """Bytes waiting to be read (MSG_PEEK of everything, without consuming)."""
    try:
        return len(sock.recv(1 << 20, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return 0


class PortExhaustion(Scenario):
    """ip_local_port_range 40000 40009, tcp_tw_reuse 0, connect+close to one peer
    until EADDRNOTAVAIL: `connected` connects worked, `exhausted` tells if it was hit.

    Needs a private namespace (it sets sysctls, restored on exit). The TIME-WAIT
    sockets stay for 60 s, so later connects to that peer port keep failing.
    """

    PORT_RANGE = (40000, 40009)
    LISTEN_PORT = 5000
    ATTEMPTS = 50

    def __init__(self, ns: Netns, family: str = "inet") -> None:
        super().__init__(ns, family)
        self._restore: dict[str, str] = {}

    def close(self) -> None:
        super().close()
        while self._restore:
            self.ns.sysctl(*self._restore.popitem())

    def build(self) -> None:
        # net.ipv4.ip_local_port_range applies to IPv6 too
        for key, value in (
            ("net.ipv4.ip_local_port_range", "{} {}".format(*self.PORT_RANGE)),
            ("net.ipv4.tcp_tw_reuse", "0"),
        ):
            self._restore[key] = self.ns.sysctl(key, value)
        self.listen = self.listener(port=self.LISTEN_PORT)
        self.listen_port = self.LISTEN_PORT
        self.connected = 0
        self.exhausted = False
        for _ in range(self.ATTEMPTS):
            with socket.socket(FAMILIES[self.family], socket.SOCK_STREAM) as client:
                try:
                    client.connect((self.host, self.LISTEN_PORT))
                except OSError as exc:
                    if exc.errno != errno.EADDRNOTAVAIL:
                        raise
                    self.exhausted = True
                    return
                server, _ = self.listen.accept()
                self.connected += 1
                client.close()  # the client closes first, so its port sits in TIME-WAIT
                server.close()


class SynBacklog(Scenario):
    """SYNs from addresses that never answer: the listener (backlog 2) keeps them in
    SYN-RECV, then falls back to syncookies (TcpExt SyncookiesSent rises).

    The SYNs are raw packets to a local address on a veth whose other end, in the same
    namespace, has no address: the SYN-ACKs go out and nobody answers their ARP. No
    packet leaves the namespace. IPv4 only; needs a private namespace (root).
    """

    LOCAL, PEERS, PORT, SYNS = "10.98.0.1", "10.98.0.{}", 7777, 20

    def build(self) -> None:
        if self.ns.loopback:
            raise RuntimeError("SynBacklog needs a private namespace")
        for argv in (
            ("ip", "link", "add", "bm-syn0", "type", "veth", "peer", "name", "bm-syn1"),
            ("ip", "addr", "add", f"{self.LOCAL}/24", "dev", "bm-syn0"),
            ("ip", "link", "set", "bm-syn0", "up"),
            ("ip", "link", "set", "bm-syn1", "up"),
        ):
            self.ns.output(*argv)
        self.listen = self.listener(backlog=2, host=self.LOCAL, port=self.PORT)
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self._sockets.append(raw)
        for i in range(self.SYNS):
            raw.sendto(
                syn_packet(self.PEERS.format(10 + i), self.LOCAL, 40000 + i, self.PORT),
                (self.LOCAL, 0),
            )
        self.listen_port = self.PORT


def syn_packet(src: str, dst: str, sport: int, dport: int) -> bytes:
    """An IPv4 TCP SYN with valid checksums (the kernel fills the IP checksum)."""

    def checksum(data: bytes) -> int:
        data += b"\0" * (len(data) % 2)
        total = sum(struct.unpack(f"!{len(data) // 2}H", data))
        total = (total >> 16) + (total & 0xFFFF)
        return ~(total + (total >> 16)) & 0xFFFF

    saddr, daddr = socket.inet_aton(src), socket.inet_aton(dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    pseudo = saddr + daddr + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, socket.IPPROTO_TCP, 0, saddr, daddr
    )
    return ip + tcp


class NagleDelayedAck(Scenario):
    """Small writes without TCP_NODELAY meet delayed ACKs: the client writes 100 B twice
    and waits for a 2-byte answer, so Nagle holds its second write until the server's
    delayed ACK (about 40 ms). srtt climbs far above min_rtt on an app-limited
    connection with small segments: the pattern behind nagle_hint (client_port)."""

    def build(self) -> None:
        self.connect_pair()
        for sock in (self.client, self.server):
            sock.settimeout(1.0)  # so both loops notice close() even when blocked
        self.every(0.0, self._exchange)
        self.every(0.0, self._answer)

    def _exchange(self) -> None:
        self.client.sendall(b"a" * 100)
        self.client.sendall(b"b" * 100)
        self.client.recv(2)

    def _answer(self) -> None:
        got = 0
        while got < 200:
            data = self.server.recv(200 - got)
            if not data:
                raise OSError("closed")
            got += len(data)
        self.server.sendall(b"ok")


class HealthyReader(Scenario):
    """Sender writes 16 KB every 100 ms, reader drains every 100 ms: no problem."""

    CHUNK_SIZE = 16384
    PERIOD = 0.1

    def build(self) -> None:
        self.connect_pair()
        self.read_bytes = 0
        self.every(self.PERIOD, lambda: send_until_full(self.client, CHUNK[: self.CHUNK_SIZE], 1))
        self.every(self.PERIOD, self._read)

    def _read(self) -> None:
        self.read_bytes += recv_available(self.server, self.CHUNK_SIZE, limit=4)


class TbfLink:
    """Two namespaces joined by a veth pair, tbf 1mbit on the sender's side.

    sender_ns holds `dev` with sender_addr (10.77.X.1/24), receiver_ns holds
    peer_dev with receiver_addr (10.77.X.2/24).
    """

    TBF = ("rate", "1mbit", "burst", "32kbit", "latency", "400ms")

    def __init__(self) -> None:
        subnet = next(_subnets) % 254 + 1
        self.sender_addr = f"10.77.{subnet}.1"
        self.receiver_addr = f"10.77.{subnet}.2"
        self.sender_ns = Netns("tbfsend")
        self.receiver_ns = Netns("tbfrecv")
        self.dev = "bmveth0"
        self.peer_dev = "bmveth1"

    def __enter__(self) -> Self:
        try:
            self.sender_ns.open()
            self.receiver_ns.open()
            send, recv = self.sender_ns, self.receiver_ns
            veth = ("type", "veth", "peer", "name", self.peer_dev, "netns", recv.name)
            send.output("ip", "link", "add", self.dev, *veth)
            send.output("ip", "addr", "add", f"{self.sender_addr}/24", "dev", self.dev)
            recv.output("ip", "addr", "add", f"{self.receiver_addr}/24", "dev", self.peer_dev)
            send.output("ip", "link", "set", self.dev, "up")
            recv.output("ip", "link", "set", self.peer_dev, "up")
            send.output("tc", "qdisc", "add", "dev", self.dev, "root", "tbf", *self.TBF)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sender_ns.close()
        self.receiver_ns.close()


class BulkOverTbf(BulkTransfer):
    """A bulk transfer across a TbfLink: healthy, limited by the 1 Mbit/s link."""

    def __init__(self, link: TbfLink) -> None:
        super().__init__(link.sender_ns)
        self.link = link

    def make_pair(
        self,
        setup: Callable[[socket.socket], None] | None,
    ) -> tuple[socket.socket, socket.socket, socket.socket]:
        lst = self.link.receiver_ns.run(self.listener, 16, self.link.receiver_addr, 0, setup)
        return self.accept_client(lst, setup)


class BigWrites(BulkTransfer):
    """A bulk transfer in 256 KB writes (more than one 64 KB loopback segment, so a full
    send buffer shows in sndbuf_limited); `setup` runs on the listener and client, and
    `server_setup` on the accepted side."""

    WRITE = b"x" * (256 * 1024)

    def __init__(
        self,
        ns: Netns,
        setup: Callable[[socket.socket], None] | None = None,
        server_setup: Callable[[socket.socket], None] | None = None,
    ) -> None:
        super().__init__(ns)
        self.setup = setup
        self.server_setup = server_setup

    def make_pair(
        self,
        setup: Callable[[socket.socket], None] | None,
    ) -> tuple[socket.socket, socket.socket, socket.socket]:
        lst, client, server = super().make_pair(self.setup)
        if self.server_setup is not None:
            self.server_setup(server)
        return lst, client, server

    def _send(self) -> None:
        with contextlib.suppress(TimeoutError):
            self.client.sendall(self.WRITE)


def buffer_option(option: int, size: int) -> Callable[[socket.socket], None]:
    """A setup that pins SO_RCVBUF or SO_SNDBUF at `size` (the kernel doubles it)."""
    return lambda sock: sock.setsockopt(socket.SOL_SOCKET, option, size)


class CloseWaitLeak(Scenario):
    """A server accepts LEAKS connections whose clients close; it never closes its ends,
    which stay in CLOSE-WAIT (server_port)."""

    LEAKS = 3

    def build(self) -> None:
        self.listen = self.listener()
        self.server_port: int = self.listen.getsockname()[1]
        for _ in range(self.LEAKS):
            client = socket.socket(FAMILIES[self.family], socket.SOCK_STREAM)
            client.connect((self.host, self.server_port))
            server, _ = self.listen.accept()
            self._sockets.append(server)
            client.close()


class LossyTbfLink(TbfLink):
    """A TbfLink whose queue holds about two packets: TCP's bursts overflow it, so the
    sender really retransmits (netem is not in this kernel)."""

    TBF = ("rate", "1mbit", "burst", "32kbit", "limit", "3000")


class PacedOverTbf(BulkOverTbf):
    """A transfer across a TbfLink at RATE bytes/s, half the link's: the sender keeps
    `sent` at RATE x the time since it started (catching up after a late wake-up), so
    nothing queues and what the application wrote is what went across, counted."""

    RATE = 60_000
    PERIOD = 0.05

    def build(self) -> None:
        self.connect_pair()
        self.sent = self.read_bytes = 0
        self.client.settimeout(1.0)
        self.server.settimeout(self.POLL)
        self.started = time.monotonic()
        self.every(self.PERIOD, self._send_due)
        self.every(0, self._read)

    def _send_due(self) -> None:
        due = min(int((time.monotonic() - self.started) * self.RATE) - self.sent, len(CHUNK))
        if due > 0:
            self.client.sendall(CHUNK[:due])
            self.sent += due
