"""cancel_job: stops a running job for good; finished and unknown jobs are unchanged."""

from __future__ import annotations

import asyncio
import logging

import pytest
from fastmcp import Client

from fake_open_meteo import FakeOpenMeteo
from helpers import call, core


async def test_a_cancelled_timer_never_fires(client: Client) -> None:
    await call(client, "set_timer", timer_name="tea", seconds=0.5)
    cancelled = await call(client, "cancel_job", job_name="tea")
    assert core(cancelled) == {"job_name": "tea", "kind": "timer", "status": "cancelled"}
    await asyncio.sleep(1)
    assert await call(client, "get_timer_status", timer_name="tea") == {"status": "cancelled"}


async def test_cancel_is_idempotent(client: Client) -> None:
    await call(client, "set_timer", timer_name="tea", seconds=30)
    first = await call(client, "cancel_job", job_name="tea")
    again = await call(client, "cancel_job", job_name={"job_name": "tea"})
    assert first == again
    assert core(first) == {"job_name": "tea", "kind": "timer", "status": "cancelled"}


async def test_cancelling_a_finished_job_returns_its_final_status(client: Client) -> None:
    await call(client, "set_timer", timer_name="tea", seconds=0)
    assert await call(client, "await_result", job_names=["tea"]) == {"tea": "complete"}
    result = await call(client, "cancel_job", job_name="tea")
    assert core(result) == {"job_name": "tea", "kind": "timer", "status": "completed"}
    assert await call(client, "await_result", job_names=["tea"]) == {"tea": "complete"}


async def test_cancelling_an_unknown_job_is_not_found(client: Client) -> None:
    assert await call(client, "cancel_job", job_name="nope") == {
        "job_name": "nope",
        "status": "not_found",
    }


async def test_a_job_cancelled_mid_fetch_stays_cancelled_and_logs_no_error(
    client: Client, fake_archive: FakeOpenMeteo, caplog: pytest.LogCaptureFixture
) -> None:
    fake_archive.hold()
    place = {"latitude": 1, "longitude": 2, "year": 2020, "month": 1}
    name = (await call(client, "start_gathering", **place))["job_name"]
    await asyncio.sleep(0.3)  # the fetch is in flight
    assert (await call(client, "cancel_job", job_name=name))["status"] == "cancelled"
    fake_archive.release()
    await asyncio.sleep(0.5)  # the fetch returns; the job's next step is refused
    (status,) = await call(client, "probe_status", job_names=[name])
    assert status["status"] == "cancelled"
    assert fake_archive.total_requests == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
