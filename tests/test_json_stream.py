"""`snapshot --json`, `watch --json` and `replay --json` write a document in pieces
(a batch of sockets at a time); the pieces make exactly the one-piece document."""

from __future__ import annotations

import io
import json

from bufmon.textout import BATCH, json_chunks, json_line, shown, watch_document, write_json_line
from collectors.model import Process
from tui.synthetic import synthetic_snapshot


def test_pieces_make_the_whole_document() -> None:
    snap = synthetic_snapshot(2 * BATCH + 1)
    socks = shown(snap)
    whole = json_line(watch_document(snap, socks))
    assert b"".join(json_chunks(snap, socks)).decode() == whole
    out = io.BytesIO()
    write_json_line(out, snap, socks)
    assert out.getvalue().decode() == whole + "\n"
    assert len(json.loads(whole)["sockets"]) == 2 * BATCH + 1
    empty = b"".join(json_chunks(snap, [])).decode()
    assert empty == json_line(watch_document(snap, [])) and json.loads(empty)["sockets"] == []


def test_names_past_ascii_are_escaped_as_the_standard_library_does() -> None:
    snap = synthetic_snapshot(BATCH + 3)
    snap.host = 'h\u00f6st "sockets":[] \u009b'  # a C1 control: never raw on a terminal
    socks = shown(snap)
    socks[-1].process = Process(pid=7, comm="d\u00e9mon\u200e", user="\u00fc")
    text = b"".join(json_chunks(snap, socks)).decode()
    assert text.isascii() and "\\u009b" in text
    assert text == json.dumps(watch_document(snap, socks), separators=(",", ":"))
    assert json.loads(text)["host"] == snap.host
