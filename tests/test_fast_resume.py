"""`durable-mcp serve` resumes interrupted jobs before the MCP layer is up.

The durable functions, the engine and the command itself import nothing of
MCP (FastMCP, the MCP SDK, uvicorn, Starlette): the engine starts, and the
jobs a kill -9 interrupted run to their end, on them alone. What the tests
assert is which modules are loaded and what the store recorded, never how
long anything took (the figures are in `make bench`: bench/run.py recovery).
A stop signal at any point of the start stops the server cleanly.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from durable_mcp.cli import JOB_STATUSES
from durable_mcp.config import Settings
from durable_mcp.engine import build_engine, start_engine
from durable_mcp.functions import BUILT_IN, FUNCTIONS
from durable_mcp.functions.weather import OpenMeteoArchive
from durable_mcp.jobs.registry import DurableTools
from durable_mcp.jobs.status import JobStatus
from durable_mcp.server import create_server
from durable_mcp.store.embedded import peek
from durable_mcp.store.journal import Journal
from durable_mcp_testing.crashes import call_server, sleep_on_disk, timer_due_while_down
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.helpers import eventually, noise
from durable_mcp_testing.processes import Server, free_port, stop

#: The MCP layer: none of it may be imported before the engine has started.
MCP_LAYER = ("fastmcp", "mcp", "mcp_types", "uvicorn", "starlette")


def loaded_mcp_modules(code: str) -> list[str]:
    """The MCP-layer modules a fresh interpreter has loaded after running ``code``."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {MCP_LAYER!r})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    loaded: list[str] = json.loads(out.stdout.splitlines()[-1])
    return loaded


@pytest.mark.parametrize(
    "module",
    [
        "durable_mcp",
        "durable_mcp.jobs.registry",
        "durable_mcp.jobs.status",
        "durable_mcp.functions",
        "durable_mcp.functions.timer",
        "durable_mcp.functions.weather",
        "durable_mcp.engine",
        "durable_mcp.cli",
    ],
)
def test_the_durable_functions_engine_and_command_import_no_mcp_layer(module: str) -> None:
    assert loaded_mcp_modules(f"import {module}") == []


#: Run in a fresh interpreter on a data dir a kill -9 left with an interrupted
#: timer: start the engine alone and await the timer's end (bounded) through
#: the SDK's handle, as await_result does.
RESUME_WITHOUT_MCP = """
import asyncio, sys
from durable_mcp.config import load_settings
from durable_mcp.engine import build_engine, start_engine
from durable_mcp.functions.weather import OpenMeteoArchive

settings = load_settings(env={"DURABLE_MCP_DATA_DIR": sys.argv[1]})
engine = build_engine(settings)

async def main():
    archive = OpenMeteoArchive(settings.open_meteo_url)
    start_engine(engine, archive)
    handle = await engine.resonate.get("tea")
    async with asyncio.timeout(60):  # a hang guard, not a claim about speed
        await handle.result()
    archive.close()
    await engine.resonate.stop()

asyncio.run(main())
"""


@pytest.fixture
def server(tmp_path: Path, fake_archive: FakeOpenMeteo) -> Iterator[Server]:
    server = Server(tmp_path / "data", fake_archive.url)
    yield server
    server.close()


async def test_a_job_interrupted_by_kill_9_completes_on_the_engine_alone(server: Server) -> None:
    await timer_due_while_down(server, "tea")
    loaded = loaded_mcp_modules(
        f"import sys; sys.argv[1:] = [{str(server.data_dir)!r}]\n{RESUME_WITHOUT_MCP}"
    )
    assert loaded == []
    tea = peek(server.data_dir).promises["tea"]
    assert tea.state == "resolved"
    # ... and the server, started again, reports it done.
    server.start()
    assert await call_server(server, "get_timer_status", timer_name="tea") == {"status": "complete"}


