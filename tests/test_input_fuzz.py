"""Property tests: whatever a user types as a filter, a config file or a --set value,
bufmon gives a result or its one-line error (FilterError / ConfigError), never
another exception: no RecursionError at any nesting depth, no UnicodeError."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bufmon.diagnosis import Config, ConfigError, load_config
from bufmon.filters import FilterError, compile_filter
from bufmon.monitor import Monitor
from collectors.model import Sock

FUZZ = settings(max_examples=300, deadline=timedelta(seconds=2))
WORDS = (
    "(", ")", "!", "or", "and", "OR", " ", "proto:tcp", "state:listen", "port:22",
    "recvq>1k", "rtt<5ms", "addr:::1", "src:10.0.0.0/8", "netns:h*", "netns:[",
    "user:\x00", "user:\udcff", "proc:é", "pid:99999999999", "flag:any", "x", ":", ">",
)  # fmt: skip


@pytest.fixture(scope="module")
def socks() -> list[Sock]:
    """Real sockets of this namespace, to run every compiled filter on."""
    monitor = Monitor("current")
    try:
        return monitor.refresh().sockets[:200]
    finally:
        monitor.close()


def filter_result(expr: str, socks: list[Sock]) -> None:
    try:
        keep = compile_filter(expr)
    except FilterError as exc:
        assert "\n" not in str(exc)
        return
    for sock in socks:
        assert keep(sock) in (True, False)


@FUZZ
@given(expr=st.text())
def test_any_text_filters_or_is_a_filter_error(socks: list[Sock], expr: str) -> None:
    filter_result(expr, socks)


@FUZZ
@given(expr=st.lists(st.sampled_from(WORDS), max_size=60).map(" ".join))
def test_any_mix_of_filter_words(socks: list[Sock], expr: str) -> None:
    filter_result(expr, socks)


@FUZZ
@given(
    depth=st.integers(0, 5_000),  # the crashes began at 300 to 1,100
    shape=st.sampled_from(["parens", "nots", "terms", "ors", "not-parens"]),
)
def test_any_nesting_depth_or_length(socks: list[Sock], depth: int, shape: str) -> None:
    expr = {
        "parens": "(" * depth + "port:22" + ")" * depth,
        "nots": "!" * depth + "port:22",
        "terms": " ".join(["port:22"] * (depth + 1)),
        "ors": " or ".join(["port:22"] * (depth + 1)),
        "not-parens": "!(" * depth + "port:22" + ")" * depth,
    }[shape]
    filter_result(expr, socks[:5])


def test_deep_parentheses_name_the_limit() -> None:
    with pytest.raises(FilterError, match="nested more than 32 deep"):
        compile_filter("(" * 300 + "port:1" + ")" * 300)
    assert compile_filter("(" * 32 + "port:1" + ")" * 32) is not None


@pytest.fixture(scope="module")
def config_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as path:
        yield path


def config_result(data: bytes, overrides: list[str], directory: str) -> None:
    path = os.path.join(directory, "config.toml")
    with open(path, "wb") as f:
        f.write(data)
    try:
        assert isinstance(load_config(path, overrides), Config)
    except ConfigError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(data=st.binary(max_size=400))
def test_any_bytes_as_config(config_dir: str, data: bytes) -> None:
    config_result(data, [], config_dir)


@FUZZ
@given(text=st.text(max_size=400))
def test_any_text_as_config(config_dir: str, text: str) -> None:
    config_result(text.encode("utf-8", "surrogatepass"), [], config_dir)


@FUZZ
@given(
    depth=st.integers(0, 5_000),
    opener=st.sampled_from(["[", "{a=", "[{b=", "[[", "{ x = ["]),
    where=st.sampled_from(["file", "set"]),
)
def test_any_nesting_depth_in_config_and_set(
    config_dir: str, depth: int, opener: str, where: str
) -> None:
    value = opener * depth + "1"
    if where == "file":
        config_result(f"[stalled_reader]\nhold = {value}\n".encode(), [], config_dir)
    else:
        config_result(b"", [f"stalled_reader.hold={value}"], config_dir)


@FUZZ
@given(override=st.text(max_size=200))
def test_any_set_text(config_dir: str, override: str) -> None:
    config_result(b"", [override], config_dir)
