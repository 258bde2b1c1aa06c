"""SVG snapshots of the TUI at 80x24 and 160x50.

The data is SYNTHETIC (tui.synthetic builds made-up Sock objects with a fixed seed) so
the pictures are deterministic: no clock is shown, the refresh interval is an hour so
only one refresh happens, and the filter prompt's cursor does not blink.
Regenerate with `pytest tests/test_tui_snapshots.py --snapshot-update`, then review.
"""

from __future__ import annotations

import pytest
from textual.pilot import Pilot

from tui.app import BufmonApp
from tui.detail import DetailScreen
from tui.synthetic import StaticSource, synthetic_snapshot

SIZES = [(80, 24), (160, 50)]
HOUR = 3600.0


def make_app() -> BufmonApp:
    return BufmonApp(StaticSource(synthetic_snapshot(300)), interval=HOUR)


async def loaded(pilot: Pilot[int]) -> None:
    app = pilot.app
    assert isinstance(app, BufmonApp)
    while app.main.socket_list.view is None:
        await pilot.pause(0.01)
    await app.workers.wait_for_complete()
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_main_screen(snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(), terminal_size=size, run_before=loaded)


@pytest.mark.parametrize("size", SIZES)
def test_grouped_by_process(snap_compare, size: tuple[int, int]) -> None:
    async def group(pilot: Pilot[int]) -> None:
        await loaded(pilot)
        await pilot.press("v")
        await loaded(pilot)
        while pilot.app.main.socket_list.view.request.group_by != "process":
            await pilot.pause(0.01)

    assert snap_compare(make_app(), terminal_size=size, run_before=group)


@pytest.mark.parametrize("size", SIZES)
def test_detail_screen(snap_compare, size: tuple[int, int]) -> None:
    async def open_worst(pilot: Pilot[int]) -> None:
        await loaded(pilot)
        await pilot.press("enter")
        # the detail screen opens once the app handled the key, then loads its history
        while not isinstance(pilot.app.screen, DetailScreen) or pilot.app.screen.series is None:
            await pilot.pause(0.01)
        await loaded(pilot)

    assert snap_compare(make_app(), terminal_size=size, run_before=open_worst)


@pytest.mark.parametrize("size", SIZES)
def test_help_screen(snap_compare, size: tuple[int, int]) -> None:
    async def help_(pilot: Pilot[int]) -> None:
        await loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=size, run_before=help_)


def test_filter_typo_shows_error_in_place(snap_compare) -> None:
    async def typo(pilot: Pilot[int]) -> None:
        await loaded(pilot)
        await pilot.press("slash", *"stat:listen")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=typo)


def test_no_color(snap_compare, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")  # read when the app is made
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=loaded)


def test_terminal_too_small(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=(50, 12))
