"""What one refresh of `bufmon watch` costs next to `ss`, on the same sockets.

    sudo .venv/bin/python bench/bench_refresh.py [--conns 20000] [--rounds 7]

Part 1: N idle loopback connections (bench/conn_farm.py) in a namespace of their own.
Alternating, each round: `ss -tanmi`, `ss -tanmip` (both to /dev/null, run inside the
namespace), bufmon's bare collect (NamespaceSet(name).dump()) and one warm
Monitor(netns=name).refresh() (collect + processes + system facts + flags). Then the
peak RSS of a fresh process doing 10 refreshes.
Part 2: NamespaceSet("all").dump() and Monitor("all").refresh() with 1, 10 and 50
namespaces of 50 sockets each, and one namespace holding all of them, to show that
the cost follows sockets, not namespaces. It runs under `unshare --mount --pid
--mount-proc` with a private /run/netns, so "all" sees only the host and the bench's
own namespaces (not those of other programs running at the same time), and the
namespaces vanish with the process however it ends. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from conn_farm import Farm, NamespaceGroup, add_farm_options, announced_farm, farm_errors

from bufmon.monitor import Monitor
from bufmon.rates import RateMeter
from collectors.netns import NETNS_RUN_DIR, NamespaceSet, entered

# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the memory of the
# process that spawned it (this bench, with its monitors), VmHWM is the script's own.
RSS_SCRIPT = """
import re, sys
from bufmon.monitor import Monitor
monitor = Monitor(netns=sys.argv[1])
for _ in range(10):
    snap = monitor.refresh()
with open("/proc/self/status") as status:
    print(len(snap.sockets), re.search(r"VmHWM:\\s*(\\d+)", status.read()).group(1))
"""
TARGETS = (
    "targets: refresh <= 0.5 x `ss -tanmip`, <= 1.0 x `ss -tanmi`; peak RSS <= 150 MB;"
    " rates add <= 10% to a refresh"
)
REFRESH = "bufmon watch refresh (Monitor.refresh)"
NO_RATES = "the same refresh without rates"
RATES = "rates alone (RateMeter.measure of one dump)"


class NoRates(RateMeter):
    """A RateMeter that measures nothing: the refresh as it was before rates."""

    def measure(self, socks: object, now: float) -> None:
        return None


def ss(path: str, flags: str) -> Callable[[], object]:
    def run() -> None:
        with entered(path):  # ss forks from this thread, so it starts inside the namespace
            subprocess.run(["ss", flags], stdout=subprocess.DEVNULL, check=True)

    return run


def time_rounds(jobs: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per job, the jobs alternating within each round, in reverse order every
    other round (so no job always runs right after the same one)."""
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for n in range(rounds):
        for name, job in list(jobs.items())[:: -1 if n % 2 else 1]:
            start = time.perf_counter()
            job()
            times[name].append(time.perf_counter() - start)
    return times


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def bench_farm(farm: Farm, rounds: int) -> None:
    path = f"/run/netns/{farm.netns}"
    nsset = NamespaceSet(farm.netns)
    monitor = Monitor(netns=farm.netns)
    no_rates = Monitor(netns=farm.netns)
    no_rates.rates = NoRates()
    dump = nsset.dump()
    sockets = len(dump)
    meter = RateMeter()
    meter.measure(dump, time.time())
    monitor.refresh()  # warm: namespace entered, process index built
    no_rates.refresh()
    times = time_rounds(
        {
            "`ss -tanmi`": ss(path, "-tanmi"),
            "`ss -tanmip`": ss(path, "-tanmip"),
            "bufmon collect (NamespaceSet.dump)": nsset.dump,
            REFRESH: monitor.refresh,
            NO_RATES: no_rates.refresh,
            RATES: lambda: meter.measure(dump, time.time()),
        },
        rounds,
    )
    nsset.close()
    monitor.close()
    no_rates.close()
    rss = subprocess.run([sys.executable, "-c", RSS_SCRIPT, farm.netns],
                         capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    base = {name: statistics.median(t) for name, t in times.items()}
    plain, with_p = base["`ss -tanmi`"], base["`ss -tanmip`"]
    print(f"{sockets} sockets; {rounds} rounds, alternating; ms\n")
    print("| what | median | min | x `ss -tanmi` | x `ss -tanmip` |")
    print("|---|---:|---:|---:|---:|")
    for name, t in times.items():
        med = statistics.median(t)
        print(f"| {name} | {ms(med)} | {ms(min(t))} | {med / plain:.2f} | {med / with_p:.2f} |")
    paired = statistics.median(a / b for a, b in zip(times[REFRESH], times[NO_RATES], strict=True))
    print(
        f"\nrates add {(paired - 1) * 100:+.1f}% to a refresh (median of the per-round "
        f"ratios); rates alone are {base[RATES] / base[REFRESH] * 100:.1f}% of it (medians)"
    )
    print(f"peak RSS of 10 refreshes ({rss[0]} sockets): {int(rss[1]) / 1024:.0f} MB")
    print(TARGETS + "\n")


def isolated(argv: list[str]) -> None:
    """Run this script again in private mount and PID namespaces (see the docstring)."""
    cmd = ["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private",
           sys.executable, __file__, "--isolated", *argv]  # fmt: skip
    subprocess.run(cmd, check=True)


def private_netns_dir() -> None:
    os.makedirs(NETNS_RUN_DIR, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "bufmon-bench", NETNS_RUN_DIR], check=True)


