"""Cost of Diagnoser.evaluate and of its history on real sockets, run by hand as root:

    .venv/bin/python bench/bench_diagnosis.py [--connections 20000] [--refreshes 600]

Builds `connections` loopback TCP connections (2 sockets each) in a throwaway network
namespace, spread over child processes (under 20,000 fds each). Most are idle; 2.5%
exchange 1 KB every 0.5 s and 0.1% are stalled readers, like a busy server. Each
refresh dumps the namespace (the bare collector), then runs evaluate(); snapshot
times advance 1 s per refresh so 600 refreshes fill a 10-minute history window.
Reports dump and evaluate times and the memory the diagnosis state holds; compare
max RSS with a `--bare --refreshes 30` run (dump only) for the cost above the collector.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

from bufmon.diagnosis import Config, Diagnoser
from bufmon.scenarios import Netns
from collectors.model import Snapshot, SystemFacts
from collectors.netns import NamespaceSet

CHILD = r"""
import random, select, socket, sys, time
n = int(sys.argv[1])
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(4096)
pairs = []
for _ in range(n):
    c = socket.create_connection(lst.getsockname())
    s, _ = lst.accept()
    pairs.append((c, s))
rng = random.Random(n)
active = rng.sample(pairs, max(n // 40, 1))
for c, _ in rng.sample(pairs, max(n // 1000, 1)):
    c.send(b"x" * 65536)  # stalled: the server end never reads
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


def start_children(ns: Netns, connections: int) -> list[subprocess.Popen[str]]:
    per_child = 6000  # 12,000 fds per child
    children = []
    left = connections
    while left > 0:
        n = min(per_child, left)
        left -= n
        cmd = ns.command(sys.executable, "-c", CHILD, str(n))
        children.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return children


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=20000)
    parser.add_argument("--refreshes", type=int, default=600)
    parser.add_argument(
        "--bare", action="store_true", help="dump only: the RSS baseline without diagnosis"
    )
    args = parser.parse_args()
    with Netns("bench") as ns:
        children = start_children(ns, args.connections)
        try:
            run(ns, args.refreshes, args.bare)
        finally:
            for child in children:
                child.kill()
                child.wait()


def run(ns: Netns, refreshes: int, bare: bool) -> None:
    namespaces = NamespaceSet(ns.name)
    diagnoser = Diagnoser(Config())
    dump_times, eval_times = [], []
    rss_before = None
    count = 0
    for i in range(refreshes):
        t0 = time.perf_counter()
        socks = namespaces.dump()
        t1 = time.perf_counter()
        snap = Snapshot(time=float(i), host="bench", sockets=socks, system=SystemFacts())
        if not bare:
            diagnoser.evaluate(snap)
        t2 = time.perf_counter()
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
        f"p95 {sorted(eval_times)[int(len(eval_times) * 0.95)] * 1000:.1f} ms"
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


if __name__ == "__main__":
    main()
