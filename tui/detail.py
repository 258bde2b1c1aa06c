"""The detail screen: one socket, refreshed in place; jumps to related sockets."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from bufmon.diagnosis.config import SendQueueFull
from bufmon.diagnosis.limits import LIMIT_FIELDS, Sysctls, local_peer
from bufmon.textout import percent
from collectors.model import Snapshot, Sock, UnixSock
from tui.detail_text import flags_text, memory_text, owner_text, tcp_text, title_text
from tui.fmt import human_bytes, human_rate, human_usec
from tui.help import HELP, Keymap, hint_line
from tui.messages import CloseAsked, CopyAsked, Drill, ExportAsked
from tui.meters import TextLine
from tui.plots import Mark, PlotPanel, PlotSpec, plot_rows
from tui.source import Series, SockKey
from tui.state import accepted_scope, process_scope
from tui.trail import Past
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
FIXED_ROWS = 12  # title, hint, flags, flag rows and axis: what the plots leave room for
# One line each: a field of the socket's History plotted (HISTORY_FIELDS follows).
DETAIL_PLOTS: tuple[PlotSpec, ...] = (
    PlotSpec("receive r/rb", "rfill", percent, top=1.0, also=("recv_q", human_bytes)),
    PlotSpec("send w/tb", "sfill", percent, top=1.0, also=("send_q", human_bytes)),
    PlotSpec("rtt", "rtt", human_usec),
    PlotSpec("rx bytes/s", "rx_rate", human_bytes),
    PlotSpec("tx bytes/s", "tx_rate", human_bytes),
    PlotSpec("retrans seg/s", "retr_rate", human_rate),
)
# what a detail screen reads of a socket's history: its plots' fields, and the chrono
# counters behind its "Limited by" (increments)
HISTORY_FIELDS = tuple(
    dict.fromkeys(
        [
            *(spec.field for spec in DETAIL_PLOTS),
            *(spec.also[0] for spec in DETAIL_PLOTS if spec.also),
            *LIMIT_FIELDS,
        ]
    )
)


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
        self.past: Past | None = None
        # kept, not queried: a screen torn down while it mounts has no children to find
        self.title_line = TextLine(id="detail-title")
        self.parts = {
            part: Static(id=f"detail-{part}", classes="detail-part")
            for part in ("flags", "owner", "memory", "tcp")
        }
        self.plots = PlotPanel(DETAIL_PLOTS, id="detail-plots")
        self.body = VerticalScroll(id="detail-body")
        self.shown: dict[str, Text] = {}  # what each part shows

    @property
    def key(self) -> SockKey:
        return self.sock.key

    def compose(self) -> ComposeResult:
        yield self.title_line
        with self.body:
            yield from self.parts.values()
        yield Static(self.hint(), id="detail-hint")

    def hint(self) -> str:
        by_id = {b.id: b for b in self.BINDINGS if isinstance(b, Binding)}
        return hint_line(self.keymap, [*((by_id[i], what) for i, what in HINT), (HELP, "help")])

    def on_mount(self) -> None:
        self._draw(plot=True)

    def on_resize(self) -> None:
        self._draw(plot=True)

    def show(
        self,
        sock: Sock | None,
        peer: Sock | None = None,
        sysctls: Sysctls | None = None,
        past: Past | None = None,
    ) -> None:
        """New data for this socket; None when it vanished (the last values stay). The
        plots are drawn again only with a new `past`: they cost the most to paint."""
        self.closed = sock is None or sock.closed  # closed: a flagged one listed a while
        if sock is not None:
            self.sock, self.peer = sock, peer
            self.sysctls = sysctls or self.sysctls
        if past is not None:
            self.past = past
        self._draw(plot=past is not None)

    @property
    def series(self) -> dict[str, Series] | None:
        """The socket's history shown, once it came."""
        return None if self.past is None else self.past.series

    def show_history(self, past: Past) -> None:
        self.past = past
        if self.is_mounted:
            self._draw(plot=True)

    def _draw(self, plot: bool) -> None:
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
        }
        for part, text in texts.items():
            self._update(part, text)
        if plot and self.past is not None:
            self._plot(self.past)

    def _update(self, part: str, text: Text) -> None:
        """A part's new text; a layout (a full repaint) only when its height may change:
        the Blocks wrap themselves, so their height is their line count."""
        shown = self.shown.get(part)
        if shown == text:
            return
        self.shown[part] = text
        lines = text.plain.count("\n")
        resized = part == "flags" or shown is None or shown.plain.count("\n") != lines
        self.parts[part].update(text, layout=resized)

    def _plot(self, past: Past) -> None:
        marks: dict[str, list[Mark]] = {}
        min_rtt = None if self.sock.info is None else self.sock.info.get("min_rtt")
        if min_rtt:
            marks["rtt"] = [("min", float(min_rtt))]
        rows = plot_rows(self.app.size.height, len(DETAIL_PLOTS), FIXED_ROWS)
        if not self.plots.is_attached and self.body.is_attached:
            self.body.mount(self.plots, after=self.parts["flags"])  # at the first history:
            # Enter shows the details without waiting for the plots' widgets
        self.plots.show(past, rows, marks)

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
