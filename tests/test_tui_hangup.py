"""The installed bufmon view ends when its terminal goes away, within a bound, even once
the terminal stopped reading and the view's output is stuck (the terminal frozen, then
hung up: an SSH session or tmux pane lost under heavy output).

"Stuck" is read from where bufmon's threads sleep in the kernel (/proc/PID/task/*/wchan,
this kernel's names): a thread in n_tty_write's wait_woken, the UI thread on a futex."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import struct
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bufmon.scenarios import BulkTransfer, Churn, Netns, SlowReader

pytestmark = pytest.mark.root

BUFMON = str(Path(sys.executable).with_name("bufmon"))
SESSION = str(Path(__file__).with_name("pty_session.py"))  # leads the pty's session
SLOW_VIEW = str(Path(__file__).with_name("slow_view.py"))  # a first refresh that never ends
BOUND = 15.0  # seconds bufmon may live on once its terminal is gone
ROWS, COLUMNS = 100, 250  # a big terminal: many rows repainted on each refresh


@pytest.fixture(scope="module")
def busy() -> Iterator[Netns]:
    """Sockets whose queues and counters change on every refresh: heavy output."""
    with Netns("hangup") as ns, BulkTransfer(ns, pause=0.002), SlowReader(ns):
        churn = Churn(ns, 40)
        try:
            yield ns
        finally:
            churn.close()


class Pty:
    """bufmon in a pty of its own, run as `mode` says (tests/pty_session.py)."""

    def __init__(self, mode: str, ns: Netns | None = None, argv: list[str] | None = None) -> None:
        if argv is None:
            assert ns is not None
            argv = [BUFMON, "--netns", ns.name, "--interval", "0.25"]
        argv = [sys.executable, SESSION, mode, *argv]
        env = {**os.environ, "TERM": "xterm-256color"}
        self.master, tty = os.openpty()
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        self.leader = os.fork()
        if self.leader == 0:  # the child: a session of its own on the pty, then exec
            os.close(self.master)
            os.login_tty(tty)
            os.execve(argv[0], argv, env)
        os.close(tty)
        self.pid = self.leader if mode == "exec" else self._child()

    def _child(self) -> int:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            task = Path(f"/proc/{self.leader}/task/{self.leader}/children")
            children = task.read_text().split() if task.exists() else []
            if children:
                return int(children[0])
            time.sleep(0.05)
        raise AssertionError("bufmon never started")

    def wait_for(self, text: bytes, timeout: float = 20) -> None:
        """Read the terminal until bufmon wrote `text`."""
        out = b""
        deadline = time.monotonic() + timeout
        while text not in out:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} never came; the end of the output: {out[-300:]!r}"
            if select.select([self.master], [], [], left)[0]:
                out = out[-len(text) :] + os.read(self.master, 1 << 16)

    def drain(self, seconds: float) -> None:
        """Read the terminal for `seconds` (if it is still open: wait)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.master < 0:
                time.sleep(left)
            elif select.select([self.master], [], [], left)[0]:
                try:
                    os.read(self.master, 1 << 16)
                except OSError:  # EIO: every process left the terminal
                    self.hang_up()

    def threads(self) -> dict[int, str]:
        """Where each of bufmon's threads sleeps in the kernel (wchan), by thread id."""
        found = {}
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                found[int(task.name)] = (task / "wchan").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
        return found

    def stuck(self) -> bool:
        """The terminal is full: one thread blocked writing to it (wait_woken, in
        n_tty_write) and the UI thread blocked on a lock (Textual's output queue)."""
        threads = self.threads()
        return "wait_woken" in threads.values() and "futex" in threads.get(self.pid, "")

    def selecting(self) -> int:
        """Threads asleep in select(): Textual's input thread, the hang-up watch."""
        return sum(w.startswith("poll_schedule_timeout") for w in self.threads().values())

    def state(self) -> str:
        return Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]

    def hang_up(self) -> None:
        """Close the terminal's side: the SSH session or tmux pane is gone."""
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

    def end(self, read: bool = True) -> tuple[float, int | None]:
        """Seconds until bufmon ended from now, reading its terminal or not, and its exit
        status (None: not ended BOUND + 5 s on; it is killed then)."""
        start = time.monotonic()
        while (took := time.monotonic() - start) < BOUND + 5:
            pid, status = os.waitpid(self.leader, os.WNOHANG)
            if pid:
                self.leader = 0
                return took, os.waitstatus_to_exitcode(status)
            if read:
                self.drain(0.1)
            else:
                time.sleep(0.1)
        self.kill()
        return took, None

    def kill(self) -> None:
        self.hang_up()
        if self.leader:
            for pid in {self.pid, self.leader}:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            os.waitpid(self.leader, 0)
            self.leader = 0


