"""The detail screen: one socket, refreshed in place; jumps to related sockets."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from bufmon.diagnosis.config import SendQueueFull
from collectors.model import Sock, UnixSock
from tui.detail_text import flags_text, history_text, memory_text, owner_text, tcp_text, title_text
from tui.messages import CloseAsked, CopyAsked, Drill, ExportAsked
from tui.meters import TextLine
from tui.source import Series, SockKey
from tui.state import accepted_scope, process_scope
from tui.unix_detail import unix_text
from tui.view import Scope

BODY_GUTTER = 3  # the body's padding (1 + 1) and its scrollbar (1)
HINT = "Esc back  p process's sockets  a accepted  K close  c copy  e export  ? help"


class DetailScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "back to the list", id="back"),
        Binding("p", "process", "all sockets of this socket's process", id="process"),
        Binding("a", "accepted", "a listener's accepted connections", id="accepted"),
        Binding("K", "close", "close this socket (asks first; needs root)", id="close"),
        Binding("c", "copy", "copy it: text, ss command or JSON (OSC 52, else a file)", id="copy"),
        Binding("e", "export", "export these details as JSON or CSV to a new file", id="export"),
    ]

    def __init__(
        self, sock: Sock, send_rule: SendQueueFull | None = None, peer: UnixSock | None = None
    ) -> None:
        super().__init__()
        self.sock = sock
        self.send_rule = send_rule
        self.peer = peer  # a UNIX socket's other end, when it is listed
        self.closed = False
        self.series: dict[str, Series] | None = None
        # kept, not queried: a screen torn down while it mounts has no children to find
        self.title_line = TextLine(id="detail-title")
        self.parts = {
            part: Static(id=f"detail-{part}", classes="detail-part")
            for part in ("flags", "owner", "memory", "tcp", "history")
        }

    @property
    def key(self) -> SockKey:
        return self.sock.key

    def compose(self) -> ComposeResult:
        yield self.title_line
        with VerticalScroll(id="detail-body"):
            yield from self.parts.values()
        yield Static(HINT, id="detail-hint")

    def on_mount(self) -> None:
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def show(self, sock: Sock | None, peer: UnixSock | None = None) -> None:
        """New data for this socket; None when it vanished (the last values stay)."""
        self.closed = sock is None or sock.closed  # closed: a flagged one listed a while
        if sock is not None:
            self.sock, self.peer = sock, peer
        self._draw()

    def show_history(self, series: dict[str, Series]) -> None:
        self.series = series
        if self.is_mounted:
            self._draw()

    def _draw(self) -> None:
        s = self.sock
        self.title_line.show(title_text(s, self.closed))
        width = self.app.size.width - BODY_GUTTER  # known before the body's first layout
        texts = {
            "flags": flags_text(s),
            "owner": owner_text(s, width),
            "memory": memory_text(s, width),
            "tcp": (
                unix_text(s, self.peer, width)
                if isinstance(s, UnixSock)
                else tcp_text(s.info, width, self.series, self.send_rule)
            ),
            "history": history_text(self.series, width),
        }
        for part, text in texts.items():
            self.parts[part].update(text)

    def action_back(self) -> None:
        self.dismiss()  # not awaited: keys typed after it run on the list

    # the drill-downs return whether they asked the app (keys typed after wait for it)

    def action_process(self) -> bool:
        return self._drill(process_scope(self.sock), "no process is known for this socket")

    def action_accepted(self) -> bool:
        return self._drill(accepted_scope(self.sock), "only a listener has accepted connections")

    def _drill(self, scope: Scope | None, missing: str) -> bool:
        if scope is None:
            self.notify(missing, severity="warning")
            return False
        return self.post_message(Drill(scope))

    # the actions return whether they asked the app, as the drill-downs do

    def action_close(self) -> bool:
        return self.post_message(CloseAsked([self.sock]))

    def action_copy(self) -> bool:
        return self.post_message(CopyAsked(self.sock))

    def action_export(self) -> bool:
        return self.post_message(ExportAsked(self.sock))
