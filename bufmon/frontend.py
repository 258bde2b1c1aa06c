"""The one place the headless core starts the Textual front end.

`bufmon` (cli.py) and `bufmon demo` (demo.py) import this module only when the
interactive view is asked for, so `snapshot` and `watch` never load textual. The
import contracts in pyproject.toml allow this edge and no other from bufmon to tui.
"""

from __future__ import annotations

from tui.app import run_app

__all__ = ["run_app"]
