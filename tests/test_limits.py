"""Limits that keep one caller from starving the others, and the job log lines."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from durable_mcp.config import Settings
from durable_mcp.functions.weather import OpenMeteoArchive
from durable_mcp.jobs.service import Jobs
from durable_mcp.server import create_server
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.helpers import STORE_TICK, FakeTime, call, eventually


async def limited_client(
    settings: Settings, archive: OpenMeteoArchive, **limits: Any
) -> AsyncIterator[Client[Any]]:
    server = create_server(dataclasses.replace(settings, **limits), archive=archive)
    async with Client(server) as client:
        yield client


@pytest.fixture
async def two_jobs_at_most(
    settings: Settings, archive: OpenMeteoArchive
) -> AsyncIterator[Client[Any]]:
    async for client in limited_client(settings, archive, max_running_jobs=2):
        yield client


@pytest.fixture
async def two_polls_a_second(
    settings: Settings, archive: OpenMeteoArchive
) -> AsyncIterator[Client[Any]]:
    async for client in limited_client(settings, archive, rate_limit=2):
        yield client


async def job_names(client: Client[Any]) -> set[str]:
    return {job["job_name"] for job in (await call(client, "list_jobs", limit=100))["jobs"]}


async def test_a_start_past_the_running_cap_is_busy_and_changes_nothing(
    two_jobs_at_most: Client[Any],
) -> None:
    client = two_jobs_at_most
    await call(client, "set_timer", timer_name="a", seconds=60)
    await call(client, "set_timer", timer_name="b", seconds=60)
    with pytest.raises(ToolError, match=r"^busy: 2 jobs are running.*retry after 10 s"):
        await call(client, "set_timer", timer_name="c", seconds=60)
    with pytest.raises(ToolError, match="busy"):
        await call(client, "start_gathering", latitude=1, longitude=2, year=2020, month=1)
    assert await job_names(client) == {"a", "b"}
    # Attaching is no new job: never busy.
    assert (await call(client, "set_timer", timer_name="a", seconds=60))["status"] == "running"
    # A job that ends makes room.
    await call(client, "cancel_job", job_name="a")
    await call(client, "set_timer", timer_name="c", seconds=60)
    assert await job_names(client) == {"a", "b", "c"}


async def test_finished_jobs_do_not_count_against_the_cap(two_jobs_at_most: Client[Any]) -> None:
    client = two_jobs_at_most
    for name in ("a", "b", "c", "d"):
        await call(client, "set_timer", timer_name=name, seconds=0)
        await call(client, "await_result", job_names=[name])
    assert await job_names(client) == {"a", "b", "c", "d"}


async def test_polling_is_rate_limited_per_client_and_says_when_to_retry(
    two_polls_a_second: Client[Any],
) -> None:
    client = two_polls_a_second
    await call(client, "set_timer", timer_name="tea", seconds=60)
    outcomes = []
    for _ in range(8):
        result = await client.call_tool(
            "probe_status", {"job_names": ["tea"]}, raise_on_error=False
        )
        outcomes.append(result.content[0].text if result.is_error else "ok")  # type: ignore[union-attr]
    assert outcomes[:4] == ["ok"] * 4  # the burst: twice the rate
    refusals = [text for text in outcomes if text != "ok"]
    assert refusals and all(
        text.startswith("too many polling calls: at most 2 per second per client; retry after 1 s")
        for text in refusals
    )
    # Starting jobs is not limited ...
    for i in range(8):
        await call(client, "set_timer", timer_name=f"t{i}", seconds=60)
    # ... and the bucket refills. FastMCP's bucket reads the wall clock and has no
    # seam, so this waits (polls) for real time; the bound only fails a bucket that never refills.

    async def accepted_probe() -> list[dict[str, object]] | None:
        result = await client.call_tool(
            "probe_status", {"job_names": ["tea"]}, raise_on_error=False
        )
        return None if result.is_error else result.data

    assert (await eventually(accepted_probe, within=30, every=0.1))[0]["status"] == "running"


def job_events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "durable_mcp.jobs"]


async def test_each_job_state_change_is_one_structured_log_line(
    client: Client[Any],
    fake_archive: FakeOpenMeteo,
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="durable_mcp.jobs")
    await call(client, "set_timer", timer_name="tea time", seconds=0.05)
    await call(client, "set_timer", timer_name="tea time", seconds=0.05)  # attaches: no line
    await fake_time.advance(0.05 + STORE_TICK)
    await call(client, "await_result", job_names=["tea time"])
    await call(client, "set_timer", timer_name="long", seconds=600)
    await call(client, "cancel_job", job_name="long")
    fake_archive.fail_with(404)
    started = await call(client, "start_gathering", latitude=1, longitude=2, year=2020, month=1)
    await call(client, "await_result", job_names=[started["job_name"]])
    weather = started["job_name"]
    *lines, failed = job_events(caplog)
    assert lines == [
        'event=job.started job="tea time" kind=timer',
        'event=job.completed job="tea time" kind=timer',
        "event=job.started job=long kind=timer",
        "event=job.cancelled job=long kind=timer",
        f"event=job.started job={weather} kind=weather_data",
    ]
    assert re.fullmatch(
        f'event=job.failed job={weather} kind=weather_data type=ArchiveError message=".*404.*"',
        failed,
    )


async def test_a_failing_log_line_never_breaks_a_job(
    settings: Settings,
    archive: OpenMeteoArchive,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(self: Jobs, promise: object) -> None:
        raise RuntimeError("the log is broken")

    monkeypatch.setattr(Jobs, "log_end", broken)
    async with Client(create_server(settings, archive=archive)) as client:
        await call(client, "set_timer", timer_name="tea", seconds=0.05)
        assert await call(client, "await_result", job_names=["tea"]) == {"tea": "complete"}
    assert "could not report a change of job tea" in caplog.text