def bench_namespaces(counts: list[int], sockets: int, rounds: int) -> None:
    print(f'`NamespaceSet("all")` / `Monitor("all")`, {sockets} sockets per namespace; ms\n')
    print("| namespaces made | namespaces seen | sockets seen | dump median | dump min "
          "| refresh median | us per socket (dump) |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for count, each in [(c, sockets) for c in counts] + [(1, sockets * max(counts))]:
        with NamespaceGroup(count, each):
            nsset = NamespaceSet("all")
            monitor = Monitor(netns="all")
            seen = len(nsset.dump())
            monitor.refresh()
            times = time_rounds({"dump": nsset.dump, "refresh": monitor.refresh}, rounds)
            spaces = len(nsset.namespaces)
            nsset.close()
            monitor.close()
        dump, refresh = (statistics.median(times[k]) for k in ("dump", "refresh"))
        print(f"| {count} x {each} | {spaces} | {seen} | {ms(dump)} | {ms(min(times['dump']))} "
              f"| {ms(refresh)} | {dump / seen * 1e6:.1f} |")  # fmt: skip
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_farm_options(parser)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--namespaces", default="1,10,50", help="namespace counts for part 2")
    parser.add_argument("--ns-sockets", type=int, default=50, help="sockets per namespace")
    parser.add_argument("--skip", choices=["farm", "namespaces"], help="leave one part out")
    parser.add_argument("--isolated", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    with farm_errors("bench_refresh"):
        if args.isolated:
            private_netns_dir()
            counts = [int(c) for c in args.namespaces.split(",")]
            bench_namespaces(counts, args.ns_sockets, args.rounds)
            return
        print(f"`{' '.join(sys.argv)}`\n", flush=True)
        ns_argv = ["--rounds", str(args.rounds), "--namespaces", args.namespaces,
                   "--ns-sockets", str(args.ns_sockets)]  # fmt: skip
        if args.skip != "farm":
            with announced_farm(args, heading="## ") as farm:
                bench_farm(farm, args.rounds)
                if args.skip != "namespaces":
                    print("## Namespaces, while the farm's sockets sit in another namespace\n",
                          flush=True)  # fmt: skip
                    isolated(ns_argv)
        if args.skip != "namespaces":
            print("## Namespaces, no farm\n", flush=True)
            isolated(ns_argv)


if __name__ == "__main__":
    main()
