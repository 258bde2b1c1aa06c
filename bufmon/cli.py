"""The `bufmon` command: the TUI by default, plus snapshot, watch and demo."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import NoReturn

from bufmon import __version__
from bufmon.diagnosis import ConfigError, load_config
from bufmon.filters import FilterError, compile_filter
from bufmon.textout import flagged_lines, table, worst_first
from collectors.model import Snapshot, Sock
from collectors.netns import NetnsError
from collectors.sockdiag import DiagError

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments: one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "filter",
        nargs="*",
        metavar="FILTER",
        help="filter expression, e.g. 'proto:tcp recvq>64k' (see README)",
    )
    p.add_argument(
        "--netns",
        default="auto",
        metavar="NAME|PID|current|all",
        help="network namespaces to read (default: all when root, else current)",
    )
    p.add_argument(
        "--config",
        metavar="PATH",
        help="TOML config file (default: $XDG_CONFIG_HOME/bufmon/config.toml)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. stalled_reader.hold=3 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bufmon",
        description="Linux socket buffer monitor. Without a command, opens the interactive view.",
    )
    parser.add_argument("--version", action="version", version=f"bufmon {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    tui = sub.add_parser("tui", help="the interactive view (the default command)")
    tui.add_argument(
        "--interval",
        type=_interval,
        default=1.0,
        metavar="SECONDS",
        help="refresh interval (default 1)",
    )
    _common(tui)
    snap = sub.add_parser("snapshot", help="print one snapshot (table or --json)")
    snap.add_argument("--json", action="store_true", help="one JSON document")
    _common(snap)
    watch = sub.add_parser("watch", help="refresh until Ctrl-C: flagged sockets, or --json lines")
    watch.add_argument("--json", action="store_true", help="one JSON document per line")
    watch.add_argument(
        "--interval",
        type=_interval,
        default=1.0,
        metavar="SECONDS",
        help="seconds between refreshes; 0 means back to back (default 1)",
    )
    watch.add_argument("--count", type=_count, metavar="N", help="stop after N refreshes")
    _common(watch)
    demo = sub.add_parser("demo", help="make live socket trouble to look at, then clean up")
    demo.add_argument("--headless", action="store_true", help="keep the cases up without the TUI")
    demo.add_argument(
        "--duration",
        type=_interval,
        metavar="SECONDS",
        help="stop after this long (default: until Ctrl-C)",
    )
    return parser


def _select(snap: Snapshot, keep: Callable[[Sock], bool]) -> list[Sock]:
    return [s for s in snap.sockets if keep(s)]


def _json_line(snap: Snapshot, socks: list[Sock]) -> str:
    """The snapshot's JSON document with only `socks` (the filtered ones)."""
    return json.dumps(snap.to_json(socks), separators=(",", ":"))


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def cmd_snapshot(args: argparse.Namespace, keep: Callable[[Sock], bool]) -> int:
    from bufmon.monitor import Monitor

    monitor = Monitor(args.netns, args.cfg)
    try:
        snap = monitor.refresh(single_sample=True)
    finally:
        monitor.close()
    socks = worst_first(_select(snap, keep))
    if args.json:
        _write(_json_line(snap, socks))
    else:
        for notice in snap.notices:
            print(f"bufmon: {notice}", file=sys.stderr)
        _write(table(socks))
    return EXIT_OK


def cmd_watch(args: argparse.Namespace, keep: Callable[[Sock], bool]) -> int:
    from bufmon.monitor import Monitor

    monitor = Monitor(args.netns, args.cfg)
    shown_notices: set[str] = set()
    try:
        done = 0
        while args.count is None or done < args.count:
            started = time.monotonic()
            snap = monitor.refresh()
            socks = worst_first(_select(snap, keep))
            if args.json:
                _write(_json_line(snap, socks))
            else:
                for notice in set(snap.notices) - shown_notices:
                    print(f"bufmon: {notice}", file=sys.stderr)
                    shown_notices.add(notice)
                _write("\n".join(flagged_lines(snap, socks)))
            done += 1
            if args.count is not None and done >= args.count:
                break
            time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
    finally:
        monitor.close()
    return EXIT_OK


def cmd_tui(args: argparse.Namespace, expr: str) -> int:
    from tui.app import run_app

    return run_app(netns=args.netns, config=args.cfg, filter_expr=expr, interval=args.interval)


def cmd_demo(args: argparse.Namespace) -> int:
    from bufmon.demo import run_demo

    return run_demo(headless=args.headless, duration=args.duration)


def _sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


COMMANDS = ("tui", "snapshot", "watch", "demo")


def run(argv: list[str]) -> int:
    parser = build_parser()
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help", "--version"):
        argv = ["tui", *argv]  # the interactive view is the default command
    args = parser.parse_args(argv)
    expr = " ".join(getattr(args, "filter", []) or [])
    keep = compile_filter(expr)
    args.cfg = load_config(args.config, args.set) if args.command != "demo" else None
    if args.command == "snapshot":
        return cmd_snapshot(args, keep)
    if args.command == "watch":
        return cmd_watch(args, keep)
    if args.command == "demo":
        return cmd_demo(args)
    return cmd_tui(args, expr)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except (UsageError, FilterError, ConfigError) as exc:
        print(f"bufmon: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (DiagError, NetnsError) as exc:
        print(f"bufmon: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        # The reader went away (`bufmon watch | head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:  # e.g. stdout on a full disk
        print(f"bufmon: cannot write output: {exc.strerror}", file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
