"""The `bufmon` command: the TUI by default, plus snapshot, watch and demo."""

from __future__ import annotations

import argparse
import functools
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

from bufmon import __version__
from bufmon.clidoc import SHELLS, HelpFormatter, add_examples
from bufmon.diagnosis import ConfigError, load_config
from bufmon.exporter.command import add_export_parser, cmd_export
from bufmon.exporter.errors import ExportError, ExportUsageError
from bufmon.filters import FilterError, with_unix
from bufmon.kill import KillError, cmd_kill
from bufmon.kill import add_parser as add_kill_parser
from bufmon.pacing import DEFAULT_INTERVAL, Pace
from bufmon.record import commands as record_commands
from bufmon.textout import flagged_lines, kept, shown, table, write_json_line
from bufmon.viewconfig import THEMES
from collectors.gcpolicy import gc_paused
from collectors.model import Sock
from collectors.netns import NamespaceSet, NetnsError
from collectors.sockdiag import DiagError
from collectors.untrusted import printable

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
MAX_SECONDS = 7 * 86400  # any interval or duration: a week at most


class UsageError(Exception):
    """Bad arguments: one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _say(message: object) -> None:
    """One line on stderr; the message may quote names other users chose."""
    if sys.stderr is not None:
        print(f"bufmon: {printable(str(message))}", file=sys.stderr)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"expected seconds from 0 to {MAX_SECONDS} (a week), got {text!r}"
        )
    return value


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _common(p: argparse.ArgumentParser, *, unix: bool = True) -> None:
    p.add_argument(
        "filter",
        nargs="*",
        metavar="FILTER",
        help="filter expression, e.g. 'proto:tcp recvq>64k' (see README)",
    )
    _sources(p, unix=unix)


def _sources(p: argparse.ArgumentParser, *, unix: bool = True) -> None:
    """--unix (unless `unix` is false), --netns, --config and --set: what to read and
    how to judge it."""
    if unix:
        p.add_argument(
            "--unix",
            action="store_true",
            help="list every UNIX socket (default: only flagged ones, unless the filter "
            "names proto:unix, path:, type: or peer:)",
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
        type=_seconds,
        metavar="SECONDS",
        help=f"refresh interval (default {DEFAULT_INTERVAL:g}, longer while refreshes are slow)",
    )
    tui.add_argument(
        "--theme",
        choices=THEMES,
        help="colours for a dark or a light terminal (default: the config file's [view] theme)",
    )
    _common(tui)
    snap = sub.add_parser(
        "snapshot",
        help="print one snapshot (table or --json)",
        description="Print one snapshot. It samples once, so sockets have no rates "
        "(JSON `rates` null) unless --rates is given.",
    )
    snap.add_argument("--json", action="store_true", help="one JSON document")
    snap.add_argument(
        "--rates",
        action="store_true",
        help="sample twice, --interval apart, so every socket has rx/tx/retransmit rates",
    )
    snap.add_argument(
        "--interval",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="with --rates: seconds between the two samples (default 1)",
    )
    _common(snap)
    watch = sub.add_parser("watch", help="refresh until Ctrl-C: flagged sockets, or --json lines")
    watch.add_argument("--json", action="store_true", help="one JSON document per line")
    watch.add_argument(
        "--interval",
        type=_seconds,
        metavar="SECONDS",
        help="seconds between refreshes; 0 means back to back "
        f"(default {DEFAULT_INTERVAL:g}, longer while refreshes are slow)",
    )
    watch.add_argument("--count", type=_count, metavar="N", help="stop after N refreshes")
    _common(watch)
    demo = sub.add_parser("demo", help="make live socket trouble to look at, then clean up")
    demo.add_argument("--headless", action="store_true", help="keep the cases up without the TUI")
    demo.add_argument(
        "--duration",
        type=_seconds,
        metavar="SECONDS",
        help="stop after this long (default: until Ctrl-C)",
    )
    _sources(add_export_parser(sub))
    add_kill_parser(sub, functools.partial(_common, unix=False))  # UNIX sockets never close
    record_commands.add_parsers(sub, _common, _count)
    done = sub.add_parser("completion", help="print a shell completion script (bash or zsh)")
    done.add_argument("shell", choices=SHELLS, help="the shell to complete bufmon in")
    add_examples(parser)
    return parser


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def cmd_snapshot(args: argparse.Namespace, keep: Callable[[Sock], bool]) -> int:
    from bufmon.monitor import Monitor

    monitor = Monitor(args.netns, args.cfg)
    try:
        if args.rates:
            monitor.sample_rates()
            time.sleep(args.interval)
        monitor.prefetch_processes()
        snap = monitor.refresh(single_sample=True)
    finally:
        monitor.close()
    with gc_paused():  # the output makes objects by the 100,000: no GC passes over them
        socks = shown(snap, keep)
        if args.json:
            write_json_line(sys.stdout.buffer, snap, socks)
        else:
            for notice in snap.notices:
                _say(notice)
            _write(table(socks, rates=args.rates))
    return EXIT_OK


def cmd_watch(args: argparse.Namespace, keep: Callable[[Sock], bool]) -> int:
    from bufmon.monitor import Monitor

    monitor = Monitor(args.netns, args.cfg)
    pace = Pace.from_option(args.interval, args.cfg.refresh.cpu_share)
    shown_notices: set[str] = set()
    monitor.prefetch_processes()  # the first refresh reads every link: beside its dump
    texts = None
    if args.json:
        from bufmon.jsonkept import KeptTexts  # late: only --json needs it

        texts = KeptTexts()
    try:
        done = 0
        while args.count is None or done < args.count:
            started = time.monotonic()
            snap = monitor.refresh()
            if args.json:
                with gc_paused():  # the output makes objects by the 100,000
                    write_json_line(sys.stdout.buffer, snap, shown(snap, keep), texts)
            else:
                for notice in set(snap.notices) - shown_notices:
                    _say(notice)
                    shown_notices.add(notice)
                _write("\n".join(flagged_lines(snap, kept(snap, keep))))
            del snap  # freed after its output, and before the next refresh peaks memory
            done += 1
            if args.count is not None and done >= args.count:
                break
            pace.took(time.monotonic() - started)
            time.sleep(max(0.0, pace.in_force - (time.monotonic() - started)))
    finally:
        monitor.close()
    return EXIT_OK


def need_terminal(instead: str = "`bufmon snapshot` or `bufmon watch`") -> None:
    """The interactive view draws on a terminal; without one it refuses in one line."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            f"the interactive view needs a terminal on stdin and stdout"
            f" (for files and pipes use {instead})"
        )


