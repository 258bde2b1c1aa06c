"""Text that any local user chooses: process names, cgroup paths, namespace names.

Two steps, each done in one place:
- `decode` turns the kernel's bytes into str and never raises: UTF-8, with every
  invalid byte kept as the four characters `\\xNN`. The result is valid Unicode, so
  JSON stays valid, and it is exact otherwise (a `\\r` stays a `\\r`).
- `printable` makes decoded text harmless on a terminal: C0 and C1 controls, DEL,
  bidi and zero-width controls, line separators and lone surrogates are shown as
  `\\xNN`, `\\uNNNN` or `\\UNNNNNNNN` text. Every human-readable output calls it;
  JSON does not.
"""

from __future__ import annotations

import os
import unicodedata

# Unicode categories a terminal may act on rather than show: Cc (C0, DEL, C1), Cf
# (bidi controls, zero widths, soft hyphen, tags), Zl and Zp (separators), Cs (lone
# surrogates, from file names; they cannot even be encoded).
_CONTROL_CATEGORIES = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs"))


def _escape(code: int) -> str:
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class _Escapes(dict[int, str]):
    """str.translate table filled as characters are met; bounded, so a flood of
    distinct characters cannot grow it without end."""

    LIMIT = 65536

    def __missing__(self, code: int) -> str:
        if len(self) >= self.LIMIT:
            self.clear()
        char = chr(code)
        shown = self[code] = (
            _escape(code) if unicodedata.category(char) in _CONTROL_CATEGORIES else char
        )
        return shown


_ESCAPES = _Escapes()


def decode(raw: bytes) -> str:
    """Untrusted bytes as text; invalid UTF-8 bytes become `\\xNN`, nothing else changes."""
    return raw.decode("utf-8", errors="backslashreplace")


def decode_name(name: str) -> str:
    """A file name from os.listdir (surrogate-escaped bytes) decoded like `decode`."""
    return decode(os.fsencode(name))


def printable(text: str) -> str:
    """`text` with every control character shown as an escape, safe to print."""
    # isprintable() is False for every control (and for a few harmless spaces): fast path
    return text if text.isprintable() else text.translate(_ESCAPES)


def read_comm(path: str) -> str:
    """A /proc/PID/comm file: the name without the newline the kernel adds; raises OSError."""
    with open(path, "rb") as f:
        raw = f.read()
    return decode(raw[:-1] if raw.endswith(b"\n") else raw)
