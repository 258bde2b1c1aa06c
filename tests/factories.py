"""Sockets for tests, by keyword: name only what the test is about."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from collectors.model import Flag, Process, Sock, TcpInfo


def make_sock(
    *,
    proto: str = "tcp",
    family: str = "inet",
    state: str = "ESTAB",
    local_addr: str = "10.0.0.1",
    local_port: int = 1,
    peer_addr: str = "10.0.0.2",
    peer_port: int = 2,
    recv_q: int = 0,
    send_q: int = 0,
    skmem: tuple[int, ...] | None = None,
    info: TcpInfo | None = None,
    timer: str = "off",
    timer_expires_ms: int = 0,
    retrans: int = 0,
    uid: int = 0,
    inode: int = 1,
    cookie: int = 1,
    netns: str = "host",
    segs_in: int | None = None,
    process: Process | None = None,
    flags: Sequence[Flag] = (),
) -> Sock:
    sock = Sock(
        proto=proto,
        family=family,
        state=state,
        local_addr=local_addr,
        local_port=local_port,
        peer_addr=peer_addr,
        peer_port=peer_port,
        recv_q=recv_q,
        send_q=send_q,
        skmem=skmem,
        info=info,
        timer=timer,
        timer_expires_ms=timer_expires_ms,
        retrans=retrans,
        uid=uid,
        inode=inode,
        cookie=cookie,
        netns=netns,
        segs_in=segs_in,
    )
    sock.process = process
    sock.flags = flags
    return sock


def make_listener(port: int, **fields: Any) -> Sock:
    """A TCP listener on 0.0.0.0:`port`."""
    return make_sock(state="LISTEN", **_unbound(port), **fields)


def make_udp(port: int, **fields: Any) -> Sock:
    """An unconnected UDP socket on 0.0.0.0:`port`."""
    return make_sock(proto="udp", state="UNCONN", **_unbound(port), **fields)


def _unbound(port: int) -> dict[str, Any]:
    return {"local_addr": "0.0.0.0", "local_port": port, "peer_addr": "0.0.0.0", "peer_port": 0}
