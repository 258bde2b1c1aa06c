"""What a UNIX socket shows where an inet socket shows its two endpoints."""

from __future__ import annotations

from collections.abc import Sequence

from bufmon.present import endpoint, endpoints
from bufmon.services import service_name
from collectors.model import Sock, UnixSock
from collectors.untrusted import printable


def unix_ends(s: UnixSock) -> tuple[str, str]:
    """Its path, and the process on the other end (else the peer's path, else its
    inode). Paths and names are chosen by other users: shown through printable."""
    peer = s.peer_process
    if peer is not None:
        other = f"{peer.comm}/{peer.pid}"
    elif s.peer_addr:
        other = s.peer_addr
    else:
        other = f"*:{s.peer_inode}" if s.peer_inode else "*"
    return printable(s.path or "*"), printable(other)


def ends(s: Sock, services: bool = False) -> tuple[str, str]:
    """Local and peer text of any socket: addr:port, or a UNIX socket's unix_ends;
    `services`: a port /etc/services names shows that name ("10.0.0.1:https")."""
    if isinstance(s, UnixSock):
        return unix_ends(s)
    if services:
        return (
            endpoint(s.local_addr, s.local_port, service_name(s.proto, s.local_port)),
            endpoint(s.peer_addr, s.peer_port, service_name(s.proto, s.peer_port)),
        )
    return endpoint(s.local_addr, s.local_port), endpoint(s.peer_addr, s.peer_port)


def end_columns(socks: Sequence[Sock]) -> tuple[list[str], list[str]]:
    """ends(s) of every socket as a local and a peer column, for a table: inet sockets'
    a column at a time (see endpoints), UNIX sockets' one by one."""
    local = endpoints([s.local_addr for s in socks], [s.local_port for s in socks])
    peer = endpoints([s.peer_addr for s in socks], [s.peer_port for s in socks])
    for i, s in enumerate(socks):
        if isinstance(s, UnixSock):
            local[i], peer[i] = unix_ends(s)
    return local, peer
