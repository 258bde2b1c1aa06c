"""UI-thread cost of the TUI at 40,000 sockets (run by hand: python bench/bench_tui.py).

The sockets are SYNTHETIC (tui.synthetic: made-up Sock objects, no kernel involved),
fed through the app's injectable source, so this measures the TUI alone: the cost of
applying a refresh on the UI thread, how long the event loop stalls, and how soon a
key press shows its effect. The app runs headless (App.run_test), so terminal output
time is not included.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual import events

from collectors.gcpolicy import FrozenGarbage
from collectors.model import Snapshot
from tui.app import BufmonApp
from tui.source import MonitorSource, Series, SockKey
from tui.synthetic import StaticSource, synthetic_snapshot

if TYPE_CHECKING:
    from bufmon.monitor import FirstLook

TARGET_REFRESH_MS = 30
TARGET_KEY_MS = 100
TARGET_FIRST_S = 1.5
HISTORY_S = 600  # seconds of per-socket history the detail screen plots


class CyclingSource(StaticSource):
    """Alternates between prepared snapshots, so every refresh brings new objects."""

    def __init__(self, *snapshots: Snapshot) -> None:
        super().__init__(*snapshots)
        self.gc = FrozenGarbage()

    def refresh(self, first_look: FirstLook | None = None) -> Snapshot:
        snap = self.snapshots[self.refreshes % len(self.snapshots)]
        self.refreshes += 1
        self.gc.adopted()  # the GC policy a real source (Monitor.refresh) keeps
        return snap

    def series(self, key: SockKey, field: str) -> Series:
        """A full window of history for the detail screen: a value every second for
        10 minutes, each a change (the most History ever hands out)."""
        end = self.snapshots[0].time
        return [
            (end - HISTORY_S + t, float((t * 7919 + self.refreshes) % 1000))
            for t in range(HISTORY_S)
        ]


class LoopLag:
    """Largest gap between 1 ms ticks of the UI event loop: what any frame could wait."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last - 0.001)
            last = now

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def reset(self) -> float:
        worst, self.worst = self.worst, 0.0
        return worst


