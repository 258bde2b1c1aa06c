"""Checkpoints: places between the steps of long work (a refresh: the dump's receives,
then rates, processes, flags) where whoever runs the work may hold it back for a while,
so that more urgent work of the same process (a view's key) has the GIL to itself.
The work calls its checkpoint; the checkpoint decides whether to wait."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from typing import TypeVar

Checkpoint = Callable[[], None]
T = TypeVar("T")
STEP = 10_000  # items between two checkpoints of a pass over every socket (a few ms)


def no_pause() -> None:
    """The checkpoint of work nobody holds back: go straight on."""


def in_steps(items: Sequence[T], checkpoint: Checkpoint) -> Iterator[T]:
    """Each of `items`, `checkpoint()` called after every STEP of them: a pass over every
    socket of a big host (hundreds of ms) that can be held back midway. The items come
    a slice at a time through C (`chain`), so a plain `for` over them costs no more."""
    return chain.from_iterable(_steps(items, checkpoint, STEP))


def _steps(items: Sequence[T], checkpoint: Checkpoint, step: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), step):
        if start:
            checkpoint()
        yield items[start : start + step]
