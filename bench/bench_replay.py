"""How soon `bufmon replay FILE --at TIME` into the middle of a 24 h recording shows its
first screen, timed as a user sees it: the whole process in a real terminal (tmux).

    sudo .venv/bin/python bench/bench_replay.py                    # make the day, then time
    sudo .venv/bin/python bench/bench_replay.py --file day.rec     # time an existing one
    sudo .venv/bin/python bench/bench_replay.py --keep day.rec     # make it and keep it

The recording is made as in bench_record.py (c): 24 h at 1 s of 1,000 loopback sockets
with churn, a real refresh every `--refresh-every` simulated seconds (86,400 frames with
the keyframe spacing of a real recording). Each run starts a fresh tmux session of
80x24 with `bufmon replay FILE --at MIDDLE` and polls the screen every 10 ms until
the header shows the middle frame's time and the status line its socket count: from
`tmux new-session` to that screen. Side by side, in the same runs, the same process
without the view: `bufmon replay FILE --json --from MIDDLE --to MIDDLE` (open, seek,
print that frame) and a bare `python -c pass` of the same interpreter.
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


def whole(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def measure(path: str, rounds: int) -> None:
    recording = Recording.open(path)
    frames = len(recording)
    at = datetime.fromtimestamp(recording.times[frames // 2]).isoformat(timespec="seconds")
    shown = recording.index_at(parse_time(at, recording.times[0], recording.times[-1]))
    t = recording.times[shown]
    sockets = len(recording.snapshot(shown).sockets)
    recording.close()
    wanted = [clock_text(t), f"{shown + 1}/{frames}", f"of {sockets}"]
    rows: dict[str, list[float]] = {"view": [], "json": [], "python": []}
    for _ in range(rounds):  # alternating, so a busy moment of the machine hits all rows
        rows["view"].append(first_screen(path, at, wanted))
        rows["json"].append(whole([BUFMON, "replay", path, "--json", "--from", at, "--to", at]))
        rows["python"].append(whole([sys.executable, "-c", "pass"]))
    size = os.path.getsize(path) / 1e6
    print(f"\n{frames} frames, {size:.0f} MB, {sockets} sockets in the middle frame; --at {at}")
    print(f"{rounds} rounds, seconds (median / min / max)\n")
    print("| what (whole process) | median | min | max | target |")
    print("|---|---:|---:|---:|---:|")
    labels = {
        "view": ("`bufmon replay FILE --at MIDDLE`, to its first screen in tmux", f"<= {TARGET_S}"),
        "json": ("`bufmon replay FILE --json --from MIDDLE --to MIDDLE`", ""),
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
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--conns", type=int, default=500, help="long-lived connections")
    parser.add_argument("--churn", type=int, default=5, help="connections replaced per second")
    parser.add_argument("--busy", type=int, default=50, help="connections sending per second")
    parser.add_argument("--refresh-every", type=int, default=10, help="real refresh period")
    args = parser.parse_args()
    if args.file:
        measure(args.file, args.rounds)
        return
    with tempfile.TemporaryDirectory(prefix="bufmon-bench-") as tmp:
        path = args.keep or os.path.join(tmp, "day.rec")
        _, _, wall = record_simulated(path, 86400, args, args.refresh_every)
        print(f"made a 24 h recording in {wall:.0f} s")
        measure(path, args.rounds)


if __name__ == "__main__":
    main()
