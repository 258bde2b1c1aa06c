"""The one place the headless core starts the Textual front end.

`bufmon` (cli.py), `bufmon demo` (demo.py) and `bufmon replay` (record/commands.py)
import this module only when the interactive view is asked for, so `snapshot`,
`watch`, `record` and `replay --json` never load textual. The import contracts in
pyproject.toml allow these edges and no other from bufmon to tui.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tui.launch import run_app

if TYPE_CHECKING:
    from bufmon.record.reader import Recording

__all__ = ["run_app", "run_replay"]


def run_replay(recording: Recording, at: float, filter_expr: str) -> int:
    """The replay view (its module loaded only for it: the live view never needs it)."""
    from tui.replay import run_replay as replay

    return replay(recording, at, filter_expr)
