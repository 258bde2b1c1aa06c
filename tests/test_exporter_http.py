"""`bufmon export` over HTTP as a client sees it: bad input is one line with exit 2 or 1;
/, /healthz and /metrics; many scrapes at once; a silent client blocks nobody; TLS and
basic auth; process command lines never leave the host."""

from __future__ import annotations

import base64
import socket
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from exporter_process import ROOT, Exporter
from prometheus_client.parser import text_string_to_metric_families

from bufmon.scenarios import Netns

BUFMON = [sys.executable, "-m", "bufmon.cli"]


def export(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BUFMON, "export", "--netns", "current", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def one_line_error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bufmon: "), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    with Exporter("--interval", "1", "--netns", "current") as running:
        yield running


def test_port_in_use_is_runtime_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(export("--listen", f"127.0.0.1:{port}"), 1)
    assert f"cannot listen on 127.0.0.1:{port}" in line and "in use" in line


@pytest.mark.parametrize(
    ("listen", "needle"),
    [
        ("nonsense", "expected ADDR:PORT"),
        ("127.0.0.1", "expected ADDR:PORT"),
        ("127.0.0.1:99999", "expected ADDR:PORT"),
        ("localhost:19310", "not an IP address"),
        ("[::1:19310", "not an IP address"),
    ],
)
def test_bad_listen_is_usage_error(listen: str, needle: str) -> None:
    assert needle in one_line_error(export("--listen", listen), 2)


def test_unreadable_tls_file_is_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    line = one_line_error(export("--tls-cert", str(missing), "--tls-key", str(missing)), 2)
    assert "cannot load --tls-cert" in line and "No such file" in line
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    line = one_line_error(export("--tls-cert", str(garbage), "--tls-key", str(garbage)), 2)
    assert "cannot load --tls-cert" in line
    assert "go together" in one_line_error(export("--tls-cert", str(garbage)), 2)


def test_bad_basic_auth_file_is_usage_error(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("alice:secret\n")
    users.chmod(0o644)
    assert "readable by others" in one_line_error(export("--basic-auth-file", str(users)), 2)
    users.chmod(0o600)
    users.write_text("no colon here\n")
    assert "line 1: expected user:password" in one_line_error(
        export("--basic-auth-file", str(users)), 2
    )


def test_interval_zero_is_usage_error() -> None:
    assert "--interval" in one_line_error(export("--interval", "0"), 2)


def test_index_health_and_unknown_path(exporter: Exporter) -> None:
    page = exporter.get("/")
    assert '<a href="metrics">' in page
    assert exporter.get("/healthz").startswith("ok: last refresh")
    with pytest.raises(urllib.error.HTTPError) as info:
        exporter.get("/nope")
    assert info.value.code == 404


def refreshes(text: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "bufmon_exporter_refreshes":
            return float(family.samples[0].value)
    raise AssertionError("no bufmon_exporter_refreshes_total")


def test_100_scrapes_from_50_clients_at_once(exporter: Exporter) -> None:
    with ThreadPoolExecutor(50) as pool:
        bodies = list(pool.map(lambda _: exporter.get(timeout=20), range(100)))
    assert len(bodies) == 100
    assert all(refreshes(b) >= 1 for b in bodies)  # each a whole, parseable exposition
    assert exporter.proc is not None and exporter.proc.poll() is None
    assert exporter.get("/healthz").startswith("ok")


def test_silent_client_blocks_no_scrape(exporter: Exporter) -> None:
    with socket.create_connection(("127.0.0.1", exporter.port)):  # connects, sends nothing
        for _ in range(3):
            started = time.monotonic()
            assert "bufmon_exporter_refreshes_total" in exporter.get(timeout=5)
            assert time.monotonic() - started < 2.0


def test_each_scrape_serves_the_last_refresh(exporter: Exporter) -> None:
    first = refreshes(exporter.get())
    time.sleep(2.5)  # --interval 1: at least one refresh later
    assert refreshes(exporter.get()) > first


OPENSSL_SELF_SIGNED = [
    "openssl",
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "1",
    "-subj",
    "/CN=127.0.0.1",
    "-addext",
    "subjectAltName=IP:127.0.0.1",
]


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [*OPENSSL_SELF_SIGNED, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    users = tmp_path / "users"
    users.write_text("# scraper\nprometheus:s3cret:with:colons\n")
    users.chmod(0o600)
    return cert, key, users


def https_get(url: str, cafile: Path, auth: str | None) -> int:
    ctx = ssl.create_default_context(cafile=str(cafile))
    req = urllib.request.Request(url)
    if auth is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_tls_and_basic_auth(tls_files: tuple[Path, Path, Path]) -> None:
    cert, key, users = tls_files
    args = ["--netns", "current", "--tls-cert", str(cert), "--tls-key", str(key)]
    with Exporter(*args, "--basic-auth-file", str(users)) as running:
        assert running.url.startswith("https://")
        url = running.url + "/metrics"
        assert https_get(url, cert, "prometheus:s3cret:with:colons") == 200
        assert https_get(url, cert, None) == 401
        assert https_get(url, cert, "prometheus:wrong") == 401
        assert https_get(url, cert, "nobody:s3cret:with:colons") == 401
        # a client that connects and never starts the handshake blocks nobody
        with socket.create_connection(("127.0.0.1", running.port)):
            started = time.monotonic()
            assert https_get(url, cert, "prometheus:s3cret:with:colons") == 200
            assert time.monotonic() - started < 2.0
        with pytest.raises(OSError):  # plain HTTP is not served (closed, no response)
            urllib.request.urlopen(f"http://127.0.0.1:{running.port}/metrics", timeout=5)


CHILD = textwrap.dedent(
    """
    import socket, sys, time
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    print(s.getsockname()[1], flush=True)
    time.sleep(60)
    """
)


@pytest.mark.root
def test_command_lines_are_never_exported() -> None:
    marker = "bufmon-secret-token-4711"
    with Netns("exportcmd") as ns:
        child = subprocess.Popen(
            ns.command(sys.executable, "-c", CHILD, marker), stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None
            port = child.stdout.readline().strip()
            with Exporter("--interval", "1", "--netns", ns.name) as running:
                text = running.wait_for(f'local_port="{port}"')
        finally:
            child.kill()
            child.wait()
    listener = [line for line in text.splitlines() if line.startswith("bufmon_listener_backlog{")]
    assert len(listener) == 1 and 'process="python' in listener[0], listener
    assert marker not in text


def test_ipv6_listener() -> None:
    with Exporter("--netns", "current", listen="[::1]:0") as running:
        assert running.url.startswith("http://[::1]:")
        assert "bufmon_exporter_refreshes_total" in running.get()
