"""Container, pod or unit labels (and names) from a process's cgroup path."""

from __future__ import annotations

import re
from typing import NamedTuple

from collectors.runtimes import container_name
from collectors.untrusted import decode

_ID = r"([0-9a-f]{64})"
# Order matters: a pod path also holds the container id.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"pod([0-9a-f]{8}(?:[-_][0-9a-f]{4}){3}[-_][0-9a-f]{12})"), "pod"),
    (re.compile(r"docker[-/]" + _ID), "docker"),
    (re.compile(r"cri-containerd-" + _ID), "containerd"),
    (re.compile(r"crio-" + _ID), "crio"),
    (re.compile(r"containerd[-/]" + _ID), "containerd"),
    (re.compile(r"nerdctl-" + _ID), "containerd"),
    (re.compile(r"/([^/]+\.(?:service|scope))$"), "unit"),
)
_POD_CONTAINER = re.compile(r"(?:^|[-/])" + _ID + r"(?:\.scope)?$")  # cgroupfs: .../pod<uid>/<id>


class CgroupOwner(NamedTuple):
    """What a cgroup path says about who runs there."""

    label: str  # "docker:0123456789ab", "pod:<uid>", "unit:foo.service"
    kind: str  # docker, containerd, crio, pod or unit
    container: str | None = None  # the full container id, when the path holds one


def owner_from_cgroup(text: str) -> CgroupOwner | None:
    """The first container, pod or unit the cgroup file's paths name, or None."""
    for line in text.split("\n"):  # only \n ends a line: a path may hold \r and the like
        path = line.split(":", 2)[-1]  # "ID:CONTROLLERS:PATH"; the path may hold ":"
        for pattern, kind in _PATTERNS:
            m = pattern.search(path)
            if m is None:
                continue
            ident = m.group(1)
            if kind == "pod":
                inner = _POD_CONTAINER.search(path)
                uid = ident.replace("_", "-")
                return CgroupOwner(f"pod:{uid}", kind, inner.group(1) if inner else None)
            if kind == "unit":
                if ident.startswith(("session-", "init.scope", "user@")):
                    continue
                return CgroupOwner(f"unit:{ident}", kind)
            return CgroupOwner(f"{kind}:{ident[:12]}", kind, ident)
    return None


def label_from_cgroup(text: str) -> str | None:
    """'docker:0123456789ab', 'pod:<uid>', 'unit:foo.service' or None."""
    owner = owner_from_cgroup(text)
    return None if owner is None else owner.label


def container_owner(pid: str) -> tuple[str, str | None] | None:
    """(label, name) of the container or unit process `pid` runs in; name None when the
    runtime's state files do not give one (collectors/runtimes.py)."""
    try:
        with open(f"/proc/{pid}/cgroup", "rb") as f:
            owner = owner_from_cgroup(decode(f.read()))
    except OSError:
        return None
    if owner is None:
        return None
    name = None if owner.container is None else container_name(owner.kind, owner.container)
    return owner.label, name
