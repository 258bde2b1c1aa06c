"""Errors of `bufmon export`, mapped to exit codes by bufmon.cli."""


class ExportError(Exception):
    """A runtime failure (e.g. the port is taken): one line, exit 1."""


class ExportUsageError(Exception):
    """Bad input (an unreadable TLS or auth file): one line, exit 2."""
