"""load_config: defaults, TOML file, --set overrides, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bufmon.diagnosis import Config, ConfigError, load_config


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def test_defaults_match_domain_numbers() -> None:
    c = Config()
    assert c.stalled_reader.hold == 5.0
    assert (c.slow_reader.window, c.slow_reader.fill, c.slow_reader.min_queue) == (10.0, 0.5, 65536)
    assert (c.peer_zero_window.hold, c.peer_zero_window.critical) == (3.0, 10.0)
    assert (c.accept_queue_full.fill, c.accept_queue_full.hold) == (0.8, 2.0)
    assert c.udp_drops.fill == 0.9 and c.memory_pressure.warn == 0.8
    assert (c.port_exhaustion.warn, c.port_exhaustion.critical) == (0.5, 0.8)
    assert (c.nagle_hint.rtt_ratio, c.nagle_hint.min_srtt_ms) == (10.0, 20.0)
    assert (c.history.window, c.history.linger) == (600.0, 60.0)


def test_file_then_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "[stalled_reader]\nhold = 7\nclear = 1.5\n[history]\nwindow = 60\n")
    c = load_config(path, ["stalled_reader.hold=3", "slow_reader.min_queue = 1024"])
    assert c.stalled_reader.hold == 3.0 and c.stalled_reader.clear == 1.5
    assert c.history.window == 60.0 and c.slow_reader.min_queue == 1024
    assert isinstance(c.stalled_reader.hold, float)


def test_default_path_under_xdg_config_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert load_config(None, []) == Config()  # no file: defaults
    (tmp_path / "bufmon").mkdir()
    (tmp_path / "bufmon" / "config.toml").write_text("[udp_drops]\nfill = 0.5\n")
    assert load_config(None, []).udp_drops.fill == 0.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[stalled_reader]\nhold = 'abc'\n",
            "{p}: stalled_reader.hold: expected a number, got 'abc'",
        ),
        (
            "[stalled_reader]\nhold = true\n",
            "{p}: stalled_reader.hold: expected a number, got True",
        ),
        ("[stalled_reader]\nhold = -1\n", "{p}: stalled_reader.hold: must not be negative, got -1"),
        (
            "[udp_drops]\nfill = 1.5\n",
            "{p}: udp_drops.fill: expected a fraction between 0 and 1, got 1.5",
        ),
        (
            "[slow_reader]\nmin_queue = 1.5\n",
            "{p}: slow_reader.min_queue: expected an integer, got 1.5",
        ),
        ("[stalled_reader]\nhodl = 1\n", "{p}: stalled_reader.hodl: unknown key"),
        ("[nope]\nx = 1\n", "{p}: unknown section [nope]"),
        ("stalled_reader = 1\n", "{p}: stalled_reader: expected a table of keys"),
        ("[stalled_reader]\nhold = \n", "{p}: line 2: Invalid value"),
    ],
)
def test_file_errors_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, [])
    assert str(err.value) == message.format(p=path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("stalled_reader.hold=abc", "--set: stalled_reader.hold: expected a number, got 'abc'"),
        ("stalled_reader.hold", "--set: 'stalled_reader.hold': expected section.key=value"),
        ("hold=3", "--set: 'hold=3': expected section.key=value"),
        ("x.hold=3", "--set: unknown section [x]"),
    ],
)
def test_override_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config("/dev/null", [override])  # an empty file: the user's config stays out
    assert str(err.value) == message


def test_missing_explicit_file(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.toml")
    with pytest.raises(ConfigError) as err:
        load_config(path, [])
    assert str(err.value) == f"{path}: cannot read: No such file or directory"
