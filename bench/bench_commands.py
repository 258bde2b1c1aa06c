"""Whole bufmon commands, as a user runs them, next to `ss -tanmi` in the same run.

    sudo .venv/bin/python bench/bench_commands.py [--conns 20000] [--rounds 5]
    sudo .venv/bin/python bench/bench_commands.py --conns 100000 --per-child 9000 --rounds 3

A farm (bench/conn_farm.py) of N idle loopback connections (2N sockets plus one
listener per farm process) in a namespace of its own. Each round runs, alternating:
`ss -tanmi` (started inside the namespace, output to /dev/null), `bufmon snapshot`
and `snapshot --json` (whole process: start-up, imports, one refresh, output), and
`bufmon watch` / `watch --json` with `--interval 0` for 1 and for 1 + K refreshes:
a refresh costs (T(1 + K) - T(1)) / K, start-up and the first (cold) refresh left
out. Every bufmon process is started from the host with `--netns FARM`, as a user
would, output to /dev/null. Printed: median and spread (min-max) per row, the ratio
to `ss -tanmi`'s median, the median CPU time (user + system: on a shared machine the
steadier figure) and its ratio to `ss`'s, and each command's peak RSS. `--compare
BUFMON` times another bufmon (e.g. an older checkout's .venv/bin/bufmon) in the same
rounds. Prints a markdown table.

bufmon runs with its bytecode cached, as an installed bufmon does (pip compiles it; an
editable checkout writes __pycache__ on its first run): PYTHONDONTWRITEBYTECODE is
dropped and the cache goes to a directory of the bench's own (PYTHONPYCACHEPREFIX),
filled by one untimed run of each command. Without it every run would compile every
module (~80 ms).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from conn_farm import Farm, add_farm_options, announced_farm, farm_errors

from collectors.netns import entered

TARGETS = {"snapshot": 1.5, "snapshot --json": 2.5, "watch": 0.7, "watch --json": 1.5}


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, float]:
    """Seconds, peak RSS (KB) and CPU seconds (user + system) of one whole command, its
    output to /dev/null."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _pid, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
    return took, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


def ss_in(netns: str) -> Callable[[], tuple[float, int, float]]:
    def run() -> tuple[float, int, float]:
        with entered(f"/run/netns/{netns}"):  # ss forks from this thread: inside
            return timed(["ss", "-tanmi"])

    return run


def per_refresh(first: list[float], last: list[float], extra: int) -> list[float]:
    """(T(1 + extra) - T(1)) / extra of each round: one refresh, start-up left out."""
    return [(b - a) / extra for a, b in zip(first, last, strict=True)]


def cached_bytecode(cache: str) -> dict[str, str]:
    """The environment of a bufmon whose bytecode is cached (in `cache`), as installed."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": cache}


def bench(farm: Farm, rounds: int, extra: int, compare: str | None, cache: str) -> None:
    env = cached_bytecode(cache)
    bufmon = shutil.which("bufmon", path=str(Path(sys.executable).parent)) or "bufmon"
    programs = {"": bufmon} if compare is None else {"": bufmon, " (compared)": compare}
    ns = ["--netns", farm.netns]
    once, more = ["--interval", "0", "--count", "1"], ["--interval", "0", "--count", str(1 + extra)]
    jobs: dict[str, Callable[[], tuple[float, int, float]]] = {"ss -tanmi": ss_in(farm.netns)}
    for suffix, program in programs.items():
        for name, args in {
            "snapshot": ["snapshot"],
            "snapshot --json": ["snapshot", "--json"],
            "watch 1": ["watch", *once],
            f"watch {1 + extra}": ["watch", *more],
            "watch --json 1": ["watch", "--json", *once],
            f"watch --json {1 + extra}": ["watch", "--json", *more],
        }.items():
            jobs[name + suffix] = lambda cmd=[program, *args, *ns]: timed(cmd, env)
    for suffix in programs:
        jobs["snapshot" + suffix]()  # untimed: fills the bytecode cache (watch's modules too)
    times: dict[str, list[float]] = {name: [] for name in jobs}
    cpus: dict[str, list[float]] = {name: [] for name in jobs}
    rss: dict[str, int] = dict.fromkeys(jobs, 0)
    for _ in range(rounds):
        for name, job in jobs.items():
            took, peak, cpu = job()
            times[name].append(took)
            cpus[name].append(cpu)
            rss[name] = max(rss[name], peak)
    rows = {"ss -tanmi": times["ss -tanmi"]}
    cpu_rows = {"ss -tanmi": cpus["ss -tanmi"]}
    for suffix in programs:
        for name in ("snapshot", "snapshot --json"):
            rows[name + suffix] = times[name + suffix]
            cpu_rows[name + suffix] = cpus[name + suffix]
        for watch in ("watch", "watch --json"):
            first, last = f"{watch} 1{suffix}", f"{watch} {1 + extra}{suffix}"
            rows[watch + suffix] = per_refresh(times[first], times[last], extra)
            cpu_rows[watch + suffix] = per_refresh(cpus[first], cpus[last], extra)
            rss[watch + suffix] = rss[last]
    base = statistics.median(rows["ss -tanmi"])
    cpu_base = statistics.median(cpu_rows["ss -tanmi"])
    print(f"{rounds} rounds, alternating; watch: {extra} refreshes after the first")
    print("bufmon's bytecode cached, as installed (see the module docstring)")
    if compare is not None:
        print(f"(compared): {compare}")
    print("\n| command | median ms | min-max ms | x `ss -tanmi` | target | CPU ms | CPU x `ss` "
          "| peak RSS MB |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, values in rows.items():
        med = statistics.median(values)
        command = name.removesuffix(" (compared)")
        target = f"<= {TARGETS[command]}" if command in TARGETS else ""
        spread = f"{min(values) * 1000:.0f}-{max(values) * 1000:.0f}"
        label = f"`bufmon {name}`" if command in TARGETS else f"`{name}`"
        cpu = statistics.median(cpu_rows[name])
        print(f"| {label} | {med * 1000:.0f} | {spread} | {med / base:.2f} | {target} "
              f"| {cpu * 1000:.0f} | {cpu / cpu_base:.2f} | {rss[name] / 1024:.0f} |")  # fmt: skip
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_farm_options(parser)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--refreshes", type=int, default=5, help="watch refreshes after the first")
    parser.add_argument("--compare", metavar="BUFMON", help="another bufmon, timed alongside")
    args = parser.parse_args()
    print(f"`{' '.join(sys.argv)}`\n", flush=True)
    with (
        farm_errors("bench_commands"),
        announced_farm(args) as farm,
        tempfile.TemporaryDirectory(prefix="bufmon-bench-pycache-") as cache,
    ):
        bench(farm, args.rounds, args.refreshes, args.compare, cache)


if __name__ == "__main__":
    main()
