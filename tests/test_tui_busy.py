"""Keys while a refresh runs, the prefetched grouping, the work kept between snapshots.

Sockets are SYNTHETIC (tui.synthetic): what is tested is when the app computes and
shows Views, not what the kernel says. The order of events (a refresh that lands while
a key's View is computed: on a host of 200,000 sockets both take hundreds of ms) is
forced with gates, the one stand-in here: a race that rare cannot be timed otherwise.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from textual.pilot import Pilot

import collectors.checkpoint as checkpoints
import tui.app
import tui.view
import tui.viewwork
from bufmon.filters import with_unix
from bufmon.monitor import Monitor
from bufmon.scenarios import Netns
from collectors.gcpolicy import gc_paused
from collectors.model import Snapshot
from collectors.netns import NamespaceSet
from collectors.procs import ProcessIndex
from tui.app import BufmonApp
from tui.keysfirst import KeysFirst
from tui.source import EarlyRefresh, MonitorSource
from tui.synthetic import StaticSource, synthetic_snapshot
from tui.view import (
    DEFAULT_SORT,
    SOCKET_SORTS,
    Stale,
    Unwanted,
    View,
    ViewRequest,
    compute_view,
)

if TYPE_CHECKING:
    from bufmon.monitor import FirstLook


async def until(pilot: Pilot[int], condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.02)


class GatedSource(StaticSource):
    """The second and later refreshes wait for `gate` (a refresh of a big host)."""

    def __init__(self, *snapshots: Snapshot) -> None:
        super().__init__(*snapshots)
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def refresh(self, first_look: FirstLook | None = None) -> Snapshot:
        if self.refreshes:
            self.waiting.set()
            assert self.gate.wait(10)
        return super().refresh()


async def test_a_key_shows_at_once_when_a_refresh_lands_while_its_view_is_computed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = synthetic_snapshot(300, seed=1), synthetic_snapshot(300, seed=2)
    source = GatedSource(first, second)
    app = BufmonApp(source, interval=3600)
    key_view_gate = threading.Event()
    compute = tui.viewwork.compute_view

    def gated(snapshot: Snapshot, request: ViewRequest, unwanted: Unwanted) -> View:
        if snapshot is first and request.reverse:  # the key's View, on the rows on screen
            assert key_view_gate.wait(10)
        return compute(snapshot, request, unwanted)

    monkeypatch.setattr(tui.viewwork, "compute_view", gated)
    async with app.run_test(size=(100, 30)) as pilot:
        listing = app.main.socket_list
        await until(pilot, lambda: listing.view is not None and app.snapshot is first)
        shown: list[tuple[Snapshot, int]] = []
        set_view = listing.set_view

        def recorded(view: View) -> None:
            shown.append((view.snapshot, view.request.generation))
            set_view(view)

        monkeypatch.setattr(listing, "set_view", recorded)
        app.refresh_now()  # its request is taken now, before the key
        await until(pilot, source.waiting.is_set)
        await pilot.press("r")
        generation = app.state.generation
        source.gate.set()  # the refresh lands while the key's View is computed
        await until(pilot, lambda: app.snapshot is second)
        key_view_gate.set()
        await until(pilot, lambda: (second, generation) in shown)
        assert shown[0] == (first, generation)  # the key's rows, not held back
        assert listing.view is not None and listing.view.snapshot is second


async def test_the_next_grouping_is_ready_before_v(monkeypatch: pytest.MonkeyPatch) -> None:
    groupings: list[str] = []
    group = tui.view.group

    def counted(socks: list[Any], by: str, unwanted: Unwanted) -> list[Any]:
        groupings.append(by)
        return group(socks, by, unwanted)

    monkeypatch.setattr(tui.view, "group", counted)
    app = BufmonApp(StaticSource(synthetic_snapshot(300)), interval=3600)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: groupings == ["process"])  # prefetched after the frame
        await pilot.press("v")
        listing = app.main.socket_list
        await until(pilot, lambda: listing.current and app.state.group_by == "process")
        assert listing.view is not None and listing.view.request.group_by == "process"
        await until(pilot, lambda: groupings == ["process", "port"])  # and the next one


def pairs(count: int) -> list[socket.socket]:
    """`count` connected loopback pairs (in the namespace the caller runs this in)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = [listener]
    for _ in range(count):
        client = socket.create_connection(listener.getsockname())
        held += (client, listener.accept()[0])
    return held


