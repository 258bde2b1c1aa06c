"""Shared by every test module: the root skip, and bufmon where another user can run it.

Tests marked `root` build network namespaces or read other users' processes: they
are skipped, with the reason, when the suite runs without root.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NEEDS_ROOT = "needs root (network namespaces, other users' processes)"
AS_NOBODY = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"]
# What an unprivileged run imports: bufmon's headless packages, their dependencies,
# and the test helpers.
PACKAGES = ("bufmon", "collectors", "psutil", "pyroute2", "orjson")
HELPERS = ("factories.py",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason=NEEDS_ROOT)
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@dataclass(frozen=True)
class Readable:
    """A copy of bufmon any user can read, and a Python that user can run it with.

    A clone often lives where only root may look (a 0700 home): another user can open
    neither its sources nor its .venv, so runs as that user go through this copy.
    """

    python: str
    path: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.path)}

    def run_json(self, setpriv_options: list[str], script: str, *args: str) -> Any:
        """Run `script` with this Python under setpriv; it must succeed silently and
        print one JSON document, returned decoded."""
        result = subprocess.run(
            ["setpriv", *setpriv_options, self.python, "-c", script, *args],
            capture_output=True,
            text=True,
            cwd="/",
            env=self.env(),
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        return json.loads(result.stdout)

    def bufmon(self, *args: str) -> list[str]:
        """The argv of `bufmon ARGS` (bufmon.cli's main, as the installed script runs it)."""
        return [self.python, "-m", "bufmon.cli", *args]


@pytest.fixture(scope="session")
def readable() -> Iterator[Readable]:
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is missing: ./scripts/setup test installs it")
    top = Path(tempfile.mkdtemp(prefix="bufmon-readable-"))
    try:
        for name in PACKAGES:
            spec = find_spec(name)
            assert spec is not None and spec.submodule_search_locations, name
            src = Path(next(iter(spec.submodule_search_locations)))
            shutil.copytree(src, top / name, ignore=shutil.ignore_patterns("__pycache__"))
        for helper in HELPERS:
            shutil.copy(ROOT / "tests" / helper, top / helper)
        _open_to_all(top)
        yield Readable(_python_for_nobody(), top)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _open_to_all(top: Path) -> None:
    for path in [top, *top.rglob("*")]:
        extra = stat.S_IRGRP | stat.S_IROTH
        if path.is_dir() or path.stat().st_mode & stat.S_IXUSR:
            extra |= stat.S_IXGRP | stat.S_IXOTH
        path.chmod(path.stat().st_mode | extra)


def _python_for_nobody() -> str:
    """This Python's interpreter (same version: orjson's C module is built for it)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [os.path.realpath(sys.executable), sys._base_executable]
    candidates += [p for p in (shutil.which(f"python{version}"),) if p]
    candidates.append(f"/usr/bin/python{version}")
    probe = "import sys; print(f'{sys.version_info.major}.{sys.version_info.minor}')"
    for python in dict.fromkeys(candidates):
        try:
            out = subprocess.run(
                ["setpriv", *AS_NOBODY, python, "-c", probe],
                capture_output=True,
                text=True,
                cwd="/",
                timeout=30,
            )
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip() == version:
            return python
    pytest.fail(f"no Python {version} that user nobody can run (tried {candidates})")
