"""list_jobs: newest first, filtered, paginated by a cursor that new jobs do not shift."""

from __future__ import annotations

from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from durable_mcp.jobs.service import Jobs
from durable_mcp.jobs.status import JobStatus
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.helpers import STORE_TICK, FakeTime, call, start_timers


async def test_jobs_are_listed_newest_first_with_their_times(
    client: Client[Any], fake_time: FakeTime
) -> None:
    await start_timers(client, fake_time, ["a", "b", "c"])
    listing = await call(client, "list_jobs")
    assert [job["job_name"] for job in listing["jobs"]] == ["c", "b", "a"]
    assert listing["next_cursor"] is None
    first = listing["jobs"][0]
    assert set(first) == {"job_name", "kind", "status", "created_at"}
    assert (first["kind"], first["status"]) == ("timer", "running")


async def test_jobs_are_filtered_by_status_and_kind(
    client: Client[Any], fake_archive: FakeOpenMeteo, fake_time: FakeTime
) -> None:
    await start_timers(client, fake_time, ["done"], seconds=0)
    await start_timers(client, fake_time, ["waiting", "stopped"])
    await call(client, "cancel_job", job_name="stopped")
    weather = await call(client, "start_gathering", latitude=1, longitude=2, year=2020, month=1)
    await call(client, "await_result", job_names=["done", weather["job_name"]])

    async def names(**filters: object) -> list[str]:
        return [job["job_name"] for job in (await call(client, "list_jobs", **filters))["jobs"]]

    assert await names(status="running") == ["waiting"]
    assert await names(status="cancelled") == ["stopped"]
    assert await names(status="completed") == [weather["job_name"], "done"]
    assert await names(kind="weather_data") == [weather["job_name"]]
    assert await names(kind="timer", status="completed") == ["done"]
    completed = (await call(client, "list_jobs", status="completed"))["jobs"][0]
    assert "settled_at" in completed


async def test_pages_follow_the_cursor_and_new_jobs_do_not_shift_them(
    client: Client[Any], fake_time: FakeTime
) -> None:
    names = [f"t{n:02d}" for n in range(12)]
    await start_timers(client, fake_time, names)
    seen: list[str] = []
    cursor = None
    while True:
        page = await call(client, "list_jobs", limit=5, cursor=cursor)
        seen += [job["job_name"] for job in page["jobs"]]
        await start_timers(client, fake_time, [f"new{len(seen)}"])  # started between pages
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(names))


async def test_steps_of_jobs_are_not_listed(client: Client[Any], fake_time: FakeTime) -> None:
    # A timer's durable sleep is a promise of its own ("tea:1"), not a job.
    await start_timers(client, fake_time, ["tea"], seconds=0.2)
    await fake_time.advance(0.2 + STORE_TICK)
    await call(client, "await_result", job_names=["tea"])
    assert [job["job_name"] for job in (await call(client, "list_jobs"))["jobs"]] == ["tea"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"status": "not_found"},
            "status: Input should be 'running', 'input_required', 'completed'",
        ),
        ({"status": "sleeping"}, "status: Input should be 'running'"),
        ({"limit": 0}, "limit: Input should be greater than or equal to 1"),
        ({"cursor": "nope"}, "cursor 'nope' names no job"),
    ],
)
async def test_bad_filters_are_clear_errors(
    client: Client[Any], arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ToolError, match=message):
        await client.call_tool("list_jobs", arguments)


async def test_the_status_filter_offers_only_statuses_a_listed_job_can_have(
    client: Client[Any],
) -> None:
    tool = next(t for t in await client.list_tools() if t.name == "list_jobs")
    (choice, _null) = tool.input_schema["properties"]["status"]["anyOf"]
    assert choice["enum"] == ["running", "input_required", "completed", "failed", "cancelled"]


async def test_the_jobs_page_searches_names_newest_first_and_pages_the_matches(
    client: Client[Any], jobs: Jobs, fake_time: FakeTime
) -> None:
    names = ["tea_1", "coffee_1", "tea_2", "juice", "tea_3", "green_tea"]
    await start_timers(client, fake_time, names)
    await call(client, "cancel_job", job_name="tea_2")

    async def found(**filters: Any) -> list[str]:
        return [job["job_name"] for job in (await jobs.list(**filters))["jobs"]]

    assert await found(name="tea") == ["green_tea", "tea_3", "tea_2", "tea_1"]
    assert await found(name="tea", status=JobStatus.cancelled) == ["tea_2"]
    assert await found(name="tea", kind="weather_data") == []
    assert await found(name="milk") == []
    first = await jobs.list(name="tea", limit=3)
    assert [job["job_name"] for job in first["jobs"]] == ["green_tea", "tea_3", "tea_2"]
    assert await found(name="tea", cursor=first["next_cursor"]) == ["tea_1"]
