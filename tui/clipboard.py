"""Whether an OSC 52 copy can reach a clipboard from here.

Textual's App.copy_to_clipboard writes OSC 52 (ESC ] 52 ; c ; base64 BEL); terminals
that honour it put the text on the clipboard of the machine the user sits at, over
SSH too. Inside tmux the sequence counts only with `set-clipboard on` (tmux then keeps
it as a paste buffer and passes it on); the Linux console and GNU screen drop it.
Where it cannot get through, the caller writes a file instead.
"""

from __future__ import annotations

import os
import subprocess

TMUX_TIMEOUT = 2.0


def _tmux_option(name: str) -> str:
    """A global tmux option of the server we run in ("" when it cannot be read)."""
    try:
        done = subprocess.run(
            ["tmux", "show-options", "-gv", name],
            capture_output=True,
            text=True,
            timeout=TMUX_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def blocked_by() -> str | None:
    """Why an OSC 52 copy would not reach a clipboard here; None when it should."""
    term = os.environ.get("TERM", "")
    if term in ("linux", "dumb"):
        return f"the {term} terminal has no clipboard"
    if os.environ.get("TMUX"):
        setting = _tmux_option("set-clipboard")
        if setting != "on":
            return f"tmux set-clipboard is {setting or 'unknown'}, not on"
    elif os.environ.get("STY"):
        return "GNU screen does not pass the copy on"
    return None
