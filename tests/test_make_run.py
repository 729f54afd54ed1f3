"""`make run` on a fresh copy of the checkout: it finds a Python by itself, listens,
answers an MCP initialize, and a Ctrl-C at its terminal stops it with exit code 0.

The copy has no .venv and no .tools, and make runs without UV_PYTHON or any
uv setting, in a terminal of its own (a pty, whose Ctrl-C is a SIGINT to the
terminal's foreground process group), as a person runs it. On this machine uv
finds no Python >= 3.12 by itself (pyenv's 3.12 and 3.13 are installed but not
active), so the server listens only if scripts/run_uv.py found one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from durable_mcp_testing.helpers import INITIALIZE
from durable_mcp_testing.processes import free_port

ROOT = Path(__file__).parent.parent

#: What a fresh clone does not have.
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", ".venv", ".tools", "__pycache__", ".*_cache", ".durable-mcp", "dist", "resonate.sql"
)


def a_users_environment() -> dict[str, str]:
    """This environment without the project's venv or any uv setting (uv run adds them)."""
    venv_bin = str(Path(sys.executable).parent)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("UV", "DURABLE_MCP", "MAKE")) and k not in ("VIRTUAL_ENV", "MFLAGS")
    }
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    return env


class Terminal:
    """A pty whose output is collected as it comes (a full pty would block the server)."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            self.output += data

    def ctrl_c(self) -> None:
        os.write(self.master, b"\x03")

    def text(self) -> str:
        return self.output.decode(errors="replace")


def initialize(port: int, make: subprocess.Popen[bytes], terminal: Terminal) -> str:
    """The answer to an MCP initialize, once the server listens (make installs first)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/mcp",
        data=json.dumps(INITIALIZE).encode(),
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        },
    )
    deadline = time.monotonic() + 240  # installing uv and the environment, on a slow day
    while True:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return str(response.read().decode())
        except (urllib.error.URLError, ConnectionError):
            assert make.poll() is None, f"make exited {make.returncode}:\n{terminal.text()}"
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def kill_session(session: int) -> None:
    """Every process of the session make led, the server's group included."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == session:
                    os.kill(int(entry.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def test_make_run_on_a_fresh_copy_answers_initialize_and_stops_on_ctrl_c_with_0(
    tmp_path: Path,
) -> None:
    checkout = tmp_path / "durable-mcp"
    shutil.copytree(ROOT, checkout, ignore=NOT_IN_A_CLONE, symlinks=True)
    port = free_port()
    terminal = Terminal()
    # setsid --ctty: a session of its own with the pty as its controlling terminal.
    make = subprocess.Popen(
        ["setsid", "--ctty", "make", "run", f"ARGS=--port {port}"],
        cwd=checkout,
        env=a_users_environment(),
        stdin=terminal.slave,
        stdout=terminal.slave,
        stderr=terminal.slave,
    )
    try:
        answer = initialize(port, make, terminal)
        assert '"serverInfo"' in answer and '"durable-mcp"' in answer, terminal.text()

        terminal.ctrl_c()
        code = make.wait(timeout=60)

        output = terminal.text()
        assert code == 0, output
        assert "Error 130" not in output and "Interrupt" not in output
        assert "Application shutdown complete" in output  # it stopped cleanly
        assert "Traceback" not in output
        assert f"jobs page: http://127.0.0.1:{port}/jobs" in output  # printed as it starts
    finally:
        kill_session(make.pid)
        make.wait()
        os.close(terminal.slave)
        os.close(terminal.master)
