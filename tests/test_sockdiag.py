"""The reused netlink socket after a failed dump: the next dump works, nothing hangs."""

from __future__ import annotations

import signal
import socket

import pytest

from collectors.sockdiag import EXT_TCP, DiagError, SockDiag


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
