"""The TUI's actions on REAL connections in a namespace of the test's own: K closes
(the peer sees the reset), m marks a set, c copies (OSC 52, else a file), e exports."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from connections import Connection, connections
from test_tui_pilot import until
from textual import events
from textual.pilot import Pilot

from bufmon.actions import describe, ss_command, write_new
from bufmon.scenarios import Netns
from bufmon.textout import COLUMNS
from collectors.model import Sock
from tui.app import BufmonApp
from tui.ask import ConfirmClose, CopyAs, ExportAs
from tui.detail import DetailScreen
from tui.help import help_text
from tui.source import MonitorSource

INTERVAL = 0.5
BUFMON = str(Path(sys.executable).with_name("bufmon"))


@pytest.fixture
def ns() -> Iterator[Netns]:
    with Netns("tuiact") as made:
        yield made


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal OSC 52 reaches (not tmux, not screen, not the console)."""
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.delenv("STY", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")


def listed(app: BufmonApp) -> list[Sock]:
    return [r for r in app.main.socket_list.rows if isinstance(r, Sock)]


def filter_keys(expr: str) -> list[str]:
    return ["slash", *["space" if c == " " else c for c in expr], "enter"]


async def shows_only(pilot: Pilot[int], app: BufmonApp, conns: list[Connection]) -> None:
    """Filter the list down to the accepted ends of `conns`, and wait for them."""
    ports = " or ".join(f"sport:{c.port}" for c in conns)
    await pilot.press(*filter_keys(f"state:estab ({ports})"))
    wanted = {c.port for c in conns}
    await until(pilot, lambda: {s.local_port for s in listed(app)} == wanted)


@pytest.mark.root
async def test_close_from_the_details(ns: Netns) -> None:
    with connections(ns, 2) as (target, bystander):
        app = BufmonApp(MonitorSource(ns.name), interval=INTERVAL)
        async with app.run_test(size=(100, 30)) as pilot:
            await shows_only(pilot, app, [target])
            await pilot.press("enter", "K")
            await until(pilot, lambda: isinstance(app.screen, ConfirmClose))
            (sock,) = app.screen.socks
            assert (sock.local_port, sock.state, sock.netns) == (target.port, "ESTAB", ns.name)
            shown = str(app.screen.query_one("#ask-list").render())
            assert shown == describe(sock)  # exactly what will be closed
            await pilot.press("y")
            await until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.closed)
        assert target.reset_seen()
        assert bystander.alive()


@pytest.mark.root
async def test_close_a_marked_set_keeps_the_rest(ns: Netns) -> None:
    with connections(ns, 3) as (first, second, bystander):
        app = BufmonApp(MonitorSource(ns.name), interval=INTERVAL)
        async with app.run_test(size=(100, 30)) as pilot:
            await shows_only(pilot, app, [first, second, bystander])
            await pilot.press("space")  # paused: the order stays as read
            ports = [s.local_port for s in listed(app)]
            await pilot.press("m", "j", "m", "j", "m", "m")  # the third marked, then unmarked
            assert len(app.main.socket_list.marked) == 2
            await pilot.press("K")
            await until(pilot, lambda: isinstance(app.screen, ConfirmClose))
            assert sorted(s.local_port for s in app.screen.socks) == sorted(ports[:2])
            await pilot.press("n")  # keeps them
            assert first.alive() and second.alive()
            await pilot.press("K", "y")
            await until(pilot, lambda: [s.local_port for s in listed(app)] == ports[2:])
            assert not app.main.socket_list.marked
        closed = [c for c in (first, second, bystander) if c.port in ports[:2]]
        kept = [c for c in (first, second, bystander) if c.port == ports[2]]
        assert all(c.reset_seen() for c in closed)
        assert kept[0].alive()


def type_at_once(app: BufmonApp, *keys: str) -> None:
    """Keys as a terminal delivers them when typed fast: all queued before any runs."""
    for key in keys:
        app.post_message(events.Key(key, {"enter": "\r"}.get(key, key)))


@pytest.mark.root
async def test_keys_typed_fast_answer_a_question_once(
    ns: Netns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TERM", "linux")  # copies go to files, which can be counted
    with connections(ns, 2) as (target, bystander):
        app = BufmonApp(MonitorSource(ns.name), interval=INTERVAL)
        async with app.run_test(size=(100, 30)) as pilot:
            await shows_only(pilot, app, [target])
            type_at_once(app, "K", "y", "y")
            await until(pilot, lambda: listed(app) == [])
            type_at_once(app, "q")  # a key the list runs: nothing is left over
            await until(pilot, lambda: app.return_code == 0)
            notes = [n.message for n in app._notifications]
            assert notes.count("1 closed") == 1 and not any("gone" in n for n in notes)
        assert target.reset_seen()
        assert bystander.alive()
        app = BufmonApp(MonitorSource(ns.name), interval=INTERVAL)
        async with app.run_test(size=(100, 30)) as pilot:
            await shows_only(pilot, app, [bystander])
            type_at_once(app, "c", "t", "t")
            await until(pilot, lambda: any(tmp_path.iterdir()))
            type_at_once(app, "C", "enter")  # the chooser answered before it is drawn
            await pilot.pause(0.5)
            assert app.screen is app.main and app.return_code is None
        assert len(list(tmp_path.iterdir())) == 1


@pytest.mark.root
async def test_copy_through_osc52_else_a_file(
    ns: Netns, terminal: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with connections(ns) as (conn,):
        app = BufmonApp(MonitorSource(ns.name), interval=INTERVAL)
        async with app.run_test(size=(100, 30)) as pilot:
            await shows_only(pilot, app, [conn])
            (sock,) = listed(app)
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, CopyAs))
            await pilot.press("s")
            ends = f"src 127.0.0.1:{conn.port} and dst 127.0.0.1:{sock.peer_port}"
            assert app.clipboard == f"ss -N {ns.name} -tanmi '{ends}'"
            await pilot.press("c", "j")
            copied = json.loads(app.clipboard)
            assert copied.keys() == sock.to_json().keys()
            assert (copied["netns"], copied["cookie"]) == sock.key
            monkeypatch.setenv("TERM", "linux")  # the console: no clipboard, a file instead
            await pilot.press("c", "t")
            await until(pilot, lambda: any(tmp_path.iterdir()))
        (copied,) = tmp_path.iterdir()
        assert copied.name.startswith("bufmon-copy-") and copied.suffix == ".txt"
        assert stat.S_IMODE(copied.stat().st_mode) == 0o600
        assert copied.read_text().startswith(f"{ns.name} tcp ESTAB 127.0.0.1:{conn.port} -> ")
        # the ss command copied is one ss itself runs and that finds the connection
        found = subprocess.run(
            ["sh", "-c", ss_command(sock)], capture_output=True, text=True, check=True
        ).stdout
        assert f"127.0.0.1:{conn.port}" in found and "ESTAB" in found


