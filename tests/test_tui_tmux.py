"""End to end: the installed `bufmon` in a real terminal (tmux) at 80x24, read off the screen."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bufmon.scenarios import AcceptQueueFull, Netns, StalledReader

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

BUFMON = str(Path(sys.executable).with_name("bufmon"))
GREYS = {0, 7, 8, 15, 16, 231, *range(232, 256)}  # xterm-256 colours without hue
SGR = re.compile(r"\x1b\[([0-9;]*)m")


def colours(escaped: str) -> list[int]:
    """Every 256-colour index set in SGR sequences (truecolour greys map to 232)."""
    found = []
    for params in SGR.findall(escaped):
        p = params.split(";")
        for i in range(len(p) - 2):
            if p[i] in ("38", "48") and p[i + 1] == "5":
                found.append(int(p[i + 2]))
            elif p[i] in ("38", "48") and p[i + 1] == "2" and i + 4 < len(p):
                r, g, b = p[i + 2 : i + 5]
                found.append(232 if r == g == b else -1)
    return found


class Terminal:
    def __init__(self, name: str) -> None:
        self.name = name

    def keys(self, *keys: str) -> None:
        for key in keys:  # one at a time: ESC followed at once by a key reads as Alt+key
            subprocess.run(["tmux", "send-keys", "-t", self.name, key], check=True)
            time.sleep(0.15)

    def screen(self) -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        return self.wait_until(lambda screen: text in screen, f"{text!r}", timeout)

    def wait_until(self, ok: Callable[[str], bool], what: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if ok(screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{what} never appeared; screen:\n{self.screen()}")

    def alive(self) -> bool:
        return (
            subprocess.run(["tmux", "has-session", "-t", self.name], capture_output=True).returncode
            == 0
        )


@pytest.fixture
def trouble() -> Iterator[tuple[Netns, StalledReader]]:
    with Netns("tmux") as ns, StalledReader(ns) as stalled, AcceptQueueFull(ns):
        yield ns, stalled


def start(ns: Netns, term: str, extra_env: str = "") -> Terminal:
    name = f"bufmon-e2e-{os.getpid()}-{term}"
    status = f"/tmp/{name}.status"
    cmd = f"TERM={term} {extra_env} {BUFMON} --netns {ns.name}; echo $? > {status}; sleep 30"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", name, "-x", "80", "-y", "24", cmd], check=True
    )
    return Terminal(name)


def exited(term: Terminal) -> Path:
    """The file holding bufmon's exit status, once bufmon has exited (10 s at most)."""
    status = Path(f"/tmp/{term.name}.status")
    deadline = time.monotonic() + 10
    while not status.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return status


def stop(term: Terminal) -> int:
    status = exited(term)
    code = int(status.read_text()) if status.exists() else -1
    subprocess.run(["tmux", "kill-session", "-t", term.name], capture_output=True)
    status.unlink(missing_ok=True)
    return code


@pytest.mark.parametrize("term", ["xterm", "screen", "tmux-256color"])
def test_installed_bufmon_in_tmux(trouble: tuple[Netns, StalledReader], term: str) -> None:
    ns, stalled = trouble
    tty = start(ns, term)
    try:
        tty.wait_for("ACCQ")  # a full accept queue is flagged from one sample
        screen = tty.wait_for("STALL", timeout=20)  # a stalled reader after its hold time
        lines = screen.splitlines()
        assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
        flagged = [line for line in lines if "STALL" in line or "ACCQ" in line]
        rows = [line for line in lines if ":" in line and "127.0.0.1" in line]
        assert rows[: len(flagged)] == flagged  # worst first: flagged rows on top
        assert f"127.0.0.1:{stalled.server_port}" in next(r for r in rows if "STALL" in r)

        tty.keys("/")
        tty.keys(*"state:listen", "Enter")
        # ACCQ is on screen before the filter applies too: wait for the filtered list
        tty.wait_until(
            lambda s: "ACCQ" in s and "ESTAB" not in s.split("STATE", 1)[-1],
            "the listener alone (state:listen)",
        )
        tty.keys("Escape")
        tty.wait_for("STALL")

        tty.keys("?")
        tty.wait_for("this help")
        tty.keys("Escape")
        tty.keys("q")
        assert stop(tty) == 0
    finally:
        subprocess.run(["tmux", "kill-session", "-t", tty.name], capture_output=True)


def test_no_color_in_tmux(trouble: tuple[Netns, StalledReader]) -> None:
    ns, _ = trouble
    tty = start(ns, "xterm-256color", "NO_COLOR=1")
    try:
        tty.wait_for("ACCQ")
        escaped = subprocess.run(
            ["tmux", "capture-pane", "-e", "-p", "-t", tty.name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        # Textual honours NO_COLOR by turning every colour into a grey: no hue may remain.
        assert "\x1b[" in escaped
        assert not [c for c in colours(escaped) if c not in GREYS], sorted(set(colours(escaped)))
        tty.keys("q")
        assert stop(tty) == 0
    finally:
        subprocess.run(["tmux", "kill-session", "-t", tty.name], capture_output=True)


def pane(term: Terminal, variable: str) -> str:
    return subprocess.run(
        ["tmux", "display", "-p", "-t", term.name, f"#{{{variable}}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.mark.parametrize("sig", ["HUP", "TERM"])
def test_a_hangup_gives_the_terminal_back(trouble: tuple[Netns, StalledReader], sig: str) -> None:
    ns, _ = trouble
    tty = start(ns, "xterm-256color")
    try:
        tty.wait_for("ACCQ")
        assert pane(tty, "alternate_on") == "1" and pane(tty, "cursor_flag") == "0"
        shell = pane(tty, "pane_pid")
        children = subprocess.run(["pgrep", "-P", shell], capture_output=True, text=True)
        (bufmon,) = children.stdout.split()
        subprocess.run(["kill", f"-{sig}", bufmon], check=True)
        assert exited(tty).exists()
        # the plain screen again: no alternate screen, cursor shown, no mouse reporting
        assert pane(tty, "alternate_on") == "0" and pane(tty, "cursor_flag") == "1"
        assert pane(tty, "mouse_any_flag") == "0" and pane(tty, "mouse_all_flag") == "0"
        assert stop(tty) == 0
    finally:
        subprocess.run(["tmux", "kill-session", "-t", tty.name], capture_output=True)