@contextlib.contextmanager
def with_pairs(purpose: str, count: int) -> Iterator[Netns]:
    """A namespace of the test's own holding `count` connected loopback pairs."""
    with Netns(purpose) as ns:
        held = ns.run(pairs, count)
        try:
            yield ns
        finally:
            for sock in held:
                sock.close()


@pytest.mark.root
def test_the_first_look_has_the_sockets_before_their_processes() -> None:
    """Real sockets in a namespace of the test's own, read by the real Monitor."""
    with with_pairs("firstlook", 20) as ns:
        monitor = Monitor(ns.name)
        looks: list[tuple[Snapshot, list[Any]]] = []

        def look(early: Snapshot) -> None:
            looks.append((early, [s.process for s in early.sockets]))

        snap = monitor.refresh(first_look=look)
        monitor.close()
    ((early, processes),) = looks
    assert [s.key for s in early.sockets] == [s.key for s in snap.sockets]
    assert len(early.sockets) == 41 and processes == [None] * 41  # not attributed yet
    assert early.system is snap.system and early is not snap
    assert all(s.process is not None and s.process.pid == os.getpid() for s in snap.sockets)


@pytest.mark.root
@pytest.mark.parametrize("early", [False, True], ids=["refreshed-by-the-app", "started-first"])
async def test_the_first_screen_comes_before_the_processes(
    monkeypatch: pytest.MonkeyPatch, early: bool
) -> None:
    """The process scan is slowed as on a host of 200,000 sockets (the stand-in: the
    first screen is posted, not awaited, so it must come well before the refresh ends).
    `started-first`: the refresh begun before the app, as `bufmon` does (tui.launch)."""
    attribute = ProcessIndex.attribute

    def slow(self: ProcessIndex, *args: Any) -> None:
        time.sleep(0.5)
        attribute(self, *args)

    monkeypatch.setattr(ProcessIndex, "attribute", slow)
    with with_pairs("firstscreen", 20) as ns:
        source = MonitorSource(ns.name)
        if early:
            source.start()
        app = BufmonApp(source, interval=3600)
        shown: list[tuple[Snapshot, bool]] = []  # each View shown: processes known?
        listing = app.main.socket_list
        set_view = listing.set_view

        def recorded(view: View) -> None:
            rows = list(view.rows)
            shown.append((view.snapshot, all(s.process is not None for s in rows)))
            set_view(view)

        listing.set_view = recorded  # type: ignore[method-assign]
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: len(shown) == 2)
            (early_look, early_processes), (full, processes) = shown
            assert app.snapshot is full and early_look is not full and len(full.sockets) == 41
            assert not early_processes and processes


def test_work_is_kept_for_the_snapshot_on_screen_and_the_next_only() -> None:
    a, b, c = (synthetic_snapshot(60, seed=seed) for seed in (1, 2, 3))
    plain = ViewRequest(0, None, DEFAULT_SORT, False, None, ())
    on_screen = compute_view(a, plain)
    compute_view(b, plain)  # a refresh prepares b while a is on screen
    again = compute_view(a, plain)  # a key on the rows on screen: nothing recomputed
    assert again.rows._order is on_screen.rows._order
    compute_view(c, plain)  # the next refresh: b, the older of the two, is dropped
    kept = {id(f.snapshot) for f in tui.view._kept}
    assert kept == {id(a), id(c)}


def test_the_gc_resumes_when_the_last_of_overlapping_pauses_ends() -> None:
    """A refresh and a view pause it from two threads; the first to end must not
    resume it under the other."""
    assert gc.isenabled()
    entered, leave = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            entered.set()
            assert leave.wait(10)

    thread = threading.Thread(target=other)
    with gc_paused():
        thread.start()
        assert entered.wait(10)
    assert not gc.isenabled()  # the other thread still builds
    leave.set()
    thread.join()
    assert gc.isenabled()


def test_a_view_made_stale_stops_and_keeps_nothing_half_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    snap = synthetic_snapshot(300, seed=4)
    monkeypatch.setattr(tui.view, "CHUNK", 50)
    monkeypatch.setattr(tui.view, "_kept", ())
    request = ViewRequest(0, with_unix(""), "peer", False, None, ())
    asked = itertools.count()
    with pytest.raises(Stale):  # unwanted after its first chunk
        compute_view(snap, request, lambda: next(asked) >= 1)
    assert next(asked) == 2  # it stopped at the first check that said so
    key, descending = SOCKET_SORTS["peer"]
    kept = [s for s in snap.sockets if request.predicate and request.predicate(s)]
    expected = sorted(kept, key=key, reverse=descending)
    assert [s.key for s in compute_view(snap, request).rows] == [s.key for s in expected]


