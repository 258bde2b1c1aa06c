"""The reused netlink socket after a failed dump: the next dump works, nothing hangs."""

from __future__ import annotations

import os
import signal
import socket
import struct

import pytest
from factories import make_sock

from collectors import unixdiag
from collectors.model import Sock, queue_fills
from collectors.sockdiag import (
    _PORTS,
    EXT_TCP,
    NLMSG_ERROR,
    NLMSGHDR,
    DiagError,
    SockDiag,
    _lacks_skmem,
    decode_messages,
)


def test_a_refused_dump_leaves_the_socket_usable() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    diag = SockDiag()

    def hung(_signum: int, _frame: object) -> None:
        raise TimeoutError("the dump after a refused one hung")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)  # a hang fails the test instead of stalling the suite
    try:
        with pytest.raises(DiagError, match="no tcp_diag support"):
            # IP protocol 200 has no diag handler: the kernel's real error reply
            diag._dump_one(socket.AF_INET, 200, EXT_TCP, "tcp", [])
        ports = {s.local_port for s in diag.dump() if s.state == "LISTEN"}
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        diag.close()
        listener.close()
    assert port in ports


def test_meminfo_is_the_fallback_of_kernels_without_skmeminfo() -> None:
    # No kernel without SKMEMINFO (< 3.6) can be had here: a full socket that came
    # without it is what such a kernel sends, and makes the collector ask for MEMINFO.
    def sock(state: str, skmem: tuple[int, ...] | None) -> Sock:
        return make_sock(
            state=state,
            local_addr="127.0.0.1",
            peer_addr="127.0.0.1",
            skmem=skmem,
        )

    assert _lacks_skmem([sock("ESTAB", None)])
    assert not _lacks_skmem([sock("TIME-WAIT", None), sock("ESTAB", (0,) * 9)])
    diag = SockDiag()
    try:
        socks = diag.dump()
        assert diag._extra_ext == 0  # this kernel sends SKMEMINFO
        assert all(s.skmem is not None for s in socks if s.state not in ("TIME-WAIT", "SYN-RECV"))
    finally:
        diag.close()


def test_an_error_code_beyond_any_errno_is_a_diag_error() -> None:
    # Found by the decoder fuzz: NLMSG_ERROR carrying INT_MIN, whose negation no C int holds.
    err = NLMSGHDR.pack(36, NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -(2**31)) + b"\0" * 16
    with pytest.raises(DiagError, match=r"tcp dump failed: error 2147483648"):
        decode_messages(err, "tcp", "host", [])


def test_the_port_table_is_ntohs_of_every_16_bit_value() -> None:
    assert tuple(socket.ntohs(raw) for raw in range(65536)) == _PORTS


def test_the_fills_a_dump_stores_are_the_rule_on_its_values() -> None:
    """The decoder stores each socket's fills with its shared skmem tuple (collectors.
    sockdiag.Skmems); they must be what queue_fills makes of the socket's own values, as
    a recording's sockets (Sock.from_json) get them. Real sockets of each kind: a
    listener with a full accept queue, a connection holding unread bytes, a UDP socket
    holding a datagram, a UNIX pair with unread bytes and a UNIX listener."""
    held: list[socket.socket] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    held.append(listener)
    for _ in range(2):  # the second waits in the queue beyond the backlog's 1
        client = socket.create_connection(listener.getsockname())
        held.append(client)
    held[1].sendall(b"x" * 5000)  # unread on the server's side
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.sendto(b"y" * 700, udp.getsockname())
    a, b = socket.socketpair()
    a.sendall(b"z" * 3000)
    unix_listener = socket.socket(socket.AF_UNIX)
    unix_listener.bind(f"\0bufmon-fills-test-{os.getpid()}")
    unix_listener.listen(1)
    held += [udp, a, b, unix_listener]
    ports = (listener.getsockname()[1], udp.getsockname()[1])
    diag = SockDiag()
    try:
        socks = diag.dump()
        unixdiag.dump_into(diag, socks)
    finally:
        diag.close()
        for s in held:
            s.close()
    ours = [s for s in socks if s.local_port in ports]
    assert {s.state for s in ours} >= {"LISTEN", "ESTAB", "UNCONN"}
    assert any(s.state == "LISTEN" and s.recv_fill for s in ours)  # its queue: 1 of 1 or more
    assert any(s.proto == "udp" and s.recv_fill for s in ours)
    assert any(s.proto == "unix" and s.send_fill for s in socks)
    assert any(s.proto == "unix" and s.state == "LISTEN" for s in socks)
    for s in socks:
        rule = queue_fills(s.proto, s.state, s.recv_q, s.send_q, s.skmem)
        assert (s.recv_fill, s.send_fill) == rule, s.to_json()
        again = Sock.from_json(s.to_json())
        assert (again.recv_fill, again.send_fill) == rule