@pytest.mark.root
async def test_export_the_list_and_the_details(
    ns: Netns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with connections(ns, 2) as conns:
        app = BufmonApp(MonitorSource(ns.name), interval=INTERVAL)
        async with app.run_test(size=(100, 30)) as pilot:
            await shows_only(pilot, app, conns)
            await pilot.press("space")  # paused: the files hold what is on screen
            order = [s.key for s in listed(app)]
            await pilot.press("e")
            await until(pilot, lambda: isinstance(app.screen, ExportAs))
            await pilot.press("j", "e", "c")
            await until(pilot, lambda: len(list(tmp_path.glob("bufmon-view-*"))) == 2)
            await pilot.press("enter", "e", "j")
            await until(pilot, lambda: any(tmp_path.glob("bufmon-socket-*")))
        for path in tmp_path.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        (view_json,) = tmp_path.glob("bufmon-view-*.json")
        doc = json.loads(view_json.read_text())
        assert doc["version"] == 1 and [(s["netns"], s["cookie"]) for s in doc["sockets"]] == order
        (view_csv,) = tmp_path.glob("bufmon-view-*.csv")
        with view_csv.open(newline="") as f:
            rows = list(csv.reader(f))
        assert tuple(rows[0]) == COLUMNS
        assert [r[5] for r in rows[1:]] == [f"127.0.0.1:{d['local_port']}" for d in doc["sockets"]]
        (detail,) = tmp_path.glob("bufmon-socket-*.json")
        (one,) = json.loads(detail.read_text())["sockets"]
        assert (one["netns"], one["cookie"]) == order[0]


def test_write_new_never_overwrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bufmon.actions.time.strftime", lambda _fmt: "STAMP")
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (tmp_path / "bufmon-view-STAMP.csv").symlink_to(victim)  # planted at the next name
    path = write_new(tmp_path, "bufmon-view", "csv", "a,b\n")
    assert path.name == "bufmon-view-STAMP-2.csv" and path.read_text() == "a,b\n"
    assert victim.read_text() == "keep me"


def test_the_keys_are_in_the_help() -> None:
    text = help_text(BufmonApp().help_sections()).plain
    for words in ("mark or unmark", "close the marked", "close this socket", "copy", "export"):
        assert words in text


# --- the installed bufmon in tmux at 80x24: the bytes it writes --------------------------


class Tmux:
    """A tmux server of the test's own (its own socket), one 80x24 window running ARGV,
    every byte the program writes kept in `log`."""

    def __init__(self, log: Path, argv: list[str]) -> None:
        self.server = ["tmux", "-L", f"bufmon-act-{os.getpid()}", "-f", "/dev/null"]
        self.log = log
        self.run("new-session", "-d", "-s", "act", "-x", "80", "-y", "24", shlex.join(argv))
        self.run("set-option", "-g", "set-clipboard", "on")
        self.run("pipe-pane", "-o", "-t", "act", f"cat >> {shlex.quote(str(log))}")

    def run(self, *args: str) -> str:
        return subprocess.run(
            [*self.server, *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout

    def wait(self, found: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not found():
            assert time.monotonic() < deadline, (
                f"{what} never came: {self.run('capture-pane', '-p')}"
            )
            time.sleep(0.2)

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.run("send-keys", "-t", "act", key)
            time.sleep(0.3)

    def close(self) -> None:
        subprocess.run([*self.server, "kill-server"], capture_output=True, timeout=10)


OSC52 = re.compile(rb"\x1b\]52;c;([A-Za-z0-9+/=]+)\x07")


@pytest.mark.root
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_osc52_sequence_in_the_output(ns: Netns, tmp_path: Path) -> None:
    log = tmp_path / "pane.out"
    with connections(ns) as (conn,):
        tmux = Tmux(log, [BUFMON, "--netns", ns.name, f"state:estab sport:{conn.port}"])
        try:
            tmux.wait(lambda: "1 of 2" in tmux.run("capture-pane", "-p"), "the connection")
            tmux.keys("c", "t")
            tmux.wait(lambda: log.exists() and OSC52.search(log.read_bytes()) is not None, "OSC 52")
            found = OSC52.search(log.read_bytes())
            assert found is not None
            copied = base64.b64decode(found.group(1)).decode()
            assert tmux.run("show-buffer") == copied  # tmux took it as its clipboard
        finally:
            tmux.close()
        assert copied.startswith(f"{ns.name} tcp ESTAB 127.0.0.1:{conn.port} -> 127.0.0.1:")
        assert "Recv-Q 0 Send-Q 0" in copied
        assert conn.alive()  # copying closes nothing
