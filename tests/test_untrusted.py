"""decode (bytes -> exact, valid text) and printable (text -> safe on a terminal)."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.cgroups import label_from_cgroup
from collectors.untrusted import decode, decode_name, printable, read_comm


def is_control(char: str) -> bool:
    """What a terminal may act on: Cc (C0, DEL, C1), Cf (bidi, zero width), Zl, Zp, Cs."""
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs")


@given(st.binary())
def test_decode_never_fails_and_gives_valid_unicode(raw: bytes) -> None:
    text = decode(raw)
    text.encode("utf-8")  # strict: no lone surrogates
    assert json.loads(json.dumps(text)) == text
    assert json.loads(json.dumps(text, ensure_ascii=False)) == text


@given(st.text().filter(lambda t: "\\" not in t))
def test_decode_keeps_valid_utf8_exactly(text: str) -> None:
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate is no UTF-8 anyone can send
        return
    assert decode(raw) == text


def test_decode_examples() -> None:
    assert decode(b"\xff\xfeok") == "\\xff\\xfeok"
    assert decode(b"a\rb\nc") == "a\rb\nc"  # nothing normalised
    assert decode_name(b"na\xffme".decode("utf-8", "surrogateescape")) == "na\\xffme"


@given(st.text())
def test_printable_escapes_exactly_the_controls(text: str) -> None:
    shown = printable(text)
    assert not any(is_control(c) for c in shown)
    shown.encode("utf-8")
    assert shown == "".join(printable(c) for c in text)  # character by character
    for char in text:
        assert (printable(char) == char) == (not is_control(char))


@pytest.mark.parametrize(
    "text, shown",
    [
        ("\x1b]2;PWNED\x07", "\\x1b]2;PWNED\\x07"),
        ("a\rb\nc\td", "a\\x0db\\x0ac\\x09d"),
        ("\x7f\x9b2J", "\\x7f\\x9b2J"),
        ("\u202eevil\u2066", "\\u202eevil\\u2066"),
        ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
        ("line\u2028sep", "line\\u2028sep"),
        ("\udcff", "\\udcff"),
        ("soft\xadhyphen\U000e0041", "soft\\xadhyphen\\U000e0041"),
        ("nginx: worker", "nginx: worker"),
        ("café 中文 🚀", "café 中文 🚀"),
        ("C:\\x1b", "C:\\x1b"),  # a literal backslash is not doubled: display only
    ],
)
def test_printable_examples(text: str, shown: str) -> None:
    assert printable(text) == shown


@pytest.mark.parametrize(
    "raw, comm",
    [(b"sshd\n", "sshd"), (b"a\rb\n", "a\rb"), (b"x\n\n", "x\n"), (b"\xff\n", "\\xff")],
)
def test_read_comm_drops_only_the_kernels_newline(tmp_path: Path, raw: bytes, comm: str) -> None:
    path = tmp_path / "comm"
    path.write_bytes(raw)
    assert read_comm(str(path)) == comm


def test_cgroup_lines_split_on_newline_only() -> None:
    # recorded shape of /proc/PID/cgroup; the path holds \r, ":" and an ESC
    text = decode(b"0::/user.slice/a:b\r\x1b[2K.scope\n")
    assert label_from_cgroup(text) == "unit:a:b\r\x1b[2K.scope"
