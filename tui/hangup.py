"""The view never outlives its terminal.

SIGHUP, SIGTERM or a terminal gone (a failed write, a hung-up tty) ask for the clean exit
and start a deadline: a process still alive GRACE seconds later exits at once with status
128+signal (a lost terminal counts as SIGHUP). A thread of its own notices them, through
signal.set_wakeup_fd: the UI thread may be the one that is stuck.

HangupDriver mends two behaviours of Textual's LinuxDriver. Its output thread dies on the
first failed write (EIO once the terminal hung up), and its bounded queue, no longer
drained, then blocks the UI thread's next write for ever: the view hung, and a SIGHUP
handled in the event loop could not end it. And any SIGCONT (the kernel sends one with
the SIGHUP to a session leader on hang-up) starts application mode again, leaving the
old output thread idle on its queue and the old input thread reading beside the new one,
even when nothing had stopped the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual.app import App
from textual.drivers.linux_driver import LinuxDriver

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

GRACE = 5.0  # seconds the clean exit may take once asked
POLL = 1.0  # seconds between looks at the terminal
STOP_SIGNALS = (signal.SIGHUP, signal.SIGTERM)  # HUP: the SSH session dropped


def _noted(_signum: int, _frame: object) -> None:
    """A Python handler, so that the signal reaches the wakeup fd; Hangup acts on it."""


class Hangup:
    """While started: a stop signal or the terminal gone calls `quit` in the event loop
    and arms the deadline; `ttys` are the terminal's file descriptors."""

    def __init__(self, ttys: list[int], grace: float = GRACE) -> None:
        self.ttys = [fd for fd in ttys if os.isatty(fd)]
        self.grace = grace
        self._lock = threading.Lock()
        self._deadline: float | None = None
        self._status = 0
        self._wake: tuple[int, int] | None = None  # the pipe signal.set_wakeup_fd writes
        self._previous: dict[int, Any] = {}  # signal -> its handler before start()
        self._previous_fd = -1
        self._call: Callable[[Callable[[], object]], object] | None = None
        self._quit: Callable[[], object] = lambda: None

    def start(self, loop: asyncio.AbstractEventLoop, quit: Callable[[], object]) -> None:
        """Watch from now on (in the main thread; again after stop() is a no-op start)."""
        if self._wake is not None:
            return
        self._call = loop.call_soon_threadsafe
        self._quit = quit
        self._wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, _noted)
        self._previous_fd = signal.set_wakeup_fd(self._wake[1], warn_on_full_buffer=False)
        watch = threading.Thread(target=self._watch, args=(self._wake[0],), daemon=True)
        watch.start()

    def stop(self) -> None:
        """Give the signals back; an armed deadline still holds."""
        if self._wake is None:
            return
        signal.set_wakeup_fd(self._previous_fd)
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()
        os.close(self._wake[1])  # the watching thread reads its end
        self._wake = None

    def trip(self, signum: int) -> None:
        """The terminal is gone (SIGHUP) or we were told to stop: ask for the clean exit
        once and arm the deadline. Any thread."""
        with self._lock:
            if self._deadline is not None:
                return
            self._deadline = time.monotonic() + self.grace
            self._status = 128 + signum
        self._in_loop(self._quit)

    def _in_loop(self, callback: Callable[[], object]) -> None:
        if self._call is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: the deadline ends it
                self._call(callback)

    def _watch(self, fd: int) -> None:
        reading = True
        while True:
            wait = POLL if self._deadline is None else self._deadline - time.monotonic()
            if wait <= 0:
                os._exit(self._status)
            ready, _, _ = select.select([fd] if reading else [], [], [], min(wait, POLL))
            if ready:
                data = os.read(fd, 256)
                if not data:  # stopped: only an armed deadline keeps this thread
                    os.close(fd)
                    if self._deadline is None:
                        return
                    reading = False
                for signum in data:
                    if signum in STOP_SIGNALS:
                        self.trip(signum)
                # the loop runs Python's handlers of other signals (SIGWINCH, SIGCONT)
                self._in_loop(lambda: None)
            elif any(not os.isatty(tty) for tty in self.ttys):  # hung up: TCGETS fails
                self.trip(signal.SIGHUP)


class GuardedTerminal(io.RawIOBase):
    """The terminal's file descriptor as the output thread writes it: the first failed
    write calls `lost` and makes every later write a no-op, so the thread never dies."""

    def __init__(self, fd: int, lost: Callable[[], None]) -> None:
        super().__init__()
        self.fd = fd
        self.lost = lost
        self.gone = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def write(self, b: ReadableBuffer, /) -> int:
        while not self.gone:
            try:
                return os.write(self.fd, b)
            except BlockingIOError:  # someone made the terminal non-blocking: wait
                select.select([], [self.fd], [])
            except OSError:  # EIO: hung up; EPIPE, EBADF: closed
                self.gone = True
                self.lost()
        return memoryview(b).nbytes


class HangupDriver(LinuxDriver):
    """LinuxDriver with a Hangup watch, output that outlives the terminal, and SIGCONT
    resuming only what SIGTSTP suspended."""

    def __init__(
        self,
        app: App[Any],
        *,
        debug: bool = False,
        mouse: bool = True,
        size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(app, debug=debug, mouse=mouse, size=size)
        out = sys.__stderr__  # where LinuxDriver draws
        if out is None:  # started with 2>&-: nowhere to draw (and to say so)
            raise OSError(errno.EBADF, "standard error is closed: the view draws there")
        self.hangup = Hangup([self.fileno, out.fileno()])
        terminal = GuardedTerminal(out.fileno(), lambda: self.hangup.trip(signal.SIGHUP))
        self._file = io.TextIOWrapper(
            io.BufferedWriter(terminal), encoding=out.encoding, errors=out.errors
        )
        self._suspended = False

    def start_application_mode(self) -> None:
        super().start_application_mode()
        self.hangup.start(asyncio.get_running_loop(), self._app.exit)

    def close(self) -> None:
        super().close()
        self.hangup.stop()

    def _sigtstp_application(self, *_: object) -> None:
        self._suspended = True
        super()._sigtstp_application()

    def _sigcont_application(self, *_: object) -> None:
        if self._suspended:
            self._suspended = False
            super()._sigcont_application()
