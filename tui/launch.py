"""The live view's entry: its first refresh begins before Textual is loaded.

On a host of 200,000 sockets the kernel's dump takes seconds, mostly without the GIL,
and loading Textual and starting the app take most of a second: begun first, the dump
runs meanwhile. This module loads neither Textual nor the app until the dump is on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tui.source import MonitorSource

if TYPE_CHECKING:
    from bufmon.diagnosis import Config


def run_app(netns: str = "auto", config: Config | None = None, **options: Any) -> int:
    """tui.app.run_app on the sockets of `netns`, their first refresh already begun."""
    source = MonitorSource(netns, config)
    source.start()
    from tui.app import run_app as run  # Textual loads while the kernel dumps

    return run(source, config=config, **options)
