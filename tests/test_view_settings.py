"""The view's own settings in the config file: column choice, service names, theme and
key remapping survive a restart; the user's other settings are kept as written.
Pilot drives the real app on a real listener in a namespace the test makes."""

from __future__ import annotations

import os
import pty
import re
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

from bufmon.diagnosis import load_config
from bufmon.diagnosis.config import ConfigError
from bufmon.scenarios import Netns
from bufmon.services import parse_services
from bufmon.viewconfig import ViewSettings, load_view, save_view
from collectors.model import Sock
from tui.app import KEY_ACTIONS, BufmonApp, view_settings
from tui.arrange import COLUMN_IDS
from tui.ask import ConfirmClose
from tui.chooser import ColumnChooser
from tui.columns import render_row
from tui.detail import DetailScreen
from tui.help import HelpScreen
from tui.socklist import ColumnTitles
from tui.source import MonitorSource
from tui.synthetic import StaticSource, synthetic_snapshot

USER_CONFIG = """\
# my thresholds
[stalled_reader]
hold = 4.0  # slower to flag

[keys]
filter = "f"
"""
BUFMON = str(Path(sys.executable).with_name("bufmon"))
KNOWN = ", ".join(COLUMN_IDS)
SSH_PORT = 22  # /etc/services names it "ssh" on every Linux


@pytest.fixture
def listener() -> Iterator[Netns]:
    with Netns("view") as ns:
        server = ns.run(_listen)
        try:
            yield ns
        finally:
            server.close()


def _listen() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", SSH_PORT))
    server.listen()
    return server


async def until_listed(pilot: Pilot[int], app: BufmonApp) -> None:
    await until(pilot, lambda: any(isinstance(r, Sock) for r in app.main.socket_list.rows))


async def until(pilot: Pilot[int], condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)


def shown_ids(app: BufmonApp) -> list[str]:
    return [column.id for column, _ in app.main.socket_list.column_layout]


def start(ns: Netns, path: Path, text: str | None = None) -> BufmonApp:
    """The app as `bufmon --config PATH` builds it (run_app, without app.run); `text`
    is written to PATH first."""
    if text is not None:
        path.write_text(text)
    settings = load_view(str(path), COLUMN_IDS, KEY_ACTIONS)
    return BufmonApp(MonitorSource(ns.name), settings=settings, settings_file=str(path))


