"""Real socket trouble on purpose: the cases `bufmon demo` shows, also used by the tests.

A `Netns` is a throwaway network namespace (or the current one, without root);
each `Scenario` builds one condition (docs/numbers.md says what it looks like) inside
it, keeps it alive with bounded background loops, and closes every socket on exit.
Makers only the tests need live in tests/makers.py; bench/conn_farm.py uses Netns too.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import re
import secrets
import socket
import struct
import subprocess
import threading
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


def nodelay(sock: socket.socket) -> None:
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
        nodelay(sock)

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


class Churn:
    """Long-lived loopback connections in `ns` (2 sockets each, one listener), replaced
    one at a time: the connections opening and closing of a busy host. A replaced
    connection's closing side lingers in TIME-WAIT."""

    def __init__(self, ns: Netns, count: int) -> None:
        self.ns = ns
        self.listener = ns.run(self._listen)
        self.pairs = [ns.run(self._pair) for _ in range(count)]

    @staticmethod
    def _listen() -> socket.socket:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4096)
        return srv

    def _pair(self) -> tuple[socket.socket, socket.socket]:
        cli = socket.create_connection(self.listener.getsockname())
        srv, _ = self.listener.accept()
        cli.setblocking(False)
        srv.setblocking(False)
        return cli, srv

    def replace(self, index: int, abort: bool = False) -> None:
        """Close connection `index` (modulo their number) and open a new one in its place;
        `abort`: with a reset (SO_LINGER 0), leaving no TIME-WAIT behind."""
        i = index % len(self.pairs)
        if abort:
            self.pairs[i][0].setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        for sock in self.pairs[i]:
            sock.close()
        self.pairs[i] = self.ns.run(self._pair)

    def close(self) -> None:
        for pair in self.pairs:
            for sock in pair:
                sock.close()
        self.listener.close()
