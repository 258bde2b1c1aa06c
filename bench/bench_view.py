"""The view on real sockets: each refresh next to `ss -tanmi`, the first screen, keys.

    sudo .venv/bin/python bench/bench_view.py                     # 20,000 connections
    sudo .venv/bin/python bench/bench_view.py --conns 100000 --per-child 9000 --rounds 5

A farm (bench/conn_farm.py) of N idle loopback connections in a namespace of its own.
1. First screen, whole process: the installed `bufmon --netns FARM` started in tmux
   (160x50), from the start until a socket row shows on the screen; `--launches` times
   after one untimed launch that fills its bytecode cache (as pip's install does),
   alternating with `ss -tanmi`.
2. Refreshes: the app (BufmonApp, the real Monitor of the farm's namespace, headless)
   refreshes `--rounds` times, one at a time, alternating with `ss -tanmi` run inside the
   namespace. Per refresh, what its worker spends (collect, processes, flags, summary,
   then the view's filter, sort keys and sort: `Collected.cost`, what the adaptive
   interval sees) and the collect alone (`Source.refresh`); then the grouping prefetched
   after the frame. Printed: medians, spreads and the ratio to `ss -tanmi`.
3. Keys while refreshes run back to back (s, r, S, v, a filter, its clearing), each
   pressed at a random moment, timed from the key to the first frame after its effect;
   and how long those refreshes waited at their checkpoints for the keys' Views.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench_commands import cached_bytecode, ss_in
from bench_tui import Keys, print_keys, wait_until
from conn_farm import add_farm_options, announced_farm, farm_errors

from bufmon.monitor import FirstLook
from collectors.model import Snapshot
from tui.app import BufmonApp, Collected
from tui.keysfirst import KeysFirst
from tui.source import MonitorSource

TARGETS = {20000: 0.7, 100000: 1.0}  # x `ss -tanmi` by farm size (40,000 / 200,000 sockets)
TARGET_FIRST_S = 3.0
SIZE = (160, 50)


def spread(values: list[float]) -> str:
    return (
        f"median {statistics.median(values) * 1000:7.1f} ms "
        f"({min(values) * 1000:.0f}-{max(values) * 1000:.0f})"
    )


def first_screen(netns: str, cache: str) -> float:
    """Seconds from starting `bufmon --netns NETNS` in tmux to a socket row on screen;
    its bytecode cached in `cache`, as an installed bufmon's is (pip compiles it)."""
    bufmon = shutil.which("bufmon", path=str(Path(sys.executable).parent)) or "bufmon"
    name = f"bench-view-{os.getpid()}"
    width, height = SIZE
    environment = [f"{name}={value}" for name, value in cached_bytecode(cache).items()]
    command = shlex.join(["env", "-i", *environment, bufmon, "--netns", netns])
    start = time.perf_counter()
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), command],
        check=True,
    )
    pane = subprocess.run(
        ["tmux", "display", "-p", "-t", name, "#{pane_pid}"], capture_output=True, text=True
    ).stdout.strip()
    try:
        while True:
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True
            ).stdout
            if "127.0.0." in screen:  # a farm connection's address: rows are on screen
                return time.perf_counter() - start
            if time.perf_counter() - start > 120:
                raise RuntimeError(f"no socket row on screen after 120 s:\n{screen}")
            time.sleep(0.02)
    finally:
        quit_tmux(name, int(pane))


def quit_tmux(name: str, pid: int) -> None:
    """Quit the view with `q` as a user would; kill it if it has not ended within 10 s."""
    subprocess.run(["tmux", "send-keys", "-t", name, "q"], capture_output=True)
    deadline = time.perf_counter() + 10
    while Path(f"/proc/{pid}").exists() and time.perf_counter() < deadline:
        time.sleep(0.05)
    if Path(f"/proc/{pid}").exists():
        print(f"bufmon (pid {pid}) did not quit within 10 s of q: killed", flush=True)
        os.kill(pid, signal.SIGKILL)
    subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


