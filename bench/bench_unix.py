"""bufmon's UNIX socket dump next to `ss -xan` and `ss -xanm`, on the same sockets.

    sudo .venv/bin/python bench/bench_unix.py [--sockets 10000,40000] [--rounds 7]

For each size: that many UNIX sockets (connected socketpairs, at most 9,000 pairs =
18,000 fds per process) held by child processes in a network namespace of their own.
Alternating within each round: `ss -xan`, `ss -xanm`, `ss -xanmp` (to /dev/null,
started inside the namespace), bufmon's UNIX dump alone (unixdiag.dump_into on a
reused netlink socket: dump and decode), `NamespaceSet(name).dump()` (TCP, UDP and
UNIX), a warm `Monitor(netns=name).refresh()` (plus processes, peers, flags), and the
whole commands a user runs, `bufmon snapshot --unix --netns NAME proto:unix` with and
without `--json` (a new process each: start, imports, one refresh, output to /dev/null).
Prints a markdown table per size, wall and CPU time (the process's and its children's:
steadier than wall time on a shared machine). Target: the UNIX dump <= 1.0 x `ss -xanm`.
"""

from __future__ import annotations

import argparse
import ctypes
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench_refresh import ms, ss, time_rounds
from conn_farm import MAX_PAIRS_PER_CHILD, PR_SET_PDEATHSIG, Farm, farm_errors

from bufmon.monitor import Monitor
from collectors.model import Sock
from collectors.netns import NamespaceSet, entered
from collectors.sockdiag import SockDiag
from collectors.unixdiag import dump_into


class UnixFarm(Farm):
    """`with UnixFarm(40000) as farm:` -> farm.netns holds 40,000 UNIX sockets."""

    def __init__(self, sockets: int) -> None:
        super().__init__(sockets // 2, MAX_PAIRS_PER_CHILD)

    def command(self, index: int, pairs: int) -> list[str]:
        return [sys.executable, __file__, "--child", str(pairs)]


def snapshot(netns: str, *options: str) -> Callable[[], object]:
    """The whole `bufmon snapshot` command listing the UNIX sockets of `netns`."""
    bufmon = str(Path(sys.executable).with_name("bufmon"))
    cmd = [bufmon, "snapshot", "--unix", "--netns", netns, *options, "proto:unix"]

    def run() -> None:  # stderr: its notices each round, or why it failed
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode:
            raise RuntimeError(done.stderr.strip())

    return run


def child(pairs: int) -> None:
    """One farm process: `pairs` socketpairs, held open until the parent goes."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held = [socket.socketpair() for _ in range(pairs)]
    print("ready", flush=True)
    sys.stdin.read()
    for left, right in held:
        left.close()
        right.close()


def with_cpu(job: Callable[[], object], out: list[float]) -> Callable[[], object]:
    """`job`, noting the CPU seconds it used: this process's, plus its children's (the
    `ss` runs); on a shared machine CPU time moves less than wall time."""

    def run() -> None:
        before = _cpu()
        job()
        out.append(_cpu() - before)

    return run


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bench(sockets: int, rounds: int) -> None:
    start = time.perf_counter()
    with UnixFarm(sockets) as farm:
        built = time.perf_counter() - start
        processes = len(farm.children)
        path = f"/run/netns/{farm.netns}"
        with entered(path):
            diag = SockDiag(farm.netns)
        nsset = NamespaceSet(farm.netns)
        monitor = Monitor(netns=farm.netns)
        seen: list[Sock] = []
        dump_into(diag, seen)
        monitor.refresh()  # warm: namespace entered, process index built

        def unix_dump() -> None:
            dump_into(diag, [])

        jobs: dict[str, Callable[[], object]] = {
            "`ss -xan`": ss(path, "-xan"),
            "`ss -xanm`": ss(path, "-xanm"),
            "`ss -xanmp`": ss(path, "-xanmp"),
            "bufmon UNIX dump (unixdiag.dump_into)": unix_dump,
            "bufmon collect (NamespaceSet.dump)": nsset.dump,
            "bufmon watch refresh (Monitor.refresh)": monitor.refresh,
            "`bufmon snapshot --unix proto:unix` (whole command)": snapshot(farm.netns),
            "`bufmon snapshot --unix --json proto:unix` (whole command)": snapshot(
                farm.netns, "--json"
            ),
        }
        cpu: dict[str, list[float]] = {name: [] for name in jobs}
        timed = {name: with_cpu(job, cpu[name]) for name, job in jobs.items()}
        times = time_rounds(timed, rounds)
        diag.close()
        nsset.close()
        monitor.close()
    base = statistics.median(times["`ss -xanm`"])
    cpu_base = statistics.median(cpu["`ss -xanm`"])
    with_p = statistics.median(times["`ss -xanmp`"])  # the whole commands name processes too
    print(f"## {len(seen)} UNIX sockets, {processes} farm processes "
          f"(built in {built:.1f} s); {rounds} rounds, alternating; ms\n")  # fmt: skip
    print("| what | median | min | x `ss -xanm` | x `ss -xanmp` | CPU median "
          "| CPU x `ss -xanm` |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, t in times.items():
        med, cpu_med = statistics.median(t), statistics.median(cpu[name])
        print(f"| {name} | {ms(med)} | {ms(min(t))} | {med / base:.2f} | {med / with_p:.2f} "
              f"| {ms(cpu_med)} | {cpu_med / cpu_base:.2f} |")  # fmt: skip
    print("\ntarget: UNIX dump <= 1.0 x `ss -xanm`\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", default="10000,40000", help="UNIX socket counts")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # PAIRS
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    with farm_errors("bench_unix"):
        print(f"`{' '.join(sys.argv)}`\n", flush=True)
        for count in (int(c) for c in args.sockets.split(",")):
            bench(count, args.rounds)


if __name__ == "__main__":
    main()
