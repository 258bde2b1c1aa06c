"""Filter fields of UNIX sockets and the rule that hides idle ones unless asked for."""

from __future__ import annotations

import json
import subprocess
import tempfile

import pytest
from test_cli import bufmon
from test_filters import NGINX, make_sock

from bufmon.filters import FilterError, compile_filter, names_unix, with_unix
from bufmon.scenarios import Netns
from collectors.model import Flag, Process, Sock, UnixSock

HOSTILE = b"\0evil\x1b[31m\x07\r\xff"  # an abstract name: ESC, BEL, CR, not UTF-8
HOSTILE_SHOWN_JSON = "@evil\x1b[31m\x07\r\\xff"  # decoded: exact, invalid byte as text
HOSTILE_SHOWN_TEXT = "@evil\\x1b[31m\\x07\\x0d\\xff"  # printable: every control escaped
FPM = Process(pid=900, comm="php-fpm", user="www-data")


def unix_sock(path: str, sock_type: str = "stream", state: str = "ESTAB", **kw: object) -> UnixSock:
    s = UnixSock(state, sock_type, path, 0, 0, 0, (0,) * 9, 33, 5000, 9, "host")
    for name, value in kw.items():
        setattr(s, name, value)
    return s


LISTENER = unix_sock("/run/php/php-fpm.sock", state="LISTEN", process=FPM)
CLIENT = unix_sock("", peer_addr="/run/php/php-fpm.sock", peer_process=FPM, process=NGINX)
JOURNAL = unix_sock("@/org/journal", "dgram", "UNCONN")
SEQ = unix_sock("", "seqpacket")
TCP = make_sock()
ALL: list[Sock] = [LISTENER, CLIENT, JOURNAL, SEQ, TCP]


def matching(expr: str) -> list[Sock]:
    keep = compile_filter(expr)
    return [s for s in ALL if keep(s)]


def test_path_globs_over_either_end() -> None:
    assert matching("path:/run/php/*") == [LISTENER, CLIENT]
    assert matching("path:@*") == [JOURNAL]
    assert matching("!path:*") == [SEQ, TCP]  # unbound and unconnected, or not UNIX


def test_type_proto_family_and_peer() -> None:
    assert matching("type:dgram") == [JOURNAL]
    assert matching("type:SEQPACKET") == [SEQ]
    assert matching("proto:unix") == ALL[:4]
    assert matching("family:unix") == ALL[:4]
    assert matching("peer:php") == [CLIENT]
    assert matching("proc:nginx proto:unix") == [CLIENT]
    with pytest.raises(FilterError, match="unknown socket type 'raw'"):
        compile_filter("type:raw")


def test_idle_unix_sockets_show_only_when_asked() -> None:
    flagged = unix_sock("/run/x.sock", state="LISTEN")
    flagged.flags = [Flag("accept_queue_full", "critical", 1.0, "why", "fix")]
    socks = [*ALL, flagged]
    assert [s for s in socks if with_unix("")(s)] == [TCP, flagged]
    assert [s for s in socks if with_unix("", show_unix=True)(s)] == socks
    assert [s for s in socks if with_unix("state:listen")(s)] == [flagged]
    assert [s for s in socks if with_unix("proto:unix state:listen")(s)] == [LISTENER, flagged]
    for expr in ("proto:unix", "PATH:/x", "type:dgram", "peer:x", "family:unix", "!proto:unix"):
        assert names_unix(expr)
    for expr in ("", "proto:tcp", "proc:unix", "flag:any"):
        assert not names_unix(expr)


@pytest.mark.root
def test_cli_lists_unix_sockets_when_asked() -> None:
    with Netns("unixcli") as ns, tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/app.sock"
        script = (
            "import socket, sys; s = socket.socket(socket.AF_UNIX); "
            f"s.bind({path!r}); s.listen(8); h = socket.socket(socket.AF_UNIX); "
            f"h.bind({HOSTILE!r}); print('ready', flush=True); sys.stdin.read()"
        )
        holder = subprocess.Popen(
            ["ip", "netns", "exec", ns.name, "python3", "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "ready\n"

            def paths(*args: str) -> list[str | None]:
                out = bufmon("snapshot", "--json", "--netns", ns.name, *args)
                assert out.returncode == 0, out.stderr
                return [s["path"] for s in json.loads(out.stdout)["sockets"]]

            assert paths("path:@*") == [HOSTILE_SHOWN_JSON]
            assert paths() == []  # idle: hidden by default
            assert sorted(paths("--unix")) == sorted([path, HOSTILE_SHOWN_JSON])
            assert paths("path:*/app.sock") == [path]
            table = bufmon("snapshot", "--netns", ns.name, "proto:unix").stdout
            assert path in table and "python3/" in table
            # a name any local user picks reaches the terminal escaped, never raw
            assert HOSTILE_SHOWN_TEXT in table
            assert not any(ch in table for ch in "\x1b\x07\r") and "\xff" not in table
        finally:
            holder.kill()
            holder.wait()
