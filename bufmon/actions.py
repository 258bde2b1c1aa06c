"""Acting on what bufmon shows: close sockets, copy one as text, export a view.

Shared by `bufmon kill` and the TUI so a socket reads the same in the kill list, the
confirmation, the clipboard and the export files.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bufmon.present import WILDCARDS, endpoint
from bufmon.textout import COLUMNS, columns, json_line, row, watch_document
from collectors.destroy import GONE, Closer, Outcome
from collectors.model import Snapshot, Sock, UnixSock
from collectors.netns import NETNS_RUN_DIR, NamespaceSet, NetnsError


def closable(socks: Iterable[Sock]) -> list[Sock]:
    """The sockets SOCK_DESTROY can close: TCP and UDP (never UNIX ones)."""
    return [s for s in socks if s.proto in ("tcp", "udp")]


def close_all(namespaces: NamespaceSet, socks: list[Sock]) -> list[tuple[Sock, Outcome]]:
    """Close each socket in its own namespace, in order; stops at the first refusal
    that every other socket would get too (no right, no kernel support)."""
    done: list[tuple[Sock, Outcome]] = []
    closers: dict[str, Closer | None] = {}  # by namespace label; None: it is gone
    try:
        for sock in socks:
            if sock.netns not in closers:
                try:
                    closers[sock.netns] = Closer(namespaces.path_of(sock.netns))
                except NetnsError:
                    closers[sock.netns] = None
            closer = closers[sock.netns]
            if closer is None:
                outcome = Outcome(GONE, "its network namespace is gone")
            else:
                outcome = closer.destroy(sock)
            done.append((sock, outcome))
            if outcome.final:
                break
    finally:
        for closer in closers.values():
            if closer is not None:
                closer.close()
    return done


def tally(done: list[tuple[Sock, Outcome]]) -> str:
    """ "2 closed, 1 gone already", with the reason of each kind of refusal."""
    counts: dict[str, int] = {}
    for _sock, outcome in done:
        counts[str(outcome)] = counts.get(str(outcome), 0) + 1
    return ", ".join(f"{n} {what}" for what, n in counts.items()) or "nothing was closed"


def describe(sock: Sock) -> str:
    """One line: namespace, protocol, state, both ends, process, queues, fullness, flags."""
    netns, proto, state, recv_q, send_q, local, peer, recv_fill, send_fill, process, flags = row(
        sock
    )
    return (
        f"{netns} {proto} {state} {local} -> {peer} {process} "
        f"Recv-Q {recv_q} Send-Q {send_q} Rx {recv_fill} Tx {send_fill} flags {flags}"
    )


def ss_command(sock: Sock) -> str:
    """The `ss` command line that shows this socket."""
    if isinstance(sock, UnixSock):
        where = f" {shlex.quote('src ' + sock.path)}" if sock.path else ""
        return f"ss -xanm{where}"
    terms = []
    if sock.local_port:
        wildcard = sock.local_addr in WILDCARDS
        terms.append(f"sport = :{sock.local_port}" if wildcard else "src " + _ends(sock)[0])
    if sock.peer_port:
        terms.append("dst " + _ends(sock)[1])
    options = "-tanmi" if sock.proto == "tcp" else "-uanm"
    namespace = ""
    if sock.netns != "host":
        named = os.path.isfile(os.path.join(NETNS_RUN_DIR, sock.netns))
        namespace = f" -N {shlex.quote(sock.netns)}" if named else ""
    line = f"ss{namespace} {options}"
    if terms:
        line += " " + shlex.quote(" and ".join(terms))
    if sock.netns != "host" and not namespace:
        line += f"  # in network namespace {sock.netns}"
    return line


def _ends(sock: Sock) -> tuple[str, str]:
    return endpoint(sock.local_addr, sock.local_port), endpoint(sock.peer_addr, sock.peer_port)


def sock_json(sock: Sock) -> str:
    """The socket object of `bufmon snapshot --json`."""
    return json.dumps(sock.to_json(), indent=2)


@dataclass(frozen=True, slots=True)
class CopyFormat:
    render: Callable[[Sock], str]
    name: str  # as a message names it: "copied as an ss command"
    suffix: str  # of the file written when no clipboard can be reached


COPY_FORMATS = {
    "text": CopyFormat(describe, "text", "txt"),
    "ss": CopyFormat(ss_command, "an ss command", "txt"),
    "json": CopyFormat(sock_json, "JSON", "json"),
}


def view_json(snap: Snapshot, socks: list[Sock]) -> str:
    """The `snapshot --json` document holding `socks`."""
    return json_line(watch_document(snap, socks)) + "\n"


def view_csv(_snap: Snapshot, socks: list[Sock]) -> str:
    """The `snapshot` table's columns, one row per socket."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(zip(*columns(socks), strict=True))
    return out.getvalue()


EXPORT_FORMATS: dict[str, Callable[[Snapshot, list[Sock]], str]] = {
    "json": view_json,
    "csv": view_csv,
}


def write_new(directory: Path, stem: str, suffix: str, text: str) -> Path:
    """Write `text` to a new file `stem-TIME.suffix` (0600) in `directory`; never
    overwrites: a name taken already gets -2, -3... Raises OSError."""
    base = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    for n in range(1, 100):
        path = directory / (f"{base}.{suffix}" if n == 1 else f"{base}-{n}.{suffix}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        return path
    raise FileExistsError(f"too many files named {base}* in {directory}")
