"""Real server processes for end-to-end tests: started on a free port, stopped by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

#: The console script installed with the project, next to the running Python.
DURABLE_MCP = str(Path(sys.executable).parent / "durable-mcp")
#: The checkout's proxy.py: this package is installed editable from testing/src/.
PROXY = str(Path(__file__).parents[3] / "proxy.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on port {port} within {within} s")


def start_server(
    port: int, data_dir: Path, env: Mapping[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """``durable-mcp serve`` on ``port`` and ``data_dir`` in its own process group, listening."""
    command = [DURABLE_MCP, "serve", "--port", str(port), "--data-dir", str(data_dir)]
    return start_listening(command, port, env, log)


def start_listening(
    command: list[str], port: int, env: Mapping[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """``command`` in its own process group, once it listens on ``port``."""
    with open(log, "ab") if log is not None else open(os.devnull, "wb") as output:
        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(port, process)
    except BaseException:
        stop(process)
        raise
    return process


@contextmanager
def running_server(
    port: int, data_dir: Path, env: Mapping[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """:func:`start_server` for the length of a block; stopped after it."""
    process = start_server(port, data_dir, env, log)
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a process we started, and its group, by its pid."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Server:
    """Starts, kills and restarts `durable-mcp serve` on one port and data dir."""

    def __init__(self, data_dir: Path, archive_url: str) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.env = {"OPEN_METEO_ARCHIVE_URL": archive_url}
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.data_dir.parent / "server.log"
        self.process = start_server(self.port, self.data_dir, self.env, log)

    def kill(self) -> None:
        assert self.process is not None
        stop(self.process, signal.SIGKILL)

    def close(self) -> None:
        if self.process is not None:
            stop(self.process)
