"""Checkpoints: places between the steps of long work (a refresh: the dump's receives,
then rates, processes, flags) where whoever runs the work may hold it back for a while,
so that more urgent work of the same process (a view's key) has the GIL to itself.
The work calls its checkpoint; the checkpoint decides whether to wait."""

from __future__ import annotations

from collections.abc import Callable

Checkpoint = Callable[[], None]


def no_pause() -> None:
    """The checkpoint of work nobody holds back: go straight on."""
