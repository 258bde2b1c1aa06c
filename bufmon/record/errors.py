"""The errors `bufmon record` and `replay` end with: apart, so that the CLI can catch
them without loading the recording code for every other command."""

from __future__ import annotations


class RecordingError(Exception):
    """A file that cannot be read as a recording: one line; the CLI exits 2."""


class RecorderError(Exception):
    """One line for the user, and the exit code (1 runtime, 2 bad input)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code
