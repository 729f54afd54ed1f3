"""MCP tasks (SEP-2663) on the durable jobs, field by field, with an in-process client.

A client that opts in gets a task for every start tool; the task is the job.
``test_tasks_client.py`` drives the same server with FastMCP's own tasks client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, METHOD_NOT_FOUND
from mcp_types.jsonrpc import MISSING_REQUIRED_CLIENT_CAPABILITY

from durable_mcp.config import Settings
from durable_mcp.functions.weather import OpenMeteoArchive
from durable_mcp.jobs.service import Jobs
from durable_mcp.server import create_server
from durable_mcp.tasks import TaskParams
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.helpers import STORE_TICK, FakeTime, call, eventually
from durable_mcp_testing.tasks_client import (
    TaskMethod,
    TaskState,
    start_task,
    task_method,
    tasks_client,
)

WEATHER = {"latitude": 1, "longitude": 2, "year": 2020, "month": 1}
WEATHER_JOB = "weather_data_1_2_2020_1"


@pytest.fixture
async def opted_in(server: FastMCP) -> AsyncIterator[Client[Any]]:
    async with tasks_client(server) as client:
        yield client


async def finished(client: Client[Any], task_id: str) -> dict[str, Any]:
    """``tasks/get`` once the task has left ``working`` (the fetch runs on a thread)."""

    async def done() -> dict[str, Any] | None:
        task = await task_method(client, "tasks/get", task_id)
        return None if task["status"] == "working" else task

    return await eventually(done)


async def test_a_timer_runs_as_a_task_named_after_it(
    opted_in: Client[Any], fake_time: FakeTime, settings: Settings
) -> None:
    created = await start_task(opted_in, "set_timer", timer_name="tea", seconds=4)
    assert created["resultType"] == "task"
    assert created["taskId"] == "tea"
    assert created["status"] == "working"
    assert created["pollIntervalMs"] == 1000  # the job's poll_after_seconds
    assert created["statusMessage"] == "due in 4.0 s"
    assert created["createdAt"] == created["lastUpdatedAt"] == "2026-01-01T00:00:00.000+00:00"
    # Only the embedded store removes finished jobs (after the retention).
    expected_ttl = 7 * 24 * 3600 * 1000 if settings.store == "embedded" else None
    assert created["ttlMs"] == expected_ttl

    await fake_time.advance(4 + STORE_TICK, step=STORE_TICK)
    done = await task_method(opted_in, "tasks/get", "tea")
    assert done["status"] == "completed"
    assert done["lastUpdatedAt"] == "2026-01-01T00:00:04.000+00:00"
    assert done["result"]["structuredContent"] == {"result": "complete"}
    assert done["result"]["content"] == [{"type": "text", "text": "complete"}]
    assert "pollIntervalMs" not in done
    if expected_ttl is not None:
        assert done["ttlMs"] == 4000 + expected_ttl  # kept for the retention after it ended


async def test_a_weather_task_completes_with_the_data_itself(
    opted_in: Client[Any], fake_archive: FakeOpenMeteo
) -> None:
    created = await start_task(opted_in, "start_gathering", **WEATHER)
    assert created["taskId"] == WEATHER_JOB
    done = await finished(opted_in, WEATHER_JOB)
    assert done["status"] == "completed"
    data = done["result"]["structuredContent"]
    assert data == (await call(opted_in, "await_result", job_names=[WEATHER_JOB]))[WEATHER_JOB]
    assert data["summary"]["days"] == 31
    assert fake_archive.total_requests == 1


async def test_the_same_call_twice_is_one_task_and_other_arguments_are_refused(
    opted_in: Client[Any], fake_archive: FakeOpenMeteo
) -> None:
    first = await start_task(opted_in, "start_gathering", **WEATHER)
    again = await start_task(opted_in, "start_gathering", **WEATHER)
    assert again["taskId"] == first["taskId"] == WEATHER_JOB
    await finished(opted_in, WEATHER_JOB)
    assert fake_archive.total_requests == 1

    await start_task(opted_in, "set_timer", timer_name="tea", seconds=4)
    with pytest.raises(ToolError, match="already exists with other arguments"):
        await start_task(opted_in, "set_timer", timer_name="tea", seconds=5)


async def test_a_failed_job_is_a_failed_task_with_its_error(
    opted_in: Client[Any], fake_archive: FakeOpenMeteo
) -> None:
    fake_archive.fail_with(404)
    await start_task(opted_in, "start_gathering", **WEATHER)
    failed = await finished(opted_in, WEATHER_JOB)
    assert failed["status"] == "failed"
    assert failed["error"]["data"]["type"] == "ArchiveError"
    assert "HTTP 404" in failed["error"]["message"]
    assert "HTTP 404" in failed["statusMessage"]
    assert "result" not in failed


async def test_cancelling_a_task_cancels_the_job(opted_in: Client[Any]) -> None:
    await start_task(opted_in, "set_timer", timer_name="tea", seconds=60)
    cancelled = await task_method(opted_in, "tasks/cancel", "tea")
    assert cancelled["resultType"] == "complete"
    assert (await task_method(opted_in, "tasks/get", "tea"))["status"] == "cancelled"
    (probe,) = await call(opted_in, "probe_status", job_names=["tea"])
    assert probe["status"] == "cancelled"


async def test_cancelling_a_finished_task_changes_nothing(
    opted_in: Client[Any], fake_time: FakeTime
) -> None:
    await start_task(opted_in, "set_timer", timer_name="tea", seconds=1)
    await fake_time.advance(1 + STORE_TICK, step=STORE_TICK)
    await task_method(opted_in, "tasks/cancel", "tea")
    assert (await task_method(opted_in, "tasks/get", "tea"))["status"] == "completed"


@pytest.mark.parametrize("method", ["tasks/get", "tasks/cancel", "tasks/update"])
@pytest.mark.parametrize("task_id", ["nothing_here", "tea:1"])  # unknown; a step, not a job
async def test_an_unknown_task_is_not_found(
    opted_in: Client[Any], method: str, task_id: str
) -> None:
    await start_task(opted_in, "set_timer", timer_name="tea", seconds=60)
    with pytest.raises(MCPError) as refused:
        await task_method(opted_in, method, task_id)
    assert refused.value.error.code == INVALID_PARAMS
    assert refused.value.error.message == f"Task {task_id!r} not found"


async def test_an_update_of_a_task_that_asks_nothing_is_acknowledged_and_changes_nothing(
    opted_in: Client[Any],
) -> None:
    await start_task(opted_in, "set_timer", timer_name="tea", seconds=60)
    # The extension asks a server to ignore responses under keys it has not asked.
    assert (await task_method(opted_in, "tasks/update", "tea"))["resultType"] == "complete"
    assert (await task_method(opted_in, "tasks/get", "tea"))["status"] == "working"


async def test_a_job_started_the_old_way_is_a_task_and_a_task_is_a_job(
    server: FastMCP, opted_in: Client[Any]
) -> None:
    async with Client(server) as plain:
        assert await call(plain, "set_timer", timer_name="old", seconds=60) == {
            "promise_id": "old",
            "status": "running",
        }
        assert (await task_method(opted_in, "tasks/get", "old"))["status"] == "working"
        await start_task(opted_in, "set_timer", timer_name="new", seconds=60)
        (probe,) = await call(plain, "probe_status", job_names=["new"])
        assert probe["status"] == "running"
        assert probe["kind"] == "timer"


async def test_a_client_without_the_extension_gets_the_answer_of_today(
    server: FastMCP, fake_archive: FakeOpenMeteo
) -> None:
    async with Client(server) as plain:
        assert await call(plain, "start_gathering", **WEATHER) == {
            "job_name": WEATHER_JOB,
            "status": "running",
        }
        with pytest.raises(MCPError) as refused:
            await task_method(plain, "tasks/get", WEATHER_JOB)
        assert refused.value.error.code == MISSING_REQUIRED_CLIENT_CAPABILITY


async def test_tasks_can_be_turned_off(
    settings: Settings, archive: OpenMeteoArchive, fake_time: FakeTime
) -> None:
    off = Settings(store=settings.store, data_dir=settings.data_dir, tasks=False)
    server = create_server(
        off,
        archive=archive,
        **fake_time.seams,
    )
    async with tasks_client(server) as client:
        assert await call(client, "set_timer", timer_name="tea", seconds=60) == {
            "promise_id": "tea",
            "status": "running",
        }
        with pytest.raises(MCPError) as refused:
            await task_method(client, "tasks/get", "tea")
        assert refused.value.error.code == METHOD_NOT_FOUND


async def test_a_tool_that_starts_no_job_answers_as_always(opted_in: Client[Any]) -> None:
    assert await call(opted_in, "list_jobs") == {"jobs": [], "next_cursor": None}
    assert await call(opted_in, "probe_status", job_names=["x"]) == [
        {"job_name": "x", "status": "not_found"}
    ]


async def test_both_handshakes_say_the_same_of_list_changes(server: FastMCP) -> None:
    said = {}
    for mode in ("legacy", "auto"):  # initialize (2025-11-25), server/discover (2026-07-28)
        async with Client(server, mode=mode) as client:
            capabilities = client.server_capabilities
            assert capabilities is not None and capabilities.tools is not None
            assert capabilities.prompts is not None and capabilities.resources is not None
            said[client.protocol_version] = (
                capabilities.tools.list_changed,
                capabilities.prompts.list_changed,
                capabilities.resources.list_changed,
            )

    # Listen streams (task pushes) are served: they take list-change kinds too.
    assert said == {"2025-11-25": (True, True, True), "2026-07-28": (True, True, True)}


@pytest.mark.parametrize("task_id", ["", "\ud800", "x" * 100_000, "a\x00b"])
async def test_a_task_id_no_job_could_have_is_not_found_and_cut_short(
    opted_in: Client[Any], task_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    for method in ("tasks/get", "tasks/cancel", "tasks/update"):
        with pytest.raises(MCPError) as refused:
            await task_method(opted_in, method, task_id)
        assert refused.value.error.code == INVALID_PARAMS
        assert refused.value.error.message.endswith("not found")
        assert len(refused.value.error.message) < 120  # a long id is cut, not echoed
    assert not [record for record in caplog.records if record.exc_info]  # no traceback


async def test_a_request_without_a_task_id_says_so(opted_in: Client[Any]) -> None:
    request = TaskMethod(method="tasks/get", params=TaskParams())
    with pytest.raises(MCPError) as refused:
        await opted_in.session.send_request(request, TaskState)
    assert refused.value.error.code == INVALID_PARAMS
    assert refused.value.error.message == "the request has no taskId"


async def test_tasks_get_is_limited_per_task_not_per_client(opted_in: Client[Any]) -> None:
    for n in range(50):
        await start_task(opted_in, "set_timer", timer_name=f"tea{n}", seconds=600)

    # A client with 50 tasks polls each in turn, three rounds: never refused.
    for _ in range(3):
        for n in range(50):
            assert (await task_method(opted_in, "tasks/get", f"tea{n}"))["status"] == "working"

    # One task polled in a tight loop: refused past its burst (20, at 10 a second).
    refusals = []
    for _ in range(60):
        try:
            await task_method(opted_in, "tasks/get", "tea0")
        except MCPError as exc:
            refusals.append(exc.error)
    assert len(refusals) >= 30
    assert refusals[0].message.startswith("too many tasks/get calls for task 'tea0'")


async def test_a_task_never_looks_gone_while_its_job_is_started_again(
    opted_in: Client[Any], jobs: Jobs, fake_time: FakeTime
) -> None:
    # A start with retry=true removes the cancelled job, then creates it anew:
    # tasks/get reads the job (jobs.read_status) right after the removal.
    reads: list[asyncio.Task[dict[str, Any]]] = []
    assert jobs.forget is not None
    forget = jobs.forget

    async def forget_then_read(job_id: str) -> None:
        await forget(job_id)
        reads.append(asyncio.create_task(jobs.read_status(job_id)))
        await fake_time.turns()  # the read has looked before the job is created again

    jobs.forget = forget_then_read
    await start_task(opted_in, "set_timer", timer_name="tea", seconds=600)
    for _ in range(10):
        await task_method(opted_in, "tasks/cancel", "tea")
        await call(opted_in, "set_timer", timer_name="tea", seconds=600, retry=True)

    assert [(await read)["status"] for read in reads] == ["running"] * 10
