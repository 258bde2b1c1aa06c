"""The post-mortem: every flag raised in a recording, when it rose and cleared, and the
worst numbers of its socket while it held. Flags are taken as recorded, never
re-evaluated. A flag of a socket that closed ends when the socket is gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bufmon.present import endpoint
from bufmon.record.codec import State
from bufmon.record.format import R_CLOSED, R_FLAGS, sock_of
from bufmon.record.reader import Recording
from bufmon.record.times import clock_text
from bufmon.textout import human_duration, percent, process_text
from collectors.model import SEVERITY_RANK, Flag, Sock
from collectors.untrusted import printable

SYSTEM = "system"


@dataclass(slots=True)
class Incident:
    rose: float
    cleared: float | None  # None: still raised when the recording ends
    severity: str  # the worst while it held
    kind: str
    socket: str  # "tcp 10.0.0.1:80 -> 10.0.0.2:5000 (host)" or "system"
    process: str  # "comm/pid" or "-"
    worst: str  # the worst numbers while it held
    end: float = 0.0  # the recording's last frame (for the duration of a flag still raised)
    reason: str = ""  # the flag's reason at its worst
    peaks: dict[str, float] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return (self.end if self.cleared is None else self.cleared) - self.rose


def _socket_text(sock: Sock) -> str:
    return (
        f"{sock.proto} {endpoint(sock.local_addr, sock.local_port)} -> "
        f"{endpoint(sock.peer_addr, sock.peer_port)} ({sock.netns})"
    )


_PEAKS = ("recv_q", "send_q", "rx", "tx")


def _peaks_of(sock: Sock) -> dict[str, float]:
    return {
        "recv_q": sock.recv_q,
        "send_q": sock.send_q,
        "rx": sock.recv_fill or 0.0,
        "tx": sock.send_fill or 0.0,
    }


def _worst_text(peaks: dict[str, float]) -> str:
    return (
        f"Recv-Q {int(peaks['recv_q'])} ({percent(peaks['rx'])}), "
        f"Send-Q {int(peaks['send_q'])} ({percent(peaks['tx'])})"
    )


class _Tracker:
    def __init__(self) -> None:
        self.open: dict[tuple[object, str], Incident] = {}
        self.done: list[Incident] = []

    def seen(
        self, key: object, flag: Flag, t: float, where: str, proc: str, sock: Sock | None
    ) -> None:
        inc = self.open.get((key, flag.kind))
        if inc is None:
            inc = self.open[(key, flag.kind)] = Incident(
                t, None, flag.severity, flag.kind, where, proc, "", reason=flag.reason
            )
        elif SEVERITY_RANK[flag.severity] > SEVERITY_RANK[inc.severity]:
            inc.severity, inc.reason = flag.severity, flag.reason
        if sock is not None:
            now = _peaks_of(sock)
            inc.peaks = {k: max(inc.peaks.get(k, 0.0), now[k]) for k in _PEAKS}

    def frame_done(self, t: float, held: set[tuple[object, str]]) -> None:
        for ident in [i for i in self.open if i not in held]:
            inc = self.open.pop(ident)
            inc.cleared = t
            self.done.append(inc)


def _frame(tracker: _Tracker, state: State) -> None:
    held: set[tuple[object, str]] = set()
    t = state.time
    for key in state.flagged:
        row = state.rows[key]
        if row[R_CLOSED]:
            continue  # a closed socket listed for a while: its flags ended when it closed
        sock = sock_of(row, None)
        where, proc = _socket_text(sock), process_text(sock)
        for flag in row[R_FLAGS]:
            tracker.seen(key, flag, t, where, proc, sock)
            held.add((key, flag.kind))
    for flag in state.system_flags:
        tracker.seen(SYSTEM, flag, t, SYSTEM, "-", None)
        held.add((SYSTEM, flag.kind))
    tracker.frame_done(t, held)


def incidents(rec: Recording) -> list[Incident]:
    """Every flag raised in the recording, in the order they rose."""
    tracker = _Tracker()
    end = 0.0
    for state in rec.states():
        _frame(tracker, state)
        end = state.time
    found = tracker.done + list(tracker.open.values())
    for inc in found:
        inc.end = end
        inc.worst = _worst_text(inc.peaks) if inc.peaks else inc.reason
    return sorted(found, key=lambda inc: (inc.rose, inc.socket, inc.kind))


def incident_line(inc: Incident) -> str:
    """One line: rose, cleared, duration, severity, kind, socket, process, worst numbers
    (names from the recording pass through printable: no control character gets out)."""
    rose = clock_text(inc.rose)
    cleared = "still raised" if inc.cleared is None else clock_text(inc.cleared)
    if cleared[:10] == rose[:10]:
        cleared = cleared[11:]  # the same day: the time is enough
    return printable(
        f"{rose} -> {cleared} ({human_duration(inc.duration)}) "
        f"{inc.severity} {inc.kind} {inc.socket} {inc.process} worst: {inc.worst}"
    )
