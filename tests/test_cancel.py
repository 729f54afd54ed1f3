"""cancel_job: stops a running job for good; finished and unknown jobs are unchanged."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastmcp import Client

from durable_mcp.jobs.service import Jobs
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.helpers import (
    STORE_TICK,
    FakeTime,
    call,
    core,
    eventually,
    steps_of,
    the_sleep_of,
)


async def test_a_cancelled_timer_never_fires(
    client: Client[Any], jobs: Jobs, fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    await call(client, "set_timer", timer_name="tea", seconds=0.5)
    await the_sleep_of(jobs, "tea")
    cancelled = await call(client, "cancel_job", job_name="tea")
    assert core(cancelled) == {"job_name": "tea", "kind": "timer", "status": "cancelled"}
    await fake_time.advance(0.5 + STORE_TICK)  # past the deadline: the sleep ends, the job not

    async def sleep_ended() -> bool | None:
        (sleep,) = await steps_of(jobs, "tea")
        return True if sleep.state == "resolved" else None

    await eventually(sleep_ended, within=30, every=0.01)
    assert await call(client, "get_timer_status", timer_name="tea") == {"status": "cancelled"}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_cancel_is_idempotent(client: Client[Any]) -> None:
    await call(client, "set_timer", timer_name="tea", seconds=30)
    first = await call(client, "cancel_job", job_name="tea")
    again = await call(client, "cancel_job", job_name={"job_name": "tea"})
    assert first == again
    assert core(first) == {"job_name": "tea", "kind": "timer", "status": "cancelled"}


async def test_cancelling_a_finished_job_returns_its_final_status(client: Client[Any]) -> None:
    await call(client, "set_timer", timer_name="tea", seconds=0)
    assert await call(client, "await_result", job_names=["tea"]) == {"tea": "complete"}
    result = await call(client, "cancel_job", job_name="tea")
    assert core(result) == {"job_name": "tea", "kind": "timer", "status": "completed"}
    assert await call(client, "await_result", job_names=["tea"]) == {"tea": "complete"}


async def test_cancelling_an_unknown_job_is_not_found(client: Client[Any]) -> None:
    assert await call(client, "cancel_job", job_name="nope") == {
        "job_name": "nope",
        "status": "not_found",
    }


async def test_a_job_cancelled_mid_fetch_stays_cancelled_and_logs_no_error(
    client: Client[Any], fake_archive: FakeOpenMeteo, caplog: pytest.LogCaptureFixture
) -> None:
    fake_archive.hold()
    place = {"latitude": 1, "longitude": 2, "year": 2020, "month": 1}
    name = (await call(client, "start_gathering", **place))["job_name"]
    await fake_archive.arrived()  # the fetch is in flight
    assert (await call(client, "cancel_job", job_name=name))["status"] == "cancelled"
    caplog.set_level(logging.DEBUG, logger="durable_mcp.sdk_compat")
    fake_archive.release()

    async def next_step_refused() -> bool | None:
        stopped = [r for r in caplog.records if "stopped as expected" in r.getMessage()]
        return True if stopped else None

    await eventually(next_step_refused)  # the fetch returned; the job's next step was refused
    (status,) = await call(client, "probe_status", job_names=[name])
    assert status["status"] == "cancelled"
    assert fake_archive.total_requests == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
