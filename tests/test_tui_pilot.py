"""The TUI driven by keys (Textual Pilot) on REAL sockets: a stalled reader in a
network namespace of the test's own, read through the real Monitor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from textual.pilot import Pilot

from bufmon.scenarios import Netns, StalledReader
from collectors.model import Snapshot, Sock
from tui.app import BufmonApp, TooSmallScreen
from tui.ask import ConfirmClose
from tui.chooser import ColumnChooser
from tui.detail import DetailScreen
from tui.help import HelpScreen, key_label
from tui.main import MainScreen
from tui.plots import MARKED
from tui.socklist import SocketList
from tui.source import MonitorSource
from tui.synthetic import StaticSource, synthetic_snapshot
from tui.view import GroupRow

if TYPE_CHECKING:
    from bufmon.monitor import FirstLook

pytestmark = pytest.mark.root
INTERVAL = 0.5
STALL_TIMEOUT = 20.0  # the stalled_reader flag needs 5 s of no progress


@pytest.fixture
def stalled() -> Iterator[tuple[Netns, StalledReader]]:
    with Netns("tui") as ns, StalledReader(ns) as scenario:
        yield ns, scenario


async def until(pilot: Pilot[int], condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)


def rows(app: BufmonApp) -> list[Sock | GroupRow]:
    return app.main.socket_list.rows


def settled(app: BufmonApp) -> Callable[[], bool]:
    """The list shows what the current state asks for."""
    return lambda: app.main.socket_list.current


def server_of(scenario: StalledReader) -> Callable[[Sock | GroupRow], bool]:
    port = scenario.server_port
    return lambda r: isinstance(r, Sock) and r.local_port == port and r.state == "ESTAB"


async def test_keys_on_a_stalled_reader(stalled: tuple[Netns, StalledReader]) -> None:
    ns, scenario = stalled
    app = BufmonApp(MonitorSource(ns.name), interval=INTERVAL)
    async with app.run_test(size=(120, 36)) as pilot:
        listing: SocketList = app.main.socket_list
        is_server = server_of(scenario)

        # worst first: the stalled reader rises to the top once flagged
        await until(
            pilot,
            lambda: (
                bool(rows(app))
                and is_server(rows(app)[0])
                and any(f.kind == "stalled_reader" for f in rows(app)[0].flags)
            ),
            STALL_TIMEOUT,
        )
        assert "FLAGS▼" in str(app.main.titles.render_line(0).text)

        # filter in the CLI language; Enter applies it
        await pilot.press("slash", *"state:listen", "enter")
        await until(pilot, settled(app))
        assert [r.state for r in rows(app)] == ["LISTEN"]
        # a typo shows its error under the prompt and keeps the old filter; Esc clears
        await pilot.press("slash", "ctrl+u", *"stat:listen")
        error = app.main.query_one("#filter-error")
        assert error.display and "unknown field 'stat'" in str(error.render())
        await pilot.press("enter")
        assert app.state.filter_expr == "state:listen"
        await pilot.press("escape")
        await until(pilot, lambda: settled(app)() and len(rows(app)) == 3)
        assert app.state.filter_expr == "" and not app.main.filter_bar.display

        # sort: next column, then reversed; the arrow follows
        await pilot.press("s")
        await until(pilot, settled(app))
        sorted_by = app.state.sort
        assert sorted_by != "flags"
        title_row = str(app.main.titles.render_line(0).text)
        await pilot.press("r")
        await until(pilot, settled(app))
        assert app.state.reverse and title_row != str(app.main.titles.render_line(0).text)
        await pilot.press("S", "g")  # back to worst first, cursor on top
        await until(pilot, lambda: settled(app)() and app.state.sort == "flags")

        # pause: no refresh, and the cursor stays on its socket across a resume
        await pilot.press("j")
        chosen = listing.cursor_key
        await pilot.press("space")
        frozen = app.snapshot
        await pilot.pause(INTERVAL * 3)
        assert app.snapshot is frozen and listing.cursor_key == chosen
        assert "PAUSED" in str(app.main.meters.render())
        await pilot.press("space")
        await until(pilot, lambda: app.snapshot is not frozen)
        assert listing.cursor_key == chosen

        # drill down: details of the stalled reader, then all sockets of its process
        await pilot.press("g")
        await until(pilot, lambda: is_server(listing.cursor_row))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen))
        flags = str(app.screen.query_one("#detail-flags").render())
        assert "stalled_reader" in flags and "advice" in flags
        await until(pilot, lambda: app.screen.series is not None)
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, MainScreen) and settled(app)())
        pid = listing.cursor_row.process.pid
        assert len(rows(app)) == 3 and all(r.process.pid == pid for r in rows(app))
        await pilot.press("escape")
        await until(pilot, lambda: settled(app)() and not app.state.drills)

        # from the listener to its accepted connection
        listener = next(i for i, r in enumerate(rows(app)) if r.state == "LISTEN")
        listing.move_to(listener)
        await pilot.press("enter", "a")
        await until(pilot, lambda: isinstance(app.screen, MainScreen) and settled(app)())
        assert [r.local_port for r in rows(app)] == [scenario.server_port]
        assert rows(app)[0].state == "ESTAB"
        await pilot.press("escape")

        # group by process: one group of three, Enter shows its members, Esc returns
        await pilot.press("v")
        await until(pilot, lambda: settled(app)() and app.state.group_by == "process")
        assert [(r.count, r.worst) for r in rows(app)] == [(3, 3)]
        await pilot.press("enter")
        await until(pilot, lambda: settled(app)() and app.state.group_by is None)
        assert len(rows(app)) == 3 and app.state.drills
        await pilot.press("escape")
        await until(pilot, lambda: settled(app)() and app.state.group_by == "process")

        # help lists every key of every screen
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = str(app.screen.query_one("#help-text").render())
        for binding in [
            *BufmonApp.BINDINGS,
            *MainScreen.BINDINGS,
            *SocketList.BINDINGS,
            *DetailScreen.BINDINGS,
            *ColumnChooser.BINDINGS,
            *ConfirmClose.BINDINGS,
        ]:
            assert key_label(binding.key) in shown and binding.description in shown
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)

        # + and - change the interval
        await pilot.press("plus")
        assert app.pace.interval == 1.0 and app.pace.chosen
        await pilot.press("minus", "minus")
        assert app.pace.interval == 0.25
        await pilot.press("q")
    assert app.return_code in (0, None)


async def test_sockets_and_namespace_vanish_without_killing_the_app() -> None:
    with Netns("tuigone") as ns:
        scenario = StalledReader(ns).__enter__()
        app = BufmonApp(MonitorSource(ns.name), interval=INTERVAL)
        async with app.run_test(size=(100, 30)) as pilot:
            is_server = server_of(scenario)
            await until(pilot, lambda: any(map(is_server, rows(app))))
            index = next(i for i, r in enumerate(rows(app)) if is_server(r))
            app.main.socket_list.move_to(index)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, DetailScreen))
            scenario.close()  # the socket disappears while its details are open
            await until(pilot, lambda: app.screen.closed)
            assert "CLOSED" in str(app.screen.query_one("#detail-title").render())
            await pilot.press("escape")
            ns.close()  # now the namespace itself goes away
            refreshes = app.snapshot
            await until(pilot, lambda: app.snapshot is not refreshes or app.error is not None)
            await pilot.pause(INTERVAL * 3)
            assert app.is_running and isinstance(app.screen, MainScreen)
            assert not any(map(is_server, rows(app)))


async def test_detail_plots_follow_a_live_stalled_reader(
    stalled: tuple[Netns, StalledReader],
) -> None:
    ns, scenario = stalled
    app = BufmonApp(MonitorSource(ns.name), interval=INTERVAL)
    async with app.run_test(size=(120, 40)) as pilot:
        # the server side's details, opened before its flag rises
        await pilot.press("slash", *f"sport:{scenario.server_port} state:estab", "enter")
        await until(pilot, lambda: settled(app)() and len(rows(app)) == 1)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen))
        detail = app.screen
        assert isinstance(detail, DetailScreen)
        await until(pilot, lambda: detail.past is not None)
        assert detail.past is not None
        opened = detail.past.now
        receive = detail.plots.plots[0]
        assert receive.spec.field == "rfill"

        # every refresh moves the plots on; the last column is the fill the socket has
        await until(pilot, lambda: detail.past is not None and detail.past.now > opened + 1.0)
        fill = detail.sock.recv_fill
        assert fill is not None and fill > 0.3  # the unread data fills the buffer
        assert receive.line.data[-2] == pytest.approx(fill, abs=0.02)

        # the stall's flag rises while the screen is open: its row runs up to now
        def stall_row() -> str:
            return str(detail.plots.flags.render())

        await until(pilot, lambda: "STALL" in stall_row(), STALL_TIMEOUT)
        assert stall_row().rstrip().endswith(MARKED)
        assert detail.past is not None
        span = next(s for s in detail.past.spans if s.kind == "stalled_reader")
        assert span.end == detail.past.now and span.start < span.end
        assert str(detail.plots.axis.render()).rstrip().endswith("now")


class BrokenSource(StaticSource):
    """Fails every other refresh (an injected source: a refresh error on demand)."""

    def refresh(self, first_look: FirstLook | None = None) -> Snapshot:
        snap = super().refresh()
        if self.refreshes % 2 == 0:
            raise OSError("netlink dump interrupted")
        return snap


async def test_a_refresh_error_is_a_notice_line() -> None:
    # A real dump cannot be made to fail on cue; this source fails on purpose.
    app = BufmonApp(BrokenSource(synthetic_snapshot(50)), interval=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.error is not None)
        assert "refresh failed: OSError: netlink dump interrupted" in str(app.main.notices.render())
        await until(pilot, lambda: app.error is None)
        assert app.is_running and len(rows(app)) == 50


async def test_too_small_until_resized() -> None:
    app = BufmonApp(StaticSource(synthetic_snapshot(20)), interval=3600)
    async with app.run_test(size=(50, 12)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, TooSmallScreen)
        assert "Terminal too small: 50x12" in str(app.screen.query_one("#too-small").render())
        await pilot.resize_terminal(100, 30)
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        await until(pilot, lambda: len(rows(app)) == 20)


async def test_new_rows_do_not_move_the_cursor() -> None:
    first = synthetic_snapshot(40)
    second = synthetic_snapshot(60)  # same 40 sockets, 20 more, some of them worse
    app = BufmonApp(StaticSource(first, second), interval=3600)
    async with app.run_test(size=(100, 30)) as pilot:
        listing = app.main.socket_list
        await until(pilot, lambda: len(rows(app)) == 40)
        await pilot.press("j", "j", "j")
        key, order = listing.cursor_key, [r.key for r in rows(app)]
        app._start_refresh()
        await until(pilot, lambda: len(rows(app)) == 60)
        assert listing.cursor_key == key and listing.cursor == 3
        assert [r.key for r in rows(app)][:40] == order  # held while away from the top
        assert "order held" in str(app.main.status.render())
        await asyncio.sleep(0)
