"""How soon `bufmon replay FILE --at TIME` into the middle of a 24 h recording shows its
first screen, timed as a user sees it: the whole process in a real terminal (tmux).

    sudo .venv/bin/python bench/bench_replay.py                    # make the day, then time
    sudo .venv/bin/python bench/bench_replay.py --keep day.rec     # make it and keep it
    sudo .venv/bin/python bench/bench_replay.py --file day.rec     # time an existing one
    sudo .venv/bin/python bench/bench_replay.py --seconds 3600 --refresh-every 1 \
        --keep hour.rec --slowest                                  # real deltas, worst seek

The recording is made as in bench_record.py (c): 24 h at 1 s of 1,000 loopback sockets
with churn, a real refresh every `--refresh-every` simulated seconds (86,400 frames with
the keyframe spacing of a real recording). With `--slowest` the view opens at the frame
near the middle that a fresh reader takes longest to build (the worst seek) instead.
Each run starts a fresh tmux session of 80x24 with `bufmon replay FILE --at TIME` and
polls the screen every 10 ms until the header shows that frame's time, the timeline
its number and the status line its socket count: from `tmux new-session` to that
screen. Side by side, in the same rounds, the same process without the view:
`bufmon replay FILE --json --from TIME --to TIME` (open, seek, print that frame) and
a bare `python -c pass` of the same interpreter.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench_record import record_simulated

from bufmon.record.reader import Recording
from bufmon.record.times import clock_text, parse_time

BUFMON = str(Path(sys.executable).with_name("bufmon"))
TARGET_S = 1.0
SIZE = ("-x", "80", "-y", "24")


def _capture(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
    ).stdout


def first_screen(path: str, at: str, wanted: list[str], timeout: float = 20.0) -> float:
    """Seconds from starting `bufmon replay` in tmux until every `wanted` text is on screen."""
    session = f"bench-replay-{os.getpid()}"
    command = f"{BUFMON} replay {path} --at {at}; sleep 30"
    started = time.perf_counter()
    subprocess.run(["tmux", "new-session", "-d", "-s", session, *SIZE, command], check=True)
    try:
        while time.perf_counter() - started < timeout:
            screen = _capture(session)
            if all(text in screen for text in wanted):
                return time.perf_counter() - started
            time.sleep(0.01)
        raise RuntimeError(f"the first screen never came; last screen:\n{_capture(session)}")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def whole(argv: list[str], lines: int = 0) -> float:
    """Seconds the whole command takes; it must print `lines` lines."""
    started = time.perf_counter()
    out = subprocess.run(argv, stdout=subprocess.PIPE, check=True).stdout
    elapsed = time.perf_counter() - started
    printed = out.count(b"\n")
    assert printed == lines, f"{argv} printed {printed} lines, not {lines}"
    return elapsed


def slowest_frame(path: str, around: int) -> int:
    """The frame within a minute of `around` that a fresh reader takes longest to build."""
    cost = {}
    for i in range(max(around - 60, 0), around + 60):
        recording = Recording.open(path)
        started = time.perf_counter()
        recording.snapshot(i)
        cost[i] = time.perf_counter() - started
        recording.close()
    return max(cost, key=cost.__getitem__)


def measure(path: str, rounds: int, slowest: bool) -> None:
    recording = Recording.open(path)
    frames = len(recording)
    index = slowest_frame(path, frames // 2) if slowest else frames // 2
    times = recording.times
    before = datetime.fromtimestamp((times[index - 1] + times[index]) / 2).isoformat()
    at = datetime.fromtimestamp((times[index] + times[index + 1]) / 2).isoformat()
    shown = recording.index_at(parse_time(at, recording.times[0], recording.times[-1]))
    assert shown == index
    t = recording.times[shown]
    sockets = len(recording.snapshot(shown).sockets)
    recording.close()
    wanted = [clock_text(t), f"{shown + 1}/{frames}", f"of {sockets}"]
    rows: dict[str, list[float]] = {"view": [], "json": [], "python": []}
    for _ in range(rounds):  # alternating, so a busy moment of the machine hits all rows
        rows["view"].append(first_screen(path, at, wanted))
        rows["json"].append(
            whole([BUFMON, "replay", path, "--json", "--from", before, "--to", at], 1)
        )
        rows["python"].append(whole([sys.executable, "-c", "pass"]))
    size = os.path.getsize(path) / 1e6
    where = "the slowest frame to build near the middle" if slowest else "the middle frame"
    print(f"\n{frames} frames, {size:.0f} MB; --at {at}: {where} ({shown + 1}, {sockets} sockets)")
    print(f"{rounds} rounds, seconds (median / min / max)\n")
    print("| what (whole process) | median | min | max | target |")
    print("|---|---:|---:|---:|---:|")
    labels = {
        "view": ("`bufmon replay FILE --at TIME`, to its first screen in tmux", f"<= {TARGET_S}"),
        "json": ("`bufmon replay FILE --json --from TIME --to TIME` (that frame)", ""),
        "python": ("`python -c pass` (interpreter start)", ""),
    }
    for key, values in rows.items():
        label, target = labels[key]
        print(
            f"| {label} | {statistics.median(values):.3f} | {min(values):.3f} "
            f"| {max(values):.3f} | {target} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", help="time this recording instead of making one")
    parser.add_argument("--keep", metavar="PATH", help="make the recording here and keep it")
    parser.add_argument(
        "--slowest",
        action="store_true",
        help="open at the frame near the "
        "middle that takes a reader longest to build, not the middle one",
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=86400, help="length of the recording")
    parser.add_argument("--conns", type=int, default=500, help="long-lived connections")
    parser.add_argument("--churn", type=int, default=5, help="connections replaced per second")
    parser.add_argument("--busy", type=int, default=50, help="connections sending per second")
    parser.add_argument("--refresh-every", type=int, default=10, help="real refresh period")
    args = parser.parse_args()
    if args.file:
        measure(args.file, args.rounds, args.slowest)
        return
    with tempfile.TemporaryDirectory(prefix="bufmon-bench-") as tmp:
        path = args.keep or os.path.join(tmp, "day.rec")
        _, _, wall = record_simulated(path, args.seconds, args, args.refresh_every)
        print(f"made a recording of {args.seconds} s in {wall:.0f} s")
        measure(path, args.rounds, args.slowest)


if __name__ == "__main__":
    main()
