"""The TUI's headless parts: column fitting, sorting, holding the order, grouping, text.

Sockets here are SYNTHETIC Sock objects (tui.synthetic) or built by hand: these are
pure functions over the snapshot model, no kernel involved.
"""

from __future__ import annotations

import gc

import pytest
from factories import make_listener, make_sock, make_udp

from bufmon.filters import compile_filter
from tui.columns import SOCKET_COLUMNS, fit, recv_label, render_row, send_label
from tui.fmt import human_bytes, human_usec
from tui.synthetic import synthetic_snapshot
from tui.view import DEFAULT_SORT, ViewRequest, compute_view, summarize


def request(generation: int = 0, **changes: object) -> ViewRequest:
    fields: dict[str, object] = {
        "predicate": None,
        "sort": DEFAULT_SORT,
        "reverse": False,
        "group_by": None,
        "scopes": (),
        "hold": None,
    }
    fields.update(changes)
    return ViewRequest(generation, **fields)  # type: ignore[arg-type]


def test_narrow_terminals_drop_columns_by_priority() -> None:
    narrow = [column.id for column, _ in fit(SOCKET_COLUMNS, 79)]
    wide = [column.id for column, _ in fit(SOCKET_COLUMNS, 159)]
    assert narrow == ["state", "local", "peer", "recvq", "sendq", "flags"]
    assert wide == [column.id for column in SOCKET_COLUMNS]
    for width in (59, 79, 159):
        layout = fit(SOCKET_COLUMNS, width)
        assert sum(w for _, w in layout) + len(layout) - 1 == width


def test_rates_come_back_at_100_columns_and_sort_with_none_last() -> None:
    assert [column.id for column, _ in fit(SOCKET_COLUMNS, 100)] == [
        "state", "local", "peer", "process", "recvq", "sendq", "rx", "tx", "flags",
    ]  # fmt: skip
    view = compute_view(synthetic_snapshot(300), request(sort="rx"))
    rates = [s.rates.rx_bytes_per_s if s.rates else None for s in view.rows]
    known = [r for r in rates if r is not None]
    assert known == sorted(known, reverse=True) and rates[: len(known)] == known
    assert None in rates  # sockets without rates (first sample, UDP) sort last
    (row,) = compute_view(synthetic_snapshot(300), request(group_by="netns", sort="tx")).rows[:1]
    assert row.tx == sum(
        s.rates.tx_bytes_per_s
        for s in synthetic_snapshot(300).sockets
        if s.rates and s.netns == row.value
    )


@pytest.mark.parametrize("width", [59, 79, 159])
def test_rendered_rows_fill_the_width_exactly(width: int) -> None:
    layout = fit(SOCKET_COLUMNS, width)
    for sock in synthetic_snapshot(30).sockets:
        assert sum(seg.cell_length for seg in render_row(sock, layout, width)) == width


def test_worst_first_then_fullness() -> None:
    view = compute_view(snap := synthetic_snapshot(400), request())
    ranks = [(s.worst_severity(), max(s.recv_fill or 0, s.send_fill or 0)) for s in view.rows]
    assert ranks == sorted(ranks, reverse=True)
    assert view.rows[0].flags[0].severity == "critical"
    assert view.matched == len(snap.sockets) == len(view.index)


def test_reverse_and_filter() -> None:
    snap = synthetic_snapshot(300)
    forward = compute_view(snap, request(sort="recvq"))
    backward = compute_view(snap, request(sort="recvq", reverse=True))
    fills = [s.recv_fill or 0.0 for s in forward.rows]
    assert fills == sorted(fills, reverse=True)
    assert [s.recv_fill or 0.0 for s in backward.rows] == sorted(fills)
    listeners = compute_view(snap, request(predicate=compile_filter("state:listen")))
    assert listeners.rows and all(s.state == "LISTEN" for s in listeners.rows)


def test_endpoints_and_processes_sort_by_text_then_number() -> None:
    snap = synthetic_snapshot(300)
    snap.sockets.extend(
        make_sock(local_addr=addr, local_port=port, peer_addr=addr, peer_port=port)
        for addr, port in (("10.0.0.1", 9000), ("10.0.0.10", 80), ("10.0.0.1", 443))
    )
    for column in ("local", "peer"):
        pairs = [
            (s.local_addr, s.local_port) if column == "local" else (s.peer_addr, s.peer_port)
            for s in compute_view(snap, request(sort=column)).rows
        ]
        assert pairs == sorted(pairs)
        assert len(set(pairs)) > 50
    listed = compute_view(snap, request(sort="process")).rows
    processes = [(s.process.comm, s.process.pid) if s.process else ("", 0) for s in listed]
    assert processes == sorted(processes)
    assert len(set(processes)) > 2


