"""Real socket trouble on purpose, for `bufmon demo` and the tests.

A `Netns` is a throwaway network namespace (or the current one, without root);
each `Scenario` builds one condition from DOMAIN.md inside it, keeps it alive with
bounded background loops, and closes every socket on exit.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import re
import secrets
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from pyroute2 import netns as pyroute2_netns

from collectors.netns import NetnsError, open_netns

T = TypeVar("T")

NETNS_DIR = Path("/run/netns")
# Only what `bufmon demo` makes: bufmon-demo-<pid>-<random>, unique across PID
# namespaces and PID reuse. While the demo runs it holds a lock on its namespace.
_DEMO_NAME = re.compile(r"^bufmon-demo-\d+-[0-9a-f]{8}$")
DEMO_LOCK = Path("/run/bufmon-demo.lock")  # serialises making and sweeping demo namespaces
_counter = itertools.count(1)
HOSTS = {"inet": "127.0.0.1", "inet6": "::1"}
FAMILIES = {"inet": socket.AF_INET, "inet6": socket.AF_INET6}
CHUNK = b"x" * 65536
JOIN_TIMEOUT = 2.0
SIOCOUTQNSD = 0x894B


def _run(*argv: str) -> str:
    """stdout of argv; raises CalledProcessError (with its stderr) when it fails."""
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def _delete_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def demo_name() -> str:
    return f"bufmon-demo-{os.getpid()}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def _demo_lock() -> Iterator[None]:
    fd = os.open(DEMO_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _claim(name: str) -> int | None:
    """A locked fd on the namespace `name`; None when another process holds the lock."""
    fd = open_netns(str(NETNS_DIR / name))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces a `bufmon demo` left behind (killed with -9); returns their names.

    Only provably the demo's and dead: its name pattern, a network namespace, and no
    process holds its lock (the kernel drops a lock when its holder dies, in any PID
    namespace). Other bufmon-* namespaces may be a user's."""
    removed = []
    names = sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []
    with _demo_lock():
        for name in filter(_DEMO_NAME.match, names):
            try:
                fd = _claim(name)
            except NetnsError:
                continue  # gone meanwhile, or not a namespace: not ours to delete
            if fd is not None:
                _delete_netns(name)
                os.close(fd)
                removed.append(name)
    return removed


