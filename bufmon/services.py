"""Service names of well-known ports, from /etc/services: read once, never a lookup on
the network (bufmon sends no traffic, so no DNS and no NSS services backends)."""

from __future__ import annotations

import functools

SERVICES_FILE = "/etc/services"
MAX_FILE_BYTES = 1 << 20


def parse_services(text: str) -> dict[tuple[str, int], str]:
    """{("tcp", 22): "ssh", ...}: each line "name port/proto [aliases] [# comment]";
    the first name given for a port wins, as getservbyport answers."""
    names: dict[tuple[str, int], str] = {}
    for line in text.splitlines():
        words = line.partition("#")[0].split()
        if len(words) < 2:
            continue
        port, _, proto = words[1].partition("/")
        if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            continue
        names.setdefault((proto.lower(), int(port)), words[0])
    return names


@functools.cache
def services(path: str = SERVICES_FILE) -> dict[tuple[str, int], str]:
    """The services file parsed once per process; empty when it is missing or unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES)
    except OSError:
        return {}
    return parse_services(data.decode("utf-8", errors="replace"))


def service_name(proto: str, port: int) -> str | None:
    return services().get((proto, port))
