"""`bufmon kill --yes` next to `ss -K`: closing N loopback connections in a namespace.

    sudo .venv/bin/python bench/bench_kill.py [--conns 1000] [--rounds 5]

Each round builds N fresh connections in a namespace of its own (one listener, N
accepted server ends) and closes the server ends twice over, alternating which goes
first: once with the whole `bufmon kill --yes --netns NS 'state:estab sport:P'`
command, once with `ip netns exec NS ss -K -tn state established '( sport = :P )'`;
and `bufmon kill --dry-run` on them, which reads and lists without closing (what a
kill costs before its first close: one snapshot with process attribution). Each is
timed as the whole process a user runs; every server end must be closed (the
clients see the reset), or none for the dry run, before a time counts.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bufmon.scenarios import Netns

BUFMON = str(Path(sys.executable).with_name("bufmon"))


def build(count: int) -> tuple[int, list[socket.socket]]:
    """Inside the namespace: N connections; returns the port and every socket."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=count)
    port = listener.getsockname()[1]
    held = [listener]
    for _ in range(count):
        held.append(socket.create_connection(("127.0.0.1", port)))
        held.append(listener.accept()[0])
    return port, held


def resets(held: list[socket.socket]) -> int:
    """How many clients saw their server end closed (RST: recv fails)."""
    seen = 0
    for client in held[1::2]:
        client.setblocking(False)
        try:
            client.recv(1)
        except ConnectionResetError:
            seen += 1
        except BlockingIOError:
            pass
    return seen


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def round_of(ns: Netns, count: int, bufmon_first: bool) -> dict[str, float]:
    commands = {  # what each runs, and how many connections it must close
        "bufmon kill --yes": (lambda port: [
            BUFMON, "kill", "--yes", "--netns", ns.name, f"state:estab sport:{port}",
        ], count),
        "bufmon kill --dry-run (lists only)": (lambda port: [
            BUFMON, "kill", "--dry-run", "--netns", ns.name, f"state:estab sport:{port}",
        ], 0),
        "ss -K": (lambda port: ns.command(
            "ss", "-K", "-tn", "state", "established", f"( sport = :{port} )"
        ), count),
    }  # fmt: skip
    order = list(commands) if bufmon_first else list(reversed(commands))
    times = {}
    for name in order:
        argv, expected = commands[name]
        port, held = ns.run(build, count)
        try:
            times[name] = timed(argv(port))
            closed = resets(held)
            if closed != expected:
                raise SystemExit(f"{name}: {closed} of {count} connections closed")
        finally:
            for sock in held:
                sock.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conns", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with Netns("killbench") as ns:
        rounds = [round_of(ns, args.conns, n % 2 == 0) for n in range(args.rounds)]
    print(f"closing {args.conns} connections, {args.rounds} rounds (seconds)\n")
    print("| command | median | min |\n|---|---|---|")
    for name in rounds[0]:
        values = [r[name] for r in rounds]
        print(f"| `{name}` | {statistics.median(values):.3f} | {min(values):.3f} |")


if __name__ == "__main__":
    main()
