"""One endpoint text and one "worst first" order for every front end."""

from __future__ import annotations

import pytest

from bufmon import present
from bufmon.textout import row
from collectors.model import Flag
from tui.synthetic import synthetic_snapshot
from tui.view import ViewRequest, compute_view


@pytest.mark.parametrize(
    ("addr", "port", "text"),
    [
        ("10.0.0.1", 80, "10.0.0.1:80"),
        ("::1", 443, "[::1]:443"),
        ("0.0.0.0", 0, "*:*"),
        ("::", 0, "*:*"),
        ("10.0.0.1", 0, "10.0.0.1:*"),
        ("fe80::1", 0, "[fe80::1]:*"),
        ("0.0.0.0", 22, "0.0.0.0:22"),
    ],
)
def test_endpoint(addr: str, port: int, text: str) -> None:
    assert present.endpoint(addr, port) == text


def test_the_table_and_the_tui_order_sockets_the_same_way() -> None:
    snap = synthetic_snapshot(300)
    table_order = [s.key for s in present.worst_first(snap.sockets)]
    tui_order = [
        s.key for s in compute_view(snap, ViewRequest(0, None, "flags", False, None, ())).rows
    ]
    assert table_order == tui_order
    ranks = [
        (s.worst_severity(), max(s.recv_fill or 0.0, s.send_fill or 0.0))
        for s in present.worst_first(snap.sockets)
    ]
    assert ranks == sorted(ranks, reverse=True)


def test_flags_worst_first_and_table_row_use_the_same_endpoint() -> None:
    sock = synthetic_snapshot(50).sockets[0]
    sock.flags = [Flag("nagle_hint", sev, 0.0, "", "") for sev in ("info", "critical", "warning")]
    ranks = [f.severity for f in present.flags_worst_first(sock.flags)]
    assert ranks == ["critical", "warning", "info"]
    assert row(sock)[5] == present.endpoint(sock.local_addr, sock.local_port)
