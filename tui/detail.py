"""The detail screen: one socket, refreshed in place; jumps to related sockets."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from bufmon.diagnosis.config import SendQueueFull
from bufmon.diagnosis.limits import Sysctls, local_peer
from collectors.model import Snapshot, Sock, UnixSock
from tui.detail_text import flags_text, history_text, memory_text, owner_text, tcp_text, title_text
from tui.help import HELP, Keymap, hint_line
from tui.messages import CloseAsked, CopyAsked, Drill, ExportAsked
from tui.meters import TextLine
from tui.source import Series, SockKey
from tui.state import accepted_scope, process_scope
from tui.unix_detail import peer_of, unix_text
from tui.view import Scope

BODY_GUTTER = 3  # the body's padding (1 + 1) and its scrollbar (1)
HINT = (
    ("back", "back"),
    ("process", "process's sockets"),
    ("accepted", "accepted"),
    ("close", "close"),
    ("copy", "copy"),
    ("export", "export"),
)  # (binding id, what its key does) on the hint line


def other_end(snapshot: Snapshot | None, s: Sock | None) -> Sock | None:
    """The socket on the other end of `s` when it is in the snapshot (UNIX or TCP)."""
    if snapshot is None or s is None:
        return None
    if isinstance(s, UnixSock):
        return peer_of(snapshot, s)
    return local_peer(snapshot.sockets, s)


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
        self,
        sock: Sock,
        send_rule: SendQueueFull | None = None,
        peer: Sock | None = None,
        sysctls: Sysctls | None = None,
        keymap: Keymap | None = None,
    ) -> None:
        super().__init__()
        self.keymap = keymap or {}
        self.sock = sock
        self.send_rule = send_rule
        self.peer = peer  # the socket's other end, when it is listed
        self.sysctls = sysctls or {}  # of the snapshot `sock` comes from
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
        yield Static(self.hint(), id="detail-hint")

    def hint(self) -> str:
        by_id = {b.id: b for b in self.BINDINGS if isinstance(b, Binding)}
        return hint_line(self.keymap, [*((by_id[i], what) for i, what in HINT), (HELP, "help")])

    def on_mount(self) -> None:
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def show(
        self, sock: Sock | None, peer: Sock | None = None, sysctls: Sysctls | None = None
    ) -> None:
        """New data for this socket; None when it vanished (the last values stay)."""
        self.closed = sock is None or sock.closed  # closed: a flagged one listed a while
        if sock is not None:
            self.sock, self.peer = sock, peer
            self.sysctls = sysctls or self.sysctls
        self._draw()

    def show_history(self, series: dict[str, Series]) -> None:
        self.series = series
        if self.is_mounted:
            self._draw()

    def _draw(self) -> None:
        s = self.sock
        self.title_line.show(title_text(s, self.closed))
        width = self.app.size.width - BODY_GUTTER  # known before the body's first layout
        peer = self.peer
        texts = {
            "flags": flags_text(s),
            "owner": owner_text(s, width),
            "memory": memory_text(s, width),
            "tcp": (
                unix_text(s, peer if isinstance(peer, UnixSock) else None, width)
                if isinstance(s, UnixSock)
                else tcp_text(s.info, width, self.series, self.send_rule, s, peer, self.sysctls)
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
