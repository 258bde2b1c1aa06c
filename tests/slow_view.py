"""The view on a source whose first refresh never ends: a stand-in for the first
refresh of a host of 200,000 sockets (seconds long), which one machine's test cannot
afford to build. Run by tests/test_tui_hangup.py in a pty of its own."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING

from tui.app import run_app
from tui.synthetic import StaticSource, synthetic_snapshot

if TYPE_CHECKING:
    from bufmon.monitor import FirstLook
    from collectors.model import Snapshot


class EndlessRefresh(StaticSource):
    def refresh(self, first_look: FirstLook | None = None) -> Snapshot:
        threading.Event().wait()
        raise AssertionError("unreachable")


if __name__ == "__main__":
    sys.exit(run_app(EndlessRefresh(synthetic_snapshot(5)), title="slow"))
