"""Reason and advice sentences of the flags of UNIX domain sockets."""

from __future__ import annotations

from typing import NamedTuple

from bufmon.diagnosis.text import Named, owner, secs, size
from collectors.model import Process, UnixSock

NO_READ_COUNTER = (
    "sock_diag has no read counter for UNIX sockets, so a stall is a queue that never "
    "shrank between samples"
)


class UnixFacts(NamedTuple):
    """What a UNIX flag's text says beyond Named, detached from the Sock like it."""

    inode: int
    peer: Process | None  # the process at the other end (see unixdiag.link_peers)
    senders_q: int

    @classmethod
    def of(cls, s: UnixSock) -> UnixFacts:
        return cls(s.inode, s.peer_process, s.senders_q)


def where(sock: Named, facts: UnixFacts) -> str:
    """The socket's path, or what it is connected to when it has none."""
    if sock.local_addr:
        return sock.local_addr
    if sock.peer_addr:
        return f"a connection to {sock.peer_addr}"
    return f"unbound socket {facts.inode}"


def process_name(process: Process | None, unknown: str) -> str:
    return unknown if process is None else f"{process.comm} (pid {process.pid})"


def limit(value: int | None, name: str) -> str:
    return f"{name} {value}" if value is not None else f"{name} unknown"


def accept_queue(
    sock: Named, facts: UnixFacts, full: bool, somaxconn: int | None
) -> tuple[str, str]:
    state = "full" if full else f"{sock.recv_q / max(sock.send_q, 1):.0%} full"
    reason = (
        f"Accept queue of UNIX socket {where(sock, facts)} is {state}: {sock.recv_q} "
        f"connections wait for accept() in {owner(sock)}, backlog {sock.send_q} "
        f"({limit(somaxconn, 'net.core.somaxconn')} caps it)"
    )
    if full:
        clients = process_name(facts.peer, "clients")
        reason += f"; further connects from {clients} block or fail with EAGAIN"
    return (
        reason + ".",
        f"Make {owner(sock)} accept() faster (more workers: php-fpm pm.max_children, "
        f"uwsgi/gunicorn workers), and raise its backlog (php-fpm listen.backlog, "
        f"listen() elsewhere) together with net.core.somaxconn.",
    )


def stalled_reader(sock: Named, facts: UnixFacts, idle: float) -> tuple[str, str]:
    writer = process_name(facts.peer, "the peer")
    return (
        f"{owner(sock)} has not drained {size(sock.recv_q)} waiting on "
        f"{where(sock, facts)} for {secs(idle)}; its peer {writer} holds "
        f"{size(facts.senders_q)} of send buffer for it ({NO_READ_COUNTER}).",
        f"Make {owner(sock)} read this socket (is it blocked or busy elsewhere?); once "
        f"the peer's send buffer is full, {writer} blocks in write().",
    )


def dgram_queue_full(
    sock: Named, facts: UnixFacts, idle: float, qlen: int | None
) -> tuple[str, str]:
    senders = process_name(facts.peer, "its senders")
    return (
        f"Datagram socket {where(sock, facts)} of {owner(sock)} has had datagrams waiting "
        f"for {secs(idle)} without its queue shrinking: senders hold "
        f"{size(facts.senders_q)} of queued datagrams (the first is {size(sock.recv_q)}); "
        f"at {limit(qlen, 'net.unix.max_dgram_qlen')} queued datagrams (or a full send "
        f"buffer) {senders} block or get EAGAIN and drop ({NO_READ_COUNTER}).",
        f"Make {owner(sock)} read faster (journald/rsyslog: is it stuck or rate-limited?); "
        f"raise net.unix.max_dgram_qlen only for bursts, not for a reader that stopped.",
    )