def frozen(term: Pty) -> None:
    """Show bufmon, then stop reading its terminal until its output is stuck."""
    term.wait_for(b"bufmon")
    deadline = time.monotonic() + 90
    held = 0
    while held < 3:  # stuck for a second and a half on end
        assert time.monotonic() < deadline, f"the terminal never filled: {term.threads()}"
        held = held + 1 if term.stuck() else 0
        time.sleep(0.5)


@pytest.mark.parametrize("mode", ["exec", "shell", "quiet"])
def test_a_frozen_terminal_that_hangs_up_ends_bufmon(busy: Netns, mode: str) -> None:
    term = Pty(mode, busy)
    try:
        frozen(term)
        term.hang_up()
        took, status = term.end()
        print(f"hang-up ({mode}): bufmon ended after {took:.1f} s, status {status}")
        assert status is not None, f"bufmon lived on {took:.0f} s after the hang-up"
        assert took < BOUND
        assert status == 0  # the clean exit, as `q` gives: no deadline was needed
    finally:
        term.kill()


def test_a_paused_view_ends_when_its_terminal_hangs_up(busy: Netns) -> None:
    """No signal and nothing left to write: the terminal itself tells it is gone."""
    term = Pty("quiet", busy)
    try:
        term.wait_for(b"bufmon")
        os.write(term.master, b" ")  # pause
        term.wait_for(b"PAUSED")
        term.drain(1)
        term.hang_up()
        took, status = term.end()
        print(f"hang-up, paused: bufmon ended after {took:.1f} s, status {status}")
        assert status == 0
    finally:
        term.kill()


def test_sigterm_ends_bufmon_on_a_frozen_terminal(busy: Netns) -> None:
    """The terminal still open, never read: no clean exit can write its last bytes,
    the deadline ends bufmon."""
    term = Pty("exec", busy)
    try:
        frozen(term)
        os.kill(term.pid, signal.SIGTERM)
        took, status = term.end(read=False)
        print(f"SIGTERM, frozen terminal: bufmon ended after {took:.1f} s, status {status}")
        assert status is not None, f"bufmon lived on {took:.0f} s after SIGTERM"
        assert took < BOUND
        assert status == 128 + signal.SIGTERM  # the hard exit
    finally:
        term.kill()


def test_sigcont_resumes_only_a_stopped_view(busy: Netns) -> None:
    """Textual restarted its terminal mode on any SIGCONT (the kernel sends one with the
    SIGHUP of a hang-up), leaving a second input and output thread behind each time."""
    term = Pty("exec", busy)
    try:
        term.wait_for(b"bufmon")
        term.drain(1)
        before = term.selecting()
        for _ in range(3):
            os.kill(term.pid, signal.SIGCONT)  # nothing had stopped it: nothing to resume
            term.drain(0.5)
        assert term.selecting() == before

        os.kill(term.pid, signal.SIGTSTP)  # what Ctrl+Z sends: the view gives the terminal
        term.wait_for(b"\x1b[?1049l")  # back (leaves the alternate screen) and stops
        deadline = time.monotonic() + 10
        while term.state() != "T":
            assert time.monotonic() < deadline, "bufmon did not stop"
            time.sleep(0.1)
        os.kill(term.pid, signal.SIGCONT)  # `fg`: the view comes back
        term.wait_for(b"\x1b[?1049h")
        term.wait_for(b"bufmon")
        os.write(term.master, b"q")
        assert term.end()[1] == 0
    finally:
        term.kill()


def test_q_quits_at_once_while_the_first_refresh_runs() -> None:
    """On a big host the first refresh takes seconds; `q` must not wait for it."""
    term = Pty("exec", argv=[sys.executable, SLOW_VIEW])
    try:
        term.wait_for(b"slow")
        time.sleep(0.5)  # the refresh is under way
        os.write(term.master, b"q")
        took, status = term.end()
        assert status == 0
        assert took < 3, f"q took {took:.1f} s"
    finally:
        term.kill()