def cmd_tui(args: argparse.Namespace, keep: Callable[[Sock], bool], expr: str) -> int:
    need_terminal()
    NamespaceSet(args.netns).close()  # a namespace that does not exist: say so, do not start
    from bufmon.frontend import run_app

    return run_app(
        args.netns,
        config=args.cfg,
        filter_expr=expr,
        keep=keep,
        pace=Pace.from_option(args.interval, args.cfg.refresh.cpu_share),
        show_unix=args.unix,
        config_file=args.config,
        theme=args.theme,
    )


def cmd_demo(args: argparse.Namespace) -> int:
    if not args.headless:
        need_terminal()
    from bufmon.demo import run_demo

    return run_demo(headless=args.headless, duration=args.duration)


def _sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


COMMANDS = (
    "tui", "snapshot", "watch", "demo", "export", "kill", *record_commands.COMMANDS, "completion",
)  # fmt: skip
# Options that take the next word as their value (without `=`): skipped when looking for
# the command, so `bufmon --netns current snapshot` means snapshot.
VALUE_OPTIONS = (
    "--netns", "--config", "--set", "--interval", "--count", "--duration",
    "--theme", "--listen", "--max-sockets", "--tls-cert", "--tls-key", "--basic-auth-file",
    *record_commands.VALUE_OPTIONS,
)  # fmt: skip


def with_command(argv: list[str]) -> list[str]:
    """argv with its command first; the interactive view when there is none."""
    if argv[:1] in (["-h"], ["--help"], ["--version"]):
        return argv
    i = 0
    while i < len(argv) and argv[i] != "--":
        word = argv[i]
        if word in VALUE_OPTIONS:
            i += 2
        elif word.startswith("-"):
            i += 1
        else:  # the first word that is not an option: a command or a filter term
            if word in COMMANDS:
                return [word, *argv[:i], *argv[i + 1 :]]
            break
    return ["tui", *argv]


def run(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(with_command(argv))
    expr = " ".join(getattr(args, "filter", []) or [])
    keep = with_unix(expr, getattr(args, "unix", False))
    if args.command == "completion":
        from bufmon.completion import completion_script

        _write(completion_script(args.shell, parser).rstrip("\n"))
        return EXIT_OK
    if args.command in record_commands.COMMANDS:
        return record_commands.run_command(args, expr, keep)
    args.cfg = load_config(args.config, args.set) if args.command != "demo" else None
    if args.command == "snapshot":
        return cmd_snapshot(args, keep)
    if args.command == "watch":
        return cmd_watch(args, keep)
    if args.command == "demo":
        return cmd_demo(args)
    if args.command == "export":
        return cmd_export(args)
    if args.command == "kill":
        return cmd_kill(args, expr, keep)
    return cmd_tui(args, keep, expr)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _sigterm)
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        _say("standard output is closed")
        return EXIT_RUNTIME
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except (record_commands.RecorderError, KillError) as exc:
        _say(exc)
        return exc.code
    except (
        UsageError,
        FilterError,
        ConfigError,
        ExportUsageError,
        record_commands.RecordingError,
    ) as exc:
        _say(exc)
        return EXIT_USAGE
    except (DiagError, NetnsError, ExportError) as exc:
        _say(exc)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        # The reader went away (`bufmon watch | head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:  # e.g. stdout on a full disk
        _say(f"cannot write output: {exc.strerror}")
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
