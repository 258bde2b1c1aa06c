"""A small farm (3,000 connections: 6,001 sockets in a namespace of their own): every
command still runs whole, and the default interval stretches when refreshes are slow.

The farm is bench/conn_farm.py's child process, the one the benchmarks use at 40,000
and 200,000 sockets (those runs are benchmarks, not tests: see bench/README.md).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from bufmon.pacing import Pace
from bufmon.scenarios import Netns
from tui.app import BufmonApp
from tui.source import MonitorSource

pytestmark = pytest.mark.root

FARM = Path(__file__).resolve().parent.parent / "bench" / "conn_farm.py"
CONNS = 3000
SOCKETS = 2 * CONNS + 1  # and the listener


@pytest.fixture(scope="module")
def farm() -> Iterator[Netns]:
    ns = Netns("scale").open()
    cmd = ns.command(sys.executable, str(FARM), "--child", str(CONNS), "127.0.0.2", "0")
    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        yield ns
    finally:
        child.kill()
        child.wait()
        ns.close()


def bufmon(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "bufmon.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd="/")


def farm_sockets(sockets: list[dict]) -> int:
    return sum(1 for s in sockets if "127.0.0.2" in (s["local_addr"], s["peer_addr"]))


def test_every_command_runs_at_a_few_thousand_sockets(farm: Netns) -> None:
    table = bufmon("snapshot", "--netns", farm.name, "proto:tcp")
    assert table.returncode == 0, table.stderr
    assert len(table.stdout.splitlines()) == SOCKETS + 1  # and the header
    doc = json.loads(bufmon("snapshot", "--json", "--netns", farm.name).stdout)
    assert farm_sockets(doc["sockets"]) == SOCKETS
    watch = bufmon("watch", "--netns", farm.name, "--interval", "0", "--count", "2")
    assert watch.returncode == 0, watch.stderr
    summaries = [line for line in watch.stdout.splitlines() if not line.startswith(" ")]
    assert [f"sockets={SOCKETS}" in line for line in summaries] == [True, True]
    lines = bufmon("watch", "--json", "--netns", farm.name, "--interval", "0", "--count", "2")
    docs = [json.loads(line) for line in lines.stdout.splitlines()]
    assert [farm_sockets(d["sockets"]) for d in docs] == [SOCKETS, SOCKETS]


def gaps(*args: str) -> list[float]:
    """Seconds between the refreshes of `bufmon watch --json ARGS`."""
    out = bufmon("watch", "--json", "proto:unix", *args)
    assert out.returncode == 0, out.stderr
    times = [json.loads(line)["time"] for line in out.stdout.splitlines()]
    return [b - a for a, b in pairwise(times)]


def test_slow_refreshes_stretch_the_default_interval_not_a_chosen_one(farm: Netns) -> None:
    # a refresh of 6,001 sockets costs well over 30 ms; with a share of 2% of one core
    # that means more than 1.5 s between refreshes (the default interval is 1 s)
    budget = ("--netns", farm.name, "--set", "refresh.cpu_share=0.02", "--count", "2")
    assert [gap > 1.5 for gap in gaps(*budget)] == [True]
    assert [gap < 1.3 for gap in gaps(*budget, "--interval", "1")] == [True]


async def test_the_view_shows_the_refresh_cost_and_the_interval_in_force(farm: Netns) -> None:
    app = BufmonApp(MonitorSource(farm.name), pace=Pace(cpu_share=0.02))
    async with app.run_test(size=(100, 30)) as pilot:
        while app.pace.cost is None:
            await pilot.pause(0.05)
        cost = app.pace.cost
        assert app.pace.in_force == pytest.approx(cost / 0.02) and app.pace.in_force > 1
        pace = app.header()[1]
        assert re.fullmatch(r"every [\d.]+s \(refresh [\d.]+s\)", pace)
        assert f"(refresh {cost:.2f}s)" in pace
        adapted = app.pace.in_force
        await pilot.press("minus")  # a shorter interval, the user's: it rules from now on
        assert app.pace.chosen and app.pace.in_force < adapted
        assert app.header()[1] == f"every {app.pace.in_force:g}s"
        await pilot.press("q")
