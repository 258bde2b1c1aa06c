"""The `?` screen: every key of every screen, read from the bindings themselves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEY_NAMES = {
    "question_mark": "?",
    "slash": "/",
    "space": "Space",
    "plus": "+",
    "minus": "-",
    "equals_sign": "=",
    "escape": "Esc",
    "enter": "Enter",
    "pagedown": "PgDn",
    "pageup": "PgUp",
    "less_than_sign": "<",
    "greater_than_sign": ">",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
    "left_curly_bracket": "{",
    "right_curly_bracket": "}",
}
KEY_STYLE = Style(bold=True)
HEADING = Style(bold=True, underline=True)


def key_label(keys: str) -> str:
    return " ".join(KEY_NAMES.get(key, key) for key in keys.split(","))


Section = tuple[str, Sequence[BindingType]]  # a heading and the keys under it


def remapped(bindings: Sequence[BindingType], keymap: Mapping[str, str]) -> list[BindingType]:
    """`bindings` with the keys `keymap` (binding id -> keys) gives them instead."""
    out: list[BindingType] = []
    for b in bindings:
        key = keymap.get(b.id) if isinstance(b, Binding) and b.id else None
        out.append(b if key is None else replace(b, key=key))  # type: ignore[type-var]
    return out


def help_text(sections: list[Section]) -> Text:
    text = Text()
    for n, (title, bindings) in enumerate(sections):
        text.append(("\n\n" if n else "") + title, HEADING)
        for item in bindings:
            binding = item if isinstance(item, Binding) else Binding(*item)
            text.append(f"\n  {key_label(binding.key):<14}", KEY_STYLE)
            text.append(binding.description)
    return text


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "close this help")]

    def __init__(self, sections: list[Section]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(help_text(self.sections), id="help-text")
            yield Static("Esc, ? or q closes this help", id="help-hint")
