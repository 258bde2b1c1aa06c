"""Text cells: a percent from its table of strings reads as formatting would write it."""

from __future__ import annotations

import random

import pytest

from bufmon.textout import percent


@pytest.mark.parametrize(
    "fill",
    [0.0, 0.005, 0.015, 0.025, 0.125, 1.0, 2.999, 3.0049, 3.005, 12.5, -0.5, 1e300],
)
def test_percent_is_the_formatted_value(fill: float) -> None:
    assert percent(fill) == f"{fill * 100:.0f}%"


def test_percent_of_many_fills_and_of_no_number() -> None:
    rng = random.Random(15)
    for _ in range(20000):
        fill = rng.random() * 4
        assert percent(fill) == f"{fill * 100:.0f}%"
    assert (percent(None), percent(float("nan")), percent(float("inf"))) == ("-", "nan%", "inf%")
