"""`bufmon export` run as a user runs it, in a child process, for the exporter tests."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parent.parent
SERVING = re.compile(r"bufmon: serving (https?)://(.+):(\d+)/metrics")


class Exporter:
    """`bufmon export ARGS --listen 127.0.0.1:0`; `url` is known once it serves."""

    def __init__(self, *args: str, listen: str = "127.0.0.1:0") -> None:
        self.argv = [sys.executable, "-m", "bufmon.cli", "export", "--listen", listen, *args]
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.port = 0

    def __enter__(self) -> Self:
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        match = SERVING.search(line)
        if not match:
            self.close()
            raise RuntimeError(f"bufmon export did not start: {line.strip()!r}")
        self.stderr: list[str] = []  # the rest, drained so the child never blocks on it
        threading.Thread(target=self._drain, daemon=True).start()
        scheme, host, port = match.groups()
        self.port = int(port)
        self.url = f"{scheme}://{host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        self.stderr.extend(self.proc.stderr)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def get(self, path: str = "/metrics", timeout: float = 10.0) -> str:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return str(resp.read().decode())

    def wait_for(self, needle: str, timeout: float = 20.0) -> str:
        """/metrics once it contains `needle`."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.get()
            if needle in text or time.monotonic() > deadline:
                return text
            time.sleep(0.3)
