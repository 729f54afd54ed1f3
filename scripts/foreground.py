"""Run a command as the terminal's foreground job, so that Ctrl-C reaches it alone.

`make run` uses it. A Ctrl-C sends SIGINT to every process of the terminal's
foreground process group, make among them, and GNU make dies of it whatever
its recipe does: `make run` would exit 130, with an error line, although the
server stopped cleanly. Here the command runs in a process group of its own,
which is given the terminal: the Ctrl-C reaches only the command, which stops
cleanly, and make exits with the command's code (0).

Without a terminal, or when make runs in the background, the command simply
runs. Standard library only: it runs on whatever ``python3`` the machine has.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def main(command: list[str]) -> int:
    try:
        terminal = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        terminal = None
    if terminal is None or os.tcgetpgrp(terminal) != os.getpgrp():
        os.execvp(command[0], command)  # no terminal of ours to hand over
    child = subprocess.Popen(command, preexec_fn=os.setpgrp)  # no threads here to mind a fork
    # Giving the terminal away (and taking it back) from a group that does not
    # hold it would stop this process with SIGTTOU.
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    os.tcsetpgrp(terminal, child.pid)
    # make passes a SIGTERM on to this process only: pass it to the command's group.
    signal.signal(signal.SIGTERM, lambda signum, frame: os.killpg(child.pid, signum))
    signal.signal(signal.SIGINT, lambda signum, frame: os.killpg(child.pid, signum))
    try:
        code = child.wait()
    finally:
        os.tcsetpgrp(terminal, os.getpgrp())
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
