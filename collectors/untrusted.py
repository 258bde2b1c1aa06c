"""Text that any local user chooses: process names, cgroup paths, namespace names.

Two steps, each done in one place:
- `decode` turns the kernel's bytes into str and never raises: UTF-8, with every
  invalid byte kept as the four characters `\\xNN`. The result is valid Unicode, so
  JSON stays valid, and it is exact otherwise (a `\\r` stays a `\\r`).
- `printable` makes decoded text harmless on a terminal: C0 and C1 controls, DEL,
  bidi and zero-width controls, line separators and lone surrogates are shown as
  `\\xNN` or `\\uNNNN` text. Every human-readable output calls it; JSON does not.
"""

from __future__ import annotations

import os
from itertools import chain

_INVISIBLE = chain(
    range(0x00, 0x20),  # C0: ESC, CR, LF, BEL, backspace...
    range(0x7F, 0xA0),  # DEL and C1 (0x9B is a one-byte CSI)
    (0x061C, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0xFEFF),  # bidi marks, zero widths
    range(0x2028, 0x202F),  # line/paragraph separators, bidi embeddings and overrides
    range(0x2066, 0x206A),  # bidi isolates
    range(0xD800, 0xE000),  # lone surrogates (a name from os.listdir); not encodable
)
_VISIBLE = {code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" for code in _INVISIBLE}


def decode(raw: bytes) -> str:
    """Untrusted bytes as text; invalid UTF-8 bytes become `\\xNN`, nothing else changes."""
    return raw.decode("utf-8", errors="backslashreplace")


def decode_name(name: str) -> str:
    """A file name from os.listdir (surrogate-escaped bytes) decoded like `decode`."""
    return decode(os.fsencode(name))


def printable(text: str) -> str:
    """`text` with every control character shown as an escape, safe to print."""
    return text if text.isprintable() else text.translate(_VISIBLE)  # isprintable: fast path


def read_comm(path: str) -> str:
    """A /proc/PID/comm file: the name without the newline the kernel adds; raises OSError."""
    with open(path, "rb") as f:
        raw = f.read()
    return decode(raw[:-1] if raw.endswith(b"\n") else raw)
