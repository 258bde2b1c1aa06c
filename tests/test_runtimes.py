"""Container and pod names from runtime state files.

No container runtime runs on the test machine, so these tests read runtime files
under tests/data/runtimes: written by hand in the layouts docker, containerd (CRI and
nerdctl) and cri-o keep (paths and annotation keys from their sources), not copied
from live hosts. The cgroup paths are those each runtime gives its containers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import make_sock

from bufmon.filters import compile_filter
from collectors.cgroups import label_from_cgroup, owner_from_cgroup
from collectors.model import Snapshot, SystemFacts
from collectors.runtimes import container_name
from tui.columns import SOCKET_COLUMNS, fit, render_row

RUNTIMES = Path(__file__).resolve().parent / "data" / "runtimes"
CGROUPS = dict(
    line.split("\t", 1)
    for line in (RUNTIMES / "cgroups.tsv").read_text().splitlines()
    if not line.startswith("#")
)


@pytest.mark.parametrize(
    ("runtime", "label", "name"),
    [
        ("docker", "docker:3f4e5a6b7c8d", "web"),
        (
            "k8s-containerd",
            "pod:5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4",
            "default/nginx-7c5ddbdf54-x2x9q",
        ),
        (
            "k8s-crio",
            "pod:8e9f0a1b-2c3d-4e5f-a6b7-c8d9e0f1a2b3",
            "kube-system/coredns-76f75df574-8mz2q",
        ),
        ("nerdctl", "containerd:5e6f708192a3", "cache"),
        (
            "k8s-cgroupfs",
            "pod:5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4",
            "default/nginx-7c5ddbdf54-x2x9q",
        ),
    ],
)
def test_names_from_runtime_files(runtime: str, label: str, name: str) -> None:
    owner = owner_from_cgroup(CGROUPS[runtime])
    assert owner is not None and owner.container is not None
    assert owner.label == label == label_from_cgroup(CGROUPS[runtime])  # the id stays the label
    assert container_name(owner.kind, owner.container, str(RUNTIMES)) == name


def test_no_name_without_state_files(tmp_path: Path) -> None:
    owner = owner_from_cgroup(CGROUPS["docker"])
    assert owner is not None and owner.container is not None
    assert container_name(owner.kind, owner.container, str(tmp_path)) is None


def test_bad_state_files_give_no_name(tmp_path: Path) -> None:
    owner = owner_from_cgroup(CGROUPS["docker"])
    assert owner is not None and owner.container is not None
    path = tmp_path / f"var/lib/docker/containers/{owner.container}/config.v2.json"
    path.parent.mkdir(parents=True)
    for text in ("not json", '{"Name": 5}', '["/web"]', '{"Name": "/"}'):
        path.write_text(text)
        assert container_name("docker", owner.container, str(tmp_path)) is None


def test_sockets_carry_the_name_and_the_filter_finds_it() -> None:
    web = make_sock(netns="docker:3f4e5a6b7c8d", cookie=1)
    other = make_sock(netns="host", cookie=2)
    snap = Snapshot(
        0.0,
        "h",
        [web, other],
        SystemFacts({}, {}, 1.0, {}, {}),
        namespaces=[
            {"label": "docker:3f4e5a6b7c8d", "inode": 5, "holder": "nginx/1", "name": "web"},
            {"label": "host", "inode": 4, "holder": "", "name": None},
        ],
    )
    assert (web.netns_name, other.netns_name) == ("docker:web", None)
    assert "name" in snap.to_json()["namespaces"][0]
    assert web.to_json()["netns"] == "docker:3f4e5a6b7c8d"  # JSON keeps the id
    wide = fit(SOCKET_COLUMNS, 200)
    assert "docker:web " in "".join(seg.text for seg in render_row(web, wide, 200))
    for expr in ("netns:docker:web", "netns:docker:w*", "netns:docker:3f4e5a6b7c8d"):
        keep = compile_filter(expr)
        assert [keep(s) for s in (web, other)] == [True, False], expr
