"""Closing sockets: `bufmon kill` and collectors.destroy on real connections in a
namespace of the test's own; the peer must see the reset."""

from __future__ import annotations

import os
import pty
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import AS_NOBODY, Readable
from connections import connections
from factories import make_sock
from test_bad_input import one_line

from bufmon.scenarios import Netns
from collectors.destroy import CLOSED, GONE, REFUSED, destroy, outcome_of, request
from collectors.sockdiag import SockDiag

BUFMON = str(Path(sys.executable).with_name("bufmon"))


def kill(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BUFMON, "kill", *args], capture_output=True, text=True, input=stdin, timeout=60
    )


@pytest.fixture
def ns() -> Iterator[Netns]:
    with Netns("kill") as made:
        yield made


@pytest.mark.root
def test_kill_yes_closes_exactly_the_match(ns: Netns) -> None:
    with connections(ns, 2) as (target, bystander):
        proc = kill("--yes", "--netns", ns.name, target.filter)
        assert proc.returncode == 0, proc.stderr
        assert f"closed: {ns.name} tcp ESTAB 127.0.0.1:{target.port} -> " in proc.stdout
        assert proc.stdout.splitlines()[-1] == "1 closed"
        assert target.reset_seen()
        assert bystander.alive()  # never more than the filter matches


@pytest.mark.root
def test_dry_run_and_no_answer_close_nothing(ns: Netns) -> None:
    with connections(ns) as (conn,):
        proc = kill("--dry-run", "--netns", ns.name, conn.filter)
        assert proc.returncode == 0, proc.stderr
        assert f"127.0.0.1:{conn.port}" in proc.stdout
        assert "dry run: 1 matching, nothing was closed" in proc.stdout
        # without a terminal and without --yes it does not ask: it refuses
        assert "add --yes" in one_line(kill("--netns", ns.name, conn.filter, stdin="y\n"), 2)
        assert conn.alive()


@pytest.mark.root
def test_asks_on_the_terminal(ns: Netns) -> None:
    with connections(ns, 2) as (kept, closed):
        assert _on_tty(["--netns", ns.name, kept.filter], b"n\n").endswith("nothing was closed")
        assert kept.alive()
        out = _on_tty(["--netns", ns.name, closed.filter], b"y\n")
        assert "Close this socket? [y/N]" in out and out.endswith("1 closed")
        assert closed.reset_seen()


def _on_tty(args: list[str], answer: bytes) -> str:
    """Run `bufmon kill ARGS` on a pseudo-terminal typing `answer`; its output."""
    main, child = pty.openpty()
    with subprocess.Popen([BUFMON, "kill", *args], stdin=child, stdout=child, stderr=child) as p:
        os.close(child)
        os.write(main, answer)
        out = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        assert p.wait(60) == 0, out
    os.close(main)
    return out.decode().replace("\r\n", "\n").strip()


@pytest.mark.root
def test_mismatched_and_empty_filters_are_refused(ns: Netns) -> None:
    with connections(ns) as (conn,):
        other = conn.port + 1 if conn.port < 65535 else conn.port - 1
        line = one_line(kill("--yes", "--netns", ns.name, f"sport:{other} state:estab"), 1)
        assert line == (
            f"bufmon: no TCP or UDP socket matches 'sport:{other} state:estab'; nothing was closed"
        )
        line = one_line(kill("--yes", "--netns", ns.name), 2)
        assert line.startswith("bufmon: refusing to close every socket")
        assert "bad filter term" in one_line(kill("--yes", "sport:x"), 2)
        left, right = ns.run(socket.socketpair)  # UNIX sockets the filter does match
        with left, right:
            listed = kill("--dry-run", "--netns", ns.name, "proto:unix")
            assert listed.returncode == 1 and listed.stdout == ""  # never UNIX ones
            assert listed.stderr.startswith("bufmon: no TCP or UDP socket matches")
            snap = subprocess.run(
                [BUFMON, "snapshot", "--netns", ns.name, "proto:unix"],
                capture_output=True,
                text=True,
            )
            assert "unix" in snap.stdout  # bufmon sees them; kill leaves them alone
            left.send(b"x")
            assert right.recv(1) == b"x"
        assert conn.alive()


@pytest.mark.root
def test_unprivileged_kill_is_refused(ns: Netns, readable: Readable) -> None:
    with connections(ns) as (conn,):
        argv = readable.bufmon("kill", "--yes", "--netns", "current", f"sport:{conn.port}")
        proc = subprocess.run(
            ["setpriv", *AS_NOBODY, *argv],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
            env=readable.env(),
        )
        line = one_line(proc, 1)
        assert (
            line == "bufmon: closing sockets needs CAP_NET_ADMIN (run as root); nothing was closed"
        )
        assert proc.stdout == ""
        assert conn.alive()


NOBODY_DESTROYS = """
import sys
from collectors.destroy import destroy
from collectors.sockdiag import SockDiag
port = int(sys.argv[1])
(sock,) = [s for s in SockDiag().dump(("tcp",)) if s.local_port == port and s.state == "ESTAB"]
print(destroy(sock))
"""


@pytest.mark.root
def test_the_kernel_refuses_without_cap_net_admin(readable: Readable) -> None:
    """Past bufmon's own check: the kernel's EPERM reads as the exact reason."""
    with connections(Netns.current()) as (conn,):
        proc = subprocess.run(
            ["setpriv", *AS_NOBODY, readable.python, "-c", NOBODY_DESTROYS, str(conn.port)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
            env=readable.env(),
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == (
            "refused: Operation not permitted: closing a socket needs CAP_NET_ADMIN (root)"
        )
        assert conn.alive()


@pytest.mark.root
@pytest.mark.parametrize(
    ("family", "host", "device"),
    [("inet", "127.0.0.1", None), ("inet6", "::1", None), ("inet", "127.0.0.1", "lo")],
)
def test_destroy_answers_closed_then_gone(family: str, host: str, device: str | None) -> None:
    """IPv4, IPv6, and a socket bound to an interface (found under its index)."""
    with connections(Netns.current(), host=host, device=device) as (conn,):
        diag = SockDiag()
        try:
            (sock,) = [s for s in diag.dump(("tcp",)) if s.local_port == conn.port and s.peer_port]
        finally:
            diag.close()
        assert sock.family == family
        assert destroy(sock).result == CLOSED
        assert conn.reset_seen()
        assert destroy(sock).result == GONE


def test_request_names_the_socket_by_its_cookie() -> None:
    sock = make_sock(local_port=8080, peer_port=40000, cookie=(5 << 32) | 9)
    msg = request(sock, seq=7)
    assert len(msg) == 16 + 56  # nlmsghdr + inet_diag_req_v2
    assert struct.unpack_from("=IHHI", msg) == (72, 21, 0x5, 7)  # SOCK_DESTROY, REQUEST|ACK
    assert struct.unpack_from("!HH", msg, 24) == (8080, 40000)
    assert socket.inet_ntoa(msg[28:32]) == "10.0.0.1"
    assert struct.unpack_from("=II", msg, 64) == (9, 5)  # cookie[0] low, cookie[1] high


def test_kernel_answers_read_as_words() -> None:
    assert str(outcome_of(0)) == "closed"
    assert str(outcome_of(2)) == "gone already"
    unsupported = outcome_of(95)
    assert unsupported.result == REFUSED and unsupported.final
    assert "CONFIG_INET_DIAG_DESTROY" in unsupported.reason
