"""The `?` screen: every key of every screen, read from the bindings themselves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static

from tui.question import Question

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


Keymap = Mapping[str, str]  # binding id -> keys, the config file's [keys] table
HELP = Binding("question_mark", "help", "this help", id="help")


def key_labels(keys: str) -> list[str]:
    """Each key of a binding's "k,up" as the screen names it: ["k", "up"]."""
    return [KEY_NAMES.get(key.strip(), key.strip()) for key in keys.split(",")]


def key_label(keys: str) -> str:
    return " ".join(key_labels(keys))


def bound_keys(binding: Binding, keymap: Keymap) -> str:
    """The keys `binding` answers to once `keymap` remapped it."""
    return keymap.get(binding.id, binding.key) if binding.id else binding.key


def first_key(binding: Binding, keymap: Keymap) -> str:
    """The first key `binding` answers to now, as a hint names it."""
    return key_labels(bound_keys(binding, keymap))[0]


def hint_line(keymap: Keymap, parts: Sequence[tuple[Binding, str]]) -> str:
    """A screen's hint line: each binding named by the key it has now."""
    return "  ".join(f"{first_key(b, keymap)} {what}" for b, what in parts)


def or_keys(binding: Binding, keymap: Keymap) -> str:
    """Every key of `binding` as it is bound now, for a sentence: "Esc, ? or q"."""
    *rest, last = key_labels(bound_keys(binding, keymap))
    return f"{', '.join(rest)} or {last}" if rest else last


Section = tuple[str, Sequence[BindingType]]  # a heading and the keys under it


def remapped(bindings: Sequence[BindingType], keymap: Keymap) -> list[BindingType]:
    """`bindings` with the keys `keymap` gives them instead."""
    out: list[BindingType] = []
    for b in bindings:
        key = bound_keys(b, keymap) if isinstance(b, Binding) else None
        out.append(b if key is None else replace(b, key=key))  # type: ignore[type-var]
    return out


def clash(bindings: Sequence[BindingType], keymap: Keymap) -> tuple[str, str, str] | None:
    """(key, one binding id, another) when `keymap` gives one key to two of `bindings`
    (the keys active at once on one screen); None when every key does one thing."""
    owner: dict[str, str] = {}
    for b in bindings:
        if not isinstance(b, Binding):
            continue
        for key in key_labels(bound_keys(b, keymap)):
            other = owner.setdefault(key, b.id or b.action)
            if other != (b.id or b.action):
                return key, other, b.id or b.action
    return None


def help_text(sections: list[Section]) -> Text:
    text = Text()
    for n, (title, bindings) in enumerate(sections):
        text.append(("\n\n" if n else "") + title, HEADING)
        for item in bindings:
            binding = item if isinstance(item, Binding) else Binding(*item)
            text.append(f"\n  {key_label(binding.key):<14}", KEY_STYLE)
            text.append(binding.description)
    return text


class HelpScreen(Question[None]):
    CLOSE = Binding("escape,question_mark,q", "dismiss", "close this help")
    BINDINGS = [CLOSE]

    def __init__(self, sections: list[Section]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(help_text(self.sections), id="help-text")
            yield Static(f"{or_keys(self.CLOSE, {})} closes this help", id="help-hint")
