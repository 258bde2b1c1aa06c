"""A hostile local user against a root bufmon: names that are not UTF-8 or carry
terminal controls, set by an unprivileged process in a user+network namespace of its
own (setpriv to nobody, then unshare and prctl(PR_SET_NAME) through ctypes), and a
cgroup named by the same bytes. bufmon must keep running, keep JSON exact and valid,
and show the names escaped in the table, the watch lines and the view."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from conftest import Readable

from collectors.untrusted import decode, printable

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing"),
]

BUFMON = str(Path(sys.executable).with_name("bufmon"))
AS_NOBODY = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"]

# Runs as nobody: a user+network namespace of its own, lo up, its name set, then a
# listener whose accept queue is full (flagged from one sample) plus its clients.
ATTACKER = r"""
import ctypes, fcntl, socket, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, CLONE_NEWNET, PR_SET_NAME = 0x10000000, 0x40000000, 15
assert libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0, ctypes.get_errno()
with socket.socket() as s:  # lo up: SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP
    flags = struct.unpack("16sH14x", fcntl.ioctl(s, 0x8913, struct.pack("16sH14x", b"lo", 0)))[1]
    fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))
assert libc.prctl(PR_SET_NAME, bytes.fromhex(sys.argv[1]), 0, 0, 0) == 0
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(0)
clients = [socket.socket() for _ in range(3)]
for client in clients:
    client.setblocking(False)
    client.connect_ex(server.getsockname())