#: `durable-mcp serve` in a fresh interpreter, sending itself a stop signal at
#: one point of its start: after ``run()`` looked for a stop request for the
#: last time ("before serve"), or after ``serve()`` installed its handler and
#: before uvicorn installs its own ("before uvicorn"). argv: point, signal, serve's argv.
SIGNAL_DURING_START = """
import os, signal, sys
from durable_mcp import cli, http

point, stop_signal = sys.argv[1], signal.Signals[sys.argv[2]]

def signalled(serve):
    async def serve_after_a_stop_signal(*args, **kwargs):
        os.kill(os.getpid(), stop_signal)
        await serve(*args, **kwargs)
    return serve_after_a_stop_signal

if point == "before serve":
    http.serve = signalled(http.serve)
else:
    http.StoppingServer.serve = signalled(http.StoppingServer.serve)
cli.main(sys.argv[3:])
"""


def serve_signalled(server: Server, point: str, stop_signal: str, log: Path) -> int:
    """Run :data:`SIGNAL_DURING_START` on ``server``'s data dir; its exit code (60 s at most)."""
    argv = ["serve", "--port", str(free_port()), "--data-dir", str(server.data_dir)]
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", SIGNAL_DURING_START, point, stop_signal, *argv],
            env={**os.environ, **server.env},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        return process.wait(timeout=60)
    finally:
        stop(process)


@pytest.mark.parametrize(
    ("point", "stop_signal"),
    [("before serve", "SIGTERM"), ("before uvicorn", "SIGINT")],
)
async def test_a_stop_signal_between_resuming_and_serving_stops_the_server_cleanly(
    server: Server, point: str, stop_signal: str
) -> None:
    # A data dir a kill -9 left with a job in flight: the start resumes it.
    server.start()
    await call_server(server, "set_timer", timer_name="tea", seconds=600)
    await sleep_on_disk(server, "tea")
    server.kill()
    log = server.data_dir.parent / "stopped.log"
    returncode = await asyncio.to_thread(serve_signalled, server, point, stop_signal, log)
    assert returncode == 0
    assert noise(log.read_text()) == []
    # The store was stopped, not dropped: its last state is one snapshot, and
    # the job carries on at the next start.
    saved = Journal.peek(server.data_dir)
    assert saved.snapshot is not None and saved.entries == []
    assert peek(server.data_dir).promises["tea"].state == "pending"


WITH_COUNTDOWN = DurableTools(BUILT_IN)


@WITH_COUNTDOWN.tool(job_name=lambda seconds: f"countdown_{seconds}")
async def countdown(ctx: object, seconds: int) -> int:
    """Count down."""
    return seconds


async def test_an_app_on_a_started_engine_refuses_a_durable_function_it_did_not_start_with(
    tmp_path: Path,
) -> None:
    settings = Settings(store="embedded", data_dir=tmp_path / "data")
    archive = OpenMeteoArchive("http://127.0.0.1:9/archive")
    engine = start_engine(build_engine(settings), archive)
    try:
        # A countdown job could not have resumed before the app was built.
        with pytest.raises(RuntimeError, match="countdown"):
            create_server(settings, engine=engine, durable=WITH_COUNTDOWN)
    finally:
        await engine.resonate.stop()  # and the store with it


async def test_an_app_on_a_started_engine_runs_its_jobs(tmp_path: Path) -> None:
    settings = Settings(store="embedded", data_dir=tmp_path / "data")
    engine = start_engine(build_engine(settings), OpenMeteoArchive("http://127.0.0.1:9/archive"))
    assert {fn.__name__ for fn in engine.functions} == {"timer", "weather_data"}
    async with Client(create_server(settings, engine=engine)) as client:
        await client.call_tool("set_timer", {"timer_name": "tea", "seconds": 0})

        async def ended() -> dict[str, Any] | None:
            status = (await client.call_tool("get_timer_status", {"timer_name": "tea"})).data
            return None if status["status"] == "running" else dict(status)

        # The timer runs on the store's writer thread and real time: poll, bounded.
        assert await eventually(ended) == {"status": "complete"}


def test_the_built_in_tools_durable_functions_are_all_started_first() -> None:
    assert [fn.__name__ for fn in FUNCTIONS] == ["timer", "weather_data"]


def test_durable_mcp_jobs_takes_every_status_but_not_found() -> None:
    assert tuple(s.value for s in JobStatus if s != JobStatus.not_found) == JOB_STATUSES
