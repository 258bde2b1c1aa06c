"""Connections still in a listener's accept queue: the handshake is done, the
application has not called accept() yet. They have no file (inode 0), so no process
owns them and none can read them; data their client already sent waits in their
Recv-Q. They are tied to their listener (sock.listener) so that views can show them
as "waiting to be accepted by ..." and the diagnosis blames the listener, not a reader.
"""

from __future__ import annotations

from collectors.model import Sock

# A child in the accept queue is ESTAB, or CLOSE-WAIT once its client has closed.
WAITING_STATES = frozenset({"ESTAB", "CLOSE-WAIT"})
WILDCARDS = frozenset({"0.0.0.0", "::"})


def tie_to_listeners(socks: list[Sock]) -> None:
    """Set sock.listener on every connection waiting in an accept queue."""
    waiting = [s for s in socks if not s.inode and s.state in WAITING_STATES]
    if not waiting:
        return
    exact: dict[tuple[str, str, int], Sock] = {}
    wildcard: dict[tuple[str, int], Sock] = {}
    for s in socks:
        if s.state == "LISTEN" and s.proto == "tcp":
            if s.local_addr in WILDCARDS:
                wildcard[(s.netns, s.local_port)] = s
            else:
                exact[(s.netns, s.local_addr, s.local_port)] = s
    for s in waiting:
        if s.proto == "tcp":
            s.listener = exact.get((s.netns, s.local_addr, s.local_port)) or wildcard.get(
                (s.netns, s.local_port)
            )
