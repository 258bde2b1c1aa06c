"""The reused netlink socket after a failed dump: the next dump works, nothing hangs."""

from __future__ import annotations

import signal
import socket
import struct

import pytest
from factories import make_sock

from collectors.model import Sock
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
