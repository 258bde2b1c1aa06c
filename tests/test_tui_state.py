"""The list state and its transitions, without Textual: pure values in, values out.

Sockets are SYNTHETIC (tui.synthetic): the transitions look at no kernel data.
"""

from __future__ import annotations

import pytest

from bufmon.filters import FilterError, with_unix
from tui.columns import GROUP_COLUMNS, SOCKET_COLUMNS
from tui.state import ListState, accepted_scope, process_scope
from tui.synthetic import synthetic_snapshot
from tui.view import DEFAULT_SORT, GROUP_SORTS, GroupRow, Scope, compute_view

SOCKET_IDS = [c.id for c in SOCKET_COLUMNS]
GROUP_IDS = [c.id for c in GROUP_COLUMNS]
EVERYTHING = Scope("everything", lambda s: True)


def test_every_transition_is_a_new_state_with_the_next_generation() -> None:
    start = ListState()
    steps = [
        start.filter("state:estab"),
        start.sorted_by("recvq"),
        start.sort_step(1, SOCKET_IDS),
        start.reversed(),
        start.next_grouping(),
        start.drill(EVERYTHING),
    ]
    for changed in steps:
        assert changed is not start and changed.generation == start.generation + 1
    assert start == ListState()  # the old state is untouched


def test_no_change_is_the_same_state() -> None:
    start = ListState()
    assert start.back() is start  # nothing to go back to
    assert start.filter("  ") is start  # the same (empty) filter
    assert start.sorted_by("count") is start  # not a column of the socket list
    assert start.sort_step(1, []) is start


def test_a_bad_filter_raises_and_keeps_nothing() -> None:
    start = ListState().filter("state:listen")
    with pytest.raises(FilterError):
        start.filter("stat:listen")
    assert start.filter_expr == "state:listen" and start.predicate is not None
    assert start.filter(" state:listen ") is start


def test_sort_steps_over_the_columns_of_the_states_own_grouping() -> None:
    # Grouping, then a sort step with the socket columns still on screen (the View of
    # the grouping not yet arrived): only group columns can be chosen.
    grouped = ListState().next_grouping()
    stepped = grouped.sort_step(1, SOCKET_IDS)
    assert stepped.sort in GROUP_SORTS and stepped.sort != grouped.sort
    assert stepped.descending is GROUP_SORTS[stepped.sort][1]
    walked = grouped
    for _ in range(len(GROUP_IDS) + 1):
        walked = walked.sort_step(1, GROUP_IDS)
        assert walked.sort in GROUP_SORTS
    assert walked.sort_step(-1, GROUP_IDS).sort_step(1, GROUP_IDS).sort == walked.sort


def test_a_grouping_that_lacks_the_sorted_column_falls_back_to_worst_first() -> None:
    state = ListState().sorted_by("rtt").reversed()
    grouped = state.next_grouping()
    assert grouped.group_by == "process"
    assert (grouped.sort, grouped.reverse) == (DEFAULT_SORT, False)
    state = ListState().sorted_by("recvq")  # a column both lists have stays
    assert state.next_grouping().sort == "recvq"


def test_groupings_cycle_back_to_none() -> None:
    state = ListState()
    seen = []
    for _ in range(5):
        state = state.next_grouping()
        seen.append(state.group_by)
    assert seen == ["process", "port", "peer", "netns", None]


def test_drill_ungroups_and_back_restores_the_grouping_then_clears_the_filter() -> None:
    state = ListState().filter("state:estab").next_grouping().sorted_by("count")
    drilled = state.drill(EVERYTHING)
    assert drilled.group_by is None and drilled.scopes == (EVERYTHING,)
    assert drilled.sort == DEFAULT_SORT  # "count" is no socket column
    deeper = drilled.drill(EVERYTHING)
    assert len(deeper.scopes) == 2
    back = deeper.back().back()
    assert back.group_by == "process" and back.scopes == () and back.filter_expr == "state:estab"
    cleared = back.back()
    assert cleared.filter_expr == "" and cleared.predicate is with_unix("")  # idle UNIX hidden
    assert cleared.back() is cleared


def test_x_shows_and_hides_idle_unix_sockets_under_any_filter() -> None:
    state = ListState().filter("state:listen")
    shown = state.unix_toggled()
    assert shown.show_unix and shown.generation == state.generation + 1
    assert shown.filter("state:estab").show_unix  # a new filter keeps the choice
    assert shown.unix_toggled().show_unix is False


def test_a_states_request_computes_its_view() -> None:
    snap = synthetic_snapshot(200)
    state = ListState().filter("proto:udp").next_grouping()
    view = compute_view(snap, state.request())
    assert view.request.generation == state.generation
    udp = [s for s in snap.sockets if s.proto == "udp"]
    assert view.matched == len(udp)
    assert all(isinstance(r, GroupRow) and r.by == "process" for r in view.rows)


def test_drill_scopes_of_a_socket() -> None:
    socks = synthetic_snapshot(200).sockets
    owned = next(s for s in socks if s.process is not None)
    scope = process_scope(owned)
    assert scope is not None and scope.match(owned)
    assert all(s.process is not None for s in socks if scope.match(s))
    assert process_scope(next(s for s in socks if s.process is None)) is None
    listener = next(s for s in socks if s.is_listener and s.proto == "tcp")
    accepted = accepted_scope(listener)
    assert accepted is not None and not accepted.match(listener)
    assert all(s.local_port == listener.local_port for s in socks if accepted.match(s))
    assert accepted_scope(next(s for s in socks if not s.is_listener)) is None
