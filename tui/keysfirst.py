"""Keys first: work in the background (a refresh, the prefetch after a frame) waits at
its checkpoints while a key's View is computed, so that View has the GIL to itself; on
a host of 200,000 sockets each is hundreds of ms of Python."""

from __future__ import annotations

import threading
import time


class KeysFirst:
    """One piece of background work's checkpoint (collectors.checkpoint): waits while
    `idle` is clear (a key's View is being computed), `budget` seconds at most in all,
    so that the work is held back, never stuck."""

    __slots__ = ("_idle", "budget", "waited")

    def __init__(self, idle: threading.Event, budget: float) -> None:
        self._idle = idle
        self.budget = budget
        self.waited = 0.0  # seconds spent waiting so far: not the work's own cost

    def __call__(self) -> None:
        left = self.budget - self.waited
        if self._idle.is_set() or left <= 0:
            return
        start = time.monotonic()
        self._idle.wait(left)
        self.waited += time.monotonic() - start
