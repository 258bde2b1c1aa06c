"""Does `bufmon watch` grow over a long run at 40,000 sockets with churn?

    sudo .venv/bin/python bench/bench_memory.py [--conns 20000] [--minutes 10] [--churn 200]

A farm (bench/conn_farm.py) of idle loopback connections in a namespace of its own,
plus a churn process there that opens and closes `--churn` connections a second
(new sockets, TIME-WAIT ones, vanished ones: history entries come and go). Then
`bufmon watch --netns FARM` runs as a user starts it, output to /dev/null, and its
RSS (VmRSS) is sampled every 30 s. Target: the last sample at most 5% above the
second (the first is taken before the history fills). Also printed: the CPU share
of one core `bufmon watch` used over the run at its default (adapting) interval.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from conn_farm import Farm, farm_errors

SAMPLE_EVERY = 30.0
TARGET = 1.05


def churn(per_second: int) -> None:
    """Open and close `per_second` connections a second, until killed."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    print("ready", flush=True)
    while True:
        start = time.monotonic()
        held = []
        for _ in range(per_second):
            client = socket.create_connection(listener.getsockname())
            server, _peer = listener.accept()
            held += (client, server)
        for sock in held:
            sock.close()
        time.sleep(max(0.0, 1.0 - (time.monotonic() - start)))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"process {pid} has no VmRSS")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (/proc/PID/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(farm: Farm, minutes: float, per_second: int) -> None:
    assert farm.ns is not None
    churner = subprocess.Popen(farm.ns.command(sys.executable, __file__, "--churn-child",
                                               str(per_second)),
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    bufmon = shutil.which("bufmon", path=str(Path(sys.executable).parent)) or "bufmon"
    watch = subprocess.Popen([bufmon, "watch", "--netns", farm.netns],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert churner.stdout is not None and churner.stdout.readline().strip() == "ready"
        print("| minute | RSS MB |\n|---:|---:|", flush=True)
        samples: list[float] = []
        start, cpu_start = time.monotonic(), cpu_seconds(watch.pid)
        while time.monotonic() - start < minutes * 60:
            time.sleep(SAMPLE_EVERY)
            if watch.poll() is not None:
                raise RuntimeError(f"bufmon watch ended with status {watch.returncode}")
            samples.append(rss_mb(watch.pid))
            print(f"| {(time.monotonic() - start) / 60:.1f} | {samples[-1]:.1f} |", flush=True)
        cpu = (cpu_seconds(watch.pid) - cpu_start) / (time.monotonic() - start)
    finally:
        for proc in (watch, churner):
            proc.kill()
            proc.wait()
    ratio = samples[-1] / samples[1]
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(f"\nlast / second sample: {ratio:.3f} (target <= {TARGET}: {verdict})")
    print(f"bufmon watch's CPU over the run (default interval): {cpu:.1%} of one core")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conns", type=int, default=20000, help="idle connections in the farm")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--churn", type=int, default=200, help="connections opened+closed a second")
    parser.add_argument("--churn-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.churn_child is not None:
        churn(args.churn_child)
        return
    if args.minutes * 60 < 2 * SAMPLE_EVERY:
        sys.exit("bench_memory: --minutes must allow two samples (1 or more)")
    print(f"`{' '.join(sys.argv)}`\n", flush=True)
    with farm_errors("bench_memory"), Farm(args.conns) as farm:
        print(f"{args.conns} idle connections, {args.churn} opened and closed a second; "
              f"`bufmon watch --netns {farm.netns}`\n", flush=True)  # fmt: skip
        run(farm, args.minutes, args.churn)


if __name__ == "__main__":
    main()
