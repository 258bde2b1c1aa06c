"""bufmon's start-up: whole commands on a namespace with no sockets, next to Python alone.

    sudo .venv/bin/python bench/bench_startup.py [--rounds 21] [--compare OTHER_BUFMON]

Each round runs, alternating: `python -c pass` (the interpreter alone), `bufmon snapshot
--netns EMPTY` (a namespace of the bench's own with no sockets: imports, the parser, one
refresh of nothing, the table's title) and `bufmon --help`, with its bytecode cached as
an installed bufmon has it (bench_commands.cached_bytecode). The kernel's dump walks the
host's whole socket table even for an empty namespace, so other sockets on the host add
to the snapshot row. Prints median and min ms per command, CPU time (user + system)
beside them.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench_commands import cached_bytecode, timed

from bufmon.scenarios import Netns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--compare", metavar="BUFMON", help="another bufmon, timed alongside")
    args = parser.parse_args()
    print(f"`{' '.join(sys.argv)}`\n", flush=True)
    bufmon = shutil.which("bufmon", path=str(Path(sys.executable).parent)) or "bufmon"
    programs = {"": bufmon} if args.compare is None else {"": bufmon, " (compared)": args.compare}
    with Netns("startup") as ns, tempfile.TemporaryDirectory(prefix="bufmon-pycache-") as cache:
        env = cached_bytecode(cache)
        commands = {"python -c pass": [sys.executable, "-c", "pass"]}
        for suffix, program in programs.items():
            commands[f"bufmon snapshot --netns EMPTY{suffix}"] = [
                program, "snapshot", "--netns", ns.name,
            ]  # fmt: skip
            commands[f"bufmon --help{suffix}"] = [program, "--help"]
        for argv in commands.values():
            timed(argv, env)  # untimed: fills the bytecode cache
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, argv in commands.items():
                took, _rss, cpu = timed(argv, env)
                walls[name].append(took)
                cpus[name].append(cpu)
    print(f"{args.rounds} rounds, alternating; bytecode cached")
    if args.compare is not None:
        print(f"(compared): {args.compare}")
    print("\n| command | median ms | min ms | CPU ms (median) |")
    print("|---|---:|---:|---:|")
    for name, values in walls.items():
        print(f"| `{name}` | {statistics.median(values) * 1000:.0f} | {min(values) * 1000:.0f} "
              f"| {statistics.median(cpus[name]) * 1000:.0f} |")  # fmt: skip
    print()


if __name__ == "__main__":
    main()