class Netns:
    """A network namespace named bufmon-<purpose>-<pid>-<n>, deleted on exit.

    `Netns.current()` stands for the namespace we already run in (no root needed):
    nothing is created and run() calls fn directly.
    """

    def __init__(
        self,
        purpose: str = "test",
        *,
        name: str | None = None,
        loopback: bool = False,
        locked: bool = False,
    ) -> None:
        """locked: hold a lock on the namespace while open (the demo's proof of life)."""
        if not re.fullmatch(r"[a-z0-9]+", purpose):
            raise ValueError(f"namespace purpose must be [a-z0-9]+, got {purpose!r}")
        self.loopback = loopback
        self.name = (
            "current" if loopback else (name or f"bufmon-{purpose}-{os.getpid()}-{next(_counter)}")
        )
        self._created = False
        self.locked = locked
        self._lock_fd: int | None = None

    @classmethod
    def current(cls) -> Netns:
        return cls(loopback=True)

    def open(self) -> Self:
        if self.loopback or self._created:
            return self
        with _demo_lock() if self.locked else contextlib.nullcontext():
            _run("ip", "netns", "add", self.name)
            self._created = True
            try:
                if self.locked:
                    self._lock_fd = _claim(self.name)
                _run("ip", "-n", self.name, "link", "set", "lo", "up")
            except BaseException:
                self.close()
                raise
        return self

    def close(self) -> None:
        if self._created:
            self._created = False
            _delete_netns(self.name)
        if self._lock_fd is not None:  # released only once the namespace is gone
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) in a short-lived thread inside the namespace; its sockets stay there."""
        if self.loopback:
            return fn(*args)
        outcome: dict[str, Any] = {}

        def inside() -> None:
            try:
                pyroute2_netns.setns(self.name, flags=0)
                outcome["result"] = fn(*args)
            except BaseException as exc:  # handed to the caller below
                outcome["error"] = exc

        thread = threading.Thread(target=inside, name=f"netns-{self.name}", daemon=True)
        thread.start()
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    def sysctl(self, key: str, value: str | int) -> str:
        """Set `key` inside the namespace (not the current one); returns the old value."""
        if self.loopback:
            raise RuntimeError(f"refusing to set {key} outside a private namespace")
        path = Path("/proc/sys", *key.split("."))
        old = self.run(path.read_text).strip()
        self.run(path.write_text, f"{value}\n")
        return old

    def command(self, *argv: str) -> list[str]:
        """argv prefixed so that it runs inside the namespace."""
        return list(argv) if self.loopback else ["ip", "netns", "exec", self.name, *argv]

    def output(self, *argv: str) -> str:
        """stdout of a command run inside the namespace (e.g. "ss", "-tanmi")."""
        return _run(*self.command(*argv))


class Scenario:
    """Base of the makers: build on enter (inside `ns`), stop loops and close on exit."""

    def __init__(self, ns: Netns, family: str = "inet") -> None:
        if family not in FAMILIES:
            raise ValueError(f"family must be inet or inet6, got {family!r}")
        self.ns = ns
        self.family = family
        self.host = HOSTS[family]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    def build(self) -> None:
        """Create the case; runs inside the namespace."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.ns.run(self.build)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT)
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()

    # helpers for subclasses

    def new_socket(self, kind: int = socket.SOCK_STREAM) -> socket.socket:
        sock = socket.socket(FAMILIES[self.family], kind)
        self._sockets.append(sock)
        return sock

    def listener(
        self,
        backlog: int = 16,
        host: str | None = None,
        port: int = 0,
        setup: Callable[[socket.socket], None] | None = None,
    ) -> socket.socket:
        sock = self.new_socket()
        if setup:
            setup(sock)
        sock.bind((host or self.host, port))
        sock.listen(backlog)
        return sock

    def connect_pair(self, setup: Callable[[socket.socket], None] | None = None) -> None:
        """Set listen, client, server and their server_port, client_port."""
        self.listen, self.client, self.server = self.make_pair(setup)
        self.server_port: int = self.server.getsockname()[1]
        self.client_port: int = self.client.getsockname()[1]

    def make_pair(
        self,
        setup: Callable[[socket.socket], None] | None,
    ) -> tuple[socket.socket, socket.socket, socket.socket]:
        """(listener, client, server); `setup` runs on listener and client before connect."""
        return self.accept_client(self.listener(setup=setup), setup)

    def accept_client(
        self,
        lst: socket.socket,
        setup: Callable[[socket.socket], None] | None,
    ) -> tuple[socket.socket, socket.socket, socket.socket]:
        client = self.new_socket()
        if setup:
            setup(client)
        client.connect(lst.getsockname()[:2])
        server, _ = lst.accept()
        self._sockets.append(server)
        return lst, client, server

    def every(self, period: float, step: Callable[[], object]) -> None:
        """Run step() every `period` seconds in a daemon thread until close()."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    step()
                except OSError:
                    if self._stop.is_set():
                        return
                    raise
                self._stop.wait(period)

        thread = threading.Thread(target=loop, name=type(self).__name__, daemon=True)
        self._threads.append(thread)
        thread.start()


def send_until_full(sock: socket.socket, data: bytes = CHUNK, limit: int = 1000) -> int:
    """Non-blocking sends until EAGAIN (at most `limit`); returns bytes sent."""
    sent = 0
    for _ in range(limit):
        try:
            sent += sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
    return sent


def recv_available(sock: socket.socket, size: int = 65536, limit: int = 1000) -> int:
    """Non-blocking reads until empty (at most `limit`); returns bytes read."""
    got = 0
    for _ in range(limit):
        try:
            data = sock.recv(size, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        if not data:
            break
        got += len(data)
    return got


def unsent_bytes(sock: socket.socket) -> int:
    """Bytes written to a TCP socket and not yet sent (SIOCOUTQNSD)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), SIOCOUTQNSD, b"\0" * 4))[0]


def _nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class StalledReader(Scenario):
    """Server accepts and never reads; client fills it and keeps trying each second.

    Server side (server_port): Recv-Q near 128 KB, rcv_wnd 0.
    Client side (client_port): Send-Q grows, timer persist (a zero-window sender).
    """

    def build(self) -> None:
        self.connect_pair()
        self.sent = send_until_full(self.client)
        self.every(1.0, self._retry)

    def _retry(self) -> None:
        self.sent += send_until_full(self.client, CHUNK[:1000], limit=5)


class ZeroWindowSender(StalledReader):
    """The stalled pair seen from the client (client_port): the peer is not reading."""


