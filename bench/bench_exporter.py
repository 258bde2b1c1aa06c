"""`bufmon export` at 400, 4,000 and 40,000 sockets, next to `ss` in the same run.

For each size: a farm (conn_farm.py) of idle loopback connections held by three processes
in a namespace of its own, and `bufmon export --netns FARM --interval 15` started as a
user starts it. While it runs for --window seconds (a refresh every 15 s), a client
scrapes /metrics every 0.25 s over HTTP: the scrape time is the whole request as
Prometheus sees it, including scrapes that arrive during a refresh. Reported: series per
scrape (must stay flat as sockets grow), scrape median / p95 / max, the exporter's own
refresh duration, its CPU over the window (utime + stime from /proc), and `ss -tanmip`
in the same namespace for scale.

    sudo .venv/bin/python bench/bench_exporter.py [--sizes 400,4000,40000] [--window 60]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench_refresh import ms, ss, time_rounds
from conn_farm import Farm

ROOT = Path(__file__).resolve().parent.parent
INTERVAL = 15.0
SCRAPE_EVERY = 0.25
CHILDREN = 3  # farm processes at every size: the same processes and listeners
SERVING = re.compile(r"serving (http://[^/]+)/metrics")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else math.nan


def get(url: str) -> tuple[float, str]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = resp.read().decode()
    return time.perf_counter() - start, body


def bench_size(sockets: int, window: float) -> dict[str, str]:
    conns = sockets // 2
    with Farm(conns, pairs_per_child=math.ceil(conns / CHILDREN)) as farm:
        ss_times = time_rounds({"ss": ss(f"/run/netns/{farm.netns}", "-tanmip")}, 5)["ss"]
        cmd = [sys.executable, "-m", "bufmon.cli", "export", "--listen", "127.0.0.1:0"]
        cmd += ["--interval", str(INTERVAL), "--netns", farm.netns]
        proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            match = SERVING.search(proc.stderr.readline())
            if not match:
                raise RuntimeError("bufmon export did not start")
            url = match.group(1) + "/metrics"
            first, body = get(url)  # waits for the first refresh
            seen = metric(body, "bufmon_exporter_sockets")
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            scrapes, refreshes, series = [], set(), set()
            while time.monotonic() - t0 < window:
                took, body = get(url)
                scrapes.append(took)
                series.add(sum(1 for line in body.splitlines() if not line.startswith("#")))
                refreshes.add(metric(body, "bufmon_exporter_refresh_duration_seconds"))
                time.sleep(SCRAPE_EVERY)
            cpu = cpu_seconds(proc.pid) - cpu0
            elapsed = time.monotonic() - t0
        finally:
            proc.terminate()
            proc.wait(10)
    scrapes.sort()
    return {
        "sockets": f"{int(seen):,}",
        "series": "/".join(str(n) for n in sorted(series)),
        "scrapes": str(len(scrapes)),
        "scrape median ms": ms(statistics.median(scrapes)),
        "scrape p95 ms": ms(scrapes[int(0.95 * (len(scrapes) - 1))]),
        "scrape max ms": ms(scrapes[-1]),
        "first scrape ms": ms(first),
        "refresh ms": ms(statistics.median(refreshes)),
        "`ss -tanmip` ms": ms(statistics.median(ss_times)),
        "CPU % at 15 s": f"{100 * cpu / elapsed:.2f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="400,4000,40000", help="sockets per run")
    parser.add_argument("--window", type=float, default=60.0, help="seconds scraped per size")
    args = parser.parse_args()
    rows = [bench_size(int(n), args.window) for n in args.sizes.split(",")]
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(row.values()) + " |")


if __name__ == "__main__":
    main()
