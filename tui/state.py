"""What the socket list should show, as one immutable value, and the ways it changes.

Every transition returns a new `ListState` with the next generation (or the same state
when nothing changes), so a View computed for an older state is recognised by its
generation and never shown.
Nothing here touches Textual: the transitions are plain functions of the state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from bufmon.filters import Predicate, with_unix
from collectors.model import Sock
from tui.view import DEFAULT_SORT, GROUP_ORDER, Positions, Scope, ViewRequest, sorts_for


@dataclass(frozen=True, slots=True)
class DrillDown:
    scope: Scope
    group_by: str | None  # the grouping to return to on Esc


@dataclass(frozen=True, slots=True)
class ListState:
    filter_expr: str = ""
    predicate: Predicate | None = None
    sort: str = DEFAULT_SORT
    reverse: bool = False
    group_by: str | None = None
    drills: tuple[DrillDown, ...] = ()
    generation: int = 0  # bumped by every transition
    show_unix: bool = False  # every UNIX socket, not only flagged ones (filters.with_unix)

    @property
    def descending(self) -> bool:
        return sorts_for(self.group_by)[self.sort][1] != self.reverse

    @property
    def scopes(self) -> tuple[Scope, ...]:
        return tuple(d.scope for d in self.drills)

    def request(self, hold: Positions | None = None) -> ViewRequest:
        """What to compute for this state; `hold` keeps an order the user is reading."""
        return ViewRequest(
            self.generation,
            self.predicate,
            self.sort,
            self.reverse,
            self.group_by,
            self.scopes,
            hold,
        )

    def _next(self, **changes: Any) -> ListState:
        state = replace(self, generation=self.generation + 1, **changes)
        if state.sort not in sorts_for(state.group_by):  # a grouping change may drop the column
            state = replace(state, sort=DEFAULT_SORT, reverse=False)
        return state

    def filter(self, expr: str) -> ListState:
        """Raises FilterError and keeps nothing of a bad expression."""
        expr = expr.strip()
        if expr == self.filter_expr:
            return self
        return self._next(filter_expr=expr, predicate=with_unix(expr, self.show_unix))

    def unix_toggled(self) -> ListState:
        show = not self.show_unix
        return self._next(show_unix=show, predicate=with_unix(self.filter_expr, show))

    def sorted_by(self, column: str) -> ListState:
        if column not in sorts_for(self.group_by):
            return self
        return self._next(sort=column, reverse=False)

    def sort_step(self, step: int, column_ids: Sequence[str]) -> ListState:
        """The next (step 1) or previous (-1) sortable column among `column_ids`, the
        columns on screen for this state's grouping."""
        ids = [c for c in column_ids if c in sorts_for(self.group_by)]
        if not ids:
            return self
        position = ids.index(self.sort) if self.sort in ids else -1
        return self.sorted_by(ids[(position + step) % len(ids)])

    def reversed(self) -> ListState:
        return self._next(reverse=not self.reverse)

    def next_grouping(self) -> ListState:
        position = GROUP_ORDER.index(self.group_by)
        return self._next(group_by=GROUP_ORDER[(position + 1) % len(GROUP_ORDER)])

    def drill(self, scope: Scope) -> ListState:
        """Only `scope`'s sockets, ungrouped; `back` returns to this grouping."""
        return self._next(drills=(*self.drills, DrillDown(scope, self.group_by)), group_by=None)

    def back(self) -> ListState:
        """Leave the last drill-down, else clear the filter, else change nothing (self)."""
        if self.drills:
            return self._next(drills=self.drills[:-1], group_by=self.drills[-1].group_by)
        if self.filter_expr:
            return self._next(filter_expr="", predicate=with_unix("", self.show_unix))
        return self


def process_scope(sock: Sock) -> Scope | None:
    """All sockets of `sock`'s process (None: no process is known)."""
    process = sock.process
    if process is None:
        return None
    pid = process.pid
    return Scope(
        f"process {process.comm}/{pid}",
        lambda s: s.process is not None and s.process.pid == pid,
    )


def accepted_scope(sock: Sock) -> Scope | None:
    """A listener's accepted connections (None: `sock` is no listener)."""
    if not sock.is_listener:
        return None
    netns, port = sock.netns, sock.local_port
    return Scope(
        f"accepted on {port}",
        lambda c: (
            c.local_port == port and c.netns == netns and c.proto == "tcp" and c.state != "LISTEN"
        ),
    )
