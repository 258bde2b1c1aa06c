"""`bufmon record` and `bufmon replay`: their options and what they do."""

from __future__ import annotations

import argparse
import bisect
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bufmon.record.errors import RecorderError, RecordingError
from bufmon.record.times import FORMS, parse_duration, parse_time
from bufmon.textout import shown, write_json_line
from collectors.model import Sock

if TYPE_CHECKING:  # loaded by the commands that use them, not by every `bufmon`
    from bufmon.record.reader import Recording
    from bufmon.record.writer import Recorder

COMMANDS = ("record", "replay")
VALUE_OPTIONS = ("--max-size", "--keep", "--at", "--from", "--to")  # take the next word
MAX_DURATION = 366 * 86400
MIN_SIZE = 64 << 10  # a keyframe of a busy host must fit in one file
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", re.IGNORECASE)
_RELATIVE = re.compile(r"^-\d+(\.\d+)?[smhd]?$")
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

__all__ = ["COMMANDS", "RecorderError", "RecordingError", "add_parsers", "run_command"]


def _duration(text: str) -> float:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0 < value <= MAX_DURATION:
        raise argparse.ArgumentTypeError(f"expected more than 0 seconds, up to 366d, got {text!r}")
    return value


def _size(text: str) -> int:
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 100M, 2G)")
    value = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    if value < MIN_SIZE:
        raise argparse.ArgumentTypeError(f"expected at least 64K, got {text!r}")
    return value


def _intermixed(parser: argparse.ArgumentParser) -> None:
    """Let FILE and FILTER words stand before and after the options
    (`replay FILE --json proto:tcp`), as parse_intermixed_args does."""
    base = type(parser)

    class Intermixed(base):  # type: ignore[valid-type,misc]
        _inside = False

        def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
            if self._inside:
                return super().parse_known_args(args, namespace)
            self._inside = True
            try:
                return self.parse_known_intermixed_args(args, namespace)
            finally:
                self._inside = False

    parser.__class__ = Intermixed


def add_parsers(
    sub: Any, common: Callable[[argparse.ArgumentParser], None], count: Callable[[str], int]
) -> None:
    """Add `record` and `replay` to the subcommands; `common` adds FILTER, --netns and
    --config, `count` parses a positive whole number."""
    rec = sub.add_parser("record", help="append snapshots to a recording file until stopped")
    rec.add_argument("file", metavar="FILE", help="the recording (created 0600 or appended to)")
    rec.add_argument(
        "--interval",
        type=_duration,
        default=1.0,
        metavar="S",
        help="seconds between snapshots (default 1)",
    )
    rec.add_argument(
        "--duration", type=_duration, metavar="D", help="stop after this long, e.g. 90, 10m, 8h"
    )
    rec.add_argument(
        "--max-size",
        type=_size,
        metavar="SIZE",
        help="rotate FILE at this size, e.g. 100M (FILE.1 ... FILE.N)",
    )
    rec.add_argument(
        "--keep",
        type=count,
        default=2,
        metavar="N",
        help="rotated files kept with --max-size (default 2)",
    )
    common(rec)
    _intermixed(rec)
    rep = sub.add_parser("replay", help="read a recording: the view, --json or --incidents")
    rep.add_argument("file", metavar="FILE", help="the recording (FILE.N ... FILE.1 included)")
    rep.add_argument("--at", metavar="TIME", help=f"where the view opens: {FORMS}")
    rep.add_argument("--json", action="store_true", help="frames as JSON lines (watch --json)")
    rep.add_argument("--from", dest="start", metavar="TIME", help="with --json: first time")
    rep.add_argument("--to", dest="stop", metavar="TIME", help="with --json: last time")
    rep.add_argument("--incidents", action="store_true", help="one line per flag raised")
    rep.add_argument("filter", nargs="*", metavar="FILTER", help="filter expression")
    # `--from -10m`: let argparse take "-10m" as a value, as it does "-10"
    rep._negative_number_matcher = _RELATIVE
    _intermixed(rep)


