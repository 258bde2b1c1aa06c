"""Keys at any speed on a few thousand REAL sockets: a loopback farm in a network
namespace of the test's own, read through the real Monitor.

Keys typed at once arrive before the View they change: they must neither crash the
app nor get lost. On a host with ~100,000 sockets a View takes a few hundred ms; here
`slow_views` delays each View computation by as much (the one stand-in of this file:
a host that big cannot be made in a test), so that the race happens every run.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import Screen

import tui.viewwork
from bufmon.scenarios import Netns, Scenario
from tui.app import BufmonApp
from tui.detail import DetailScreen
from tui.main import MainScreen
from tui.source import MonitorSource
from tui.view import View

pytestmark = pytest.mark.root
PORTS = 8  # listeners, so that grouping by port has groups
PAIRS = 1500  # connections: 3,000 sockets plus the listeners
MASH_KEYS = 300
# every key of the list and detail screens but q (quit) and ctrl+s (writes a file)
KEYS = [
    "s",
    "S",
    "r",
    "v",
    "enter",
    "escape",
    "j",
    "k",
    "down",
    "up",
    "g",
    "G",
    "home",
    "end",
    "pagedown",
    "pageup",
    "space",
    "plus",
    "minus",
    "question_mark",
    "slash",
    "p",
    "a",
    "x",
    "1",
    "colon",
]
GAPS = (0.0, 0.0, 0.002, 0.01, 0.03, 0.06)  # seconds after a key
VIEW_DELAY = 0.2  # seconds: a View of ~100,000 sockets


class LoopbackFarm(Scenario):
    """PAIRS idle loopback connections spread over PORTS listeners."""

    def build(self) -> None:
        listeners = [self.listener(backlog=PAIRS) for _ in range(PORTS)]
        self.ports = [lst.getsockname()[1] for lst in listeners]
        for n in range(PAIRS):
            self.accept_client(listeners[n % PORTS], None)


@pytest.fixture(scope="module")
def farm() -> Iterator[tuple[Netns, LoopbackFarm]]:
    with Netns("tuikeys") as ns, LoopbackFarm(ns) as scenario:
        yield ns, scenario


@pytest.fixture
def slow_views(monkeypatch: pytest.MonkeyPatch) -> None:
    compute = tui.viewwork.compute_view

    def slow(*args: Any) -> View:
        time.sleep(VIEW_DELAY)
        return compute(*args)

    monkeypatch.setattr(tui.viewwork, "compute_view", slow)


async def until(pilot: Pilot[int], condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)


def started(app: BufmonApp) -> Callable[[], bool]:
    return lambda: app.main.socket_list.current and len(app.main.socket_list.rows) > 2 * PAIRS


@pytest.mark.usefixtures("slow_views")
async def test_group_then_sort_at_once(farm: tuple[Netns, LoopbackFarm]) -> None:
    ns, scenario = farm
    app = BufmonApp(MonitorSource(ns.name), interval=3600)  # one refresh: keys only
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, started(app))
        await pilot.press("v", "s", "v", "s", "S", "r")
        await until(pilot, lambda: app.main.socket_list.current)
        assert app.state.group_by == "port" and app.error is None
        listing = app.main.socket_list
        assert listing.view is not None and listing.view.request.sort == app.state.sort
        groups = {row.value: row.count for row in listing.rows}
        servers = sum(groups[("tcp", port)] for port in scenario.ports)
        assert servers == PAIRS + PORTS  # each listener and its accepted connections
        assert app.is_running


@pytest.mark.usefixtures("slow_views")
async def test_filter_then_enter_typed_at_once_opens_the_filtered_first_row(
    farm: tuple[Netns, LoopbackFarm],
) -> None:
    ns, scenario = farm
    port = scenario.ports[3]
    app = BufmonApp(MonitorSource(ns.name), interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, started(app))
        await pilot.press("slash", *f"port:{port}", "enter", "enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen))
        assert app.state.filter_expr == f"port:{port}"
        first = app.main.socket_list.rows[0]
        assert isinstance(app.screen, DetailScreen) and app.screen.sock.key == first.key
        assert port in (first.local_port, first.peer_port)


@pytest.mark.usefixtures("slow_views")
async def test_group_then_enter_at_once_opens_the_first_group(
    farm: tuple[Netns, LoopbackFarm],
) -> None:
    ns, _ = farm
    app = BufmonApp(MonitorSource(ns.name), interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, started(app))
        await pilot.press("v", "enter")  # Enter meant for the grouped list: a drill-down
        await until(pilot, lambda: bool(app.state.drills) and app.main.socket_list.current)
        assert isinstance(app.screen, MainScreen)
        (drill,) = app.state.drills
        assert drill.group_by == "process" and app.state.group_by is None
        assert drill.scope.label.startswith("process ")


@pytest.mark.usefixtures("slow_views")
async def test_key_mashing_keeps_the_app_alive(farm: tuple[Netns, LoopbackFarm]) -> None:
    ns, _ = farm
    seed = random.randrange(1 << 32)
    print(f"key mashing seed {seed}")  # shown on failure, to replay the sequence
    rng = random.Random(seed)
    app = BufmonApp(MonitorSource(ns.name), interval=0.5)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, started(app))
        for _ in range(MASH_KEYS):
            await pilot.press(rng.choice(KEYS))
            await asyncio.sleep(rng.choice(GAPS))
            assert app.is_running
        for _ in range(4):  # close the prompt, help and details; leave pause
            await pilot.press("escape")
        if app.paused:
            await pilot.press("space")
        await until(pilot, lambda: app.main.socket_list.current)
        assert app.is_running and isinstance(app.screen, MainScreen)
        assert app.error is None
        listing = app.main.socket_list
        assert listing.view is not None and listing.view.request.sort == app.state.sort


async def enter_then_at_once(
    ns: Netns, keys: list[str], done: Callable[[BufmonApp], bool]
) -> tuple[BufmonApp, Any, Screen[Any]]:
    """Enter on the first socket and `keys` typed at once, while the list's View is
    still coming: (the app, that socket's row, the screen on top once `done`)."""
    app = BufmonApp(MonitorSource(ns.name), interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, started(app))
        await pilot.press("r", "r")  # a View is being computed: the Enter and keys wait
        first = app.main.socket_list.rows[0]
        await pilot.press("enter", *keys)
        await until(pilot, lambda: done(app) and app.main.socket_list.current)
        await pilot.pause(0.5)  # nothing more happens
        return app, first, app.screen


@pytest.mark.usefixtures("slow_views")
async def test_enter_then_p_at_once_drills_to_the_sockets_process(
    farm: tuple[Netns, LoopbackFarm],
) -> None:
    app, first, top = await enter_then_at_once(farm[0], ["p"], lambda app: bool(app.state.drills))
    assert isinstance(top, MainScreen)
    (drill,) = app.state.drills
    assert drill.scope.label.startswith("process ")
    assert first.key in app.main.socket_list.view.index  # type: ignore[union-attr]


@pytest.mark.usefixtures("slow_views")
async def test_enter_then_escape_at_once_goes_back_to_the_list(
    farm: tuple[Netns, LoopbackFarm],
) -> None:
    app, _, top = await enter_then_at_once(
        farm[0], ["escape", "j"], lambda app: app.main.socket_list.cursor == 1
    )
    assert isinstance(top, MainScreen)
    assert not app.state.drills and app.state.filter_expr == ""