print(server.getsockname()[1], flush=True)
sys.stdin.read()  # until the test closes our stdin
"""

NAMES = {
    "not-utf8": b"\xff\xfe\xfdname",
    "osc-title": b"\x1b]2;PWNED\x07",
    "clear-screen": b"\x1b[2J\x1b[H\x1b[8m",
    "cr-newline": b"a\rb\nc",
    "bidi-override": "\u202eevil".encode(),
    "c1-csi": "\u009b2J".encode(),
}
# What no human-readable output may carry: C0 but newline, DEL, C1, bidi controls.
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class Attacker:
    def __init__(self, proc: subprocess.Popen[str], port: int, name: bytes) -> None:
        self.proc, self.pid, self.port, self.name = proc, proc.pid, port, name
        self.comm = decode(name)  # what JSON must carry, exactly


@contextmanager
def attacker(name: bytes, python: str) -> Iterator[Attacker]:
    proc = subprocess.Popen(
        ["setpriv", *AS_NOBODY, python, "-c", ATTACKER, name.hex()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        assert Path(f"/proc/{proc.pid}/comm").read_bytes() == name + b"\n"
        yield Attacker(proc, port, name)
    finally:
        proc.kill()
        proc.wait()


AttackerMaker = Callable[[bytes], AbstractContextManager[Attacker]]


@pytest.fixture
def make_attacker(readable: Readable) -> AttackerMaker:
    """Attackers run a Python that user nobody can run (the clone may sit in a 0700
    directory, where nobody cannot reach its .venv)."""
    return functools.partial(attacker, python=readable.python)


@pytest.fixture(params=list(NAMES), ids=list(NAMES))
def hostile(request: pytest.FixtureRequest, make_attacker: AttackerMaker) -> Iterator[Attacker]:
    with make_attacker(NAMES[request.param]) as found:
        yield found


def bufmon(*argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([BUFMON, *argv], capture_output=True, timeout=60)


def snapshot_json(target: Attacker) -> dict:
    result = bufmon("snapshot", "--json", "--netns", "all", f"pid:{target.pid}")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # valid JSON, or this raises


def assert_harmless(text: str) -> None:
    assert not CONTROL.search(text), repr(CONTROL.search(text))


def test_json_is_valid_and_exact(hostile: Attacker) -> None:
    doc = snapshot_json(hostile)
    socks = doc["sockets"]
    assert len(socks) == 4  # the listener and its three clients
    assert {s["process"]["comm"] for s in socks} == {hostile.comm}
    holders = {ns["holder"] for ns in doc["namespaces"]}
    assert f"{hostile.comm}/{hostile.pid}" in holders  # its namespace, first seen through it


def test_json_keeps_a_carriage_return_a_carriage_return(make_attacker: AttackerMaker) -> None:
    with make_attacker(b"a\rb\nc") as target:
        (comm,) = {s["process"]["comm"] for s in snapshot_json(target)["sockets"]}
    assert comm == "a\rb\nc"


def test_snapshot_table_shows_the_name_escaped(hostile: Attacker) -> None:
    result = bufmon("snapshot", "--netns", "all", f"pid:{hostile.pid}")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()  # strict: the table is valid UTF-8
    assert_harmless(out)
    assert_harmless(result.stderr.decode())
    lines = out.splitlines()
    assert len(lines) == 1 + 4  # the header and one line per socket: no row split
    shown = f"{printable(hostile.comm)}/{hostile.pid}"
    assert all(shown in line for line in lines[1:])


def test_watch_lines_show_the_name_escaped(hostile: Attacker) -> None:
    # full_hold=0: the full accept queue is flagged on the second sample
    argv = ["--count", "2", "--interval", "0.2", "--set", "accept_queue_full.full_hold=0"]
    result = bufmon("watch", *argv, "--netns", "all", f"pid:{hostile.pid}")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert_harmless(out)
    flagged = [line for line in out.splitlines() if "accept_queue_full" in line]
    assert len(flagged) >= 1
    for line in flagged:  # the name twice: the socket's process, and in the reason
        assert f"{printable(hostile.comm)}/{hostile.pid}" in line
        assert f"in {printable(hostile.comm)} (pid {hostile.pid})" in line


CGROUP_ROOTS = (
    Path("/sys/fs/cgroup/systemd"),
    Path("/sys/fs/cgroup/unified"),
    Path("/sys/fs/cgroup"),
)


@contextmanager
def cgroup_named(name: bytes, pid: int) -> Iterator[None]:
    """A real cgroup `name` holding pid, in the first writable hierarchy."""
    root = next((r for r in CGROUP_ROOTS if (r / "cgroup.procs").exists()), None)
    if root is None:
        pytest.skip("no cgroup hierarchy mounted to make a cgroup in")
    path = os.fsencode(root) + b"/" + name
    if os.path.isdir(path):
        os.rmdir(path)  # left by an interrupted run; a cgroup with no process goes
    os.mkdir(path)
    try:
        with open(path + b"/cgroup.procs", "w") as procs:
            procs.write(str(pid))
        yield
    finally:
        with open(os.fsencode(root) + b"/cgroup.procs", "w") as procs:
            procs.write(str(pid))  # back to the root so the directory can go
        os.rmdir(path)


@pytest.mark.parametrize(
    "unit", [b"\x1b]2;PWNED\x07.scope", b"bad\xff\xfe.scope", b"x\r\x1b[2K.service"]
)
def test_cgroup_label_is_exact_in_json_and_escaped_in_text(
    unit: bytes, make_attacker: AttackerMaker
) -> None:
    with make_attacker(b"cgtenant") as target, cgroup_named(unit, target.pid):
        label = "unit:" + decode(unit)
        doc = snapshot_json(target)
        assert {s["netns"] for s in doc["sockets"]} == {label}
        assert label in {ns["label"] for ns in doc["namespaces"]}
        table = bufmon("snapshot", "--netns", "all", f"pid:{target.pid}")
        assert table.returncode == 0, table.stderr
        out = table.stdout.decode()
        assert_harmless(out)
        assert sum(line.startswith(printable(label)) for line in out.splitlines()) == 4


async def test_view_keeps_the_row_and_escapes_the_name(make_attacker: AttackerMaker) -> None:
    from tui.app import BufmonApp
    from tui.source import MonitorSource
    from tui.state import ListState

    with make_attacker(NAMES["osc-title"]) as target:
        state = ListState().filter(f"pid:{target.pid}")
        app = BufmonApp(MonitorSource("all"), state=state, interval=0.5)
        async with app.run_test(size=(160, 30)) as pilot:
            listing = app.main.socket_list
            deadline = time.monotonic() + 15
            while len(listing.rows) < 4:
                assert time.monotonic() < deadline, "the attacker's sockets never showed"
                await pilot.pause(0.1)
            await pilot.pause(0.2)
            lines = [listing.render_line(y).text for y in range(len(listing.rows))]
            notices = str(app.main.notices.render())
        assert app.return_code is None or app.return_code == 0
    for line in lines:
        assert_harmless(line)
        assert printable(target.comm)[:8] in line  # `\x1b]2;PW`: escaped, in the row
    assert "refresh failed" not in notices


def tmux(*argv: str) -> str:
    return subprocess.run(["tmux", *argv], capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_tmux_title_unchanged_and_rows_whole(make_attacker: AttackerMaker) -> None:
    with make_attacker(NAMES["osc-title"]) as target:
        session = f"bufmon-hostile-{os.getpid()}"
        cmd = f"TERM=xterm-256color {BUFMON} --netns all pid:{target.pid}; sleep 30"
        tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", cmd)
        try:
            tmux("select-pane", "-t", session, "-T", "sentinel-title")
            deadline = time.monotonic() + 15
            while "LISTEN" not in (screen := tmux("capture-pane", "-p", "-t", session)):
                assert time.monotonic() < deadline, f"no LISTEN row:\n{screen}"
                time.sleep(0.2)
            time.sleep(1.5)  # a few more refreshes, each a chance to inject
            listing = tmux("capture-pane", "-p", "-t", session)
            tmux("send-keys", "-t", session, "Enter")  # details: the name is shown in full
            while "command" not in (detail := tmux("capture-pane", "-p", "-t", session)):
                assert time.monotonic() < deadline + 10, f"no details:\n{detail}"
                # the accept-queue flag's advice may push the owner below the fold
                tmux("send-keys", "-t", session, "Down")
                time.sleep(0.2)
            time.sleep(1.0)
            title = tmux("display-message", "-p", "-t", session, "#{pane_title}").strip()
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    assert title == "sentinel-title"
    rows = [line for line in listing.splitlines() if f":{target.port}" in line]
    assert len(rows) == 4, listing  # every socket on one line of its own, none blanked
    (command,) = [line for line in detail.splitlines() if "command" in line]
    assert f"command {printable(target.comm)}" in command, detail
