"""Modal screens that take one answer."""

from __future__ import annotations

from typing import TypeVar

from textual.await_complete import AwaitComplete
from textual.screen import ModalScreen

ResultT = TypeVar("ResultT")


class Question(ModalScreen[ResultT]):
    """A modal screen dismissed once. Keys typed fast reach it together (the socket
    list replays the keys it held at once): a second answer would call the caller
    again (closing twice) and pop the screen under it (a crash); it is ignored."""

    answered = False

    def dismiss(self, result: ResultT | None = None) -> AwaitComplete:
        if self.answered:
            return AwaitComplete()
        self.answered = True
        return super().dismiss(result)