async def test_a_key_during_a_refresh_stops_the_refreshs_view_and_shows_its_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`r` while a refresh runs: the refresh's View of the old state stops at its first
    check (it would share the GIL with the key's), and the rows of the new snapshot
    in the key's order follow."""
    first, second = synthetic_snapshot(300, seed=1), synthetic_snapshot(300, seed=2)
    source = GatedSource(first, second)
    app = BufmonApp(source, interval=3600)
    stopped: list[tuple[Snapshot, int]] = []
    compute = tui.viewwork.compute_view

    def recorded(snapshot: Snapshot, request: ViewRequest, unwanted: Unwanted) -> View:
        try:
            return compute(snapshot, request, unwanted)
        except Stale:
            stopped.append((snapshot, request.generation))
            raise

    monkeypatch.setattr(tui.viewwork, "compute_view", recorded)
    async with app.run_test(size=(100, 30)) as pilot:
        listing = app.main.socket_list
        await until(pilot, lambda: listing.current and app.snapshot is first)
        old = app.state.generation
        app.refresh_now()  # its request is taken now, before the key
        await until(pilot, source.waiting.is_set)
        await pilot.press("r")
        await until(pilot, lambda: listing.current)  # the key's rows, on `first`
        source.gate.set()
        await until(pilot, lambda: listing.view is not None and listing.view.snapshot is second)
        assert stopped == [(second, old)]
        view = listing.view
        assert view.request.generation == app.state.generation and app.state.reverse
        key, descending = SOCKET_SORTS[DEFAULT_SORT]
        kept = [s for s in second.sockets if app.state.predicate and app.state.predicate(s)]
        expected = sorted(kept, key=key, reverse=not descending)
        assert [r.key for r in view.rows] == [s.key for s in expected]


def test_an_early_refresh_hands_over_its_first_look_before_or_after_the_taker_comes() -> None:
    looked, full = synthetic_snapshot(5, seed=1), synthetic_snapshot(5, seed=2)
    for look_first in (True, False):
        go = threading.Event()

        def refresh(first_look: FirstLook, go: threading.Event = go) -> Snapshot:
            assert go.wait(10)
            first_look(looked)
            return full

        early = EarlyRefresh(refresh)
        if look_first:
            go.set()
            while not early.done():  # the look came and went before anyone took it
                time.sleep(0.01)
        else:  # the look comes while the taker waits for the refresh
            threading.Timer(0.2, go.set).start()
        seen: list[Snapshot] = []
        assert early.take(seen.append) is full
        assert seen == [looked]


def test_an_early_refresh_raises_its_error_in_the_taker() -> None:
    def refresh(first_look: FirstLook) -> Snapshot:
        raise PermissionError("no netlink here")

    with pytest.raises(PermissionError, match="no netlink here"):
        EarlyRefresh(refresh).take(None)


@pytest.mark.root
def test_the_monitor_source_starts_its_first_refresh_before_it_is_asked() -> None:
    """Real sockets in a namespace of the test's own, read by the real Monitor."""
    with with_pairs("earlyrefresh", 10) as ns:
        source = MonitorSource(ns.name)
        source.start()
        looks: list[Snapshot] = []
        snap = source.refresh(looks.append)
        again = source.refresh()  # the next refresh is an ordinary one
        source.close()
    ((early,),) = [looks]
    assert [s.key for s in early.sockets] == [s.key for s in snap.sockets]
    assert len(snap.sockets) == 21 and again is not snap and len(again.sockets) == 21
    assert all(s.process is not None for s in snap.sockets)


async def test_the_prefetch_counts_in_what_a_refresh_costs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pace keeps all the work of a refresh within its share of a core: the CPU the
    prefetch after a frame spent is added to the next refresh's cost."""
    spent: list[float] = []
    costs: list[float] = []
    prefetched, collected = BufmonApp._prefetched, BufmonApp._collected

    def counted(self: BufmonApp, cpu: float) -> None:
        spent.append(cpu)
        prefetched(self, cpu)

    def refreshed(self: BufmonApp, result: Any) -> None:
        costs.append(result.cost)
        collected(self, result)

    monkeypatch.setattr(BufmonApp, "_prefetched", counted)
    monkeypatch.setattr(BufmonApp, "_collected", refreshed)
    app = BufmonApp(StaticSource(synthetic_snapshot(5000)), interval=3600)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: bool(spent) and not app._prefetching)
        before = sum(spent)  # every prefetch so far came after the first refresh
        assert before > 0 and app.pace.cost == costs[0]
        app.refresh_now()
        await until(pilot, lambda: len(costs) == 2 and app.pace.cost != costs[0])
        assert app.pace.cost == pytest.approx(costs[1] + before)