@pytest.mark.root
async def test_choices_survive_a_restart(listener: Netns, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    app = start(listener, path, USER_CONFIG)
    async with app.run_test(size=(140, 30)) as pilot:
        listing = app.main.socket_list
        await until_listed(pilot, app)
        assert shown_ids(app)[:3] == ["netns", "proto", "state"]
        await pilot.press("C")
        assert isinstance(app.screen, ColumnChooser)
        await pilot.press("space", "j", "J", "enter")  # hide NETNS, move PROTO after STATE
        assert shown_ids(app)[:3] == ["state", "proto", "local"]
        row = next(r for r in listing.rows if r.local_port == SSH_PORT)
        text = lambda: "".join(s.text for s in render_row(row, listing.column_layout, 140))  # noqa: E731
        assert "127.0.0.1:22 " in text()
        await pilot.press("R")
        assert "127.0.0.1:ssh " in text()
        await pilot.press("T")
        assert app.theme == "textual-light"
        await pilot.press("f")  # the remapped filter key
        assert app.main.filter_bar.display
    saved = path.read_text()
    assert saved.startswith(USER_CONFIG)  # the user's lines, comments and all, unchanged
    doc = tomllib.loads(saved)
    assert doc["view"] == {
        "columns": ["state", "proto", *COLUMN_IDS[3:]],
        "services": True,
        "theme": "light",
    }
    assert load_config(str(path), []).stalled_reader.hold == 4.0

    again = start(listener, path)  # a restart reads it back
    async with again.run_test(size=(140, 30)) as pilot:
        await until(pilot, lambda: bool(again.main.socket_list.column_layout))
        assert shown_ids(again)[:3] == ["state", "proto", "local"]
        assert again.theme == "textual-light"
        await pilot.press("f")
        assert again.main.filter_bar.display


@pytest.mark.root
async def test_click_a_title_to_sort(listener: Netns) -> None:
    app = BufmonApp(MonitorSource(listener.name))
    async with app.run_test(size=(120, 30)) as pilot:
        titles = app.main.query_one(ColumnTitles)
        await until(pilot, lambda: bool(titles.column_layout) and app.main.socket_list.current)
        x = 0
        for column, width in titles.column_layout:
            if column.id == "state":
                break
            x += width + 1
        await pilot.click(ColumnTitles, offset=(x + 1, 0))
        await until(pilot, lambda: app.state.sort == "state")
        assert not app.state.reverse
        await pilot.click(ColumnTitles, offset=(x + 1, 0))
        await until(pilot, lambda: app.state.reverse)


REMAPPED = """\
[keys]
back = "f2"
close = "X"
close-yes = "o"
close-no = "N"
chooser-toggle = "t"
help = "h"
"""


def hint_of(app: BufmonApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


@pytest.mark.root
async def test_hints_name_the_remapped_keys(listener: Netns, tmp_path: Path) -> None:
    app = start(listener, tmp_path / "config.toml", REMAPPED)
    async with app.run_test(size=(80, 24)) as pilot:
        await until_listed(pilot, app)
        assert str(app.main.status.render()).endswith("   h help")
        await pilot.press("m")
        assert "  1 marked (X closes them)" in str(app.main.status.render())
        await pilot.press("slash")
        assert "Enter applies, f2 clears" in app.main.query_one(Input).placeholder
        await pilot.press("f2", "enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen))
        hint = hint_of(app, "#detail-hint")
        assert hint.startswith("f2 back  p process's sockets")
        assert "X close" in hint and hint.endswith("h help")
        await pilot.press("X")
        await until(pilot, lambda: isinstance(app.screen, ConfirmClose))
        assert hint_of(app, ".ask-hint") == "o closes   N keeps them"
        await pilot.press("N", "f2", "C")
        assert isinstance(app.screen, ColumnChooser)
        assert hint_of(app, ".ask-hint").startswith("t shows/hides  J later  K earlier")
        await pilot.press("t", "enter")  # the remapped toggle hides the first column
        assert app.settings.columns == COLUMN_IDS[1:]
        await pilot.press("h")
        assert isinstance(app.screen, HelpScreen)
        assert listener.run(_listeners) == 1  # nothing was closed


def test_the_readme_names_every_remappable_key() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme.split("[keys]\n", 1)[1].split("```", 1)[0]
    assert KEY_ACTIONS - set(re.findall(r"[a-z][a-z-]*", example)) == set()


def _listeners() -> int:
    out = subprocess.run(["ss", "-Htln"], capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


async def test_the_view_says_when_it_cannot_save(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    text = 'view.theme = "dark"\n'  # [view] as dotted keys: not rewritten
    path.write_text(text)
    app = BufmonApp(StaticSource(synthetic_snapshot(20)), settings_file=str(path))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("T")
        await pilot.pause()
        assert app.theme == "textual-light"  # shown for this run all the same
        notes = [(n.title, n.message) for n in app._notifications]
        assert ("settings not saved", f"{path}: not saved: [view] is not a plain table here; "
                "edit it by hand") in notes  # fmt: skip
    assert path.read_text() == text


def test_save_refuses_to_change_other_settings(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    text = 'view.theme = "dark"\n[stalled_reader]\nhold = 4.0\n'  # [view] not as a table
    path.write_text(text)
    with pytest.raises(ConfigError, match="not saved"):
        save_view(str(path), ViewSettings(theme="light"))
    assert path.read_text() == text


def test_save_keeps_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "dotfiles" / "bufmon.toml"
    target.parent.mkdir()
    target.write_text("[stalled_reader]\nhold = 4.0\n")
    link = tmp_path / "config.toml"
    link.symlink_to(target)
    save_view(str(link), ViewSettings(services=True))
    assert link.is_symlink()
    assert tomllib.loads(target.read_text())["view"]["services"] is True


def test_save_creates_the_file_and_replaces_its_view(tmp_path: Path) -> None:
    path = tmp_path / "bufmon" / "config.toml"
    save_view(str(path), ViewSettings(columns=("proto", "local")))
    save_view(str(path), ViewSettings(columns=("local",), services=True))
    assert tomllib.loads(path.read_text()) == {
        "view": {"columns": ["local"], "services": True, "theme": "dark"}
    }


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[view]\ncolumns = ["nope"]\n', "view.columns: unknown column 'nope'"),
        ('[view]\ntheme = "blue"\n', "view.theme: expected one of dark, light"),
        ("[view]\nservices = 1\n", "view.services: expected true or false"),
        ('[keys]\nfly = "f"\n', "keys.fly: unknown action"),
        ('[keys]\nfilter = ""\n', "keys.filter: expected a key"),
    ],
)
def test_bad_view_settings_are_one_line(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=error):
        load_view(str(path), COLUMN_IDS, KEY_ACTIONS)


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        ('filter = "s"', "s would be both filter and sort-next in the socket list"),
        ('process = "escape"', "Esc would be both back and process in socket details"),
        ('chooser-save = "space"',
         "Space would be both chooser-toggle and chooser-save in the column chooser"),
        ('close-yes = "n"', "n would be both close-yes and close-no in the close confirmation"),
    ],
)  # fmt: skip
def test_a_key_given_twice_is_refused(tmp_path: Path, keys: str, error: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[keys]\n{keys}\n")
    with pytest.raises(ConfigError) as refused:
        view_settings(str(path))
    assert str(refused.value) == f"{path}: keys: {error}; give one of them another key"


def test_swapped_keys_are_taken(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[keys]\nfilter = "s"\nsort-next = "slash"\n')
    settings, _ = view_settings(str(path))
    assert settings.keys == {"filter": "s", "sort-next": "slash"}


def test_the_view_refuses_bad_settings_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[view]\ncolumns = ["nope"]\n')
    leader, follower = pty.openpty()  # a terminal: only the bad setting may stop it
    try:
        proc = subprocess.run(
            [BUFMON, "--config", str(path), "--netns", "current"],
            stdin=follower, stdout=follower, stderr=subprocess.PIPE, text=True, timeout=60,
        )  # fmt: skip
    finally:
        os.close(leader)
        os.close(follower)
    assert proc.returncode == 2
    assert proc.stderr == f"bufmon: {path}: view.columns: unknown column 'nope' (known: {KNOWN})\n"


def test_services_file_parsed() -> None:
    text = "# comment\nssh\t\t22/tcp\t\t# SSH\nhttp 80/tcp www\nhttp-alt 80/tcp\nbad x/tcp\n"
    assert parse_services(text) == {("tcp", 22): "ssh", ("tcp", 80): "http"}
