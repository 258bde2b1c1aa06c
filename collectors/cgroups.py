"""Container, pod or unit names from a process's cgroup path."""

from __future__ import annotations

import re

from collectors.untrusted import decode

# Order matters: a pod path also holds the container id.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"pod([0-9a-f]{8}(?:[-_][0-9a-f]{4}){3}[-_][0-9a-f]{12})"), "pod"),
    (re.compile(r"docker[-/]([0-9a-f]{64})"), "docker"),
    (re.compile(r"cri-containerd-([0-9a-f]{64})"), "containerd"),
    (re.compile(r"crio-([0-9a-f]{64})"), "crio"),
    (re.compile(r"containerd[-/]([0-9a-f]{64})"), "containerd"),
    (re.compile(r"/([^/]+\.(?:service|scope))$"), "unit"),
)


def label_from_cgroup(text: str) -> str | None:
    """'docker:0123456789ab', 'pod:<uid>', 'unit:foo.service' or None."""
    for line in text.split("\n"):  # only \n ends a line: a path may hold \r and the like
        path = line.split(":", 2)[-1]  # "ID:CONTROLLERS:PATH"; the path may hold ":"
        for pattern, kind in _PATTERNS:
            m = pattern.search(path)
            if m is None:
                continue
            ident = m.group(1)
            if kind == "pod":
                return f"pod:{ident.replace('_', '-')}"
            if kind == "unit":
                if ident.startswith(("session-", "init.scope", "user@")):
                    continue
                return f"unit:{ident}"
            return f"{kind}:{ident[:12]}"
    return None


def container_label(pid: str) -> str | None:
    try:
        with open(f"/proc/{pid}/cgroup", "rb") as f:
            return label_from_cgroup(decode(f.read()))
    except OSError:
        return None