def test_positions_find_each_row_without_building_the_whole_index() -> None:
    before = synthetic_snapshot(120)
    view = compute_view(before, request(sort="rtt", reverse=True))
    rows = list(view.rows)
    assert [view.index.find(row.key) for row in rows] == list(range(len(rows)))
    assert view.index.find(("net:[0]", -1)) is None
    assert view.rows[3:6] == rows[3:6]
    assert dict(view.index) == {row.key: i for i, row in enumerate(rows)}
    assert all(view.index.find(row.key) == i for i, row in enumerate(rows))  # from the dict


def test_a_held_order_keeps_old_rows_in_place_and_appends_new_ones() -> None:
    before = compute_view(synthetic_snapshot(50), request())
    after = compute_view(synthetic_snapshot(80), request(hold=before.index))
    assert [s.key for s in after.rows[:50]] == [s.key for s in before.rows]
    fresh = compute_view(synthetic_snapshot(80), request())
    assert [s.key for s in fresh.rows] != [s.key for s in after.rows]


def test_group_by_process_adds_up_its_members() -> None:
    snap = synthetic_snapshot(200)
    view = compute_view(snap, request(group_by="process", sort="count"))
    assert sum(g.count for g in view.rows) == 200
    for group in view.rows:
        members = [s for s in snap.sockets if group.scope().match(s)]
        assert len(members) == group.count
        assert sum(s.recv_q for s in members) == group.recv_q
        assert sum(len(s.flags) for s in members) == sum(group.flag_counts.values())


def test_gauge_labels_by_socket_kind() -> None:
    listener = make_listener(80, recv_q=3, send_q=2, skmem=(0, 1, 0, 1, 0, 0, 0, 0, 0))
    assert recv_label(listener) == "3/2" and listener.recv_fill == 1.5
    assert send_label(listener) == ""
    udp = make_udp(
        53,
        recv_q=2304,
        skmem=(2304, 16384, 768, 212992, 0, 0, 0, 0, 186),
        inode=2,
        cookie=2,
    )
    assert recv_label(udp) == "2.2K/16K" and send_label(udp) == "768/208K"
    timewait = make_sock(
        state="TIME-WAIT", local_port=5, peer_port=6, timer="timewait", inode=0, cookie=3
    )
    assert recv_label(timewait) == "0"


def test_human_units_stay_short() -> None:
    assert [human_bytes(n) for n in (0, 999, 1023, 1536, 131072, 10 * 2**20, 2**30)] == [
        "0",
        "999",
        "1.0K",
        "1.5K",
        "128K",
        "10M",
        "1.0G",
    ]
    assert all(len(human_bytes(n)) <= 4 for n in range(0, 2**40, 2**40 // 997))
    assert [human_usec(u) for u in (45, 4800, 250_000, 1_500_000)] == [
        "0.04ms",
        "4.8ms",
        "250ms",
        "1.5s",
    ]


def test_summary_rates_are_per_second() -> None:
    snap = synthetic_snapshot(10)
    snap.system.interval = 2.0
    rates = dict(summarize(snap).rates)
    assert rates["ovfl"] == 1.5 and rates["udperr"] == 18.5 and rates["prune"] == 0.0
    snap.system.interval = 0.0  # first refresh: no rates yet
    assert all(rate is None for _, rate in summarize(snap).rates)


def test_views_are_freed_by_reference_counting() -> None:
    """The app freezes a computed view (collectors.gcpolicy.settle): a replaced one must
    hold no reference cycle, or it would stay until the next thaw."""
    snapshots = [synthetic_snapshot(60, seed=seed) for seed in (1, 2)]
    gc.collect()
    gc.disable()
    try:
        for snap in snapshots:
            plain = compute_view(snap, request(sort="local"))
            held = compute_view(snap, request(hold=plain.index))
            grouped = compute_view(snap, request(group_by="process"))
            assert held.index.find(plain.rows[0].key) == 0 and grouped.rows
            del plain, held, grouped
        del snapshots, snap
        unreachable = gc.collect()
    finally:
        gc.enable()
    assert unreachable == 0
