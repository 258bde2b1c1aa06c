"""The exporter's metrics from a real Monitor of a namespace the test made: series stay
flat as connections grow, per-connection series are capped worst first with a counter of
what was cut, and a flag's onset is counted once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bufmon.diagnosis import load_config
from bufmon.exporter.refresher import Refresher
from bufmon.monitor import Monitor
from bufmon.scenarios import Netns, Scenario, StalledReader

pytestmark = pytest.mark.root


@pytest.fixture
def ns() -> Iterator[Netns]:
    with Netns("expmetrics") as namespace:
        yield namespace


def refresher_of(ns: Netns, max_sockets: int = 100) -> Refresher:
    cfg = load_config(None, ["stalled_reader.hold=0.5"])
    return Refresher(Monitor(ns.name, cfg), interval=1.0, max_sockets=max_sockets)


def scrape(refresher: Refresher) -> list[Sample]:
    refresher.refresh_once()
    body = refresher.latest().body.decode()
    return [s for f in text_string_to_metric_families(body) for s in f.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


class IdleConnections(Scenario):
    """One listener and `count` accepted, idle connections."""

    def __init__(self, ns: Netns, count: int) -> None:
        super().__init__(ns)
        self.count = count

    def build(self) -> None:
        lst = self.listener(backlog=self.count)
        for _ in range(self.count):
            self.accept_client(lst, None)


def test_series_stay_flat_as_connections_grow() -> None:
    counts = {}
    for conns in (10, 400):
        with Netns("expflat") as ns, IdleConnections(ns, conns):  # no TIME-WAIT of the last
            refresher = refresher_of(ns)
            try:
                samples = scrape(refresher)
            finally:
                refresher.monitor.close()
            assert value(samples, "bufmon_exporter_sockets") == 2 * conns + 1
            counts[conns] = len(samples)
    assert counts[10] == counts[400], counts


def test_per_connection_series_capped_worst_first(ns: Netns) -> None:
    readers = [StalledReader(ns).__enter__() for _ in range(4)]
    refresher = refresher_of(ns, max_sockets=2)
    try:
        for _ in range(20):
            samples = scrape(refresher)
            if value(samples, "bufmon_flagged_sockets", kind="stalled_reader") >= 4:
                break
            time.sleep(0.3)
        assert value(samples, "bufmon_flagged_sockets", kind="stalled_reader") == 4
        before = value(samples, "bufmon_exporter_flagged_sockets_cut_total")
        samples = scrape(refresher)
        cut = value(samples, "bufmon_exporter_flagged_sockets_cut_total") - before
        kept = [s for s in samples if s.name == "bufmon_socket_receive_queue_bytes"]
        assert len(kept) == 2
        assert cut >= 2  # four stalled servers (plus any flagged client) minus the two kept
        held = [s for s in samples if s.name == "bufmon_socket_flag_held_seconds"]
        assert {s.labels["severity"] for s in held} == {"critical"}  # the worst ones
        servers = {str(r.server_port) for r in readers}
        assert {s.labels["local_port"] for s in kept} <= servers
    finally:
        refresher.monitor.close()
        for reader in readers:
            reader.close()


def test_flag_onset_counted_once(ns: Netns) -> None:
    with StalledReader(ns):
        refresher = refresher_of(ns)
        try:
            raised = 0.0
            for _ in range(20):
                samples = scrape(refresher)
                raised = value(samples, "bufmon_flags_raised_total", kind="stalled_reader")
                if raised:
                    break
                time.sleep(0.3)
            assert raised == 1
            for _ in range(3):
                samples = scrape(refresher)
                assert value(samples, "bufmon_flagged_sockets", kind="stalled_reader") == 1
                assert value(samples, "bufmon_flags_raised_total", kind="stalled_reader") == 1
        finally:
            refresher.monitor.close()
