"""Where the app gets its data: the real Monitor by default, anything alike in tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from bufmon.actions import close_all
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


class MonitorSource:
    """bufmon's Monitor, built on the first refresh so the first frame shows at once."""

    def __init__(self, netns: str = "auto", config: Config | None = None) -> None:

        self.netns = netns
        self.config = config
        self.trail = Trail(config.history.window if config else DEFAULT_WINDOW)
        self._monitor: Monitor | None = None
        self._closed = False

    def refresh(self, first_look: FirstLook | None = None) -> Snapshot:
        if self._closed:
            raise RuntimeError("the source is closed")
        if self._monitor is None:
            from bufmon.monitor import Monitor  # late: apps fed by another source never load it

            self._monitor = Monitor(self.netns, self.config)
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
        self._closed = True
        if self._monitor is not None:
            self._monitor.close()
