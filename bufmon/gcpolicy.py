"""Keep CPython's full garbage collections off the refresh path.

A full collection walks every tracked object and holds the GIL while it does: with
40,000 sockets alive that is ~250 ms of frozen UI. After each refresh the live objects
move to the permanent generation (gc.freeze), which collections skip; snapshots are
acyclic, so reference counting still frees them when they are replaced. Cyclic garbage
that was alive at a freeze waits for the next thaw, every THAW_SECONDS.
"""

from __future__ import annotations

import gc
import time

THAW_SECONDS = 300.0


class FrozenGarbage:
    def __init__(self) -> None:
        self.thawed_at = time.monotonic()

    def adopted(self) -> None:
        """A new snapshot is live: freeze, or once in a while thaw so cycles get freed."""
        now = time.monotonic()
        if now - self.thawed_at >= THAW_SECONDS:
            gc.unfreeze()
            self.thawed_at = now
        else:
            gc.freeze()
