"""The view with UNIX sockets, driven by keys on real sockets in a namespace of the
test's own: idle ones hidden until `x`, a full listener always shown, the pair's
other end in the details."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator

import pytest
from test_tui_pilot import INTERVAL, rows, settled, until

from bufmon.scenarios import Netns
from collectors.model import Sock, UnixSock
from collectors.netns import entered
from tui.app import BufmonApp
from tui.detail import DetailScreen
from tui.source import MonitorSource

pytestmark = pytest.mark.root


@pytest.fixture
def scene() -> Iterator[tuple[Netns, str, list[socket.socket]]]:
    with Netns("unixtui") as ns, tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/fpm.sock"
        held: list[socket.socket] = []
        with entered(f"/run/netns/{ns.name}"):
            listener = socket.socket(socket.AF_UNIX)
            listener.bind(path)
            listener.listen(1)
            held.append(listener)
            for _ in range(2):  # backlog 1: two wait, the queue is full
                client = socket.socket(socket.AF_UNIX)
                client.setblocking(False)
                client.connect(path)
                held.append(client)
            left, right = socket.socketpair()
            left.sendall(b"p" * 4321)
            held += (left, right)
        try:
            yield ns, path, held
        finally:
            for sock in held:
                sock.close()


def unix_rows(app: BufmonApp) -> list[UnixSock]:
    return [r for r in rows(app) if isinstance(r, UnixSock)]


async def test_x_shows_idle_unix_sockets_and_details_show_the_pair(
    scene: tuple[Netns, str, list[socket.socket]],
) -> None:
    ns, path, held = scene
    app = BufmonApp(MonitorSource(ns.name), interval=INTERVAL)
    async with app.run_test(size=(120, 36)) as pilot:
        # the full listener is flagged at once: shown although UNIX sockets are hidden
        await until(pilot, lambda: [s.path for s in unix_rows(app)] == [path], timeout=15)
        await pilot.press("x")
        await until(pilot, settled(app))
        await until(pilot, lambda: len(unix_rows(app)) == len(held))
        pair_end = os.fstat(held[-1].fileno()).st_ino  # `right`: 4321 bytes wait in it
        inodes = [r.inode if isinstance(r, Sock) else 0 for r in rows(app)]
        app.main.socket_list.move_to(inodes.index(pair_end))
        await pilot.pause(0.1)
        assert app.main.socket_list.cursor_row.inode == pair_end
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen))
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        shown = str(screen.query_one("#detail-tcp").render())
        assert "type stream" in shown and "not connected" not in shown
        assert f"inode {os.fstat(held[-2].fileno()).st_ino}" in shown  # the other end
        assert "Recv-Q 0" in shown and "Send-Q" in shown
        await pilot.press("escape", "x")
        await until(pilot, lambda: [s.path for s in unix_rows(app)] == [path])
