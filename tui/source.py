"""Where the app gets its data: the real Monitor by default, anything alike in tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from bufmon.actions import close_all
from collectors.checkpoint import Checkpoint, no_pause
from collectors.destroy import Outcome
from collectors.model import Snapshot, Sock
from tui.trail import Trail

if TYPE_CHECKING:
    from bufmon.diagnosis import Config
    from bufmon.monitor import FirstLook, Monitor

Series = list[tuple[float, float]]
SockKey = tuple[str, int]  # Sock.key: a socket's netns label and inode
DEFAULT_WINDOW = 600.0  # seconds of history, as the diagnosis config's default


class Source(Protocol):
    trail: Trail  # flag intervals and system samples; the app feeds it every refresh
    # The app's, set before each refresh: a refresh of long steps calls it between them
    # (collectors.checkpoint), and it waits there while a key's View is computed.
    checkpoint: Checkpoint

    def refresh(self, first_look: FirstLook | None = None) -> Snapshot:
        """One blocking collection; called from a worker thread, never two at once.

        A source that builds new objects each time keeps collectors.gcpolicy, as
        Monitor.refresh does: the app itself never freezes the GC. A source that reads
        sockets before slower work may hand them to `first_look` meanwhile (the app asks
        for it on the first refresh); others ignore it.
        """
        ...

    def series(self, key: SockKey, field: str) -> Series:
        """Past (time, value) samples of one socket; called from the same worker thread."""
        ...

    def close(self) -> None: ...


class EarlyRefresh:
    """A first refresh begun before anyone asks for it, in a thread of its own; `take`
    waits for it, handing the first look (the sockets, before their processes and
    flags) to whoever takes it, whether it came before or comes after."""

    def __init__(self, refresh: Callable[[FirstLook], Snapshot]) -> None:
        self._lock = threading.Lock()
        self._look: FirstLook | None = None  # the taker's, once it takes
        self._looked: Snapshot | None = None  # a first look that came before the taker
        self._result: Snapshot | BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(refresh,), name="bufmon-first-refresh", daemon=True
        )
        self._thread.start()

    def _run(self, refresh: Callable[[FirstLook], Snapshot]) -> None:
        try:
            self._result = refresh(self._relay)
        except BaseException as exc:  # raised again by take(), in the taker's thread
            self._result = exc

    def _relay(self, snapshot: Snapshot) -> None:
        with self._lock:
            look = self._look
            if look is None:
                self._looked = snapshot
                return
        look(snapshot)

    def take(self, first_look: FirstLook | None) -> Snapshot:
        with self._lock:
            self._look = first_look or (lambda _snapshot: None)
            looked, self._looked = self._looked, None
        if looked is not None and first_look is not None:
            first_look(looked)
        self._thread.join()
        result = self._result
        if isinstance(result, BaseException):
            raise result
        assert result is not None
        return result

    def done(self) -> bool:
        return not self._thread.is_alive()


class MonitorSource:
    """bufmon's Monitor, built on the first refresh so the first frame shows at once;
    `start` begins that refresh before the view is up."""

    def __init__(self, netns: str = "auto", config: Config | None = None) -> None:

        self.netns = netns
        self.config = config
        self.trail = Trail(config.history.window if config else DEFAULT_WINDOW)
        self.checkpoint: Checkpoint = no_pause
        self._monitor: Monitor | None = None
        self._early: EarlyRefresh | None = None
        self._closed = False

    def start(self) -> None:
        """Begin the first refresh now, while the view starts: on a big host most of it
        is the kernel's dump, which runs without the GIL the start-up needs."""
        if self._early is None and self._monitor is None:
            self._early = EarlyRefresh(self._refresh)

    def refresh(self, first_look: FirstLook | None = None) -> Snapshot:
        if self._closed:
            raise RuntimeError("the source is closed")
        early, self._early = self._early, None
        if early is not None:
            return early.take(first_look)
        return self._refresh(first_look)

    def _refresh(self, first_look: FirstLook | None) -> Snapshot:
        if self._monitor is None:
            from bufmon.monitor import Monitor  # late: apps fed by another source never load it

            monitor = Monitor(self.netns, self.config)
            # looked up at each call: the app sets its own after the first refresh began
            monitor.checkpoint = lambda: self.checkpoint()
            self._monitor = monitor
        return self._monitor.refresh(first_look=first_look)

    def series(self, key: SockKey, field: str) -> Series:
        if self._monitor is None:
            return []
        return self._monitor.diagnoser.history.series(key, field)

    def close_sockets(self, socks: list[Sock]) -> list[tuple[Sock, Outcome]]:
        """Close `socks` (SOCK_DESTROY), each in its namespace; from a worker thread
        holding the source lock."""
        if self._monitor is None:
            raise RuntimeError("nothing was read yet")
        return close_all(self._monitor.namespaces, socks)

    def close(self) -> None:
        """Close the sockets; a first refresh never taken (the app ended first) is not
        waited for: it keeps its own until the process ends."""
        self._closed = True
        if self._early is not None and not self._early.done():
            return
        if self._monitor is not None:
            self._monitor.close()
