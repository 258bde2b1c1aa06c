"""The Views the list shows, computed off the UI thread: a key's View, and the prefetch
after each frame of what the next keys ask for (tui/app.py's BufmonApp mixes this in).

A key acts on the snapshot on screen while a refresh prepares the next; a View that the
state made stale stops within a chunk; a refresh and the prefetch wait at checkpoints
while a key's View is computed (tui/keysfirst.py).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual.app import App

from bufmon.pacing import Pace
from collectors.gcpolicy import gc_paused, settle
from collectors.model import Snapshot
from tui.fmt import one_line
from tui.keysfirst import KeysFirst
from tui.state import ListState
from tui.view import Stale, Unwanted, View, ViewRequest, compute_view, wanted

if TYPE_CHECKING:
    from tui.main import MainScreen

VIEW_WAIT = 1.0  # seconds a refresh or a prefetch may wait in all for keys' Views, at least


def settled_view(snapshot: Snapshot, request: ViewRequest, unwanted: Unwanted = wanted) -> View:
    """compute_view with the GC paused, its lists of every socket frozen before any
    collection could walk them (collectors.gcpolicy). Raises Stale once `unwanted()`."""
    with gc_paused():
        view = compute_view(snapshot, request, unwanted)
        settle()
    return view


class ViewWork(App[int]):
    """Computing and prefetching the list's Views; the app keeps the state and snapshot."""

    main: MainScreen
    pace: Pace
    state: ListState
    snapshot: Snapshot | None
    error: str | None
    _adopted: int  # snapshots adopted so far
    _first_looking: bool  # the first refresh's sockets are shown, the rest not yet

    def __init__(self) -> None:
        super().__init__()
        self._ending = threading.Event()  # the app is closing: work in progress stops
        self._viewing = False
        self._view_again = False
        self._views_idle = threading.Event()  # no key's View is being computed or painted
        self._views_idle.set()
        self._prefetching = False
        self._prefetched_for: tuple[int, ListState] | None = None  # (adopted, state)
        self._prefetch_spent = 0.0  # CPU seconds of prefetching since the last refresh

    def _show_state(self) -> None:
        """The header and status line (the app's)."""
        raise NotImplementedError

    def keys_first(self) -> KeysFirst:
        """A checkpoint for one piece of background work (a refresh, a prefetch): it
        waits while a key's View is computed or painted, in all at most as long as the
        last refresh cost (VIEW_WAIT at least): keys at most double a refresh's time. On
        a big host a few keys' Views (a new grouping: a pass over every socket) outlast
        a fixed budget, and the keys after them would share the GIL with the refresh."""
        return KeysFirst(self._views_idle, max(VIEW_WAIT, self.pace.cost or 0.0))

    def hand_over(self, callback: Callable[..., None], *args: Any) -> None:
        """Call `callback` on the UI thread, unless the app has ended."""
        if self._ending.is_set():  # a refresh that outlived the app: nobody to show it
            return
        with contextlib.suppress(RuntimeError):  # the app closed meanwhile
            self.call_from_thread(callback, *args)

    def _show_view(self, view: View | None) -> None:
        """Show a finished View of the current state: of the newest snapshot, or of an
        older one while the list shows nothing of the current state yet (a key pressed
        during a refresh acts on the rows on screen at once). Then compute the current
        View of the newest snapshot if that was not it, else prefetch."""
        listing = self.main.socket_list
        current = view is not None and view.request.generation == self.state.generation
        newest = view is not None and view.snapshot is self.snapshot
        if view is not None and current and (newest or not listing.current):
            listing.set_view(view)
            self._show_state()
        if current and newest:
            self.call_after_refresh(self._prefetch)  # once this View is on screen
        else:
            self._recompute()

    def _unwanted(self, request: ViewRequest) -> Unwanted:
        """Whether a View of `request` is of no use any more: the state moved on (from a
        worker thread: the View stops within a chunk, leaving the GIL to the next)."""
        return lambda: self.state.generation != request.generation or self._ending.is_set()

    def _recompute(self) -> None:
        """Filter/sort/group again, in a worker thread: the snapshot on screen while the
        list does not show the current state (its work is kept: a key acts on the rows
        on screen at once), else the newest. A View in progress that the state made
        stale stops early; this one starts when it has."""
        if self.snapshot is None:
            return
        if self._viewing:
            self._view_again = True
            return
        self._viewing = True
        self._views_idle.clear()
        snapshot, request = self.snapshot, self.state.request()
        shown = self.main.socket_list.view
        if shown is not None and shown.request.generation != request.generation:
            snapshot = shown.snapshot
        self.run_worker(
            lambda: self._compute(snapshot, request), thread=True, group="view", exit_on_error=False
        )

    def _compute(self, snapshot: Snapshot, request: ViewRequest) -> None:
        view: View | None = None
        try:
            view = settled_view(snapshot, request, self._unwanted(request))
        except Stale:  # the View of the new state follows
            pass
        except Exception as exc:  # shown as a notice; the previous view stays
            self.error = one_line(exc)
        self.hand_over(self._computed, view)

    def _computed(self, view: View | None) -> None:
        self._viewing = False
        again, self._view_again = self._view_again, False
        if view is not None:
            self._show_view(view)  # computes again if the state or snapshot moved on
        elif again:
            self._recompute()
        self._show_state()
        if not self._viewing:  # the work held back goes on once the View is painted
            self.call_after_refresh(self._views_painted)

    def _views_painted(self) -> None:
        if not self._viewing:  # else a new key's View is on its way
            self._views_idle.set()

    def _prefetch(self) -> None:
        """In a worker thread: the grouping `v` shows next, the orders `s` and `S` show next,
        then the list Esc goes back to, for the snapshot on screen, so those keys find
        them done (a grouping, new sort keys, a filter are each a Python pass over every
        socket). Each waits while a key's View is computed, and what a refresh or key
        made useless stops; what a key asks for goes on (the key's View waits for it)."""
        shown, snapshot, state = self.main.socket_list.view, self.snapshot, self.state
        if (
            self._prefetching
            or self._first_looking
            or shown is None
            or shown.snapshot is not snapshot
        ):
            return  # a first look's sockets are replaced soon: prefetch for the refresh
        if shown.request.generation != state.generation:
            return  # a key's View is on its way; prefetch after it
        if self._prefetched_for == (self._adopted, state):
            return  # done, or stopped by a key asking for what it was doing
        self._prefetching, self._prefetched_for = True, (self._adopted, state)
        ids = self.main.socket_list.column_ids(state.group_by)
        nearby = [state.next_grouping(), state.sort_step(1, ids), state.sort_step(-1, ids)]
        if state.back() is not state:  # Esc: the drill-down left, else the filter cleared
            nearby.append(state.back())
        requests = [s.request() for s in nearby]
        doing = requests[0]

        keys_first = self.keys_first()

        def judged() -> bool | None:
            """True: of no use any more (a refresh came, or a key after which it is not
            wanted); False: go on (no key, or one whose View waits for this work); None:
            go on after the key's View (which needs none of this, so waits for nothing
            this holds): a grouping goes on past a key's new order of the same rows."""
            now = self.state
            if self.snapshot is not snapshot or self._ending.is_set():
                return True
            if now is state or now.request().same_view(doing):
                return False
            if doing.group_by == state.group_by:
                return True  # an order no key asked for
            same_rows = (now.predicate, now.scopes, now.group_by) == (
                state.predicate,
                state.scopes,
                state.group_by,
            )
            return None if same_rows else True

        def unwanted() -> bool:
            verdict = judged()
            if verdict is None:
                keys_first()
                verdict = judged()
            return verdict is True

        def run() -> None:
            nonlocal doing
            spent = 0.0  # CPU seconds: waits and the GIL's turns left out
            with contextlib.suppress(Exception):  # Stale; the View itself reports errors
                for doing in requests:
                    keys_first()  # a key's View first (no lock held here)
                    started = time.thread_time()
                    try:
                        settled_view(snapshot, doing, unwanted)
                    finally:
                        spent += time.thread_time() - started
            self.hand_over(self._prefetched, spent)

        self.run_worker(run, thread=True, group="prefetch", exit_on_error=False)

    def _prefetched(self, spent: float) -> None:
        """Prefetch again if a refresh or a key stopped this one and its View is on
        screen already. What it spent counts in the next refresh's cost: the pace keeps
        all the work of a refresh within its share of a core."""
        self._prefetching = False
        self._prefetch_spent += spent
        self._prefetch()
