"""The refresh pace: a chosen interval rules, the default one stretches when refreshes
are slow so that they take at most a share of one core."""

from __future__ import annotations

from pathlib import Path

import pytest

from bufmon.diagnosis import Config, ConfigError, load_config
from bufmon.pacing import DEFAULT_INTERVAL, Pace


def test_the_default_interval_stretches_to_keep_the_cpu_share() -> None:
    pace = Pace.from_option(None, cpu_share=0.25)
    assert pace.in_force == DEFAULT_INTERVAL  # nothing measured yet
    pace.took(0.1)  # a tenth of the interval: well within a quarter
    assert pace.in_force == DEFAULT_INTERVAL
    assert pace.describe() == "every 1s (refresh 0.10s)"
    pace.took(0.5)  # half a second each: every 2 s keeps it at 25%
    assert pace.in_force == pytest.approx(2.0)
    assert pace.describe() == "every 2s (refresh 0.50s)"
    pace.took(0.42)
    assert pace.describe() == "every 1.7s (refresh 0.42s)"


def test_an_interval_the_user_chose_rules() -> None:
    pace = Pace.from_option(0.25)
    pace.took(0.5)
    assert pace.in_force == 0.25 and pace.describe() == "every 0.25s"
    adaptive = Pace.from_option(None)
    adaptive.took(3.0)
    adaptive.choose(5.0)  # + or - in the view
    assert adaptive.in_force == 5.0 and adaptive.describe() == "every 5s"


def test_a_cpu_share_of_zero_never_stretches() -> None:
    pace = Pace.from_option(None, cpu_share=0.0)
    pace.took(4.0)
    assert pace.in_force == DEFAULT_INTERVAL


def test_the_cpu_share_comes_from_the_config(tmp_path: Path) -> None:
    assert Config().refresh.cpu_share == 0.25
    (tmp_path / "config.toml").write_text("[refresh]\ncpu_share = 0.1\n")
    assert load_config(str(tmp_path / "config.toml"), []).refresh.cpu_share == 0.1
    with pytest.raises(ConfigError, match="cpu_share"):
        load_config(None, ["refresh.cpu_share=2"])
