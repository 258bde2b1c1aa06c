"""Real sockets in every state worth comparing, for test_vs_ss and the decoder fuzz."""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass, field

PAYLOAD = 5000  # unread bytes left in the ESTAB receivers
DATAGRAMS = 3  # unread 1000-byte datagrams per UDP receiver


def _nonblocking_connect(family: int, addr: tuple[str, int], wait: float) -> socket.socket:
    """Connect without blocking; wait up to `wait` s for the handshake to finish."""
    client = socket.socket(family, socket.SOCK_STREAM)
    client.setblocking(False)
    client.connect_ex(addr)
    select.select([], [client], [], wait)
    return client


@dataclass
class Scene:
    """Sockets in every interesting state, all inside one namespace."""

    netns: str
    keep: list[socket.socket] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)

    def add(self, *socks: socket.socket) -> None:
        self.keep.extend(socks)

    def listener(self, family: int, addr: str, backlog: int = 16, v6only: bool = True) -> int:
        srv = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_INET6:
            srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        srv.bind((addr, 0))
        srv.listen(backlog)
        self.add(srv)
        return srv.getsockname()[1]

    def pair(
        self, family: int, addr: str, srv_family: int | None = None, srv_addr: str | None = None
    ) -> tuple[socket.socket, socket.socket]:
        """A connected (client, server side) pair; the listener is closed afterwards."""
        srv = socket.socket(srv_family or family, socket.SOCK_STREAM)
        if (srv_family or family) == socket.AF_INET6:  # only a "::" server takes IPv4 too
            srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(srv_addr != "::"))
        srv.bind((srv_addr or addr, 0))
        srv.listen(1)
        client = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_INET6:
            client.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        client.connect((addr, srv.getsockname()[1]))
        server, _ = srv.accept()
        srv.close()
        self.add(client, server)
        return client, server

    def build(self) -> None:
        v4, v6 = socket.AF_INET, socket.AF_INET6
        # LISTEN with a full accept queue: listen(2) + 8 connects -> "LISTEN 3 2";
        # the clients past the third stay in SYN-SENT (their SYNs are dropped).
        full = self.listener(v4, "127.0.0.1", backlog=2)
        self.ports["full"] = full
        for _ in range(8):
            self.add(_nonblocking_connect(v4, ("127.0.0.1", full), 0.1))
        self.ports["v4_listen"] = self.listener(v4, "0.0.0.0")
        self.ports["v6_listen"] = self.listener(v6, "::1")
        self.ports["dual_listen"] = self.listener(v6, "::", v6only=False)
        # ESTAB with unread data both ways, IPv4 and IPv6.
        for family, addr in ((v4, "127.0.0.1"), (v6, "::1")):
            client, server = self.pair(family, addr)
            client.sendall(b"c" * PAYLOAD)
            server.sendall(b"s" * (PAYLOAD // 2))
        # A client with a small fixed SO_RCVBUF: its window scale differs from its peer's.
        small = socket.socket(v4, socket.SOCK_STREAM)
        small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        small.connect(("127.0.0.1", self.ports["v4_listen"]))
        self.add(small)
        # Dual stack: an IPv4 client accepted by an AF_INET6 listener on :: (v6only 0).
        client, server = self.pair(v4, "127.0.0.1", srv_family=v6, srv_addr="::")
        client.sendall(b"d" * 100)
        # v4-mapped client: an AF_INET6 socket connecting to ::ffff:127.0.0.1.
        self.pair(v6, "::ffff:127.0.0.1", srv_family=v4, srv_addr="127.0.0.1")
        # CLOSE-WAIT on the server side, FIN-WAIT-2 on the client side.
        client, server = self.pair(v4, "127.0.0.1")
        client.shutdown(socket.SHUT_WR)
        # TIME-WAIT: the client closes first, then the server.
        client, server = self.pair(v4, "127.0.0.1")
        client.close()
        time.sleep(0.05)
        server.close()
        # UDP: unconnected and connected receivers, with unread datagrams.
        for family, addr in ((v4, "127.0.0.1"), (v6, "::1")):
            rx = socket.socket(family, socket.SOCK_DGRAM)
            rx.bind((addr, 0))
            tx = socket.socket(family, socket.SOCK_DGRAM)
            tx.bind((addr, 0))
            crx = socket.socket(family, socket.SOCK_DGRAM)
            crx.bind((addr, 0))
            crx.connect(tx.getsockname()[:2])
            for _ in range(DATAGRAMS):
                tx.sendto(b"u" * 1000, rx.getsockname()[:2])
                tx.sendto(b"u" * 1000, crx.getsockname()[:2])
            self.add(rx, tx, crx)

    def close(self) -> None:
        for sock in self.keep:
            sock.close()
