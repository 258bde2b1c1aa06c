"""A real Prometheus (Debian's package) scrapes a real `bufmon export` of a namespace the
test made, holding a stalled reader and a full accept queue: its HTTP API returns their
series, the shipped alert rules go pending or firing for them, and every query of the
shipped Grafana dashboard names only metrics the exporter serves and runs without error.
promtool checks the exposition and the rules, and runs the rules' unit tests."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from exporter_process import ROOT, Exporter

from bufmon.scenarios import AcceptQueueFull, Netns, StalledReader

RULES = ROOT / "contrib" / "prometheus" / "bufmon-alerts.yml"
RULE_TESTS = ROOT / "contrib" / "prometheus" / "bufmon-alerts.test.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "bufmon-dashboard.json"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        PROMETHEUS is None or PROMTOOL is None,
        reason="needs Debian's prometheus package (scripts/setup test installs it)",
    ),
]

CONFIG = """
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{rules}"]
scrape_configs:
  - job_name: bufmon
    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    ns: Netns
    stalled: StalledReader
    queue: AcceptQueueFull
    exporter: Exporter
    api: str

    def query(self, expr: str) -> list[dict]:
        url = f"{self.api}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def wait_query(self, expr: str, timeout: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.5)

    def alerts(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.api}/api/v1/alerts", timeout=10) as resp:
            return list(json.load(resp)["data"]["alerts"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("prometheus")
    with (
        Netns("export") as ns,
        StalledReader(ns) as stalled,
        AcceptQueueFull(ns) as queue,
        Exporter("--interval", "1", "--netns", ns.name) as exporter,
    ):
        config = tmp / "prometheus.yml"
        config.write_text(CONFIG.format(rules=RULES, port=exporter.port))
        port = free_port()
        assert PROMETHEUS is not None
        log = (tmp / "prometheus.log").open("w")
        prom = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            api = f"http://127.0.0.1:{port}"
            wait_ready(api, prom, tmp / "prometheus.log")
            yield Stack(ns, stalled, queue, exporter, api)
        finally:
            prom.terminate()
            prom.wait(10)
            log.close()


def wait_ready(api: str, prom: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if prom.poll() is not None:
            pytest.fail(f"prometheus exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{api}/-/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail("prometheus not ready within 30 s")


def test_stalled_reader_series_reach_prometheus(stack: Stack) -> None:
    ns, port = stack.ns.name, stack.stalled.server_port
    held = stack.wait_query(
        f'bufmon_socket_flag_held_seconds{{kind="stalled_reader", netns="{ns}", '
        f'local_port="{port}"}}'
    )
    assert len(held) == 1, held
    labels = held[0]["metric"]
    assert labels["job"] == "bufmon" and labels["proto"] == "tcp" and labels["state"] == "ESTAB"
    assert float(held[0]["value"][1]) >= 5.0  # the flag's hold time has passed
    count = stack.query('bufmon_flagged_sockets{kind="stalled_reader"} > 0')
    assert count and float(count[0]["value"][1]) >= 1
    queued = stack.query(f'bufmon_socket_receive_queue_bytes{{netns="{ns}", local_port="{port}"}}')
    assert queued and float(queued[0]["value"][1]) > 64 * 1024  # a full receive buffer


def test_full_accept_queue_series_reach_prometheus(stack: Stack) -> None:
    ns, port = stack.ns.name, stack.queue.listen_port
    selector = f'{{netns="{ns}", local_port="{port}", proto="tcp"}}'
    fill = stack.wait_query(
        f"bufmon_listener_accept_queue{selector} > bufmon_listener_backlog{selector}"
    )
    assert fill, stack.query(f"bufmon_listener_accept_queue{selector}")
    assert float(fill[0]["value"][1]) == AcceptQueueFull.BACKLOG + 1  # ss shows "3 2"
    flagged = stack.wait_query(
        f'bufmon_socket_flag_held_seconds{{kind="accept_queue_full", severity="critical", '
        f'netns="{ns}", local_port="{port}"}}'
    )
    assert flagged


@pytest.mark.parametrize("alert", ["BufmonStalledReader", "BufmonAcceptQueueOverflow"])
def test_alert_goes_pending_or_firing(stack: Stack, alert: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        states = {a["state"] for a in stack.alerts() if a["labels"]["alertname"] == alert}
        if states & {"pending", "firing"}:
            break
        assert time.monotonic() < deadline, f"{alert} not pending: {stack.alerts()}"
        time.sleep(0.5)
    others = {a["labels"]["alertname"] for a in stack.alerts()}
    assert "BufmonRefreshFailing" not in others


def dashboard_queries() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dash["templating"]["list"] if "definition" in v]
    return exprs


METRIC = re.compile(r"\b(bufmon_[a-z0-9_]+|process_[a-z0-9_]+)")


def served_names(text: str) -> set[str]:
    return {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_dashboard_queries_name_served_metrics_and_run(stack: Stack) -> None:
    """Served: the namespace exporter's (with flagged sockets) and a host exporter's (some
    sysctls, such as tcp_mem, exist only in the host's namespace)."""
    stack.wait_query('bufmon_socket_flag_held_seconds{kind="stalled_reader"}')
    with Exporter("--netns", "current") as host:
        served = served_names(stack.exporter.get()) | served_names(host.get())
    queries = dashboard_queries()
    assert len(queries) >= 10
    for expr in queries:
        names = set(METRIC.findall(expr))
        assert names, f"no bufmon metric in {expr!r}"
        assert names <= served, (
            f"{expr!r} names metrics the exporter does not serve: {names - served}"
        )
        if expr.startswith("label_values("):
            continue
        runnable = expr.replace("$instance", ".*").replace("$__rate_interval", "1m")
        stack.query(runnable)  # asserts status success


def test_promtool_checks_the_exposition(stack: Stack) -> None:
    text = stack.exporter.get()
    assert PROMTOOL is not None
    proc = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_checks_and_tests_the_rules() -> None:
    assert PROMTOOL is not None
    check = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 7 rules found" in check.stdout
    unit = subprocess.run(
        [PROMTOOL, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr
    alerts = set(re.findall(r"alert: (\w+)", RULES.read_text()))
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert alerts == tested  # a unit test for every rule
