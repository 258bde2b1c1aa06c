"""The interactive view's settings: `[view]` and `[keys]` of bufmon's config file.

    [view]
    columns = ["proto", "local", "peer", "recvq", "sendq", "flags"]  # shown, in order
    services = true          # service names (from /etc/services) instead of port numbers
    theme = "light"          # or "dark"

    [keys]
    filter = "f"             # action = key (the actions are listed by `?` in the view)

The view saves `[view]` (at the end of the file) when the user changes columns, service
names or theme; every other line is kept as it was (the save is refused otherwise).
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from typing import Any, NamedTuple

from bufmon.diagnosis.config import ConfigError, default_path, parse_toml, read_text, read_toml

THEMES = ("dark", "light")
_KEY_NAME = re.compile(r"^(?:[a-z0-9_]+\+)*(?:[a-z0-9_]+|.)$")
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]\s.]+)")


class ViewSettings(NamedTuple):
    columns: tuple[str, ...] | None = None  # None: every column, in the default order
    services: bool = False
    theme: str = "dark"
    keys: Mapping[str, str] = {}  # binding id -> keys (read only: one {} serves every default)


def settings_path(explicit: str | None) -> str:
    """Where the settings are read from and saved to: --config, else the default file."""
    return explicit if explicit is not None else default_path()


def load_view(path: str, columns: Collection[str], actions: Collection[str]) -> ViewSettings:
    """The settings in `path` (defaults when it does not exist); `columns` and `actions`
    are the names the view knows. Raises ConfigError naming the file and key."""
    if not os.path.exists(path):
        return ViewSettings()
    data = read_toml(path)
    view, keys = _table(data, "view", path), _table(data, "keys", path)
    unknown = set(view) - {"columns", "services", "theme"}
    if unknown:
        raise ConfigError(f"{path}: view.{sorted(unknown)[0]}: unknown key")
    return ViewSettings(
        columns=_columns(view.get("columns"), columns, path),
        services=_bool(view.get("services", False), f"{path}: view.services"),
        theme=_theme(view.get("theme", "dark"), path),
        keys=_keys(keys, actions, path),
    )


def _table(data: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {name}: expected a table of keys")
    return table


def _columns(value: Any, known: Collection[str], path: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    where = f"{path}: view.columns"
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of column names")
    for name in value:
        if name not in known:
            raise ConfigError(f"{where}: unknown column {name!r} (known: {', '.join(known)})")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: a column is named twice")
    if not value:
        raise ConfigError(f"{where}: name at least one column")
    return tuple(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def _theme(value: Any, path: str) -> str:
    if value not in THEMES:
        raise ConfigError(f"{path}: view.theme: expected one of {', '.join(THEMES)}, got {value!r}")
    return str(value)


def _keys(table: dict[str, Any], actions: Collection[str], path: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    for action, value in table.items():
        where = f"{path}: keys.{action}"
        if action not in actions:
            raise ConfigError(f"{where}: unknown action (known: {', '.join(sorted(actions))})")
        names = value.split(",") if isinstance(value, str) else []
        if not names or not all(_KEY_NAME.match(n.strip()) for n in names):
            raise ConfigError(f'{where}: expected a key like "f", "ctrl+f" or "f5,ctrl+f"')
        keys[action] = ",".join(n.strip() for n in names)
    return keys


def _toml_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def view_section(settings: ViewSettings) -> str:
    """The `[view]` table that holds `settings` (keys are never written: they are the
    user's own, edited by hand)."""
    lines = ["[view]"]
    if settings.columns is not None:
        lines.append(f"columns = [{', '.join(_toml_string(c) for c in settings.columns)}]")
    lines.append(f"services = {'true' if settings.services else 'false'}")
    lines.append(f"theme = {_toml_string(settings.theme)}")
    return "\n".join(lines) + "\n"


def without_view(text: str) -> str:
    """`text` without its `[view]` table (header to the next table header)."""
    kept: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        header = _HEADER.match(line)
        if header is not None:
            skipping = header.group(1).strip("\"'") == "view"
        if not skipping:
            kept.append(line)
    return "".join(kept)


def save_view(path: str, settings: ViewSettings) -> None:
    """Write `settings` as the `[view]` table of `path`, keeping every other line.

    Checked before anything is written: the new text must read back as the old
    settings outside `[view]` plus exactly `settings`; else ConfigError, file untouched.
    The write is atomic (a temporary file renamed over it) and keeps the file's mode;
    a symlinked file (dotfiles) is written where the link points, the link kept."""
    import tempfile  # ~6 ms to import: only a save needs it

    path = os.path.realpath(path)
    old = read_text(path) if os.path.exists(path) else ""
    rest = without_view(old).rstrip("\n")
    new = (rest + "\n\n" if rest else "") + view_section(settings)
    _check_same_rest(old, new, path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
    fd, tmp = tempfile.mkstemp(prefix=".bufmon-config-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _check_same_rest(old: str, new: str, path: str) -> None:
    try:
        before = parse_toml(old)
    except ValueError as exc:
        raise ConfigError(f"{path}: not saved, the file does not parse: {exc}") from None
    try:
        after = parse_toml(new)
    except ValueError:
        after = None
    before.pop("view", None)
    if after is None or {k: v for k, v in after.items() if k != "view"} != before:
        raise ConfigError(f"{path}: not saved: [view] is not a plain table here; edit it by hand")
