"""`bufmon kill FILTER`: close the TCP and UDP sockets a filter matches, as `ss -K` does.

It lists what matches, then asks on the terminal (`--yes` for scripts, `--dry-run`
to only list). It closes exactly the sockets it listed (each named by its cookie),
never more; an empty filter is refused.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the handler loads what it uses: every `bufmon` builds this parser
    from collectors.model import Sock

DESCRIPTION = """Close the TCP and UDP sockets FILTER matches through sock_diag SOCK_DESTROY,
as `ss -K` does: list them, ask, then close exactly those (the peer sees a reset).
Needs CAP_NET_ADMIN and a kernel built with CONFIG_INET_DIAG_DESTROY."""
EXIT_USAGE, EXIT_RUNTIME = 2, 1


class KillError(Exception):
    """One line for the user and the exit code (2: usage, 1: refused or failed)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def add_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "kill",
        help="close the TCP/UDP sockets a filter matches (asks first; needs root)",
        description=DESCRIPTION,  # its examples: bufmon.clidoc, like every command's
    )
    p.add_argument("--yes", action="store_true", help="close without asking")
    p.add_argument("--dry-run", action="store_true", help="list what matches, close nothing")
    common(p)


def _confirmed(count: int) -> bool:
    try:
        answer = input(f"Close {'this socket' if count == 1 else f'these {count} sockets'}? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def cmd_kill(args: argparse.Namespace, expr: str, keep: Callable[[Sock], bool]) -> int:
    from bufmon.actions import closable, close_all, describe, tally
    from bufmon.monitor import Monitor
    from bufmon.textout import shown, table
    from collectors.destroy import REFUSED, may_destroy

    if not expr.strip():
        raise KillError("refusing to close every socket: give a filter, e.g. port:8080", EXIT_USAGE)
    if not args.dry_run and not may_destroy():
        raise KillError(
            "closing sockets needs CAP_NET_ADMIN (run as root); nothing was closed", EXIT_RUNTIME
        )
    if not (args.yes or args.dry_run or sys.stdin.isatty()):
        raise KillError("not closing without asking: run on a terminal, or add --yes", EXIT_USAGE)
    monitor = Monitor(args.netns, args.cfg)
    try:
        snap = monitor.refresh(single_sample=True)
        targets = closable(shown(snap, keep))
        if not targets:
            no_match = f"no TCP or UDP socket matches {expr!r}; nothing was closed"
            raise KillError(no_match, EXIT_RUNTIME)
        print(table(targets), flush=True)
        if args.dry_run:
            print(f"dry run: {len(targets)} matching, nothing was closed")
            return 0
        if not args.yes and not _confirmed(len(targets)):
            print("nothing was closed")
            return 0
        done = close_all(monitor.namespaces, targets)
    finally:
        monitor.close()
    for sock, outcome in done:
        print(f"{outcome}: {describe(sock)}")
    print(tally(done), flush=True)
    return EXIT_RUNTIME if any(o.result == REFUSED for _, o in done) else 0
