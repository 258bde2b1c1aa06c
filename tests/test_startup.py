"""What a command loads: `snapshot` and `watch` import what they use, nothing more.

Start-up is a large part of a short command: every module another command needs
(the view, kill, record, export, completion, TOML without a config file) costs time on
each run. Checked by the modules the process holds after running the command, not by
timing it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROBE = (  # imports nothing a command might not: json is among NOT_NEEDED
    "import contextlib, io, sys\n"
    "from bufmon import cli\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    code = cli.main(sys.argv[1:])\n"
    "print(code, *sorted(sys.modules))\n"
)
# what other commands need; a snapshot or a watch of text never does
NOT_NEEDED = (
    "tui",
    "textual",
    "bufmon.actions",
    "bufmon.completion",
    "bufmon.demo",
    "bufmon.scenarios",
    "bufmon.record.reader",
    "bufmon.record.writer",
    "bufmon.exporter.server",
    "collectors.destroy",
    "prometheus_client",
    "pyroute2",
    "orjson",  # JSON output only
    "tomllib",  # a config file or --set only
    "tempfile",  # saving the view's settings only
    "shutil",  # argparse sizes its help with it: clidoc.HelpFormatter does not
    "json",  # text past ASCII in JSON output, container state files (and orjson)
    "collectors.cgroups",  # container labels: --netns all or PID only
    "dataclasses",  # with inspect, ast and dis: ~15 ms; the snapshot model is plain classes
    "inspect",
)


def modules_after(tmp_path: Path, *argv: str) -> set[str]:
    """The modules a `bufmon ARGV` process holds once the command has run."""
    env = {"XDG_CONFIG_HOME": str(tmp_path), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    code, *modules = proc.stdout.split()
    assert code == "0", proc.stderr
    return set(modules)


@pytest.mark.parametrize(
    "argv",
    [
        ("snapshot", "--netns", "current"),
        ("watch", "--netns", "current", "--interval", "0", "--count", "1"),
    ],
)
def test_snapshot_and_watch_import_only_what_they_use(tmp_path: Path, argv: tuple[str]) -> None:
    modules = modules_after(tmp_path, *argv)
    assert {"bufmon.monitor", "collectors.sockdiag", "bufmon.textout"} <= modules  # it ran
    loaded = {m for m in modules if m.split(".")[0] in NOT_NEEDED or m in NOT_NEEDED}
    assert not loaded


def test_the_probe_sees_what_a_command_imports(tmp_path: Path) -> None:
    """The same probe on `completion` (which needs bufmon.completion) finds it."""
    assert "bufmon.completion" in modules_after(tmp_path, "completion", "bash")
