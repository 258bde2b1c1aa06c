"""What the screens ask of the app: they post these, the app decides and acts.

Screens never call into the app; each user intent is one message, handled in the
order the keys came.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message

from tui.view import Scope


class ScreenReady(Message):
    """The main screen is mounted: show the empty frame and start refreshing."""


class ScreenResized(Message):
    """The terminal changed size (the bottom screen hears it even when covered)."""


class FilterApplied(Message):
    """A valid filter expression was entered ("" clears the filter)."""

    def __init__(self, expr: str) -> None:
        super().__init__()
        self.expr = expr


class SortStep(Message):
    """Sort by the next (1) or previous (-1) column on screen."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step


class SortBy(Message):
    """Sort by `column` (a click on its title); the sorted column reverses instead."""

    def __init__(self, column: str) -> None:
        super().__init__()
        self.column = column


class Reverse(Message):
    """Reverse the sort order."""


class UnixToggle(Message):
    """Show or hide the idle UNIX sockets."""


class NextGrouping(Message):
    """Group by the next grouping (none, process, port, peer, namespace)."""


class Back(Message):
    """Leave the last drill-down, else clear the filter."""


class OpenRow(Message):
    """Open a row: a socket's details, or a group's members."""

    def __init__(self, row: Any) -> None:
        super().__init__()
        self.row = row


class Drill(Message):
    """Show only `scope`'s sockets (from a detail screen: return to the list first)."""

    def __init__(self, scope: Scope) -> None:
        super().__init__()
        self.scope = scope


class CloseAsked(Message):
    """Close these sockets, once the user confirms."""

    def __init__(self, socks: list[Any]) -> None:
        super().__init__()
        self.socks = socks


class CopyAsked(Message):
    """Copy this socket, in a format the user picks."""

    def __init__(self, sock: Any) -> None:
        super().__init__()
        self.sock = sock


class ExportAsked(Message):
    """Write a file of what is on screen: one socket's details, or (None) the list."""

    def __init__(self, sock: Any | None) -> None:
        super().__init__()
        self.sock = sock