class GcPauses:
    """The longest collection, from gc callbacks (a collection holds the GIL)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._start = 0.0

    def record(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.worst = max(self.worst, time.perf_counter() - self._start)


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> float:
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.0005)
    return time.perf_counter() - start


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


KEY_NAMES = {
    "s": "s (sort by next column)",
    "r": "r (reverse)",
    "S": "S (back to worst first)",
    "v": "v (group by process)",
    "filter": "filter applied",
    "clear": "filter cleared",
}


class Keys:
    """Sends keys to a running app and times each from the key reaching the app to the
    first frame drawn after its effect."""

    def __init__(self, app: BufmonApp) -> None:
        self.app = app
        self.frames: list[float] = []
        display = app._display

        def counted(screen, renderable):
            self.frames.append(time.perf_counter())
            display(screen, renderable)

        app._display = counted  # type: ignore[method-assign]

    async def _to_frame(self, start: float, done: Callable[[], bool]) -> float:
        await wait_until(done)
        effect = time.perf_counter()
        await wait_until(lambda: bool(self.frames) and self.frames[-1] >= effect, timeout=5.0)
        return self.frames[-1] - start

    async def press(self, key: str, done: Callable[[], bool]) -> float:
        start = time.perf_counter()
        character = key if len(key) == 1 else None
        self.app._driver.send_message(events.Key(key, character))  # type: ignore[union-attr]
        return await self._to_frame(start, done)

    async def filter(self, expr: str) -> float:
        """As the filter prompt applies an expression."""
        app = self.app
        start = time.perf_counter()
        app.update_state(app.state.filter(expr))
        return await self._to_frame(start, self.shown(app.state.generation))

    def shown(self, generation: int) -> Callable[[], bool]:
        listing = self.app.main.socket_list
        return lambda: listing.view is not None and listing.view.request.generation == generation

    async def round(self, pause: Callable[[], float] = lambda: 0.0) -> dict[str, float]:
        """s, r, S, v, a filter and its clearing, each timed; back to the plain list
        and worst first after. `pause()`: seconds to wait before each timed key."""
        app, took = self.app, {}
        for key in ("s", "r", "S", "v"):
            await asyncio.sleep(pause())
            took[key] = await self.press(key, self.shown(app.state.generation + 1))
        for _ in range(4):  # back to the plain list (untimed)
            await self.press("v", self.shown(app.state.generation + 1))
        await asyncio.sleep(pause())
        took["filter"] = await self.filter("state:estab rfill>50")
        await asyncio.sleep(pause())
        took["clear"] = await self.filter("")
        return took


def print_keys(rounds: list[dict[str, float]], title: str) -> None:
    print(f"{title} (target <= {TARGET_KEY_MS} ms; median, max of {len(rounds)}):")
    for key, name in KEY_NAMES.items():
        values = [r[key] for r in rounds]
        print(f"  {name:<26}{ms(statistics.median(values))} {ms(max(values))}")


async def run(count: int, refreshes: int) -> None:
    print(f"building {count} synthetic sockets ...")
    source = CyclingSource(synthetic_snapshot(count, seed=1), synthetic_snapshot(count, seed=2))
    gc.freeze()  # as a real source's refresh leaves its snapshot (collectors.gcpolicy)
    apply_times: list[float] = []
    gc_pauses = GcPauses()
    gc.callbacks.append(gc_pauses.record)
    app = BufmonApp(source, interval=0.25)
    original = app._collected

    def timed(result):
        started = time.perf_counter()
        original(result)
        apply_times.append(time.perf_counter() - started)

    app._collected = timed  # type: ignore[method-assign]
    launched = time.perf_counter()
    async with app.run_test(size=(160, 50)) as pilot:
        lag = LoopLag()
        lag.start()
        await wait_until(lambda: app.main.socket_list.view is not None)
        first = time.perf_counter() - launched
        await pilot.pause()
        listing = app.main.socket_list

        def refreshed(seen: int) -> Callable[[], bool]:
            return lambda: source.refreshes > seen and not app._collecting

        async def refresh_lags() -> list[float]:
            """The event loop's longest stall in each of `refreshes` refreshes."""
            lags = []
            for _ in range(refreshes):
                lag.reset()
                await wait_until(refreshed(source.refreshes))
                await pilot.pause()
                lags.append(lag.reset())
            return lags

        lags = await refresh_lags()
        keys_start = len(apply_times)

        keys = Keys(app)
        app.action_pause()  # keys alone, no refresh in between
        await wait_until(lambda: not app._collecting)
        await pilot.pause(0.3)
        move = await keys.press("j", lambda: listing.cursor == 1)
        await keys.press("g", lambda: listing.cursor == 0)
        rounds = max(1, refreshes // 2)
        paused = [await keys.round() for _ in range(rounds)]

        # keys while refreshes run back to back, each at a random moment of a refresh
        app.action_pause()  # resume
        rng = random.Random(1)
        busy = [await keys.round(lambda: rng.uniform(0.0, 0.6)) for _ in range(rounds)]
        app.action_pause()
        await wait_until(lambda: not app._collecting)
        await pilot.pause(0.3)
        detail = await keys.press("enter", lambda: type(app.screen).__name__ == "DetailScreen")

        # refreshes with the detail screen open: its plots redrawn every time
        detail_start = len(apply_times)
        app.action_pause()  # resume
        detail_lags = await refresh_lags()
        gc.callbacks.remove(gc_pauses.record)

    with_detail = sorted(apply_times[detail_start + 1 :])  # the first opens the screen
    applied = sorted(apply_times[1:keys_start])  # the first includes building the layout
    print(f"sockets: {count} (synthetic), refreshes measured: {len(lags)}")
    print(
        f"UI thread, apply one refresh: median {ms(statistics.median(applied))}, "
        f"max {ms(applied[-1])}  (target <= {TARGET_REFRESH_MS} ms)"
    )
    print(
        f"event loop stall during a refresh (includes GIL waits on the worker): "
        f"median {ms(statistics.median(lags))}, max {ms(max(lags))}"
    )
    print(
        f"with the detail screen open ({HISTORY_S} s of history plotted), apply one refresh: "
        f"median {ms(statistics.median(with_detail))}, max {ms(with_detail[-1])}  "
        f"(target <= {TARGET_REFRESH_MS} ms); event loop stall (includes the plots' paint): "
        f"median {ms(statistics.median(detail_lags))}, max {ms(max(detail_lags))}"
    )
    print(f"key -> next frame (target <= {TARGET_KEY_MS} ms):")
    print(f"  {'j (cursor)':<26}{ms(move)}")
    print(f"  {'Enter (detail screen)':<26}{ms(detail)}")
    print_keys(paused, "keys while paused")
    print_keys(busy, "keys while refreshes run back to back")
    print(f"longest garbage-collector pause: {ms(gc_pauses.worst)}")
    print(f"first screen with data: {first:.2f} s (target <= {TARGET_FIRST_S} s)")


async def real_launch() -> None:
    """Launch to first data with the real Monitor (this host's own sockets, not synthetic)."""
    launched = time.perf_counter()
    app = BufmonApp(MonitorSource("all"), interval=1.0)
    async with app.run_test(size=(160, 50)):
        await wait_until(lambda: app.main.socket_list.view is not None)
        took = time.perf_counter() - launched
        count = len(app.snapshot.sockets) if app.snapshot else 0
    print(f"first screen with data, real Monitor on this host ({count} sockets): {took:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=40_000)
    parser.add_argument("--refreshes", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(run(args.sockets, args.refreshes))
    asyncio.run(real_launch())


if __name__ == "__main__":
    main()
