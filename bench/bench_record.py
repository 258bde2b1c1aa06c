"""What recording costs: disk per hour, CPU next to `ss`, and how fast a reader seeks.

    sudo .venv/bin/python bench/bench_record.py                 # all three parts
    sudo .venv/bin/python bench/bench_record.py --skip cpu      # size and seek only
    ... --skip cpu --keep DIR, later --skip cpu --reuse DIR      # measure again, same files

(a) size: 500 long-lived loopback connections (1,000 sockets) in a namespace of their
    own, with churn every simulated second: `--churn` connections closed (with a reset:
    a TIME-WAIT socket lives 60 s of real time, 15 simulated minutes at this clock,
    and would pile up) and as many opened, and `--busy` random connections
    send 1-16 KB that the peer reads only every other second (queues moving). Each
    simulated second is one real Monitor.refresh() of that namespace recorded through
    the recorder's own writer, stamped with an accelerated clock (t0 + n seconds)
    instead of waiting a real second: the bytes per frame are what a real hour makes
    from this socket set, the tcp_info "ms since" fields aside (they see less time).
(b) CPU: a farm of 20,000 idle connections (40,004 sockets, bench/conn_farm.py);
    `bufmon record --netns FARM --interval 1` runs as its own process; after a warm-up,
    for `--seconds` the bench runs `ss -tanmi` (inside the namespace, output to
    /dev/null) once per second side by side, and compares the CPU (user + system)
    both used in the same window: the recorder's from /proc/PID/stat, ss's from
    RUSAGE_CHILDREN.
(c) seek: a recording of 24 h at 1 s of the (a) socket set: a real refresh every
    `--refresh-every` simulated seconds, the same snapshot re-stamped in between
    (so the file has 86,400 frames with the keyframe spacing of a real one; writing
    86,400 real refreshes would take hours here). Then Recording.open() and
    snapshot() of the middle frame, in a fresh process, timed. Its deltas are
    nearly empty, so the cost of rebuilding a frame from real deltas is taken from
    the (a) hour: the slowest snapshot() of 120 frames around its middle.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conn_farm import Farm

from bufmon.monitor import Monitor
from bufmon.record.index import index_name
from bufmon.record.writer import Recorder
from bufmon.scenarios import Churn, Netns
from collectors.netns import entered

ROOT = Path(__file__).resolve().parent.parent
BUFMON = [sys.executable, "-m", "bufmon.cli"]
SEEK_SCRIPT = """
import sys, time
t0 = time.perf_counter()
from bufmon.record.reader import Recording
rec = Recording.open(sys.argv[1])
t1 = time.perf_counter()
snap = rec.snapshot(len(rec) // 2)
t2 = time.perf_counter()
print(len(rec), len(snap.sockets), t1 - t0, t2 - t1)
"""
# The slowest frame to reach in a window of 120 frames around the middle of a real
# recording: some frame in it sits just before a keyframe (59 deltas to apply).
WORST_SCRIPT = """
import sys, time
from bufmon.record.reader import Recording
path = sys.argv[1]
middle = len(Recording.open(path)) // 2
worst = 0.0
for i in range(middle - 60, middle + 60):
    rec = Recording.open(path)
    t0 = time.perf_counter()
    rec.snapshot(i)
    worst = max(worst, time.perf_counter() - t0)
    rec.close()
print(worst)
"""


class ChurningSet(Churn):
    """Connections replaced, sending and reading as a simulated second passes."""

    def __init__(self, ns: Netns, count: int, seed: int = 1) -> None:
        super().__init__(ns, count)
        self.rng = random.Random(seed)

    def step(self, n: int, churn: int, busy: int) -> None:
        for _ in range(churn):
            # reset, not FIN: TIME-WAIT lasts 60 s of real time, which would pile up
            # sockets of 15 simulated minutes at the accelerated clock
            self.replace(self.rng.randrange(len(self.pairs)), abort=True)
        for cli, _srv in self.rng.sample(self.pairs, busy):
            with contextlib.suppress(BlockingIOError):
                cli.send(b"x" * self.rng.randint(1024, 16384))
        if n % 2:
            for _cli, srv in self.pairs:
                with contextlib.suppress(BlockingIOError):
                    while srv.recv(65536):
                        pass


def record_simulated(
    path: str, seconds: int, args: argparse.Namespace, refresh_every: int = 1
) -> tuple[int, int, float]:
    """(frames, sockets in the last frame, wall seconds) of a simulated recording."""
    with Netns("recbench") as ns:
        farm = ChurningSet(ns, args.conns)
        monitor = Monitor(ns.name)
        recorder = Recorder(path, 1.0)
        recorder.open(monitor.host)
        t0 = time.time()
        started = time.perf_counter()
        snap = None
        try:
            for n in range(seconds):
                if snap is None or n % refresh_every == 0:
                    farm.step(n, args.churn, args.busy)
                    snap = monitor.refresh()
                snap.time = t0 + n
                recorder.write(snap, snap.sockets)
        finally:
            recorder.close()
            monitor.close()
            farm.close()
        assert snap is not None
        return seconds, len(snap.sockets), time.perf_counter() - started


def recorded(path: str, seconds: int, args: argparse.Namespace, refresh_every: int = 1) -> str:
    """How the recording at `path` came to be: simulated now, or (--reuse) one an
    earlier run simulated, opened by the recorder once (which brings its index up to
    date, as a recorder restarted on the file does)."""
    if args.reuse is None:
        frames, sockets, wall = record_simulated(path, seconds, args, refresh_every)
        return f"{frames} frames, {sockets} sockets, simulated in {wall:.0f} s"
    recorder = Recorder(path, 1.0)
    recorder.open("reused")
    frames = recorder.frames_in_file
    recorder.close()
    return f"{frames} frames of an earlier run (--reuse)"


def disk(path: str) -> tuple[int, int]:
    """Bytes of the recording file and of its index."""
    index = index_name(path)
    return os.path.getsize(path), os.path.getsize(index) if os.path.exists(index) else 0


def part_size(args: argparse.Namespace, tmp: str) -> str:
    path = os.path.join(tmp, "hour.rec")
    how = recorded(path, 3600, args)
    size, index = disk(path)
    print(f"\n(a) one simulated hour at 1 s ({how})\n")
    print("| file | index | total | target |")
    print("|---:|---:|---:|---:|")
    print(
        f"| {size / 1e6:.2f} MB | {index / 1e6:.2f} MB | {(size + index) / 1e6:.2f} MB | <= 20 MB |"
    )
    return path


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def part_cpu(args: argparse.Namespace, tmp: str) -> None:
    path = os.path.join(tmp, "farm.rec")
    with Farm(20000) as farm:
        total = args.warmup + args.seconds + 5
        cmd = [*BUFMON, "record", path, "--netns", farm.netns, "--duration", str(total)]
        rec = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.DEVNULL)
        try:
            time.sleep(args.warmup)
            rec_before = _cpu_of(rec.pid)
            ss_before = os.times()
            started = time.monotonic()
            for n in range(args.seconds):
                with entered(f"/run/netns/{farm.netns}"):
                    subprocess.run(["ss", "-tanmi"], stdout=subprocess.DEVNULL, check=True)
                time.sleep(max(0.0, started + n + 1 - time.monotonic()))
            rec_cpu = _cpu_of(rec.pid) - rec_before
            ss_after = os.times()
        finally:
            rec.terminate()
            rec.wait()
    ss_cpu = (ss_after.children_user - ss_before.children_user) + (
        ss_after.children_system - ss_before.children_system
    )
    print(f"\n(b) CPU over the same {args.seconds} s, 40,004 sockets, one sample per second\n")
    print("| what | CPU s | per second (ms) | x `ss -tanmi` |")
    print("|---|---:|---:|---:|")
    per_second = ss_cpu / args.seconds * 1000
    print(f"| `ss -tanmi` once per second | {ss_cpu:.2f} | {per_second:.0f} | 1.00 |")
    ratio = rec_cpu / ss_cpu if ss_cpu else float("nan")
    print(
        f"| `bufmon record --interval 1` | {rec_cpu:.2f} | "
        f"{rec_cpu / args.seconds * 1000:.0f} | {ratio:.2f} |"
    )
    print(f"\nrecording size after {total} s: {os.path.getsize(path) / 1e6:.1f} MB")


def _python(script: str, path: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", script, path], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def part_seek(args: argparse.Namespace, tmp: str, hour: str | None) -> None:
    path = os.path.join(tmp, "day.rec")
    how = recorded(path, 86400, args, args.refresh_every)
    size, index = disk(path)
    times = []
    for _ in range(3):
        out = _python(SEEK_SCRIPT, path)
        times.append((float(out[2]), float(out[3])))
    print(f"\n(c) seek into the middle of 24 h at 1 s ({how},")
    print(f"    {size / 1e6:.0f} MB + index {index / 1e6:.1f} MB); fresh process, 3 runs\n")
    print("| run | Recording.open() | snapshot(middle) | total |")
    print("|---:|---:|---:|---:|")
    for n, (opened, built) in enumerate(times, 1):
        total = (opened + built) * 1000
        print(f"| {n} | {opened * 1000:.0f} ms | {built * 1000:.0f} ms | {total:.0f} ms |")
    if hour is not None:
        worst = float(_python(WORST_SCRIPT, hour)[0])
        print(f"\nslowest snapshot() from real deltas (the (a) hour): {worst * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conns", type=int, default=500, help="long-lived connections (a, c)")
    parser.add_argument("--churn", type=int, default=5, help="connections replaced per second")
    parser.add_argument("--busy", type=int, default=50, help="connections sending per second")
    parser.add_argument("--seconds", type=int, default=60, help="CPU window of (b)")
    parser.add_argument("--warmup", type=int, default=10, help="seconds before the window")
    parser.add_argument("--refresh-every", type=int, default=60, help="(c): real refresh period")
    parser.add_argument("--skip", action="append", default=[], choices=["size", "cpu", "seek"])
    parser.add_argument(
        "--reuse",
        metavar="DIR",
        help="(a), (c): measure DIR/hour.rec and DIR/day.rec that an earlier run kept",
    )
    parser.add_argument("--keep", metavar="DIR", help="write the recordings to DIR and keep them")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        tmp = (
            args.reuse
            or args.keep
            or stack.enter_context(tempfile.TemporaryDirectory(prefix="bufmon-bench-"))
        )
        hour = None if "size" in args.skip else part_size(args, tmp)
        if "cpu" not in args.skip:
            part_cpu(args, tmp)
        if "seek" not in args.skip:
            part_seek(args, tmp, hour)


if __name__ == "__main__":
    main()