@pytest.mark.root
def test_a_dump_held_back_between_receives_goes_on_whole() -> None:
    """Real sockets: the checkpoint comes between the dump's receives (several for 601
    sockets), and a dump held back there for a while still brings every socket."""
    with with_pairs("dumppause", 300) as ns:
        namespaces = NamespaceSet(ns.name)
        calls = 0

        def checkpoint() -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                time.sleep(0.2)  # held back, as while a key's View is computed

        held = namespaces.dump(checkpoint)
        plain = namespaces.dump()
        namespaces.close()
    assert calls >= 2  # between receives, not once a dump
    assert len(held) == 601 and {s.key for s in held} == {s.key for s in plain}


@pytest.mark.root
def test_the_refresh_passes_over_the_sockets_step_through_checkpoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Real sockets: rates and flags, each a pass over every socket, call the checkpoint
    between steps (a key's View may hold the refresh back midway), with the same flags."""
    monkeypatch.setattr(checkpoints, "STEP", 50)
    calls = 0

    def checkpoint() -> None:
        nonlocal calls
        calls += 1

    with with_pairs("passsteps", 300) as ns:
        monitor, plain = Monitor(ns.name), Monitor(ns.name)
        for m in (monitor, plain):
            m.refresh()
        snap, expected = monitor.collect(), plain.refresh()
        count = len(snap.sockets)
        steps = -(-count // 50) - 1  # checkpoints between steps of one pass
        calls = 0
        monitor.rates.measure(snap.sockets, snap.time, checkpoint)
        assert calls == steps
        calls = 0
        monitor.diagnoser.evaluate(snap, checkpoint=checkpoint)
        assert calls == steps
        monitor.close()
        plain.close()
    assert count == 601
    assert [s.flags for s in snap.sockets] == [s.flags for s in expected.sockets]


def waits_seen(app: BufmonApp, events: list[str]) -> type[KeysFirst]:
    """KeysFirst noting in `events` when the refresh's or the prefetch's waits for a
    key's View, and when it goes on."""

    class Seen(KeysFirst):
        def __call__(self) -> None:
            if app._views_idle.is_set():
                return super().__call__()
            who = "refresh" if self is app.source.checkpoint else "prefetch"
            events.append(f"{who} waits")
            super().__call__()
            events.append(f"{who} goes on")

    return Seen


def held_views(
    monkeypatch: pytest.MonkeyPatch,
    events: list[str],
    gate: threading.Event,
    asked: Callable[[ViewRequest], bool],
) -> None:
    """Views of the requests `asked` picks wait for `gate` (the stand-in for a View of
    200,000 sockets: hundreds of ms)."""
    compute = tui.viewwork.compute_view

    def gated(snapshot: Snapshot, request: ViewRequest, unwanted: Unwanted) -> View:
        if not asked(request):
            return compute(snapshot, request, unwanted)
        events.append("view starts")
        assert gate.wait(10)
        view = compute(snapshot, request, unwanted)
        events.append("view done")
        return view

    monkeypatch.setattr(tui.viewwork, "compute_view", gated)


@pytest.mark.root
@pytest.mark.parametrize(
    ("hold", "last_cost"),
    [(0.5, None), (1.5, 3.0)],
    ids=["within-the-least-budget", "past-it-as-long-as-a-refresh-costs"],
)
async def test_a_refresh_waits_at_a_checkpoint_while_a_keys_view_is_computed(
    monkeypatch: pytest.MonkeyPatch, hold: float, last_cost: float | None
) -> None:
    """Real sockets read by the real Monitor. A key's View is held and a refresh is
    asked for meanwhile: the refresh waits at its next checkpoint, the View ends first,
    then the refresh goes on; the cost that paces the refreshes leaves the wait out.
    The refresh waits past VIEW_WAIT (1 s) when the last refresh cost more (a big host,
    where a few keys' Views would spend a fixed budget)."""
    events: list[str] = []
    gate = threading.Event()
    costs: list[tuple[float, float]] = []  # (cost, seconds from its start to its end)
    collected = BufmonApp._collected

    def timed(self: BufmonApp, result: tui.app.Collected) -> None:
        costs.append((result.cost, time.monotonic() - result.started))
        collected(self, result)

    held_views(monkeypatch, events, gate, lambda request: request.reverse)
    monkeypatch.setattr(BufmonApp, "_collected", timed)
    with with_pairs("keysfirst", 300) as ns:
        app = BufmonApp(MonitorSource(ns.name), interval=3600)
        monkeypatch.setattr(tui.viewwork, "KeysFirst", waits_seen(app, events))
        async with app.run_test(size=(100, 30)) as pilot:
            listing = app.main.socket_list
            await until(
                pilot,
                lambda: bool(costs) and listing.current and app._prefetched_for is not None,
            )
            await until(pilot, lambda: not app._prefetching)
            first = app.snapshot
            if last_cost is not None:
                app.pace.took(last_cost)
            await pilot.press("r")
            await until(pilot, lambda: events == ["view starts"])
            app.refresh_now()
            await until(pilot, lambda: "refresh waits" in events)
            held = time.monotonic()
            await pilot.pause(hold)  # the View takes a while
            assert app._collecting and app.snapshot is first  # the refresh has not ended
            gate.set()
            released = time.monotonic()
            await until(pilot, lambda: app.snapshot is not first and listing.current)
            assert listing.view is not None and listing.view.snapshot is app.snapshot
    # in this order; the prefetch after the key's frame may start Views of its own
    # before the refresh's thread is back (a busy host)
    order = ["view starts", "refresh waits", "view done", "refresh goes on"]
    assert [events.index(e) for e in order] == sorted(events.index(e) for e in order)
    cost, took = costs[1]
    assert took - cost >= released - held  # it waited at least while the test held the View


class HeldGrouping:
    """The prefetch's grouping by process holds after its first chunk (`holding` set)
    until `go` is set; `made` names each grouping begun."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.made: list[str] = []
        self.holding, self.go = threading.Event(), threading.Event()
        self._group = tui.view.group
        monkeypatch.setattr(tui.view, "CHUNK", 50)
        monkeypatch.setattr(tui.view, "group", self.group)

    def group(self, socks: list[Any], by: str, unwanted: Unwanted) -> list[Any]:
        self.made.append(by)
        checks = itertools.count()

        def checked() -> bool:
            if by == "process" and next(checks) == 1:
                self.holding.set()
                assert self.go.wait(10)
            return unwanted()

        return self._group(socks, by, checked)


async def test_a_prefetched_grouping_waits_for_a_keys_new_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`s` while the prefetch builds the next grouping: the grouping is of use later
    (its rows are the same), so it goes on, but only once the key's View is done."""
    events: list[str] = []
    gate = threading.Event()
    app = BufmonApp(StaticSource(synthetic_snapshot(300)), interval=3600)
    monkeypatch.setattr(tui.viewwork, "KeysFirst", waits_seen(app, events))
    held_views(monkeypatch, events, gate, lambda r: r.group_by is None and r.sort != DEFAULT_SORT)
    grouping = HeldGrouping(monkeypatch)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, grouping.holding.is_set)
        await pilot.press("s")
        await until(pilot, lambda: events == ["view starts"])
        grouping.go.set()
        await until(pilot, lambda: "prefetch waits" in events)
        gate.set()
        await until(pilot, lambda: "prefetch goes on" in events)
        await until(pilot, lambda: not app._prefetching)
    assert events[:4] == ["view starts", "prefetch waits", "view done", "prefetch goes on"]
    assert grouping.made == ["process"]  # not stopped: made once, kept for `v`


async def test_v_while_the_prefetch_builds_that_grouping_waits_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`v` while the prefetch builds the grouping `v` shows: the prefetch goes on (it
    does not wait for the key's View, which waits for this grouping) and the grouping
    is made once."""
    app = BufmonApp(StaticSource(synthetic_snapshot(300)), interval=3600)
    grouping = HeldGrouping(monkeypatch)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, grouping.holding.is_set)
        await pilot.press("v")
        grouping.go.set()
        listing = app.main.socket_list
        await until(pilot, lambda: listing.current and app.state.group_by == "process")
        assert listing.view is not None and listing.view.request.group_by == "process"
    assert grouping.made[0] == "process" and "process" not in grouping.made[1:]


def test_a_checkpoint_holds_work_back_at_most_its_budget_in_all() -> None:
    """A key's View that never ends (never idle) delays the work, never stops it."""
    keys_first = KeysFirst(threading.Event(), budget=0.1)
    keys_first()
    waited = keys_first.waited
    keys_first()
    keys_first()
    assert waited >= 0.1 and keys_first.waited == waited  # no wait once the budget is spent
