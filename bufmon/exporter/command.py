"""`bufmon export`: its options and its handler. Imports prometheus-client only when run."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bufmon.exporter.errors import ExportUsageError

# Outside 9100-9999 (Prometheus' exporter port allocations, all taken) and 9090-9094
# (Prometheus, Pushgateway, Alertmanager), below Linux's ephemeral range (32768-60999).
DEFAULT_PORT = 19310
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
DEFAULT_INTERVAL = 5.0
DEFAULT_MAX_SOCKETS = 100
# A scrape thread re-takes the GIL after each socket read and write; while a refresh runs,
# each of those waits up to the switch interval (5 ms by default, ~10 waits per scrape).
SWITCH_INTERVAL = 0.0005


def _listen(text: str) -> tuple[str, int]:
    from bufmon.exporter.server import parse_listen

    try:
        return parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_export_parser(sub: Any) -> argparse.ArgumentParser:
    """The `export` subcommand; bufmon.cli adds --netns, --config and --set to it."""
    from bufmon.cli import _count, _seconds

    p: argparse.ArgumentParser = sub.add_parser(
        "export", help="serve Prometheus metrics of sockets and flags on /metrics"
    )
    p.add_argument(
        "--listen",
        type=_listen,
        default=DEFAULT_LISTEN,
        metavar="ADDR:PORT",
        help=f"address to serve on (default {DEFAULT_LISTEN}; ':PORT' means every IPv4 address)",
    )
    p.add_argument(
        "--interval",
        type=_seconds,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help=f"seconds between refreshes (default {DEFAULT_INTERVAL:g})",
    )
    p.add_argument(
        "--max-sockets",
        type=_count,
        default=DEFAULT_MAX_SOCKETS,
        metavar="N",
        help=f"per-connection series for at most N flagged sockets, worst first "
        f"(default {DEFAULT_MAX_SOCKETS})",
    )
    p.add_argument("--tls-cert", metavar="PATH", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", metavar="PATH", help="the certificate's private key (PEM)")
    p.add_argument(
        "--basic-auth-file",
        metavar="PATH",
        help="require basic auth; the file holds user:password lines, mode 600",
    )
    return p


def cmd_export(args: argparse.Namespace) -> int:
    from bufmon.exporter.refresher import Refresher
    from bufmon.exporter.server import format_addr, load_users, serve, tls_context
    from bufmon.monitor import Monitor

    if args.interval <= 0:
        raise ExportUsageError("--interval must be more than 0 seconds for export")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ExportUsageError("--tls-cert and --tls-key go together")
    tls = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    users = load_users(args.basic_auth_file) if args.basic_auth_file else None
    monitor = Monitor(args.netns, args.cfg)
    sys.setswitchinterval(SWITCH_INTERVAL)
    refresher = Refresher(monitor, args.interval, args.max_sockets)
    try:
        server = serve(refresher, args.listen, tls, users)
        host, port = str(server.server_address[0]), server.server_address[1]
        scheme = "https" if tls else "http"
        print(f"bufmon: serving {scheme}://{format_addr(host, port)}/metrics", file=sys.stderr)
        refresher.start()
        try:
            server.serve_forever()
        finally:
            server.server_close()
            refresher.stop()
    finally:
        monitor.close()
    return 0