class SlowReader(Scenario):
    """Reader takes 4 KB every 200 ms; sender keeps its receive queue topped up.

    The receive queue frees memory a coalesced skb (up to ~64 KB) at a time, so the
    window reopens in such steps; a 1 MB buffer (SO_RCVBUF 512 KB) keeps those steps
    small against rb and Recv-Q stays near rb while read progress is positive.
    """

    SIZE = 4096
    READ_PERIOD = 0.2
    RCVBUF = 512 * 1024

    def build(self) -> None:
        self.connect_pair(self._setup)
        self.read_bytes = 0
        self.every(0.05, self._top_up)
        self.every(self.READ_PERIOD, self._read)

    def _setup(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.RCVBUF)
        _nodelay(sock)

    def _top_up(self) -> None:
        with contextlib.suppress(BlockingIOError):
            for _ in range(64):
                if unsent_bytes(self.client):
                    return
                self.client.send(CHUNK[: self.SIZE], socket.MSG_DONTWAIT)

    def _read(self) -> None:
        self.read_bytes += recv_available(self.server, self.SIZE, limit=1)


class AcceptQueueFull(Scenario):
    """listen(2), never accept, eight non-blocking connects: LISTEN shows 3 2."""

    BACKLOG = 2
    CLIENTS = 8

    def build(self) -> None:
        self.listen = self.listener(backlog=self.BACKLOG)
        self.listen_port: int = self.listen.getsockname()[1]
        self.clients = [self.new_socket() for _ in range(self.CLIENTS)]
        for client in self.clients:
            client.setblocking(False)
            client.connect_ex((self.host, self.listen_port))


class UdpDrops(Scenario):
    """SO_RCVBUF 16384, 200 datagrams of 1000 B, never read: d near 186.

    With keep_sending, a few more datagrams go out every second so drops keep rising.
    """

    RCVBUF = 16384
    DATAGRAMS = 200
    SIZE = 1000

    def __init__(self, ns: Netns, family: str = "inet", keep_sending: bool = False) -> None:
        super().__init__(ns, family)
        self.keep_sending = keep_sending

    def build(self) -> None:
        self.receiver = self.new_socket(socket.SOCK_DGRAM)
        self.receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.RCVBUF)
        self.receiver.bind((self.host, 0))
        self.port: int = self.receiver.getsockname()[1]
        self.sender = self.new_socket(socket.SOCK_DGRAM)
        self.sender.connect((self.host, self.port))
        self.sender_port: int = self.sender.getsockname()[1]
        self.sent = 0
        self._send(self.DATAGRAMS)
        if self.keep_sending:
            self.every(1.0, lambda: self._send(5))

    def _send(self, count: int) -> None:
        for _ in range(count):
            self.sender.send(CHUNK[: self.SIZE])
            self.sent += 1


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
        _nodelay(sock)

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
            _run(*self.ns.command(*argv))
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


class BulkTransfer(Scenario):
    """Sender writes and reader reads as fast as they can until the scenario exits.

    `pause` (seconds between 64 KB writes) caps the rate, e.g. to spare the CPU.
    """

    POLL = 0.2

    def __init__(self, ns: Netns, family: str = "inet", pause: float = 0.0) -> None:
        super().__init__(ns, family)
        self.pause = pause

    def build(self) -> None:
        self.connect_pair()
        self.read_bytes = 0
        for sock in (self.client, self.server):
            sock.settimeout(self.POLL)
        self.every(self.pause, self._send)
        self.every(0, self._read)

    def _send(self) -> None:
        with contextlib.suppress(TimeoutError):
            self.client.send(CHUNK)

    def _read(self) -> None:
        with contextlib.suppress(TimeoutError):
            self.read_bytes += len(self.server.recv(len(CHUNK)))


class IdleKeepalive(Scenario):
    """An SO_KEEPALIVE connection that sends nothing (timer keepalive)."""

    def build(self) -> None:
        self.connect_pair(self._keepalive)

    @staticmethod
    def _keepalive(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


class TbfLink:
    """Two namespaces joined by a veth pair, tbf 1mbit on the sender's side.

    sender_ns holds `dev` with sender_addr (10.77.X.1/24), receiver_ns holds
    peer_dev with receiver_addr (10.77.X.2/24).
    """

    TBF = ("rate", "1mbit", "burst", "32kbit", "latency", "400ms")

    def __init__(self) -> None:
        subnet = next(_counter) % 254 + 1
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
            send, recv = self.sender_ns.name, self.receiver_ns.name
            _run(
                "ip",
                "-n",
                send,
                "link",
                "add",
                self.dev,
                "type",
                "veth",
                "peer",
                "name",
                self.peer_dev,
                "netns",
                recv,
            )
            _run("ip", "-n", send, "addr", "add", f"{self.sender_addr}/24", "dev", self.dev)
            _run("ip", "-n", recv, "addr", "add", f"{self.receiver_addr}/24", "dev", self.peer_dev)
            _run("ip", "-n", send, "link", "set", self.dev, "up")
            _run("ip", "-n", recv, "link", "set", self.peer_dev, "up")
            self.sender_ns.output("tc", "qdisc", "add", "dev", self.dev, "root", "tbf", *self.TBF)
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
