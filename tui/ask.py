"""Small questions before an action: confirm closing sockets, pick a format."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from bufmon.actions import describe
from collectors.model import Sock
from tui.help import KEY_STYLE, Keymap, key_label, or_keys
from tui.question import Question


class ConfirmClose(Question[bool]):
    """Lists exactly the sockets that will be closed; y closes them, n or Esc does not."""

    YES = Binding("y", "dismiss(True)", "close them", id="close-yes")
    NO = Binding("n,escape", "dismiss(False)", "keep them", id="close-no")
    BINDINGS = [YES, NO]

    def __init__(self, socks: Sequence[Sock], keymap: Keymap) -> None:
        super().__init__()
        self.socks = socks
        self.keymap = keymap

    def compose(self) -> ComposeResult:
        count = len(self.socks)
        what = "this socket" if count == 1 else f"these {count} sockets"
        tcp = sum(s.proto == "tcp" for s in self.socks)  # a UDP peer is told nothing
        reset = " TCP peers see a reset." if 0 < tcp < count else ""
        if tcp == count:
            reset = " The peer sees a reset."
        with VerticalScroll(classes="ask-box"):
            yield Static(Text(f"Close {what}?{reset}", KEY_STYLE))
            yield Static(Text("\n".join(describe(s) for s in self.socks)), id="ask-list")
            yes, no = (or_keys(b, self.keymap) for b in (self.YES, self.NO))
            yield Static(f"{yes} closes   {no} keeps them", classes="ask-hint")


class Choice(Question[str | None]):
    """One key picks one option (the value its binding dismisses with); Esc picks none."""

    QUESTION: ClassVar[str] = ""
    CANCEL = Binding("escape", "dismiss(None)", "cancel")

    def compose(self) -> ComposeResult:
        text = Text(self.QUESTION + "\n")
        for binding in self.BINDINGS:
            assert isinstance(binding, Binding)
            text.append(f"\n  {key_label(binding.key):<6}", KEY_STYLE)
            text.append(binding.description)
        with VerticalScroll(classes="ask-box"):
            yield Static(text)


class CopyAs(Choice):
    QUESTION = "Copy this socket as:"
    BINDINGS = [
        Binding("t", "dismiss('text')", "text: ends, process, queues, flags"),
        Binding("s", "dismiss('ss')", "the ss command line that shows it"),
        Binding("j", "dismiss('json')", "JSON, as in bufmon snapshot --json"),
        Choice.CANCEL,
    ]


class ExportAs(Choice):
    QUESTION = "Export what is on screen to a new file (0600) in the current directory, as:"
    BINDINGS = [
        Binding("j", "dismiss('json')", "JSON, as bufmon snapshot --json"),
        Binding("c", "dismiss('csv')", "CSV, the columns of bufmon snapshot"),
        Choice.CANCEL,
    ]
