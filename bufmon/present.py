"""How every front end writes and orders sockets: one endpoint text, one "worst first".

The table, the watch log, the TUI and the flag sentences all call these, so the same
socket never reads or ranks differently between them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from collectors.model import SEVERITY_RANK, Flag, Sock

WILDCARDS = ("*", "0.0.0.0", "::")
MAX_FILL = 3.0  # fullness is capped here so that severity stays the first criterion


def endpoint(addr: str, port: int, service: str | None = None) -> str:
    """ "10.0.0.1:80", "[::1]:80", with `service` "10.0.0.1:http"; port 0 is "*", and an
    unset address with it "*:*"."""
    host = f"[{addr}]" if ":" in addr else addr  # no call: a table writes 80,000
    if port == 0:
        return "*:*" if addr in WILDCARDS else f"{host}:*"
    return f"{host}:{service or port}"


def endpoints(addrs: Sequence[str], ports: Sequence[int]) -> list[str]:
    """[endpoint(a, p) for a, p in zip(addrs, ports)] for a table's column (40,000
    sockets: 80,000 cells): the text before each address's port is made once."""
    before = {addr: endpoint(addr, 1)[:-1] for addr in set(addrs)}  # "10.0.0.1:", "[::1]:"
    return [f"{before[a]}{p}" if p else endpoint(a, p) for a, p in zip(addrs, ports, strict=True)]


def netns_text(s: Sock) -> str:
    """The namespace as shown: its container's name when known, else its label."""
    return s.netns_name or s.netns


def worst_key(s: Sock) -> float:
    """Larger is worse: severity of the worst flag, then fullness (the fuller of the two
    directions, 0 when unknown, capped at MAX_FILL).

    A plain float: C sorts floats several times faster than tuples, and a sort holds
    the GIL for its whole run. Computed for every socket of every snapshot the view
    shows, so written for speed: no call but for a flagged socket's severity.
    """
    recv, send = s.recv_fill or 0.0, s.send_fill or 0.0
    full = recv if recv > send else send
    if full > MAX_FILL:
        full = MAX_FILL
    return s.worst_severity() * (MAX_FILL + 1) + full if s.flags else full


def worst_first(socks: Iterable[Sock]) -> list[Sock]:
    return sorted(socks, key=worst_key, reverse=True)


def flags_worst_first(flags: Iterable[Flag]) -> list[Flag]:
    return sorted(flags, key=lambda f: -SEVERITY_RANK.get(f.severity, 0))
