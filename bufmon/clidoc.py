"""What `bufmon --help`, the man page and the shell completions say, from one source:
the argparse parser (commands, options, their help) plus the examples below.

`HelpFormatter` lays out every --help, `add_examples` puts each command's examples
under it; `command_docs` walks the parser for bufmon.manpage and bufmon.completion.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NamedTuple

from bufmon.exporter.command import DEFAULT_LISTEN, DEFAULT_PORT

SHELLS = ("bash", "zsh")  # `bufmon completion SHELL` (bufmon.completion writes them)

# command ("" for bufmon itself) -> (command line, what it does)
EXAMPLES: dict[str, tuple[tuple[str, str], ...]] = {
    "": (
        ("bufmon", "the interactive view of every namespace (as root)"),
        ("bufmon 'state:estab recvq>64k'", "the view, only connections with over 64 KiB unread"),
        ("bufmon snapshot --json flag:any", "every flagged socket once, as JSON"),
        ("bufmon watch flag:warning", "a line per warning or worse until Ctrl-C"),
    ),
    "tui": (
        ("bufmon tui --interval 0.5 proto:tcp", "TCP sockets, refreshed twice a second"),
        ("bufmon --netns current --theme light", "this namespace only, on a light terminal"),
    ),
    "snapshot": (
        ("bufmon snapshot 'port:443 recvq>0'", "a table of port 443 sockets with data queued"),
        ("bufmon snapshot --json netns:docker:web", "the sockets of container web, as JSON"),
        ("bufmon snapshot --rates --interval 2 'tx>1M'", "sockets sending over 1 MiB/s"),
    ),
    "watch": (
        ("bufmon watch", "flagged sockets, refreshed every second"),
        ("bufmon watch --json --interval 5 --count 12 > minute.jsonl", "a minute of JSON lines"),
    ),
    "demo": (
        ("bufmon demo", "make live socket trouble in a namespace and look at it"),
        ("bufmon demo --headless --duration 60", "keep the cases up for a minute, no view"),
    ),
    "export": (
        ("bufmon export", f"Prometheus metrics on http://{DEFAULT_LISTEN}/metrics"),
        (
            f"bufmon export --listen :{DEFAULT_PORT} --basic-auth-file /etc/bufmon/users",
            "on every IPv4 address, behind a password",
        ),
    ),
    "kill": (
        ("bufmon kill 'port:8080 state:estab'", "list, ask, then close"),
        ("bufmon kill --dry-run flag:stalled_reader", "only list what would be closed"),
        ("bufmon kill --yes 'dst:10.0.0.7 proc:app'", "close without asking (scripts)"),
    ),
    "record": (
        ("bufmon record night.rec --duration 8h flag:any", "record the night's flagged sockets"),
        ("bufmon record /var/tmp/bufmon.rec --max-size 100M", "rotating at 100 MB, 2 kept"),
    ),
    "replay": (
        ("bufmon replay night.rec --at 03:12", "the view as it was at 03:12"),
        ("bufmon replay night.rec --incidents", "one line per flag raised"),
        ("bufmon replay night.rec --json --from -10m", "the last ten minutes as JSON lines"),
    ),
    "completion": (
        ("source <(bufmon completion bash)", "complete bufmon in this bash"),
        ("bufmon completion zsh > ~/.zfunc/_bufmon", "for zsh (with ~/.zfunc in $fpath)"),
    ),
}


def examples_text(command: str) -> str:
    lines = ["examples:"]
    for line, what in EXAMPLES.get(command, ()):
        lines.append(f"  {line}")
        lines.append(f"      {what}")
    return "\n".join(lines)


def _commands_action(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Any]:
    (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return dict(_commands_action(parser).choices)


def add_examples(parser: argparse.ArgumentParser) -> None:
    """Each command's examples at the end of its --help (and bufmon's under bufmon's)."""
    for name, command in [("", parser), *subcommands(parser).items()]:
        command.epilog = examples_text(name)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's layout, the examples kept as written, as wide as argparse makes it.

    argparse makes a formatter for each argument added to a parser; its own reads the
    width with shutil.get_terminal_size, and importing shutil (with zlib, bz2 and lzma)
    took ~4 ms of every command's start-up."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=terminal_columns() - 2)


def terminal_columns() -> int:
    """shutil.get_terminal_size().columns: $COLUMNS, else stdout's terminal's, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0 and sys.__stdout__ is not None:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (ValueError, OSError):
            columns = 0
    return columns or 80


class OptionDoc(NamedTuple):
    flags: tuple[str, ...]
    metavar: str | None  # None: a switch, it takes no value
    choices: tuple[str, ...]
    help: str


class CommandDoc(NamedTuple):
    name: str  # "" for bufmon itself
    summary: str
    usage: str  # "bufmon snapshot [-h] [--json] ..."
    options: tuple[OptionDoc, ...]
    positionals: tuple[OptionDoc, ...]
    examples: tuple[tuple[str, str], ...]


def _option(action: argparse.Action) -> OptionDoc:
    takes = action.nargs != 0
    metavar = action.metavar or (action.dest.upper() if takes else None)
    choices = tuple(str(c) for c in action.choices or ())
    if choices and action.metavar is None:
        metavar = "{" + ",".join(choices) + "}"
    shown = str(metavar) if takes else None
    return OptionDoc(tuple(action.option_strings), shown, choices, action.help or "")


def command_docs(parser: argparse.ArgumentParser) -> list[CommandDoc]:
    """bufmon itself, then every command in the order --help lists them."""
    helps = {a.dest: a.help or "" for a in _commands_action(parser)._choices_actions}
    helps[""] = parser.description or ""
    docs = []
    for name, command in [("", parser), *subcommands(parser).items()]:
        actions = [a for a in command._actions if not isinstance(a, argparse._SubParsersAction)]
        docs.append(
            CommandDoc(
                name,
                helps.get(name, ""),
                " ".join(command.format_usage().split())[len("usage: ") :],
                tuple(_option(a) for a in actions if a.option_strings),
                tuple(_option(a) for a in actions if not a.option_strings),
                EXAMPLES.get(name, ()),
            )
        )
    return docs
