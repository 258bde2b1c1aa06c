"""Real TCP connections for the tests that close sockets: both ends held by the test."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bufmon.scenarios import Netns

TIMEOUT = 5.0


@dataclass
class Connection:
    """One loopback connection; `server` is the accepted end (local port `port`)."""

    client: socket.socket
    server: socket.socket
    port: int

    @property
    def filter(self) -> str:
        """The bufmon filter matching the accepted end only."""
        return f"sport:{self.port} state:estab"

    def alive(self) -> bool:
        """True when a byte still goes from the server to the client."""
        try:
            self.server.sendall(b"x")
            return self.client.recv(1) == b"x"
        except OSError:
            return False

    def reset_seen(self) -> bool:
        """True when the client's recv fails with ECONNRESET (its peer was destroyed)."""
        try:
            self.client.recv(1)
        except ConnectionResetError:
            return True
        return False

    def close(self) -> None:
        self.client.close()
        self.server.close()


def _connect(host: str, device: str | None) -> Connection:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.create_server((host, 0), family=family) as listener:
        if device is not None:  # accepted sockets inherit the listener's binding
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        port = listener.getsockname()[1]
        client = socket.create_connection((host, port), timeout=TIMEOUT)
        server, _ = listener.accept()
    server.settimeout(TIMEOUT)
    return Connection(client, server, port)


@contextmanager
def connections(
    ns: Netns, count: int = 1, host: str = "127.0.0.1", device: str | None = None
) -> Iterator[list[Connection]]:
    """`count` connections to `host` made inside `ns`, closed on exit; `device`: the
    accepted end is bound to that interface (SO_BINDTODEVICE)."""
    made = [ns.run(_connect, host, device) for _ in range(count)]
    try:
        yield made
    finally:
        for conn in made:
            conn.close()
