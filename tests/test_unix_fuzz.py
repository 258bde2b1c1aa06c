"""Fuzz the unix_diag decoder, starting from a real captured dump.

Whatever the bytes, decode_messages decodes, skips or raises DiagError: never another
exception, never a hang. The one-unpack layouts must decode exactly what the
attribute-by-attribute reference decodes, for any shape of message (any name, any
number of pending inodes, unknown or longer attributes, another order), and any path
bytes decode to text.
"""

from __future__ import annotations

import socket
import struct
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_decoder_fuzz import FUZZ, time_limit
from test_unix_vs_ss import Scene

from bufmon.scenarios import Netns
from collectors import unixdiag
from collectors.model import Sock
from collectors.netns import entered
from collectors.sockdiag import (
    NLMSG_DONE,
    NLMSGHDR,
    RTATTR,
    SOCK_DIAG_BY_FAMILY,
    DiagError,
    open_diag_socket,
)
from collectors.unixdiag import UNIX_MSG, decode_messages, decode_path

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def seed() -> Iterator[bytes]:
    """Every datagram of one real unix_diag dump of the vs-ss scene, joined."""
    with Netns("unixfuzz") as ns, tempfile.TemporaryDirectory() as tmp:
        scene = Scene(tmp)
        try:
            with entered(f"/run/netns/{ns.name}"):
                scene.build()
                sock = open_diag_socket()
            with sock:
                sock.send(unixdiag.request(1))
                data = b""
                while True:
                    chunk = sock.recv(1 << 20)
                    data += chunk
                    if decode_messages(chunk, "unix", "seed", [], 1):
                        break
            yield data
        finally:
            scene.close()


def decode(data: bytes) -> list[dict[str, object]] | None:
    """Decoded sockets as JSON, or None for a clean DiagError; other errors fail."""
    out: list[Sock] = []
    try:
        with time_limit(1.0):
            decode_messages(data, "unix", "fuzz", out)
    except DiagError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None
    return [s.to_json() for s in out]


def reference(data: bytes) -> list[dict[str, object]]:
    """The same decode with layouts forbidden: every message attribute by attribute."""
    saved = unixdiag._layout_for
    unixdiag._layout_for = lambda *_args: None  # type: ignore[assignment]
    try:
        result = decode(data)
    finally:
        unixdiag._layout_for = saved
    assert result is not None
    return result


# --- building messages ---------------------------------------------------------------


def _pad(raw: bytes) -> bytes:
    return raw + bytes(-len(raw) % 4)


def message(body: bytes, attrs: list[tuple[int, bytes]], seq: int = 0) -> bytes:
    payload = body + b"".join(_pad(RTATTR.pack(4 + len(p), t) + p) for t, p in attrs)
    return _pad(NLMSGHDR.pack(16 + len(payload), SOCK_DIAG_BY_FAMILY, 0, seq, 0) + payload)


DONE = NLMSGHDR.pack(20, NLMSG_DONE, 0, 0, 0) + bytes(4)

u32 = st.integers(0, 2**32 - 1)


def words(low: int, high: int) -> st.SearchStrategy[bytes]:
    """low..high native u32 values, packed."""
    return st.lists(u32, min_size=low, max_size=high).map(lambda v: struct.pack(f"={len(v)}I", *v))


attribute = st.one_of(
    st.tuples(st.just(0), st.binary(max_size=108)),  # NAME
    st.tuples(st.just(2), words(1, 1)),  # PEER
    st.tuples(st.just(3), words(0, 20)),  # ICONS
    st.tuples(st.just(4), words(2, 2)),  # RQLEN
    st.tuples(st.just(5), words(9, 12)),  # MEMINFO, longer on a newer kernel
    st.tuples(st.just(6), st.binary(min_size=1, max_size=1)),  # SHUTDOWN
    st.tuples(st.just(7), words(1, 1)),  # UID
    st.tuples(st.integers(8, 40), st.binary(max_size=24)),  # unknown to us
)
body = st.tuples(st.sampled_from([1, 2, 5, 9]), st.sampled_from([1, 7, 10, 3]), u32, u32, u32).map(
    lambda v: UNIX_MSG.pack(socket.AF_UNIX, *v)
)
messages = st.lists(st.tuples(body, st.lists(attribute, max_size=9)), min_size=1, max_size=12)


