"""The HTTP side: `/metrics`, `/healthz` and `/`, over plain HTTP or TLS, with optional
basic auth, in prometheus-client's threading WSGI server (one thread per connection, so a
client that connects and sends nothing holds only its own thread, until TIMEOUT)."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
import socket
import ssl
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import ThreadingWSGIServer

from bufmon.exporter.errors import ExportError, ExportUsageError
from bufmon.exporter.refresher import Refresher

TIMEOUT = 10.0  # seconds a connection may stay silent before it is closed
QUEUE = 128  # listen() backlog: many scrapers at once must not wait for SYN retries

PAGE = """<!doctype html>
<html><head><title>bufmon exporter</title></head>
<body><h1>bufmon exporter</h1>
<p>Socket buffers, queues and diagnosis flags of this host for Prometheus.</p>
<ul><li><a href="metrics">/metrics</a></li><li><a href="healthz">/healthz</a></li></ul>
</body></html>
"""

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def parse_listen(text: str) -> tuple[str, int]:
    """ "ADDR:PORT", "[V6ADDR]:PORT" or ":PORT" (all IPv4 addresses) -> (addr, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected ADDR:PORT, e.g. 127.0.0.1:19310, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host or "0.0.0.0"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"not an IP address in --listen: {host!r}") from None
    return host, int(port)


def load_users(path: str) -> dict[str, str]:
    """`user:password` lines of a file only its owner may read."""
    try:
        st = os.stat(path)
        text = Path(path).read_text()
    except OSError as exc:
        raise ExportUsageError(f"cannot read --basic-auth-file {path}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ExportUsageError(f"--basic-auth-file {path} is readable by others (chmod 600 it)")
    users = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise ExportUsageError(f"{path} line {n}: expected user:password")
        users[user] = password
    if not users:
        raise ExportUsageError(f"--basic-auth-file {path} has no user:password line")
    return users


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # as node_exporter's web config default
    try:
        ctx.load_cert_chain(cert, key)
    except OSError as exc:  # ssl.SSLError is an OSError too
        detail = exc.strerror or getattr(exc, "reason", None) or str(exc)
        raise ExportUsageError(
            f"cannot load --tls-cert {cert} / --tls-key {key}: {detail}"
        ) from None
    return ctx


def authorized(environ: dict[str, Any], users: dict[str, str]) -> bool:
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    expected = users.get(user, "")  # compared even for unknown users: same timing
    return hmac.compare_digest(password.encode(), expected.encode()) and user in users


def make_app(
    refresher: Refresher, users: dict[str, str] | None
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if users is not None and not authorized(environ, users):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="bufmon"')])
            return [b"unauthorized\n"]
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            result = refresher.latest()
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [result.body]
        if path == "/healthz":
            result = refresher.latest()
            status = "200 OK" if result.ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [result.status.encode() + b"\n"]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [PAGE.encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found; try /metrics\n"]

    return app


class _Handler(WSGIRequestHandler):
    timeout = TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


class _Server(ThreadingWSGIServer):
    request_queue_size = QUEUE


def serve(
    refresher: Refresher,
    listen: tuple[str, int],
    tls: ssl.SSLContext | None,
    users: dict[str, str] | None,
) -> _Server:
    """Bind and return the server (serve_forever() it); ExportError when it cannot bind."""
    host, port = listen
    server_class = _Server
    if ":" in host:

        class _Server6(_Server):
            address_family = socket.AF_INET6

        server_class = _Server6
    try:
        server = make_server(
            host, port, make_app(refresher, users), server_class, handler_class=_Handler
        )
    except OSError as exc:
        raise ExportError(f"cannot listen on {format_addr(host, port)}: {exc.strerror}") from None
    if tls is not None:
        # the handshake happens in the connection's thread, not in accept()
        server.socket = tls.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    return server


def format_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
