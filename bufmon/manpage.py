"""bufmon.1, the man page, written from the parser (bufmon.clidoc) and the filter
fields: `python -m bufmon.manpage > man/bufmon.1` (scripts/manpage). A test checks the
shipped page is what this writes, so the page never drifts from `--help`."""

from __future__ import annotations

import sys

from bufmon import __version__
from bufmon.clidoc import CommandDoc, OptionDoc, command_docs
from bufmon.filters import COMPARE_FIELDS, FIELD_VALUES, MATCH_FIELDS

DESCRIPTION = (
    "bufmon shows the receive and send queues, buffer sizes and TCP state of every TCP, "
    "UDP and UNIX socket, read from the kernel over netlink sock_diag, and flags the "
    "sockets in trouble (a reader that stalls, a peer with a zero window, a full accept "
    "queue, drops). It only reads until asked to close a socket (bufmon kill, or K in "
    "the view, after a confirmation; the peer of a closed TCP connection receives a "
    "reset): it sends no network traffic of its own. As root it reads "
    "every network namespace and names each by its container or pod where the "
    "container runtime's state files say so."
)
FILTERS = (
    "A filter is terms joined by spaces (and), 'or', '!' (not) and parentheses. "
    "A term is field:value or field OP number, OP one of > >= < <= = !=."
)
FILES = (
    ("$XDG_CONFIG_HOME/bufmon/config.toml",
     "the config file (else ~/.config/bufmon/config.toml; --config names another): a table "
     "per flag with its thresholds, [view] with the interactive view's columns, service "
     "names and theme (saved by the view), and [keys] remapping its keys (action = key)."),
    ("/etc/services", "service names of ports, shown in the view on R; read once."),
    ("/var/lib/docker/containers/ID/config.v2.json, "
     "/run/containerd/io.containerd.runtime.v2.task/NS/ID/config.json, "
     "/run/containers/storage/overlay-containers/ID/userdata/config.json",
     "container and pod names (docker, containerd, cri-o), read without a daemon."),
)  # fmt: skip


def roff(text: str) -> str:
    """Text safe in a roff line: backslashes escaped, no line starting a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def _option(option: OptionDoc) -> list[str]:
    flags = ", ".join(f"\\fB{roff(f)}\\fR" for f in option.flags)
    value = f" \\fI{roff(option.metavar)}\\fR" if option.metavar else ""
    return [".TP", flags + value, roff(option.help)]


def _command(doc: CommandDoc) -> list[str]:
    out = [f'.SS "bufmon {doc.name}"', roff(doc.summary.rstrip(".") + "."), ".PP"]
    out += [roff(doc.usage)]
    for positional in doc.positionals:
        out += [".TP", f"\\fI{roff(positional.metavar or '')}\\fR", roff(positional.help)]
    for option in doc.options:
        out += _option(option)
    return out + _examples(doc)


def _examples(doc: CommandDoc) -> list[str]:
    out = [".PP", "Examples:"] if doc.examples and doc.name else []
    for line, what in doc.examples:
        out += [".TP", f"\\fB{roff(line)}\\fR", roff(what)]
    return out


def manpage() -> str:
    from bufmon.cli import build_parser  # cli imports this module's neighbours

    top, *commands = command_docs(build_parser())
    out = [
        f'.TH BUFMON 1 "" "bufmon {__version__}" "User Commands"',
        ".SH NAME",
        f"bufmon \\- {roff(top.summary.split('.')[0])}",
        ".SH SYNOPSIS",
        ".B bufmon",
        "[\\fICOMMAND\\fR] [\\fIOPTIONS\\fR] [\\fIFILTER\\fR ...]",
        ".SH DESCRIPTION",
        roff(DESCRIPTION),
        ".PP",
        roff(top.summary),
        ".SH OPTIONS",
    ]
    for option in top.options:
        out += _option(option)
    out += [".SH COMMANDS"]
    for doc in commands:
        out += _command(doc)
    out += [".SH FILTERS", roff(FILTERS), ".TP", "\\fBfield:value\\fR"]
    out += [roff(", ".join(MATCH_FIELDS))]
    for field, values in FIELD_VALUES.items():
        out += [".TP", f"\\fB{field}:\\fR", roff(", ".join(values))]
    out += [".TP", "\\fBfield OP number\\fR", roff(", ".join(COMPARE_FIELDS))]
    out += [".SH EXAMPLES", *_examples(top), ".SH FILES"]
    for path, what in FILES:
        out += [".TP", f"\\fI{roff(path)}\\fR", roff(what)]
    out += [".SH EXIT STATUS", "0 done, 1 a runtime error, 2 bad usage or input.", ".SH SEE ALSO"]
    out += ["\\fBss\\fR(8), \\fBip\\-netns\\fR(8), \\fBservices\\fR(5)"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(manpage())
