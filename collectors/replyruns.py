"""Runs of netlink replies of one shape: a dump's replies mostly repeat their headers,
so a run of them is read with one iter_unpack once its headers are known to repeat."""

from __future__ import annotations

from collections.abc import Sequence


class Fixed:
    """The byte offsets every message of a run repeats (headers), as the columns
    run_length compares: whole aligned 4-byte words, and the single bytes left over."""

    __slots__ = ("singles", "words")

    def __init__(self, offsets: Sequence[int]) -> None:
        at = set(offsets)
        words = [o for o in sorted(at) if o % 4 == 0 and {o + 1, o + 2, o + 3} <= at]
        covered = {o + i for o in words for i in range(4)}
        self.words = tuple(words)
        self.singles = tuple(sorted(at - covered))


def _leading(column: bytes, first: bytes, count: int) -> int:
    """How many of `column`'s `count` items of len(first) bytes equal the first one."""
    size = len(first)
    same, differs = 1, count  # the first is itself; item `differs` is the first other
    while differs - same > 1:
        mid = (same + differs) // 2
        if column[: mid * size] == first * mid:
            same = mid
        else:
            differs = mid
    return same


def run_length(data: bytes, pos: int, end: int, length: int, fixed: Fixed) -> int:
    """How many messages of `length` (a multiple of 4) from `pos` on, at least this
    one, repeat its `fixed` bytes: one column per word or byte, compared in C."""
    count = (end - pos) // length
    words = memoryview(data)[: end & ~3].cast("I")
    step = length // 4
    for offset in fixed.words:
        start = (pos + offset) // 4
        column = words[start : start + count * step : step].tobytes()
        first = column[:4]
        if column != first * count:
            count = _leading(column, first, count)
            if count == 1:
                return 1
    for offset in fixed.singles:
        column = data[pos + offset : pos + count * length : length]
        first = column[:1]
        if column != first * count:
            count = len(column) - len(column.lstrip(first))
            if count == 1:
                return 1
    return count
