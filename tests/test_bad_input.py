"""Bad and hostile arguments to the installed `bufmon`: one line, exit 2 (usage) or 1
(runtime), never a traceback and never a hang."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import AS_NOBODY, Readable

from bufmon.cli import COMMANDS, VALUE_OPTIONS, build_parser, with_command

BUFMON = str(Path(sys.executable).with_name("bufmon"))


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BUFMON, *argv], capture_output=True, text=True, timeout=20, cwd="/")


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bufmon: "), result.stderr
    return lines[0]


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    yield str(path)


@pytest.mark.root
@pytest.mark.parametrize("target", ["fifo", "/etc/passwd", "/proc/self/ns/mnt", "/dev/zero"])
def test_netns_path_must_be_a_network_namespace(target: str, fifo: str) -> None:
    path = fifo if target == "fifo" else target
    line = one_line(run("snapshot", "--netns", path), 1)  # a FIFO used to hang for good
    assert f"not a network namespace: {path!r}" in line


def test_netns_relative_path_that_is_not_there() -> None:
    line = one_line(run("snapshot", "--netns", "../../x"), 1)
    assert "no such network namespace: '../../x'" in line


@pytest.mark.root
def test_netns_path_that_is_one_works() -> None:
    result = run("snapshot", "--json", "--netns", f"/proc/{os.getpid()}/ns/net")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sockets"] is not None


@pytest.mark.root
def test_permission_error_is_said_as_such(readable: Readable) -> None:
    # as nobody, through a copy nobody can read (the clone may sit in a 0700 directory)
    argv = ["setpriv", *AS_NOBODY, *readable.bufmon("snapshot", "--netns", str(os.getpid()))]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=20, cwd="/", env=readable.env()
    )
    line = one_line(result, 1)
    assert "Permission denied" in line and "no such" not in line


@pytest.mark.parametrize(
    "make, message",
    [
        ("fifo", "not a regular file"),
        ("bytes", "not UTF-8 text (at byte offset 5)"),
        ("deep", "nested too deeply"),
        ("huge", "larger than 1024 KiB"),
    ],
)
def test_bad_config_files(make: str, message: str, fifo: str, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    contents = {
        "bytes": b"# caf\xe9\n[stalled_reader]\n",
        "deep": b"[stalled_reader]\nhold = " + b"[" * 5000,
        "huge": b"#" * (2 << 20),
    }
    if make == "fifo":
        path = Path(fifo)  # reading it used to block for good
    else:
        path.write_bytes(contents[make])
    assert message in one_line(run("snapshot", "--config", str(path)), 2)


@pytest.mark.root
def test_config_on_proc_kmsg_neither_hangs_nor_reads_it() -> None:
    result = run("snapshot", "--json", "--config", "/proc/kmsg")  # size 0: read as empty
    assert result.returncode == 0, result.stderr


def test_deep_set_value() -> None:
    line = one_line(run("snapshot", "--set", "stalled_reader.hold=" + "[" * 5000), 2)
    assert "stalled_reader.hold" in line


@pytest.mark.parametrize(
    "argv",
    [
        ["watch", "--interval", "1e10"],
        ["watch", "--interval", "inf"],
        ["tui", "--interval", "1e300"],
        ["snapshot", "--rates", "--interval", "1e10"],
        ["demo", "--duration", "1e308"],
        ["demo", "--duration", "-1"],
    ],
)
def test_every_duration_is_bounded(argv: list[str]) -> None:
    assert "expected seconds from 0 to 604800" in one_line(run(*argv), 2)


def test_count_with_a_unicode_digit() -> None:
    line = one_line(run("watch", "--count", "²"), 2)
    assert "expected a positive whole number, got '²'" in line and "_count" not in line


def test_command_found_past_options() -> None:
    result = run("--netns", "current", "snapshot", "--json", "proto:tcp")
    assert result.returncode == 0, result.stderr
    assert all(s["proto"] == "tcp" for s in json.loads(result.stdout)["sockets"])


def test_value_options_are_every_option_that_takes_a_value() -> None:
    subparsers = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    taking = {
        option
        for sub in subparsers.choices.values()
        for action in sub._actions
        if action.nargs != 0
        for option in action.option_strings
    }
    assert taking == set(VALUE_OPTIONS)
    assert set(subparsers.choices) == set(COMMANDS)


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], ["tui"]),
        (["proto:tcp"], ["tui", "proto:tcp"]),
        (["--netns", "snapshot"], ["tui", "--netns", "snapshot"]),  # a namespace named so
        (["--netns=x", "watch", "--json"], ["watch", "--netns=x", "--json"]),
        (["--set", "a.b=1", "--", "snapshot"], ["tui", "--set", "a.b=1", "--", "snapshot"]),
        (["--version"], ["--version"]),
    ],
)
def test_with_command(argv: list[str], expected: list[str]) -> None:
    assert with_command(argv) == expected


def test_closed_stdout_is_one_line() -> None:
    result = subprocess.run(
        ["sh", "-c", f"{BUFMON} snapshot >&-"], capture_output=True, text=True, timeout=20
    )
    assert one_line(result, 1) == "bufmon: standard output is closed"
