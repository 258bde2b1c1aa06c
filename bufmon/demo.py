"""`bufmon demo`: real socket trouble to look at, in a namespace of its own.

As root everything lives in one namespace, bufmon-demo-<pid>-<random>, deleted on
the way out (Ctrl-C, SIGTERM, errors, atexit) and, after a kill -9, by the next demo;
without root the same cases run on loopback in the current namespace.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
from contextlib import ExitStack
from types import FrameType

from bufmon.scenarios import (
    AcceptQueueFull,
    BulkTransfer,
    IdleKeepalive,
    Netns,
    Scenario,
    SlowReader,
    StalledReader,
    UdpDrops,
    demo_name,
    remove_stale_namespaces,
)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # HUP: the SSH session died


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _cases(ns: Netns) -> dict[str, Scenario]:
    """The cases by the name the demo line shows."""
    return {
        "stalled reader / zero-window sender": StalledReader(ns),
        "slow reader": SlowReader(ns),
        "accept queue full": AcceptQueueFull(ns),
        "UDP drops": UdpDrops(ns, keep_sending=True),
        "bulk transfer": BulkTransfer(ns, pause=0.002),  # about 30 MB/s, spares the CPU
        "idle keepalive": IdleKeepalive(ns),
    }


def _describe(ns: Netns, cases: dict[str, Scenario]) -> str:
    where = "current namespace (loopback)" if ns.loopback else f"namespace {ns.name}"
    return f"bufmon demo in {where}: {', '.join(cases)} (Ctrl-C to stop)"


def run_demo(headless: bool, duration: float | None = None) -> int:
    """Build the demo cases, then wait (headless) or run the TUI on them; 0 when done."""
    root = os.geteuid() == 0
    if root:
        remove_stale_namespaces()
    ns = Netns("demo", name=demo_name(), locked=True) if root else Netns.current()
    in_main = threading.current_thread() is threading.main_thread()
    # SIGINT too: a shell may have started us with it ignored
    old = {sig: signal.signal(sig, _interrupt) for sig in STOP_SIGNALS} if in_main else {}
    atexit.register(ns.close)
    try:
        with ExitStack() as stack:
            stack.enter_context(ns)
            cases = _cases(ns)
            for case in cases.values():
                stack.enter_context(case)
            if headless:
                print(_describe(ns, cases), flush=True)
                threading.Event().wait(duration)
            else:
                from bufmon.frontend import run_app

                run_app(netns=ns.name, title="bufmon demo")
    except KeyboardInterrupt:
        pass
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        print(f"bufmon demo: {detail}", file=sys.stderr)
        return 1
    finally:
        ns.close()
        atexit.unregister(ns.close)
        for sig, handler in old.items():
            signal.signal(sig, handler or signal.SIG_DFL)
    return 0
