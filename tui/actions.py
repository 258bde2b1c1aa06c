"""What the app does when asked to close, copy or export: ask, act, say what happened.

Closing runs in a worker thread (it may enter other namespaces); copying and exporting
are one small write each, done on the UI thread.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.notifications import SeverityLevel

from bufmon.actions import (
    COPY_FORMATS,
    EXPORT_FORMATS,
    CopyFormat,
    closable,
    tally,
    write_new,
)
from collectors.destroy import REFUSED, Outcome
from collectors.model import Sock
from collectors.untrusted import printable
from tui import clipboard
from tui.ask import ConfirmClose, CopyAs, ExportAs
from tui.fmt import one_line
from tui.source import MonitorSource
from tui.view import DEFAULT_SORT, compute_view

if TYPE_CHECKING:
    from tui.app import BufmonApp


class Actions:
    def __init__(self, app: BufmonApp) -> None:
        self.app = app

    def _say(
        self, message: str, severity: SeverityLevel = "information", timeout: float = 5
    ) -> None:
        """A notification; it may quote paths and names others chose: no markup."""
        self.app.notify(printable(message), severity=severity, timeout=timeout, markup=False)

    # --- close ------------------------------------------------------------------------

    def close(self, socks: list[Sock]) -> None:
        app = self.app
        source = app.source
        if not isinstance(source, MonitorSource):
            self._say("only the live view closes sockets", severity="warning")
            return
        targets = closable(socks)
        if not targets:
            what = "UNIX sockets cannot be closed" if socks else "no socket under the cursor"
            self._say(what, severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                app.run_worker(
                    lambda: self._close(source, targets),
                    thread=True,
                    group="close",
                    exit_on_error=False,
                )

        app.push_screen(ConfirmClose(targets, app.settings.keys), confirmed)

    def _close(self, source: MonitorSource, targets: list[Sock]) -> None:
        """Worker thread: close them, holding the source (no refresh meanwhile)."""
        try:
            with self.app.source_lock:
                done = source.close_sockets(targets)
        except Exception as exc:  # the question could not be asked: say why
            self.app.hand_over(self._failed, one_line(exc))
            return
        self.app.hand_over(self._closed, done)

    def _failed(self, reason: str) -> None:
        self._say(f"nothing was closed: {reason}", severity="error", timeout=10)

    def _closed(self, done: list[tuple[Sock, Outcome]]) -> None:
        refused = any(outcome.result == REFUSED for _, outcome in done)
        self._say(tally(done), severity="error" if refused else "information", timeout=10)
        listing = self.app.main.socket_list
        listing.marked -= {sock.key for sock, o in done if o.result != REFUSED}
        self.app.refresh_now()

    # --- copy -------------------------------------------------------------------------

    def copy(self, row: Any) -> None:
        if not isinstance(row, Sock):
            self._say("put the cursor on a socket (not a group) first", severity="warning")
            return

        def chosen(form: str | None) -> None:
            if form is not None:
                self._copy(row, COPY_FORMATS[form])

        self.app.push_screen(CopyAs(), chosen)

    def _copy(self, sock: Sock, form: CopyFormat) -> None:
        app = self.app
        text = form.render(sock)
        blocked = clipboard.blocked_by()
        if blocked is None:
            app.copy_to_clipboard(text)
            self._say(f"copied as {form.name} (OSC 52)")
            return
        try:
            path = write_new(Path.cwd(), "bufmon-copy", form.suffix, text + "\n")
        except OSError as exc:
            self._say(f"{blocked}, and no file either: {exc.strerror}", severity="error")
            return
        self._say(f"{blocked}: wrote {form.name} to {path}", timeout=15)

    # --- export -----------------------------------------------------------------------

    def export(self, sock: Sock | None) -> None:
        snapshot = self.app.snapshot
        if snapshot is None:
            self._say("nothing to export yet", severity="warning")
            return
        socks = [sock] if sock is not None else self._listed()

        def chosen(form: str | None) -> None:
            if form is None:
                return
            text = EXPORT_FORMATS[form](snapshot, socks)
            stem = "bufmon-socket" if sock is not None else "bufmon-view"
            try:
                path = write_new(Path.cwd(), stem, form, text)
            except OSError as exc:
                self._say(f"cannot export: {exc.strerror}", severity="error")
                return
            count = f"{len(socks)} socket{'' if len(socks) == 1 else 's'}"
            self._say(f"wrote {count} to {path}", timeout=15)

        self.app.push_screen(ExportAs(), chosen)

    def _listed(self) -> list[Sock]:
        """The list's sockets in its order; a grouped list gives its groups' sockets,
        worst first."""
        view = self.app.main.socket_list.view
        if view is None:
            return []
        if view.request.group_by is not None:
            flat = replace(view.request, group_by=None, sort=DEFAULT_SORT, reverse=False, hold=None)
            view = compute_view(view.snapshot, flat)
        return [row for row in view.rows if isinstance(row, Sock)]
