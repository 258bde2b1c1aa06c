"""Per-socket rates against transfers made for real: a paced transfer over a
tbf-shaped veth between two namespaces the tests make, a lossy tbf link that makes
the sender retransmit, an idle connection as the control. Rates are checked against
the bytes the sending application really wrote over the same time."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from makers import BulkOverTbf, LossyTbfLink, PacedOverTbf, TbfLink

from bufmon.filters import FilterError, compile_filter
from bufmon.monitor import Monitor
from bufmon.rates import rates_between
from bufmon.record.format import Interned, decode_row
from bufmon.scenarios import IdleKeepalive
from collectors.model import IDLE, Rates, Snapshot, Sock
from tui.view import group

BUFMON = str(Path(sys.executable).with_name("bufmon"))
WINDOW = 3.0  # seconds between the two samples a rate is checked over
TOLERANCE = 0.10


def near(value: float, expected: float) -> bool:
    return abs(value - expected) <= TOLERANCE * expected


def estab(snap: Snapshot, local_addr: str) -> Sock:
    (sock,) = [s for s in snap.sockets if s.state == "ESTAB" and s.local_addr == local_addr]
    return sock


@pytest.fixture(scope="module")
def shaped() -> Iterator[tuple[TbfLink, PacedOverTbf]]:
    with TbfLink() as link, PacedOverTbf(link) as paced:
        yield link, paced


@pytest.mark.root
def test_rates_match_the_bytes_a_shaped_transfer_really_moved(
    shaped: tuple[TbfLink, PacedOverTbf],
) -> None:
    link, paced = shaped
    sender, receiver = Monitor(link.sender_ns.name), Monitor(link.receiver_ns.name)
    try:
        sent0 = paced.sent
        first = [sender.refresh(), receiver.refresh()]
        time.sleep(WINDOW)
        sent1 = paced.sent
        second = [sender.refresh(), receiver.refresh()]
        history = sender.diagnoser.history
    finally:
        sender.close()
        receiver.close()
    assert estab(first[0], link.sender_addr).rates is None  # a first sample has none
    assert estab(first[0], link.sender_addr).to_json()["rates"] is None
    app_rate = (sent1 - sent0) / (second[0].time - first[0].time)
    assert near(app_rate, PacedOverTbf.RATE), app_rate  # the sender kept its pace
    out = estab(second[0], link.sender_addr)
    into = estab(second[1], link.receiver_addr)
    assert out.rates is not None and into.rates is not None
    assert near(out.rates.tx_bytes_per_s, app_rate), (out.rates, app_rate)
    assert near(into.rates.rx_bytes_per_s, app_rate), (into.rates, app_rate)
    assert out.rates.rx_bytes_per_s < 0.01 * app_rate  # acks only the other way
    doc = out.to_json()["rates"]
    assert set(doc) == {
        "rx_bytes_per_s",
        "tx_bytes_per_s",
        "retrans_per_s",
        "retrans_share",
        "delivery_rate",
    }
    assert doc["tx_bytes_per_s"] == round(out.rates.tx_bytes_per_s)
    assert doc["delivery_rate"] == out.info.get("delivery_rate") > 0  # type: ignore[union-attr]
    # the detail history holds the same rate, for sparklines
    assert history.series(out.key, "tx_rate")[-1][1] == round(out.rates.tx_bytes_per_s)
    # filters, with the language's units
    assert compile_filter("tx>40k")(out) and not compile_filter("tx>1M")(out)
    assert compile_filter("rx>40k")(into) and not compile_filter("rx>40k")(out)
    # group-by sums the rates of its sockets
    (row,) = group(second[0].sockets, "netns")
    assert row.tx == sum(s.rates.tx_bytes_per_s for s in second[0].sockets if s.rates)
    assert row.tx >= out.rates.tx_bytes_per_s


@pytest.mark.root
def test_snapshot_has_rates_only_with_rates_option(shaped: tuple[TbfLink, PacedOverTbf]) -> None:
    link, paced = shaped
    ns = ["--netns", link.sender_ns.name]
    once = subprocess.run(
        [BUFMON, "snapshot", "--json", *ns], capture_output=True, text=True, check=True
    )
    socks = json.loads(once.stdout)["sockets"]
    assert socks and all(s["rates"] is None for s in socks)
    sent0, started = paced.sent, time.monotonic()
    twice = subprocess.run(
        [BUFMON, "snapshot", "--rates", "--interval", "2", "--json", *ns, "tx>10k"],
        capture_output=True,
        text=True,
        check=True,
    )
    took = time.monotonic() - started
    app_rate = (paced.sent - sent0) / took
    assert took >= 2
    (sock,) = json.loads(twice.stdout)["sockets"]  # `tx>10k` keeps the sender only
    assert sock["local_addr"] == link.sender_addr
    assert near(sock["rates"]["tx_bytes_per_s"], app_rate), (sock["rates"], app_rate)
    table = subprocess.run([BUFMON, "snapshot", *ns, "tx>10k"], capture_output=True, text=True)
    assert table.returncode == 0 and len(table.stdout.splitlines()) == 1  # no rates: no rows
    table = subprocess.run(
        [BUFMON, "snapshot", "--rates", *ns, "tx>10k"], capture_output=True, text=True, check=True
    )
    head, line = table.stdout.splitlines()
    cells = dict(zip(head.split(), line.split(), strict=True))
    assert near(int(cells["Tx/s"]), PacedOverTbf.RATE) and float(cells["Retr/s"]) >= 0


@pytest.mark.root
def test_a_lossy_link_shows_retransmits_an_idle_connection_none() -> None:
    with LossyTbfLink() as link, BulkOverTbf(link), IdleKeepalive(link.sender_ns):
        monitor = Monitor(link.sender_ns.name)
        try:
            monitor.refresh()
            for _ in range(10):  # losses come in bursts: a few windows at most
                time.sleep(1.0)
                snap = monitor.refresh()
                out = estab(snap, link.sender_addr)
                if out.rates is not None and out.rates.retrans_per_s > 0:
                    break
        finally:
            monitor.close()
    assert out.rates is not None and out.rates.retrans_per_s > 0, out.rates
    assert 0 < out.rates.retrans_share <= 1
    idle = [s for s in snap.sockets if s.state == "ESTAB" and s.local_addr == "127.0.0.1"]
    assert len(idle) == 2 and all(s.rates is IDLE for s in idle)
    retr = compile_filter("retr>0")
    assert retr(out) and not any(retr(s) for s in idle)


def test_rates_between_samples() -> None:
    """Counters: total_retrans, bytes_acked, bytes_received, segs_out; the u32
    segment counters wrap."""
    before = (0xFFFFFFFE, 1000, 5000, 0xFFFFFFF0)
    after = (3, 3000, 5000, 0x10)
    assert rates_between(before, after, 2.0) == Rates(0.0, 1000.0, 2.5, 5 / 32)


def test_rate_filter_terms_and_their_errors() -> None:
    sock = Sock("tcp", "inet", "ESTAB", "10.0.0.1", 1, "10.0.0.2", 2, 0, 0, None, None,
                "off", 0, 0, 0, 1, 1)  # fmt: skip
    assert not compile_filter("rx>=0")(sock) and compile_filter("!retr>0")(sock)  # no rates
    sock.rates = Rates(11 * 1024 * 1024, 2048.0, 0.5, 0.01)
    assert compile_filter("rx>10M tx>1k retr>0")(sock)
    assert not compile_filter("rx>11M or tx>2k or retr>=1")(sock)
    with pytest.raises(FilterError, match="bytes per second"):
        compile_filter("rx>fast")
    with pytest.raises(FilterError, match="retransmitted segments per second"):
        compile_filter("retr>1k")


def test_recordings_of_older_writers_read_without_rates() -> None:
    row = ["tcp", "inet", "ESTAB", "10.0.0.1", 1, "10.0.0.2", 2, 0, 0, None, "off", 0, 1, 1,
           "host", None, [], False, None, -1]  # fmt: skip
    assert decode_row(row, Interned())[-1] is None
    rates = decode_row([*row, [1.5, 2.0, 0.0, 0.0]], Interned())[-1]
    assert rates == Rates(1.5, 2.0, 0.0, 0.0)
