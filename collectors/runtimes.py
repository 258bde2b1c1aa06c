"""Container and pod names from the local state files of container runtimes.

Read-only and daemon-free: bufmon never talks to docker, containerd or cri-o over a
socket; it reads the files the runtimes keep for each running container (the paths are
listed in docs/containers.md). netns.discover reads them once per namespace.
"""

from __future__ import annotations

import os
import stat
from typing import Any

MAX_STATE_BYTES = 1 << 20  # a container's config is a few KiB; refuse anything huge
MAX_NAME = 253  # a Kubernetes name is at most 253 characters

DOCKER = "var/lib/docker/containers/{id}/config.v2.json"
CONTAINERD_TASKS = "run/containerd/io.containerd.runtime.v2.task"  # /<namespace>/<id>/
CRIO = (
    "run/containers/storage/overlay-containers/{id}/userdata/config.json",
    "var/lib/containers/storage/overlay-containers/{id}/userdata/config.json",
)

# OCI config.json annotations: (pod name, pod namespace) as containerd's CRI plugin and
# cri-o write them, and the name nerdctl gives a plain containerd container.
POD_ANNOTATIONS = (
    ("io.kubernetes.cri.sandbox-name", "io.kubernetes.cri.sandbox-namespace"),
    ("io.kubernetes.pod.name", "io.kubernetes.pod.namespace"),
)
NERDCTL_NAME = "nerdctl/name"


def _read_json(path: str) -> Any:
    """The JSON document in a regular file, or None (missing, too big, not JSON)."""
    import json  # late: only a host with containers gets here

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_STATE_BYTES:
            return None
        try:
            return json.loads(f.read(MAX_STATE_BYTES))
        except (OSError, ValueError, RecursionError):
            return None


def _text(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= MAX_NAME:
        return value
    return None


def docker_name(root: str, ident: str) -> str | None:
    """config.v2.json's "Name" ("/web" -> "web")."""
    doc = _read_json(os.path.join(root, DOCKER.format(id=ident)))
    name = _text(doc.get("Name")) if isinstance(doc, dict) else None
    return None if name is None else (name.lstrip("/") or None)


def oci_name(path: str) -> str | None:
    """From an OCI bundle's config.json annotations: "namespace/pod" for a Kubernetes
    pod (its sandbox or any of its containers), else the nerdctl name."""
    doc = _read_json(path)
    notes = doc.get("annotations") if isinstance(doc, dict) else None
    if not isinstance(notes, dict):
        return None
    for name_key, namespace_key in POD_ANNOTATIONS:
        pod, namespace = _text(notes.get(name_key)), _text(notes.get(namespace_key))
        if pod is not None:
            return pod if namespace is None else f"{namespace}/{pod}"
    return _text(notes.get(NERDCTL_NAME))


def containerd_name(root: str, ident: str) -> str | None:
    """The task's bundle config.json, in whichever containerd namespace holds it
    (k8s.io for Kubernetes, default for nerdctl, moby for docker's own)."""
    tasks = os.path.join(root, CONTAINERD_TASKS)
    try:
        namespaces = sorted(os.listdir(tasks))
    except OSError:
        return None
    for namespace in namespaces:
        name = oci_name(os.path.join(tasks, namespace, ident, "config.json"))
        if name is not None:
            return name
    return None


def crio_name(root: str, ident: str) -> str | None:
    for layout in CRIO:
        name = oci_name(os.path.join(root, layout.format(id=ident)))
        if name is not None:
            return name
    return None


RUNTIMES = {
    "docker": (docker_name,),
    "containerd": (containerd_name, docker_name),  # docker runs containers via containerd
    "crio": (crio_name,),
    "pod": (containerd_name, crio_name, docker_name),  # the cgroup path does not say which
}


def container_name(kind: str, ident: str, root: str = "/") -> str | None:
    """The name the runtime of `kind` gives container `ident` (a full 64-hex id)."""
    for reader in RUNTIMES.get(kind, ()):
        name = reader(root, ident)
        if name is not None:
            return name
    return None
