"""Cost of Diagnoser.evaluate and of its history on real sockets, run by hand as root:

    .venv/bin/python bench/bench_diagnosis.py [--connections 20000] [--refreshes 600]
    .venv/bin/python bench/bench_diagnosis.py --stalled 20000 --unread 100 --refreshes 30
    .venv/bin/python bench/bench_diagnosis.py --stalled 20000 --refreshes 30 --profile

Builds `connections` loopback TCP connections (2 sockets each) in a throwaway network
namespace, spread over child processes (under 20,000 fds each). Most are idle; 2.5%
exchange 1 KB every 0.5 s and `--stalled` (default 0.1%) are stalled readers: the
server end never reads the `--unread` bytes sent to it. Each refresh dumps the
namespace (the bare collector), then runs evaluate() with the GC policy of
Monitor.refresh (paused, then gc.freeze); the previous snapshot is freed after the
timing, as when a consumer replaces it. Snapshot times advance 1 s per refresh, so
600 refreshes fill a 10-minute history window and flags rise after their hold.
Reports dump and evaluate times and the memory the diagnosis state holds; compare
max RSS with a `--bare --refreshes 30` run (dump only) for the cost above the collector.
`--profile` prints the cProfile top functions of all evaluate() calls.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import statistics
import subprocess
import sys
import time

from bufmon.diagnosis import Config, Diagnoser
from bufmon.scenarios import Netns
from collectors.gcpolicy import FrozenGarbage, gc_paused
from collectors.model import Snapshot, SystemFacts
from collectors.netns import NamespaceSet

CHILD = r"""
import random, select, socket, sys, time
n, stalled, unread = (int(a) for a in sys.argv[1:4])
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(4096)
pairs = []
for _ in range(n):
    c = socket.create_connection(lst.getsockname())
    s, _ = lst.accept()
    pairs.append((c, s))
rng = random.Random(n)
active = rng.sample(pairs, max(n // 40, 1))
for c, _ in rng.sample(pairs, stalled):
    c.send(b"x" * unread)  # stalled: the server end never reads
for _, s in active:
    s.setblocking(False)
print("ready", flush=True)
while True:
    for c, s in active:
        c.send(b"y" * 1024)
        try:
            s.recv(65536)
        except BlockingIOError:
            pass
    time.sleep(0.5)
"""


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_children(
    ns: Netns, connections: int, stalled: int, unread: int
) -> list[subprocess.Popen[str]]:
    per_child = 6000  # 12,000 fds per child
    children = []
    done = 0
    while done < connections:
        n = min(per_child, connections - done)
        # this child's share of the stalled connections, rounded so the total is exact
        share = stalled * (done + n) // connections - stalled * done // connections
        done += n
        cmd = ns.command(sys.executable, "-c", CHILD, str(n), str(share), str(unread))
        children.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return children


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=20000)
    parser.add_argument("--refreshes", type=int, default=600)
    parser.add_argument("--stalled", type=int, help="stalled readers (default: 0.1%%)")
    parser.add_argument("--unread", type=int, default=65536, help="bytes each stalled reader holds")
    parser.add_argument("--profile", action="store_true", help="cProfile evaluate()")
    parser.add_argument(
        "--bare", action="store_true", help="dump only: the RSS baseline without diagnosis"
    )
    args = parser.parse_args()
    stalled = max(args.connections // 1000, 1) if args.stalled is None else args.stalled
    if not 0 <= stalled <= args.connections or args.unread < 1:
        sys.exit("bench_diagnosis: need 0 <= --stalled <= --connections and --unread >= 1")
    with Netns("bench") as ns:
        children = start_children(ns, args.connections, stalled, args.unread)
        try:
            run(ns, args.refreshes, args.bare, args.profile)
        finally:
            for child in children:
                child.kill()
                child.wait()


def run(ns: Netns, refreshes: int, bare: bool, profile: bool) -> None:
    namespaces = NamespaceSet(ns.name)
    diagnoser = Diagnoser(Config())
    profiler = cProfile.Profile() if profile else None
    dump_times, eval_times = [], []
    rss_before = None
    count = 0
    frozen = FrozenGarbage()
    for i in range(refreshes):
        with gc_paused():  # the GC policy of Monitor.refresh
            t0 = time.perf_counter()
            socks = namespaces.dump()
            t1 = time.perf_counter()
            new = Snapshot(time=float(i), host="bench", sockets=socks, system=SystemFacts())
            if profiler is not None:
                profiler.enable()
            if not bare:
                diagnoser.evaluate(new)
            if profiler is not None:
                profiler.disable()
            t2 = time.perf_counter()
            frozen.adopted()
        snap = new  # frees the last snapshot outside the timing, as a consumer replacing it
        dump_times.append(t1 - t0)
        eval_times.append(t2 - t1)
        count = len(socks)
        if i == 0:
            rss_before = rss_mb()
    namespaces.close()
    dump, evaluate = statistics.median(dump_times), statistics.median(eval_times)
    flagged = sum(1 for s in snap.sockets if s.flags)
    print(f"sockets per refresh     {count}")
    print(f"dump (bare collector)   median {dump * 1000:.1f} ms")
    print(
        f"evaluate                median {evaluate * 1000:.1f} ms "
        f"(+{evaluate / dump:.0%} of the dump), first {eval_times[0] * 1000:.1f} ms, "
        f"p95 {sorted(eval_times)[int(len(eval_times) * 0.95)] * 1000:.1f} ms, "
        f"max {max(eval_times) * 1000:.1f} ms"
    )
    print(f"flagged sockets         {flagged}")
    print(
        f"history                 {len(diagnoser.history)} sockets, "
        f"~{diagnoser.history.nbytes() / 2**20:.1f} MB by its own count"
    )
    print(
        f"max RSS                 {rss_mb():.0f} MB after {refreshes} refreshes, "
        f"{rss_before:.0f} MB after the first"
    )
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
