"""SVG snapshots of the TUI at 80x24 and 160x50.

The data is SYNTHETIC (tui.synthetic builds made-up Sock objects with a fixed seed) so
the pictures are deterministic: no clock is shown, the refresh interval is an hour so
only one refresh happens, and the filter prompt's cursor does not blink.
Regenerate with `pytest tests/test_tui_snapshots.py --snapshot-update`, then review.
"""

from __future__ import annotations

import pytest
from textual.pilot import Pilot

from bufmon.filters import with_unix
from tui.app import BufmonApp
from tui.detail import DetailScreen
from tui.state import ListState
from tui.synthetic import FOCUS_PORT, RecordedSource, StaticSource, synthetic_snapshot
from tui.system import SystemScreen

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


async def opened(pilot: Pilot[int], key: str, screen: type[DetailScreen | SystemScreen]) -> None:
    """Press `key` on the loaded list; wait until `screen` is on top with its history."""
    await loaded(pilot)
    await pilot.press(key)
    # the screen opens once the app handled the key, then loads its history
    while not isinstance(pilot.app.screen, screen) or pilot.app.screen.past is None:
        await pilot.pause(0.01)
    await loaded(pilot)
    # the plots are drawn on their first layout (a detail screen mounts them then)
    while "now" not in str(pilot.app.screen.plots.axis.render()):
        await pilot.pause(0.01)
    await pilot.pause()


async def open_detail(pilot: Pilot[int]) -> None:
    await opened(pilot, "enter", DetailScreen)


@pytest.mark.parametrize("size", SIZES)
def test_detail_screen(snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(), terminal_size=size, run_before=open_detail)


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


def recorded_app(filter_expr: str = "") -> BufmonApp:
    """Ten minutes of recorded history (tui.synthetic.RecordedSource): a reader stalled
    and recovered (its flag rose and cleared), tcp_mem pressure came and went."""
    state = ListState(predicate=with_unix("")).filter(filter_expr)
    return BufmonApp(RecordedSource(), interval=HOUR, state=state)


@pytest.mark.parametrize("size", SIZES)
def test_detail_plots_of_a_stall_that_cleared(snap_compare, size: tuple[int, int]) -> None:
    app = recorded_app(f"sport:{FOCUS_PORT}")
    assert snap_compare(app, terminal_size=size, run_before=open_detail)


def test_detail_plots_without_colour(snap_compare, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")  # the flag interval is marks, not only colour
    app = recorded_app(f"sport:{FOCUS_PORT}")
    assert snap_compare(app, terminal_size=(80, 24), run_before=open_detail)


@pytest.mark.parametrize("size", SIZES)
def test_system_screen(snap_compare, size: tuple[int, int]) -> None:
    async def system(pilot: Pilot[int]) -> None:
        await opened(pilot, "y", SystemScreen)

    assert snap_compare(recorded_app(), terminal_size=size, run_before=system)
