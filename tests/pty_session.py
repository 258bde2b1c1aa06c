"""Leads the session of a pty a test opened and runs ARGV in it, in one of three ways;
exits with ARGV's exit status.

exec   ARGV is the session leader, as under `tmux new-session CMD` or `ssh host CMD`:
       a hang-up sends it SIGHUP and SIGCONT (the kernel does).
shell  ARGV is a job of the leader, which passes a SIGHUP on, as an interactive shell
       does when its terminal hangs up.
quiet  ARGV is a child of the leader, which passes nothing on: ARGV gets no signal,
       only a terminal that fails (under `sh -c 'CMD; ...'` the shell dies of the
       SIGHUP, and CMD gets none).
"""

from __future__ import annotations

import os
import signal
import sys


def main(mode: str, argv: list[str]) -> int:
    if mode == "exec":
        os.execv(argv[0], argv)
    child = os.fork()
    if child == 0:
        os.execv(argv[0], argv)
    if mode == "shell":
        signal.signal(signal.SIGHUP, lambda signum, _frame: os.kill(child, signum))
    else:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
