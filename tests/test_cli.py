"""The headless commands as a script would use them: real sockets, real processes."""

from __future__ import annotations

import json
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

from collectors.sockdiag import NLMSG_ERROR, NLMSGHDR, DiagError, decode_messages

BUFMON = str(Path(sys.executable).with_name("bufmon"))

SOCKET_FIELDS = {
    "proto",
    "family",
    "state",
    "local_addr",
    "local_port",
    "peer_addr",
    "peer_port",
    "recv_q",
    "send_q",
    "skmem",
    "tcp_info",
    "timer",
    "uid",
    "inode",
    "cookie",
    "netns",
    "process",
    "flags",
}
SKMEM_FIELDS = {
    "rmem_alloc",
    "rcvbuf",
    "wmem_alloc",
    "sndbuf",
    "fwd_alloc",
    "wmem_queued",
    "optmem",
    "backlog",
    "drops",
}


def bufmon(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([BUFMON, *args], capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess, code: int) -> str:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("bufmon: ")
    return lines[0]


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket, socket.socket]]:
    """An ESTAB pair on loopback with 3000 unread bytes on the server side."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    client = socket.create_connection(lsock.getsockname())
    server, _ = lsock.accept()
    client.sendall(b"x" * 3000)
    yield lsock, client, server
    for s in (client, server, lsock):
        s.close()


def test_version_and_help() -> None:
    proc = bufmon("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("bufmon ")
    for args in (["--help"], ["snapshot", "--help"], ["watch", "--help"], ["demo", "--help"]):
        proc = bufmon(*args)
        assert proc.returncode == 0 and "usage: bufmon" in proc.stdout


def test_snapshot_json_contract(pair: tuple) -> None:
    lsock, _client, server = pair
    port = lsock.getsockname()[1]
    proc = bufmon("snapshot", "--json", "--netns", "current", f"port:{port}")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert {"version", "time", "host", "sockets", "system", "system_flags"} <= set(doc)
    by_state = {}
    for s in doc["sockets"]:
        assert set(s) >= SOCKET_FIELDS
        by_state.setdefault(s["state"], []).append(s)
    assert len(by_state["LISTEN"]) == 1 and len(by_state["ESTAB"]) == 2
    listen = by_state["LISTEN"][0]
    assert (listen["local_addr"], listen["peer_addr"], listen["peer_port"]) == (
        "127.0.0.1",
        "0.0.0.0",
        0,
    )
    assert listen["send_q"] == 8 and listen["proto"] == "tcp" and listen["family"] == "inet"
    srv = next(s for s in by_state["ESTAB"] if s["local_port"] == port)
    assert srv["recv_q"] == 3000
    assert set(srv["skmem"]) == SKMEM_FIELDS and srv["skmem"]["rmem_alloc"] > 0
    assert srv["tcp_info"]["bytes_received"] == 3000 and "rtt" in srv["tcp_info"]
    assert srv["inode"] == os.fstat(server.fileno()).st_ino
    assert srv["process"]["pid"] == os.getpid() and srv["flags"] == []
    assert srv["netns"] == "host"


def test_snapshot_table_has_process_and_gauges(pair: tuple) -> None:
    port = pair[0].getsockname()[1]
    proc = bufmon("snapshot", "--netns", "current", f"sport:{port}", "state:estab")
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.strip().splitlines()
    assert header.split()[:5] == ["Netns", "Proto", "State", "Recv-Q", "Send-Q"]
    assert len(rows) == 1
    assert " 3000 " in rows[0] and f"/{os.getpid()}" in rows[0] and "%" in rows[0]


def test_watch_json_lines_and_count(pair: tuple) -> None:
    port = pair[0].getsockname()[1]
    proc = bufmon(
        "watch", "--json", "--interval", "0", "--count", "3", "--netns", "current", f"port:{port}"
    )
    assert proc.returncode == 0, proc.stderr
    docs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(docs) == 3
    assert all(len(d["sockets"]) == 3 for d in docs)
    assert docs[0]["time"] <= docs[1]["time"] <= docs[2]["time"]


def test_watch_log_lines(pair: tuple) -> None:
    port = pair[0].getsockname()[1]
    proc = bufmon(
        "watch", "--interval", "0.1", "--count", "2", "--netns", "current", f"port:{port}"
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    assert all(" sockets=3 flagged=0" in line for line in lines)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["snapshot", "prot:tcp"], "unknown field 'prot'"),
        (["snapshot", "recvq>12q"], "recvq>12q"),
        (["watch", "--interval", "x"], "not a number of seconds"),
        (["watch", "--count", "0"], "positive whole number"),
        (["snapshot", "--bogus"], "unrecognized arguments"),
        (["snapshot", "--set", "stalled_reader.hold=abc"], "stalled_reader.hold"),
        (["snapshot", "--set", "nosuch.key=1"], "nosuch"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args: list[str], needle: str) -> None:
    assert needle in one_line_error(bufmon(*args), 2)


def test_bad_config_file_names_file_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[stalled_reader]\nhold = 'soon'\n")
    line = one_line_error(bufmon("snapshot", "--config", str(cfg)), 2)
    assert str(cfg) in line and "hold" in line
    cfg.write_text("[stalled_reader\n")
    assert str(cfg) in one_line_error(bufmon("snapshot", "--config", str(cfg)), 2)


@pytest.mark.parametrize("args", [[], ["tui"], ["demo"]])
def test_the_view_refuses_without_a_terminal(args: list[str]) -> None:
    proc = subprocess.run(
        [BUFMON, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    assert proc.stdout == ""  # no escape codes
    assert "needs a terminal" in one_line_error(proc, 2)


def test_the_view_checks_its_arguments_before_drawing() -> None:
    leader, follower = pty.openpty()  # a terminal, so that only the bad argument stops it
    try:
        cases = [
            (["prot:tcp"], 2, "unknown field 'prot'"),
            (["--netns", "no-such-ns"], 1, "no such"),
        ]
        for args, code, needle in cases:
            proc = subprocess.run(
                [BUFMON, *args], stdin=follower, stdout=follower, stderr=subprocess.PIPE,
                text=True, timeout=60,
            )  # fmt: skip
            assert needle in one_line_error(proc, code)
    finally:
        os.close(leader)
        os.close(follower)


def test_missing_namespace_is_runtime_error() -> None:
    line = one_line_error(bufmon("snapshot", "--netns", "no-such-ns-here"), 1)
    assert "no such network namespace" in line


@pytest.mark.root
def test_without_root_one_notice_no_crash(pair: tuple, readable: Readable) -> None:
    def as_nobody(*args: str) -> subprocess.CompletedProcess:
        cmd = ["setpriv", *AS_NOBODY, *readable.bufmon(*args)]
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=60, cwd="/", env=readable.env()
        )

    proc = as_nobody("snapshot")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "not running as root" in proc.stderr
    # Our own (root-owned) sockets are listed, but their process is not visible.
    port = pair[0].getsockname()[1]
    proc = as_nobody("snapshot", "--json", f"sport:{port}")
    sock = json.loads(proc.stdout)["sockets"][0]
    assert sock["process"] is None and sock["netns"] == "host"


def test_broken_pipe_is_quiet(pair: tuple) -> None:
    shell = f"{BUFMON} watch --json --interval 0 --count 200 | head -c 10 >/dev/null"
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in proc.stderr and "Error" not in proc.stderr


def test_kernel_without_diag_module_is_named() -> None:
    # A diag module cannot be unloaded on a shared machine: feed the kernel's reply
    # (NLMSG_ERROR with ENOENT, what a kernel without udp_diag answers) to the decoder.
    err = NLMSGHDR.pack(36, NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -2) + b"\0" * 16
    with pytest.raises(DiagError, match=r"no udp_diag support.*modprobe udp_diag"):
        decode_messages(err, "udp", "host", [])