@FUZZ
@given(msgs=messages)
def test_layouts_decode_what_the_reference_decodes(msgs: list[tuple[bytes, list]]) -> None:
    data = b"".join(message(b, attrs) for b, attrs in msgs) + DONE
    assert decode(data) == reference(data)


@FUZZ
@given(msgs=messages)
def test_repeated_shapes_decode_alike(msgs: list[tuple[bytes, list]]) -> None:
    """The second time a shape comes, a cached layout decodes it: the same result."""
    data = b"".join(message(b, attrs) for b, attrs in msgs)
    first = decode(data + DONE)
    assert decode(data + data + DONE) == (None if first is None else first + first)


def test_the_real_dump_decodes_alike(seed: bytes) -> None:
    decoded = decode(seed)
    assert decoded is not None and len(decoded) > 10
    assert decoded == reference(seed)


def messages_of(data: bytes) -> Iterator[tuple[int, int]]:
    """(offset, length) of each sock_diag reply in a joined dump."""
    pos = 0
    while pos + NLMSGHDR.size <= len(data):
        length, mtype = NLMSGHDR.unpack_from(data, pos)[:2]
        if mtype == SOCK_DIAG_BY_FAMILY:
            yield pos, length
        pos += (length + 3) & ~3


def test_connected_sockets_unpack_straight_into_arguments(seed: bytes) -> None:
    """The commonest shape (connected: every attribute, no pending inodes) needs no
    per-socket reordering of its row: the decoder's fast path. Listeners (pending
    inodes) and unconnected sockets (no peer) take the other one."""
    connected = 0
    for pos, length in messages_of(seed):
        kinds = {kind for _apos, _alen, kind in unixdiag._attrs(seed, pos, length)}
        layout = unixdiag._layout_for(seed, pos, length)
        assert layout is not None
        if unixdiag.UNIX_DIAG_PEER in kinds and unixdiag.UNIX_DIAG_ICONS not in kinds:
            connected += 1
            assert layout.args is None
        else:
            assert layout.args is not None
    assert connected >= 6


def test_equal_buffers_share_one_skmem_tuple(seed: bytes) -> None:
    out: list[Sock] = []
    decode_messages(seed, "unix", "t", out)
    by_value: dict[tuple[int, ...] | None, set[int]] = {}
    for sock in out:
        by_value.setdefault(sock.skmem, set()).add(id(sock.skmem))
    assert len(by_value) < len(out)  # the scene's idle sockets repeat their buffers
    assert all(len(ids) == 1 for ids in by_value.values())


@FUZZ
@given(data=st.data())
def test_mutated_real_dump(seed: bytes, data: st.DataObject) -> None:
    raw = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    decode(bytes(raw[:cut]))  # decodes or raises DiagError, and returns


@FUZZ
@given(raw=st.binary(max_size=120))
def test_any_path_decodes(raw: bytes) -> None:
    text = decode_path(raw)
    assert "\0" not in text
    if raw[:1] == b"\0":
        assert text.startswith("@") and len(text) >= len(raw) // 4
    text.encode("utf-8")  # printable as UTF-8: no lone surrogates


def test_paths_read_as_ss_prints_them() -> None:
    assert decode_path(b"/run/php/php-fpm.sock\0") == "/run/php/php-fpm.sock"
    assert decode_path(b"\0journal\0x") == "@journal@x"
    assert decode_path(b"/tmp/caf\xc3\xa9.sock\0") == "/tmp/café.sock"
    assert decode_path(b"/tmp/\xff\xfe\0") == "/tmp/\\xff\\xfe"
