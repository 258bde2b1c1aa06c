"""The replay view driven by keys (Textual Pilot) over a recording of REAL trouble: a
stalled reader in a network namespace of the test's own, gone before the recording ends."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from test_tui_tmux import Terminal, stop
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import OptionList

from bufmon.record.incidents import incident_line, incidents
from bufmon.record.reader import Recording, RecordingError
from bufmon.record.times import clock_text
from bufmon.scenarios import Netns, StalledReader
from collectors.model import Snapshot, Sock
from tui.detail import DetailScreen
from tui.help import HelpScreen, key_label
from tui.replay import ReplayApp, ReplaySource
from tui.timeline import IncidentsScreen, Timeline

pytestmark = pytest.mark.root
INTERVAL = 0.5
BUFMON = str(Path(sys.executable).with_name("bufmon"))


def stalled_frames(path: Path) -> tuple[int, int]:
    """(frames so far, frames in which the stalled reader is flagged) of a recording."""
    try:
        recording = Recording.open(path)
    except RecordingError:  # nothing written yet
        return 0, 0
    try:
        return len(recording), sum(
            any(f.kind == "stalled_reader" for s in snap.sockets for f in s.flags)
            for snap in map(recording.snapshot, range(len(recording)))
        )
    finally:
        recording.close()


def record_night(ns: Netns, scenario: StalledReader, path: Path) -> None:
    """`bufmon record` until the stalled reader has been flagged a while, then close it
    and record a few frames more."""
    argv = [BUFMON, "record", str(path), "--interval", str(INTERVAL), "--netns", ns.name]
    recorder = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 25
        while stalled_frames(path)[1] < 3:
            assert time.monotonic() < deadline, "the stalled reader was never flagged"
            time.sleep(INTERVAL)
        scenario.close()
        closed_at = stalled_frames(path)[0]
        while stalled_frames(path)[0] < closed_at + 3:
            time.sleep(INTERVAL)
    finally:
        recorder.send_signal(signal.SIGTERM)
        _, errors = recorder.communicate(timeout=10)
    assert recorder.returncode == 0, errors


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    path = tmp_path_factory.mktemp("replay") / "night.rec"
    with Netns("replay") as ns, StalledReader(ns) as scenario:
        record_night(ns, scenario, path)
        yield path, scenario.server_port


async def until(pilot: Pilot[int], condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)


def stalled_server(port: int) -> Callable[[object], bool]:
    def check(row: object) -> bool:
        return (
            isinstance(row, Sock)
            and row.local_port == port
            and any(f.kind == "stalled_reader" for f in row.flags)
        )

    return check


def shows(app: ReplayApp, index: int) -> Callable[[], bool]:
    """The app shows frame `index` of the recording."""
    times = app.replay.times
    return lambda: app.snapshot is not None and app.snapshot.time == times[index]


def settled(app: ReplayApp) -> bool:
    """The list shows what the current state asks for."""
    return app.main.socket_list.current


def flagged(snap: Snapshot) -> bool:
    return any(s.flags for s in snap.sockets)


async def test_step_jump_to_flag_and_detail_of_a_socket_gone_now(
    night: tuple[Path, int],
) -> None:
    path, port = night
    recording = Recording.open(path)
    is_stalled_server = stalled_server(port)
    last = recording.snapshot(len(recording) - 1)
    assert all(s.closed for s in last.sockets if s.local_port == port and s.state == "ESTAB")

    app = ReplayApp(ReplaySource(Recording.open(path)))
    async with app.run_test(size=(100, 30)) as pilot:
        listing = app.main.socket_list
        meters = lambda: str(app.main.meters.render())  # noqa: E731
        await until(pilot, shows(app, 0))
        assert clock_text(recording.times[0]) in meters() and "PAUSED" in meters()

        # one frame forward and back
        await pilot.press("right_square_bracket")
        await until(pilot, shows(app, 1))
        assert clock_text(recording.times[1]) in meters()
        await pilot.press("left_square_bracket")
        await until(pilot, shows(app, 0))
        assert not any(map(is_stalled_server, listing.rows))

        # the live view's filter and grouping work on the frames, and stay across steps
        await pilot.press("slash", *"state:listen", "enter")
        await until(pilot, lambda: settled(app) and [r.state for r in listing.rows] == ["LISTEN"])
        await pilot.press("right_square_bracket", "v")
        await until(
            pilot, lambda: shows(app, 1)() and app.state.group_by == "process" and settled(app)
        )
        assert [r.count for r in listing.rows] == [1]
        await pilot.press("v", "v", "v", "v", "escape", "left_square_bracket")
        await until(pilot, lambda: shows(app, 0)() and app.state.group_by is None and settled(app))
        assert app.state.filter_expr == ""
        assert len(listing.rows) == len(recording.snapshot(0).sockets)

        # the next moment a flag was raised: the sender sees a zero window first, then
        # the stalled reader is flagged after its hold time and rises to the top
        await until(pilot, lambda: app.flag_times is not None)
        await pilot.press("n")
        first = next(i for i in range(len(recording)) if flagged(recording.snapshot(i)))
        await until(pilot, shows(app, first))
        assert listing.rows[0].flags and not is_stalled_server(listing.rows[0])
        await pilot.press("n")
        await until(pilot, lambda: bool(listing.rows) and is_stalled_server(listing.rows[0]))
        flagged_at = app.replay.index
        await pilot.press("N")
        await until(pilot, shows(app, first))
        await pilot.press("n")
        await until(pilot, shows(app, flagged_at))
        assert 0 < flagged_at < len(recording) - 1
        timeline = str(app.main.query_one(Timeline).render())
        assert "▲" in timeline and "●" in timeline

        # its details as they were then, with its history from earlier frames
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen))
        detail = app.screen
        assert isinstance(detail, DetailScreen)
        assert "stalled_reader" in str(detail.query_one("#detail-flags").render())
        when = clock_text(recording.times[flagged_at])[11:]  # the time of day it was then
        await until(pilot, lambda: when in str(detail.query_one(Timeline).render()))
        await until(pilot, lambda: detail.series is not None)
        assert detail.series is not None
        recv_q = detail.series["recv_q"]
        assert len(recv_q) > 1
        then = next(s for s in recording.snapshot(flagged_at).sockets if is_stalled_server(s))
        assert recv_q[-1][1] == then.recv_q > 0
        assert recv_q[-1][0] == pytest.approx(recording.times[flagged_at], abs=0.01)
        # the same plots as live, the flag's interval rebuilt from the frames
        assert detail.past is not None and detail.past.now == recording.times[flagged_at]
        assert [s.kind for s in detail.past.spans] == ["stalled_reader"]
        assert "STALL" in str(detail.plots.flags.render())

        # a minute on: past the end of this recording, where the socket is gone
        await pilot.press("right_curly_bracket")
        await until(pilot, lambda: detail.closed)
        assert app.replay.index == len(recording) - 1
        assert "CLOSED" in str(detail.query_one("#detail-title").render())
        await pilot.press("left_square_bracket")  # the frames step inside the details too
        await until(pilot, shows(app, len(recording) - 2))
        await pilot.press("escape")

        # help lists the replay keys
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = str(app.screen.query_one("#help-text").render())
        for binding in ReplayApp.BINDINGS:
            assert isinstance(binding, Binding)
            assert key_label(binding.key) in shown and binding.description in shown
        await pilot.press("escape")

        # the incidents list: the lines of `replay --incidents`; Enter goes to one
        await pilot.press("i")
        screen = app.screen
        assert isinstance(screen, IncidentsScreen)
        expected = [incident_line(incident) for incident in incidents(recording)]
        options = screen.query_one(OptionList)
        await until(pilot, lambda: len(screen.rose) == len(expected) > 0)
        lines = [str(options.get_option_at_index(i).prompt) for i in range(len(expected))]
        assert lines == expected
        options.highlighted = next(i for i, line in enumerate(lines) if "stalled_reader" in line)
        await pilot.press("enter")
        await until(pilot, shows(app, flagged_at))
        assert not isinstance(app.screen, IncidentsScreen)
        reader = app._incidents_reader
        assert reader is not None
        await pilot.press("i")  # read once: the second time shows what the first read
        await until(pilot, lambda: len(getattr(app.screen, "rose", ())) == len(expected))
        assert app._incidents_reader is reader and not reader.is_alive()
        await pilot.press("escape")

        # go to a typed time; a typo shows its error and keeps the prompt open
        await pilot.press("t", *"3:7x", "enter")
        error = app.screen.query_one("#time-error")
        assert error.display and "not a time" in str(error.render())
        await pilot.press(*["backspace"] * 4, *"-1s", "enter")
        wanted = recording.index_at(recording.times[-1] - 1)
        assert wanted != flagged_at
        await until(pilot, shows(app, wanted))

        # play from the start at 60x runs to the end and stops there
        app.go(0)
        await pilot.press("greater_than_sign", "greater_than_sign", "greater_than_sign")
        await pilot.press("less_than_sign", "greater_than_sign", "space")  # 60x: the top
        assert app.playing and "playing 60x" in meters()
        await until(pilot, lambda: not app.playing)
        assert app.replay.index == len(recording) - 1
        await until(pilot, shows(app, len(recording) - 1))
        await pilot.press("q")


def netlink_sockets(pid: int) -> list[str]:
    """The netlink sockets (how bufmon reads the kernel's sockets) a process holds."""
    rows = Path(f"/proc/{pid}/net/netlink").read_text().splitlines()[1:]
    netlink = {f"socket:[{row.split()[-1]}]" for row in rows}
    links = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            links.append(os.readlink(fd))
    return [link for link in links if link in netlink]


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_installed_bufmon_replay_in_tmux(night: tuple[Path, int]) -> None:
    path, port = night
    recording = Recording.open(path)
    name = f"bufmon-replay-{os.getpid()}"
    status = Path(f"/tmp/{name}.status")
    between = (recording.times[2] + recording.times[3]) / 2  # the third frame is shown
    at = datetime.fromtimestamp(between).isoformat()
    command = f"{BUFMON} replay {path} --at {at} state:estab; echo $? > {status}; sleep 30"
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "80", "-y", "24", command])
    tty = Terminal(name)
    try:
        screen = tty.wait_for(clock_text(recording.times[2]))
        lines = screen.splitlines()
        assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
        assert f"3/{len(recording)}" in screen and "PAUSED" in screen
        assert "/state:estab" in screen and "LISTEN" not in screen.split("STATE", 1)[1]

        # replay never collects live data: the process holds no netlink socket
        shell = subprocess.run(
            ["tmux", "list-panes", "-t", name, "-F", "#{pane_pid}"], capture_output=True, text=True
        ).stdout.split()[0]
        children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
        assert children and netlink_sockets(int(children[0])) == []

        tty.keys("n", "n")  # the zero window first, then the stalled reader
        screen = tty.wait_for("STALL")
        row = next(line for line in screen.splitlines() if "STALL" in line)
        assert f"127.0.0.1:{port}" in row
        tty.keys("Enter")
        tty.wait_for("stalled_reader")
        tty.keys("}")  # a minute on is past the end: the socket is gone by then
        tty.wait_for("CLOSED")
        tty.wait_for(f"{len(recording)}/{len(recording)} end")  # the timeline repaints apart
        tty.keys("Escape", "?")
        tty.wait_for("one frame forward")
        tty.keys("Escape", "q")
        assert stop(tty) == 0
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
        status.unlink(missing_ok=True)


def test_replay_view_without_a_terminal_is_one_line(night: tuple[Path, int]) -> None:
    path, _ = night
    proc = subprocess.run(
        [BUFMON, "replay", str(path)], stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("bufmon: the interactive view needs a terminal")
    assert "--json" in proc.stderr and len(proc.stderr.splitlines()) == 1