def run_command(args: argparse.Namespace, expr: str, keep: Callable[[Sock], bool]) -> int:
    if args.command == "record":
        return cmd_record(args, keep)
    return cmd_replay(args, expr, keep)


# -- record ----------------------------------------------------------------------------


def cmd_record(args: argparse.Namespace, keep: Callable[[Sock], bool]) -> int:
    from bufmon.diagnosis import load_config
    from bufmon.monitor import Monitor
    from bufmon.record.writer import Recorder

    config = load_config(args.config, args.set)
    stop = threading.Event()  # Ctrl-C, SIGTERM and SIGHUP end it after the current frame
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # HUP: the SSH session died
        if signum != signal.SIGHUP or signal.getsignal(signum) != signal.SIG_IGN:  # nohup
            signal.signal(signum, lambda _n, _f: stop.set())
    recorder = Recorder(args.file, args.interval, args.max_size, args.keep)
    monitor = Monitor(args.netns, config)
    try:
        recorder.open(monitor.host)
        print(f"bufmon: recording to {args.file} every {args.interval:g} s", file=sys.stderr)
        _record_loop(args, monitor, recorder, keep, stop)
    finally:
        recorder.close()
        monitor.close()
    return 0


def _record_loop(
    args: argparse.Namespace,
    monitor: Any,
    recorder: Recorder,
    keep: Callable[[Sock], bool],
    stop: threading.Event,
) -> None:
    ends = None if args.duration is None else time.monotonic() + args.duration
    shown_notices: set[str] = set()
    while not stop.is_set():
        started = time.monotonic()
        snap = monitor.refresh()
        for notice in set(snap.notices) - shown_notices:
            print(f"bufmon: {notice}", file=sys.stderr)
            shown_notices.add(notice)
        recorder.write(snap, [s for s in snap.sockets if keep(s)])
        if ends is not None and time.monotonic() >= ends:
            break
        pause = args.interval - (time.monotonic() - started)
        if ends is not None:
            pause = min(pause, ends - time.monotonic())
        stop.wait(max(0.0, pause))


# -- replay ----------------------------------------------------------------------------


def _time_arg(rec: Recording, option: str, text: str | None, default: float) -> float:
    if text is None:
        return default
    try:
        return parse_time(text, rec.times[0], rec.times[-1])
    except ValueError as exc:
        raise RecordingError(f"{option}: {exc}") from None


def cmd_replay(args: argparse.Namespace, expr: str, keep: Callable[[Sock], bool]) -> int:
    from bufmon.record.incidents import incident_line, incidents
    from bufmon.record.reader import Recording

    rec = Recording.open(args.file)
    try:
        if args.incidents:
            for inc in incidents(rec):
                sys.stdout.write(incident_line(inc) + "\n")
            sys.stdout.flush()
            return 0
        if args.json:
            _replay_json(rec, args, keep)
            return 0
        return _replay_view(rec, args, expr)
    finally:
        rec.close()


def _replay_json(rec: Recording, args: argparse.Namespace, keep: Callable[[Sock], bool]) -> None:
    first = _time_arg(rec, "--from", args.start, rec.times[0])
    last = _time_arg(rec, "--to", args.stop, rec.times[-1])
    for i in range(bisect.bisect_left(rec.times, first), bisect.bisect_right(rec.times, last)):
        snap = rec.snapshot(i)
        write_json_line(sys.stdout.buffer, snap, shown(snap, keep))


def _replay_view(rec: Recording, args: argparse.Namespace, expr: str) -> int:
    from bufmon.cli import need_terminal

    need_terminal("`bufmon replay FILE --json` or `--incidents`")
    at = _time_arg(rec, "--at", args.at, rec.times[0])
    from bufmon.frontend import run_replay  # textual only now that the view will run

    return run_replay(rec, at, expr)