async def refreshes(
    app: BufmonApp, rounds: int, ss: Callable[[], tuple[float, int, float]]
) -> dict[str, list[float]]:
    """`rounds` refreshes of the paused app, one at a time, each followed by `ss`."""
    times: dict[str, list[float]] = {"worker": [], "collect": [], "prefetch": [], "ss": []}
    source, collected, prefetched = app.source, app._collected, app._prefetched
    refresh = source.refresh
    ended: list[float] = []

    def timed_refresh(first_look: FirstLook | None = None) -> Snapshot:
        start = time.perf_counter()
        snapshot = refresh(first_look)
        times["collect"].append(time.perf_counter() - start)
        return snapshot

    def on_collected(result: Collected) -> None:
        if result.error is not None:
            raise RuntimeError(f"refresh failed: {result.error}")
        times["worker"].append(result.cost)
        collected(result)
        ended.append(time.perf_counter())

    def on_prefetched(spent: float) -> None:
        prefetched(spent)
        times["prefetch"].append(time.perf_counter() - ended[-1])

    def prefetched_after(done: int) -> Callable[[], bool]:
        return lambda: len(times["prefetch"]) > done

    source.refresh = timed_refresh  # type: ignore[method-assign]
    app._collected = on_collected  # type: ignore[method-assign]
    app._prefetched = on_prefetched  # type: ignore[method-assign]
    try:
        for _ in range(rounds):
            app.refresh_now()
            await wait_until(prefetched_after(len(times["prefetch"])), timeout=120)
            times["ss"].append((await asyncio.to_thread(ss))[0])
    finally:
        source.refresh = refresh  # type: ignore[method-assign]
        app._collected, app._prefetched = collected, prefetched  # type: ignore[method-assign]
    return times


async def run(netns: str, rounds: int, key_rounds: int) -> dict[str, list[float]]:
    app = BufmonApp(MonitorSource(netns))
    launched = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.main.socket_list.view is not None, timeout=120)
        print(f"first screen in-process (imports done, headless): "
              f"{time.perf_counter() - launched:.2f} s", flush=True)  # fmt: skip
        sockets = len(app.snapshot.sockets) if app.snapshot else 0
        app.action_pause()
        await wait_until(lambda: not app._collecting and not app._prefetching, timeout=120)
        await pilot.pause(0.5)
        times = await refreshes(app, rounds, ss_in(netns))
        print(f"{sockets} sockets; {rounds} refreshes, each followed by `ss -tanmi`", flush=True)

        app.pace.choose(0.25)  # refreshes back to back (each takes longer)
        app.action_pause()
        keys, rng = Keys(app), random.Random(1)
        with held_back(app) as waits:
            busy = [await keys.round(lambda: rng.uniform(0.0, 1.5)) for _ in range(key_rounds)]
        app.action_pause()
    print_keys(busy, "keys while refreshes run back to back")
    print(f"  {len(waits)} refreshes meanwhile, held back for keys' Views: "
          f"{spread(waits)}, {sum(waits):.2f} s in all", flush=True)  # fmt: skip
    return times


@contextlib.contextmanager
def held_back(app: BufmonApp) -> Iterator[list[float]]:
    """Seconds each refresh ending meanwhile waited at its checkpoints for keys' Views."""
    waits: list[float] = []
    collected = app._collected

    def on_collected(result: Collected) -> None:
        checkpoint = app.source.checkpoint  # the refresh's own until the next one starts
        waits.append(checkpoint.waited if isinstance(checkpoint, KeysFirst) else 0.0)
        collected(result)

    app._collected = on_collected  # type: ignore[method-assign]
    try:
        yield waits
    finally:
        app._collected = collected  # type: ignore[method-assign]


def report(times: dict[str, list[float]], target: float | None) -> None:
    ss = statistics.median(times["ss"])
    print(f"`ss -tanmi`                          {spread(times['ss'])}")
    for name, label in (
        ("worker", "view refresh (worker: all of it)"),
        ("collect", "  of which collect+processes+flags"),
        ("prefetch", "grouping prefetched after the frame"),
    ):
        ratio = statistics.median(times[name]) / ss
        print(f"{label:<37}{spread(times[name])}  {ratio:.2f}x `ss -tanmi`")
    if target is not None:
        print(f"target: view refresh <= {target}x `ss -tanmi`")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_farm_options(parser)
    parser.add_argument("--rounds", type=int, default=7, help="refreshes timed beside ss")
    parser.add_argument("--launches", type=int, default=3, help="whole-process first screens")
    parser.add_argument("--key-rounds", type=int, default=3, help="rounds of keys")
    args = parser.parse_args()
    print(f"`{' '.join(sys.argv)}`  load average {os.getloadavg()}\n", flush=True)
    with farm_errors("bench_view"), announced_farm(args) as farm:
        ss = ss_in(farm.netns)
        firsts, ss_times = [], []
        with tempfile.TemporaryDirectory(prefix="bench-view-pyc-") as cache:
            first_screen(farm.netns, cache)  # untimed: fills the bytecode cache
            for _ in range(args.launches):
                firsts.append(first_screen(farm.netns, cache))
                ss_times.append(ss()[0])
        print(f"first screen, whole process in tmux: {spread(firsts)} (target <= "
              f"{TARGET_FIRST_S} s); `ss -tanmi` {spread(ss_times)}", flush=True)  # fmt: skip
        times = asyncio.run(run(farm.netns, args.rounds, args.key_rounds))
        report(times, TARGETS.get(args.conns))
        print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
