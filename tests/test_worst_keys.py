"""worst_key, the view's "flags" order, over real sockets of each kind.

Real sockets in a namespace of the test's own: idle pairs (sharing one skmem tuple), a
stalled reader (a full receive queue), a full accept queue (listeners rank by their
queue, not their skmem) and a UDP socket with queued datagrams. A flag is added by hand
to sockets that share their skmem with unflagged ones: a flag needs its hold time.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from bufmon.monitor import Monitor
from bufmon.present import MAX_FILL, worst_key
from bufmon.scenarios import AcceptQueueFull, IdleKeepalive, Netns, StalledReader, UdpDrops
from collectors.model import Flag, Snapshot
from tui.view import DEFAULT_SORT, ViewRequest, compute_view

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def snapshot() -> Iterator[Snapshot]:
    with (
        Netns("wkeys") as ns,
        StalledReader(ns),
        AcceptQueueFull(ns),
        UdpDrops(ns),
        IdleKeepalive(ns),
        IdleKeepalive(ns),
        IdleKeepalive(ns),
    ):
        monitor = Monitor(ns.name)
        try:
            snap = monitor.refresh()
        finally:
            monitor.close()
        yield snap


def test_the_kinds_that_rank_apart_are_all_here(snapshot: Snapshot) -> None:
    socks = snapshot.sockets
    assert any(s.state == "LISTEN" and s.recv_q for s in socks)
    assert any(s.proto == "udp" and s.recv_q for s in socks)
    assert any(s.proto == "tcp" and s.state != "LISTEN" and worst_key(s) > 0.5 for s in socks)
    idle = [s.skmem for s in socks if s.proto == "tcp" and s.state == "ESTAB" and not s.recv_q]
    assert len({id(sk) for sk in idle}) < len(idle)  # the collector shares equal skmem


def test_a_flag_ranks_above_any_fullness(snapshot: Snapshot) -> None:
    socks = [copy.copy(s) for s in snapshot.sockets]
    shared = [s for s in socks if s.proto == "tcp" and s.state == "ESTAB" and not s.recv_q]
    for s in shared[::2]:  # half of those sharing a skmem tuple get a flag
        s.flags = [Flag("stalled_reader", "info", 0.0, "held")]
    flagged = min(worst_key(s) for s in shared[::2])
    assert flagged > max(worst_key(s) for s in socks if not s.flags)
    assert all(worst_key(s) <= MAX_FILL for s in socks if not s.flags)


def test_the_view_orders_by_them(snapshot: Snapshot) -> None:
    view = compute_view(snapshot, ViewRequest(0, None, DEFAULT_SORT, False, None, (), None))
    ranked = [worst_key(s) for s in view.rows]
    assert ranked == sorted(ranked, reverse=True)
    assert len(ranked) == len(snapshot.sockets) > 10


def test_a_listener_sharing_a_connections_skmem_ranks_by_its_queue(snapshot: Snapshot) -> None:
    """A listener's fullness is its accept queue, not its skmem (given to a connection
    by hand here: real ones differ in sndbuf)."""
    listener = next(s for s in snapshot.sockets if s.state == "LISTEN" and s.recv_q)
    conn = copy.copy(next(s for s in snapshot.sockets if s.state == "ESTAB" and s.proto == "tcp"))
    conn.skmem, conn.flags = listener.skmem, ()
    conn.refill()
    assert worst_key(conn) != worst_key(listener)
    assert worst_key(listener) == min(listener.recv_q / listener.send_q, MAX_FILL)
