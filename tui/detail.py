"""The detail screen: one socket, refreshed in place; jumps to related sockets."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from collectors.model import Sock
from tui.detail_text import flags_text, history_text, memory_text, owner_text, tcp_text, title_text
from tui.meters import TextLine
from tui.source import Series
from tui.view import Scope

if TYPE_CHECKING:
    from tui.app import BufmonApp

BODY_GUTTER = 3  # the body's padding (1 + 1) and its scrollbar (1)
HINT = "Esc back  p its process's sockets  a accepted connections (listener)  ? help"


class DetailScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "back to the list"),
        Binding("p", "process", "all sockets of this socket's process"),
        Binding("a", "accepted", "a listener's accepted connections"),
    ]

    def __init__(self, sock: Sock) -> None:
        super().__init__()
        self.sock = sock
        self.closed = False
        self.series: dict[str, Series] | None = None

    @property
    def key(self) -> Hashable:
        return self.sock.key

    def compose(self) -> ComposeResult:
        yield TextLine(id="detail-title")
        with VerticalScroll(id="detail-body"):
            for part in ("flags", "owner", "memory", "tcp", "history"):
                yield Static(id=f"detail-{part}", classes="detail-part")
        yield Static(HINT, id="detail-hint")

    def on_mount(self) -> None:
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def show(self, sock: Sock | None) -> None:
        """New data for this socket; None when it vanished (the last values stay)."""
        self.closed = sock is None or sock.closed  # closed: a flagged one listed a while
        if sock is not None:
            self.sock = sock
        self._draw()

    def show_history(self, series: dict[str, Series]) -> None:
        self.series = series
        if self.is_mounted:
            self._draw()

    def _draw(self) -> None:
        s = self.sock
        self.query_one("#detail-title", TextLine).show(title_text(s, self.closed))
        width = self.app.size.width - BODY_GUTTER  # known before the body's first layout
        parts = {
            "flags": flags_text(s),
            "owner": owner_text(s, width),
            "memory": memory_text(s, width),
            "tcp": tcp_text(s.info, width, self.series),
            "history": history_text(self.series, width),
        }
        for part, text in parts.items():
            self.query_one(f"#detail-{part}", Static).update(text)

    @property
    def bufmon(self) -> BufmonApp:
        return cast("BufmonApp", self.app)

    def action_process(self) -> None:
        process = self.sock.process
        if process is None:
            self.notify("no process is known for this socket", severity="warning")
            return
        pid = process.pid
        self.bufmon.drill(
            Scope(
                f"process {process.comm}/{pid}",
                lambda s: s.process is not None and s.process.pid == pid,
            )
        )

    def action_accepted(self) -> None:
        s = self.sock
        if not s.is_listener:
            self.notify("only a listener has accepted connections", severity="warning")
            return
        netns, port = s.netns, s.local_port
        self.bufmon.drill(
            Scope(
                f"accepted on {port}",
                lambda c: (
                    c.local_port == port
                    and c.netns == netns
                    and c.proto == "tcp"
                    and c.state != "LISTEN"
                ),
            )
        )
