"""The README's "Add your own durable tool" example, run as written."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

from durable_mcp.config import Settings
from durable_mcp.server import TOOLS, create_server
from durable_mcp.tools.weather import OpenMeteoArchive

from helpers import STORE_TICK, FakeTime, call, core
from tasks_client import start_task, task_method, tasks_client

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import countdown  # noqa: E402


def test_the_readme_shows_the_example_as_it_is() -> None:
    assert (ROOT / "examples" / "countdown.py").read_text() in (ROOT / "README.md").read_text()


@pytest.fixture
def server(settings: Settings, archive: OpenMeteoArchive, fake_time: FakeTime) -> FastMCP:
    return create_server(
        settings,
        archive=archive,
        tools=[*TOOLS, countdown.register],
        clock=fake_time.clock,
        sleeper=fake_time.sleep,
        writer=fake_time.writer,
    )


@pytest.fixture
async def client(server: FastMCP) -> AsyncIterator[Client]:
    async with Client(server) as client:
        yield client


async def test_a_new_durable_tool_gets_start_probe_await_cancel_and_list(
    client: Client, fake_time: FakeTime
) -> None:
    started = await call(client, "start_countdown", seconds=2)
    assert started == {"job_name": "countdown_2", "status": "running"}
    assert await call(client, "start_countdown", seconds=2) == started  # attaches
    (probe,) = await call(client, "probe_status", job_names=["countdown_2"])
    assert core(probe) == {"job_name": "countdown_2", "kind": "countdown", "status": "running"}
    # Two durable sleeps, one after the other: fake time passes both.
    counted_down = call(client, "await_result", job_names=["countdown_2"])
    assert await fake_time.run(counted_down, step=STORE_TICK, within=10) == {
        "countdown_2": "liftoff"
    }
    await call(client, "start_countdown", seconds=600)
    cancelled = await call(client, "cancel_job", job_name="countdown_600")
    assert cancelled["status"] == "cancelled"
    listed = await call(client, "list_jobs", kind="countdown")
    assert [(job["job_name"], job["status"]) for job in listed["jobs"]] == [
        ("countdown_600", "cancelled"),
        ("countdown_2", "completed"),
    ]


async def test_its_arguments_are_validated_from_the_signature(client: Client) -> None:
    with pytest.raises(ToolError, match="seconds: Input should be greater than or equal to 1"):
        await call(client, "start_countdown", seconds=0)
    tool = next(t for t in await client.list_tools() if t.name == "start_countdown")
    assert tool.description == (
        'Start a countdown; returns {"job_name"} at once. Then call await_result.'
    )


async def test_a_new_durable_tool_runs_as_a_task_for_a_client_that_asks(
    server: FastMCP, fake_time: FakeTime
) -> None:
    async with tasks_client(server) as client:
        created = await start_task(client, "start_countdown", seconds=2)
        assert (created["taskId"], created["status"]) == ("countdown_2", "working")
        await fake_time.advance(2 + 2 * STORE_TICK, step=STORE_TICK)
        done = await task_method(client, "tasks/get", "countdown_2")
        assert done["status"] == "completed"
        assert done["result"]["structuredContent"] == {"result": "liftoff"}
