"""Text cells: a percent from its table of strings reads as formatting would write it;
the table, built a column at a time, reads as the row-by-row table did."""

from __future__ import annotations

import random
import socket

import pytest

from bufmon.monitor import Monitor
from bufmon.present import netns_text
from bufmon.textout import (
    COLUMNS,
    RATE_COLUMNS,
    flag_tags,
    percent,
    process_text,
    rate_cells,
    row,
    table,
)
from bufmon.unix_ends import ends
from collectors.model import Process, Rates, Sock
from collectors.untrusted import printable


@pytest.mark.parametrize(
    "fill",
    [0.0, 0.005, 0.015, 0.025, 0.125, 1.0, 2.999, 3.0049, 3.005, 12.5, -0.5, 1e300],
)
def test_percent_is_the_formatted_value(fill: float) -> None:
    assert percent(fill) == f"{fill * 100:.0f}%"


def test_percent_of_many_fills_and_of_no_number() -> None:
    rng = random.Random(15)
    for _ in range(20000):
        fill = rng.random() * 4
        assert percent(fill) == f"{fill * 100:.0f}%"
    assert (percent(None), percent(float("nan")), percent(float("inf"))) == ("-", "nan%", "inf%")


def _by_rows(socks: list[Sock], rates: bool) -> str:
    """The table as it was written before it went a column at a time: a row per
    socket from the cell functions, printf-aligned, trailing spaces stripped."""
    titles = [*COLUMNS[:9], *(RATE_COLUMNS if rates else ()), *COLUMNS[9:]]
    rows = [titles]
    for s in socks:
        cells = [netns_text(s), s.proto, s.state + (" (closed)" if s.closed else "")]
        cells += [str(s.recv_q), str(s.send_q), *ends(s)]
        cells += [percent(s.recv_fill), percent(s.send_fill)]
        cells += [*(rate_cells(s) if rates else ()), process_text(s), flag_tags(s.flags)]
        rows.append([printable(c) for c in cells])
    numeric = {3, 4, 7, 8, *(range(9, 12) if rates else ())}
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    line = "  ".join(f"%{'' if i in numeric else '-'}{w}s" for i, w in enumerate(widths))
    return "\n".join((line % tuple(r)).rstrip() for r in rows)


@pytest.mark.parametrize("rates", [False, True])
def test_table_of_real_sockets_is_the_row_by_row_table(rates: bool) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp.bind(("::1", 0))
    unix_a, unix_b = socket.socketpair()
    client.send(b"x" * 5000)  # unread: Recv-Q and a fill on the server's side
    try:
        snap = Monitor("current").refresh(single_sample=True)
    finally:
        for s in (listener, client, server, udp, unix_a, unix_b):
            s.close()
    socks = snap.sockets
    assert {"tcp", "udp"} <= {s.proto for s in socks}
    socks[0].closed = True
    socks[1].process = Process(pid=7, comm="evil\x1b]2;x\x07", user="root")
    socks[-1].rates = Rates(1234.4, 5.5, 0.25, 0.1)
    assert table(socks, rates) == _by_rows(socks, rates)
    assert row(socks[1], rates) == tuple(_by_rows(socks[1:2], rates).splitlines()[1].split())
    assert table([], rates) == _by_rows([], rates)
