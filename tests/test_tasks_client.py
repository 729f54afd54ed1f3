"""FastMCP's own tasks client (``fastmcp-tasks``) against a real server process.

``fastmcp-tasks`` pins an older FastMCP than the server's, so the client runs in
its own environment: PEP 723 scripts with committed locks, run with
``uv run --locked --script`` (the first run installs that environment, from
then on it is cached). ``examples/tasks_client.py`` is the README's example;
``tasks_crash_client.py`` keeps one task and one client across a ``kill -9``
and restart of the server, directly or through the stdio proxy.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.helpers import eventually
from durable_mcp_testing.processes import Server

#: The uv that runs the tests (``uv run`` sets it); the scripts run with it too.
UV = os.environ.get("UV", "uv")
ROOT = Path(__file__).parent.parent
DRIVER = Path(__file__).parent / "tasks_crash_client.py"

#: The example's place and month, and its job (and so task) name.
PLACE = {"latitude": 52.52, "longitude": 13.41, "year": 2024, "month": 3}
JOB = "weather_data_52.52_13.41_2024_3"

#: Bounds that fail a hung test, not claims about speed: a first `uv run --script`
#: installs the script's environment (~75 packages) before the script starts.
WITHIN = 240
pytestmark = pytest.mark.timeout(2 * WITHIN)

#: How the client reaches the server: over HTTP, or over stdio through `make proxy`.
VIA = ["direct", "proxy"]


@pytest.fixture
def server(tmp_path: Path, fake_archive: FakeOpenMeteo) -> Iterator[Server]:
    server = Server(tmp_path / "data", fake_archive.url)
    yield server
    fake_archive.release()  # a fetch still held would keep a graceful stop waiting
    server.close()


async def await_result(server: Server) -> Any:
    """The job's data as a plain (non-task) client gets it."""
    async with Client(server.url) as client:
        return (await client.call_tool("await_result", {"job_names": [JOB]})).data[JOB]


async def job_status(server: Server) -> str:
    async with Client(server.url) as client:
        (status,) = (await client.call_tool("probe_status", {"job_names": [JOB]})).data
        return str(status["status"])


def test_the_readme_shows_the_example_as_it_is() -> None:
    assert (ROOT / "examples" / "tasks_client.py").read_text() in (ROOT / "README.md").read_text()


async def test_the_readme_example_runs_as_written(
    server: Server, fake_archive: FakeOpenMeteo
) -> None:
    server.start()
    command = [UV, "run", "--locked", "--script", "examples/tasks_client.py", server.url]
    run = await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, capture_output=True, text=True, timeout=WITHIN
    )
    assert run.returncode == 0, run.stderr
    started, summary = run.stdout.splitlines()
    # The fake archive answers at once: the first tasks/get may already see it done.
    assert started in {f"task {JOB} working", f"task {JOB} completed"}
    assert summary == f"summary {(await await_result(server))['summary']}"
    assert fake_archive.total_requests == 1


class Driver:
    """``tasks_crash_client.py`` as a process: its first line, then its result line."""

    def __init__(self, process: asyncio.subprocess.Process, stderr: Path) -> None:
        self.process = process
        self.stderr = stderr

    async def line(self) -> Any:
        assert self.process.stdout is not None
        async with asyncio.timeout(WITHIN):
            line = await self.process.stdout.readline()
        assert line, f"the driver ended early:\n{self.stderr.read_text()}"
        return json.loads(line)

    async def result(self) -> Any:
        """Let the driver go on (``task.result()`` on its task) and read what it got."""
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        await self.process.stdin.drain()
        return await self.line()


@asynccontextmanager
async def driver(server: Server, via: str, tmp_path: Path) -> AsyncIterator[Driver]:
    stderr = tmp_path / "driver.stderr"
    with open(stderr, "wb") as errors:
        process = await asyncio.create_subprocess_exec(
            *[UV, "run", "--locked", "--script", str(DRIVER)],
            *[server.url, via, json.dumps(PLACE)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            start_new_session=True,  # its own group: the proxy's processes go with it
        )
    try:
        yield Driver(process, stderr)
    finally:
        if process.returncode is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


@pytest.mark.parametrize("via", VIA)
async def test_a_task_cut_off_mid_fetch_by_kill_9_completes_after_restart(
    server: Server, fake_archive: FakeOpenMeteo, tmp_path: Path, via: str
) -> None:
    fake_archive.hold()  # the fetch hangs until released: the kill lands mid-fetch
    server.start()
    async with driver(server, via, tmp_path) as client:
        assert await client.line() == {"task_id": JOB, "status": "working"}
        await fake_archive.arrived(1)
        server.kill()
        fake_archive.release()
        server.start()
        # The same task object, on the same client, polls the restarted server.
        data = await client.result()
    assert data == await await_result(server)
    assert data["summary"]["days"] == 31

    # Exactly two fetches. The fetch step had not returned when the server died
    # (the archive held it), so no checkpoint records it and the restarted server
    # must run it again: at-least-once for a step cut off mid-run. The first
    # request is counted once released (its answer goes to a dead socket), the
    # repeat once; nothing fails, so no retry adds a third. The released request
    # is counted on the archive's own thread, hence the bounded wait.
    async def both_counted() -> bool | None:
        return True if fake_archive.total_requests >= 2 else None

    await eventually(both_counted)
    assert fake_archive.total_requests == 2


@pytest.mark.parametrize("via", VIA)
async def test_a_task_whose_fetch_finished_before_kill_9_is_served_from_the_store(
    server: Server, fake_archive: FakeOpenMeteo, tmp_path: Path, via: str
) -> None:
    fake_archive.hold()  # so the driver's first status is surely "working"
    server.start()
    async with driver(server, via, tmp_path) as client:
        assert await client.line() == {"task_id": JOB, "status": "working"}
        fake_archive.release()

        async def completed() -> bool | None:
            return True if await job_status(server) == "completed" else None

        await eventually(completed, within=WITHIN)
        server.kill()
        server.start()
        data = await client.result()
    assert data == await await_result(server)
    assert data["summary"]["days"] == 31
    # A finished step is not repeated: the restarted server answers from its store.
    assert fake_archive.total_requests == 1


@pytest.mark.parametrize("via", VIA)
async def test_a_task_running_when_kill_9_lands_completes_with_one_fetch(
    server: Server, fake_archive: FakeOpenMeteo, tmp_path: Path, via: str
) -> None:
    # One fetch at a time, and another job's fetch holds it: the task's job is
    # running (its step waits for the archive) but has fetched nothing when killed.
    server.env["DURABLE_MCP_MAX_FETCHES"] = "1"
    fake_archive.hold()
    server.start()
    async with Client(server.url) as plain:
        await plain.call_tool("start_gathering", PLACE | {"month": 2})
    await fake_archive.arrived(1)
    async with driver(server, via, tmp_path) as client:
        assert await client.line() == {"task_id": JOB, "status": "working"}
        server.kill()
        fake_archive.release()
        server.start()
        data = await client.result()
    assert data == await await_result(server)
    ours = [query for query in fake_archive.requests if "start_date=2024-03-01" in query]
    assert [fake_archive.requests[query] for query in ours] == [1]  # fetched once, after
