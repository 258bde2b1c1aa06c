"""What finding every network namespace costs a refresh on a host with many processes.

    sudo .venv/bin/python bench/bench_discovery.py [--processes 5000] [--rounds 21] [--interval 1]

Runs itself again under `unshare --mount --pid --fork --mount-proc` with a private
/run/netns, so /proc holds only the processes it starts: `--processes` sleepers
(`--namespaces` of them each alone in a network namespace of its own). Then, median
and spread over `--rounds` refreshes `--interval` seconds apart, `Discovery.walk` (what
`--netns all` does each refresh) as it runs: with nothing new, with 10 new processes
before each refresh, with 10 ended, and with the pids jumped further than are tried
one by one (/proc is listed); and reading every link each time (the walk before the
cache). Each walk also reads again its share of the remembered links and of the /proc
listing, which grow with the interval. Target: <= 20 ms a refresh at 5,000 processes.
Prints a markdown table, with the /proc listings and the links read per refresh, and
the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from collectors.netns import NETNS_RUN_DIR, SCAN_MIN, Discovery, Namespace

TARGET_MS = 20.0
NEW_PER_REFRESH = 10
LAST_PID = Path("/proc/sys/kernel/ns_last_pid")  # the bench's own PID namespace's


def sleeper(net: bool = False) -> subprocess.Popen[bytes]:
    cmd = ["unshare", "--net", "sleep", "3600"] if net else ["sleep", "3600"]
    return subprocess.Popen(cmd)


@dataclass
class Row:
    times: list[float]
    listings: int
    links: float  # links read (or tried) a refresh


def timed(discovery: Discovery, before: Callable[[], None], rounds: int, interval: float) -> Row:
    """Each walk given the last one's namespaces, as `--netns all` refreshes do."""
    times = []
    known: dict[int, Namespace] = {}
    listings, links = discovery.listings, discovery.links_read
    for _ in range(rounds):
        time.sleep(interval)
        before()
        start = time.perf_counter()
        known = discovery.walk(known)
        times.append(time.perf_counter() - start)
    return Row(times, discovery.listings - listings, (discovery.links_read - links) / rounds)


def bench(processes: int, namespaces: int, rounds: int, interval: float) -> None:
    os.makedirs(NETNS_RUN_DIR, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "bufmon-bench", NETNS_RUN_DIR], check=True)
    held = [sleeper(net=i < namespaces) for i in range(processes)]
    try:
        time.sleep(1.0)  # every `unshare` has moved into its namespace
        host = os.stat("/proc/self/ns/net").st_ino
        cached, full = Discovery(host), Discovery(host, recheck=0)
        seen = len(cached.walk({}))
        pids = len([p for p in os.listdir("/proc") if p.isdigit()])

        def spawn() -> None:
            held.extend(sleeper() for _ in range(NEW_PER_REFRESH))

        def end() -> None:
            for _ in range(NEW_PER_REFRESH):
                proc = held.pop()
                proc.kill()
                proc.wait()

        def jump() -> None:  # more new pids than a listing goes through: /proc is listed
            last = int(LAST_PID.read_text())
            LAST_PID.write_text(str(last + 2 * max(SCAN_MIN, pids)))

        def nothing() -> None:
            pass

        cases = {
            "nothing new": (cached, nothing),
            f"{NEW_PER_REFRESH} new processes before each refresh": (cached, spawn),
            f"{NEW_PER_REFRESH} processes ended before each refresh": (cached, end),
            "pids jumped by more than are tried (/proc listed)": (cached, jump),
            "every link read (the walk before the cache)": (full, nothing),
        }
        rows = {
            name: timed(discovery, before, rounds, interval)
            for name, (discovery, before) in cases.items()
        }
    finally:
        for proc in held:
            proc.kill()
        for proc in held:
            proc.wait()
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"{pids} processes in /proc, {seen} network namespaces; {rounds} refreshes")
    print(f"{interval:g} s apart; load average {load} at the end; ms\n")
    print("| Discovery.walk | median | min-max | /proc listings | links a refresh | target |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        med = statistics.median(row.times) * 1000
        spread = f"{min(row.times) * 1000:.2f}-{max(row.times) * 1000:.2f}"
        print(
            f"| {name} | {med:.2f} | {spread} | {row.listings} | {row.links:.0f} "
            f"| <= {TARGET_MS:g} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=5000)
    parser.add_argument("--namespaces", type=int, default=20, help="sleepers in a netns each")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    parser.add_argument("--isolated", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.isolated:
        bench(args.processes, args.namespaces, args.rounds, args.interval)
        return
    print(f"`{' '.join(sys.argv)}`\n", flush=True)
    cmd = ["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private",
           sys.executable, __file__, "--isolated", "--processes", str(args.processes),
           "--namespaces", str(args.namespaces), "--rounds", str(args.rounds),
           "--interval", str(args.interval)]  # fmt: skip
    try:
        subprocess.run(cmd, check=True)
    except KeyboardInterrupt:
        sys.exit("interrupted; the sleepers end with their PID namespace")
    except subprocess.CalledProcessError as exc:
        sys.exit(f"bench_discovery: {exc}")


if __name__ == "__main__":
    main()
