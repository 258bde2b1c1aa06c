"""Keep CPython's garbage collector off the refresh path: the one GC policy of bufmon.

While a refresh builds tens of thousands of acyclic objects, the cyclic GC is paused
(gc_paused). A full collection walks every tracked object and holds the GIL while it
does: with 40,000 sockets alive that is ~250 ms of frozen UI. After each refresh the
live objects move to the permanent generation (gc.freeze), which collections skip;
snapshots are acyclic, so reference counting still frees them when they are replaced.
Cyclic garbage that was alive at a freeze waits for the next thaw, every THAW_SECONDS.
Monitor.refresh does both, once per refresh, for every front end.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

THAW_SECONDS = 300.0
_thawing = False  # the last adoption thawed: stay unfrozen until the next (the GC is per process)


_pauses = 0  # threads inside gc_paused (the GC is per process)
_resume = False  # whether the GC was on when the first of them paused it
_pausing = threading.Lock()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while tens of thousands of acyclic objects are made.

    Each Sock would otherwise push the young generation over its threshold every
    few hundred sockets and make a dump 2-3x slower; refcounting still frees them.
    Threads may overlap (a refresh and a view): the GC resumes when the last one ends.
    """
    global _pauses, _resume
    with _pausing:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pausing:
            _pauses -= 1
            if _pauses == 0 and _resume:
                gc.enable()


def settle() -> None:
    """Freeze what a refresh made after its snapshot was adopted (a view's sorted and
    filtered lists of every socket): young collections would walk each of them, one
    cache miss per socket, twice before they age out of the young generations. Call it
    inside the gc_paused that made them, so no collection runs before. Not after a
    thaw: that one lasts until the next adoption, so cycles can be collected."""
    if not _thawing:
        gc.freeze()


class FrozenGarbage:
    def __init__(self) -> None:
        self.thawed_at = time.monotonic()

    def adopted(self) -> None:
        """A new snapshot is live: freeze, or once in a while thaw so cycles get freed."""
        global _thawing
        now = time.monotonic()
        _thawing = now - self.thawed_at >= THAW_SECONDS
        if _thawing:
            gc.unfreeze()
            self.thawed_at = now
        else:
            gc.freeze()
