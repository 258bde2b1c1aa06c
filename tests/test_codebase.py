"""The checks that keep the codebase honest, run with the tests: layers, types, lint, format.

Each tool is configured in pyproject.toml and comes with the `test` extras.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    tool = BIN / argv[0]
    assert tool.exists(), f"{tool} missing: install the test extras (./scripts/setup test)"
    return subprocess.run(
        [str(tool), *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_headless_packages_do_not_load_textual() -> None:
    """At run time too: importing every module of collectors and bufmon loads no textual."""
    code = (
        "import sys, importlib, pkgutil, collectors, bufmon\n"
        "for pkg in (collectors, bufmon):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if m.name != 'bufmon.frontend':  # the declared entry wiring\n"
        "            importlib.import_module(m.name)\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print(' '.join(bad[:3]))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, (
        f"textual imported by a headless module: {proc.stdout}{proc.stderr}"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ("lint-imports", "--no-cache"),
        ("mypy",),
        ("ruff", "check", "--quiet", "."),
        ("ruff", "format", "--check", "--quiet", "."),
    ],
    ids=["import-contracts", "mypy", "ruff-check", "ruff-format"],
)
def test_checker_is_clean(argv: tuple[str, ...]) -> None:
    proc = run_tool(*argv)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_nothing_points_outside_the_project() -> None:
    """Readers are sent to docs/, never to files a clone does not have."""
    outside = ("../" + "shared", "DOMAIN" + ".md")
    found = []
    for path in sorted(ROOT.rglob("*")):
        parts = path.relative_to(ROOT).parts
        if path.suffix not in (".py", ".md", ".toml", ".tcss") or any(
            p.startswith(".") or p.endswith(".egg-info") or p == "build" for p in parts
        ):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{path.relative_to(ROOT)}: {o}" for o in outside if o in text]
    assert not found, found
