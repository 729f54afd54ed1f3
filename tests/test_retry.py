"""retry=true starts a failed or cancelled job again under its own name; nothing else changes."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from durable_mcp.store import EmbeddedStore
from durable_mcp_testing.crashes import promise_of
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.helpers import call

PLACE = {"latitude": 53.5, "longitude": -113.5, "year": 2024, "month": 3}
JOB = "weather_data_53.5_-113.5_2024_3"


async def test_a_failed_weather_job_runs_again_with_retry_once_the_archive_is_back(
    client: Client[Any], fake_archive: FakeOpenMeteo
) -> None:
    fake_archive.fail_with(500, 500, 500)  # every attempt of the first run
    await call(client, "start_gathering", **PLACE)
    failed = (await call(client, "await_result", job_names=[JOB]))[JOB]
    assert failed["status"] == "failed"

    again = await call(client, "start_gathering", **PLACE)
    assert again["status"] == "failed"  # said, with the way out, not silently
    assert "retry=true" in again["hint"]

    retried = await call(client, "start_gathering", **PLACE, retry=True)
    assert retried == {"job_name": JOB, "status": "running"}
    result = (await call(client, "await_result", job_names=[JOB]))[JOB]
    assert result["summary"]["days"] == 31
    assert fake_archive.total_requests == 4  # three failed attempts, then one fetch


async def test_a_cancelled_timer_is_said_to_be_cancelled_and_retry_starts_it_again(
    client: Client[Any],
) -> None:
    await call(client, "set_timer", timer_name="tea", seconds=600)
    await call(client, "cancel_job", job_name="tea")
    again = await call(client, "set_timer", timer_name="tea", seconds=600)
    assert again["status"] == "cancelled"
    assert "retry=true" in again["hint"]

    with pytest.raises(ToolError, match="or retry=true to replace it"):
        await call(client, "set_timer", timer_name="tea", seconds=0)
    retried = await call(client, "set_timer", timer_name="tea", seconds=0, retry=True)
    assert retried == {"promise_id": "tea", "status": "running"}  # other arguments are fine
    assert await call(client, "await_result", job_names=["tea"]) == {"tea": "complete"}


async def test_retry_changes_nothing_for_a_running_or_completed_job(
    client: Client[Any], fake_archive: FakeOpenMeteo
) -> None:
    await call(client, "set_timer", timer_name="tea", seconds=600)
    attached = await call(client, "set_timer", timer_name="tea", seconds=600, retry=True)
    assert attached == {"promise_id": "tea", "status": "running"}
    with pytest.raises(ToolError, match=r"already exists with other arguments.*attach$"):
        await call(client, "set_timer", timer_name="tea", seconds=5, retry=True)

    await call(client, "start_gathering", **PLACE)
    await call(client, "await_result", job_names=[JOB])
    again = await call(client, "start_gathering", **PLACE, retry=True)
    assert again == {"job_name": JOB, "status": "completed"}
    assert fake_archive.total_requests == 1  # not fetched again


async def test_two_retries_at_once_start_one_job(
    client: Client[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="durable_mcp.jobs")
    await call(client, "set_timer", timer_name="tea", seconds=600)
    await call(client, "cancel_job", job_name="tea")
    first, second = await asyncio.gather(
        call(client, "set_timer", timer_name="tea", seconds=600, retry=True),
        call(client, "set_timer", timer_name="tea", seconds=600, retry=True),
    )
    assert first == second == {"promise_id": "tea", "status": "running"}
    started = [r.getMessage() for r in caplog.records if "event=job.started" in r.getMessage()]
    assert started == ["event=job.started job=tea kind=timer"] * 2  # the first, and one retry


async def test_retry_is_journaled_and_fences_out_the_old_jobs_execution(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, pid="p", group="g")
    store.open()

    async def send(request: dict[str, object]) -> dict[str, object]:
        return json.loads(await store.send(json.dumps(request)))  # type: ignore[no-any-return]

    def create_job() -> dict[str, object]:
        action = {"kind": "promise.create", "data": {"id": "job", "timeoutAt": 10**13}}
        return {"kind": "task.create", "pid": "p", "ttl": 60_000, "action": action}

    old = (await send(create_job()))["data"]["task"]  # type: ignore[index]
    await send({"kind": "promise.settle", "id": "job", "state": "rejected_canceled", "value": {}})
    await store.forget("job")
    new = (await send(create_job()))["data"]["task"]  # type: ignore[index]
    assert new["version"] == old["version"] + 1
    # The cancelled job's execution, finishing its step, cannot write into the new job.
    step = {"kind": "promise.create", "data": {"id": "job:1", "timeoutAt": 10**13}}
    fenced = {"kind": "task.fence", "id": "job", "version": old["version"], "action": step}
    assert (await send(fenced))["head"]["status"] == 409  # type: ignore[index]
    # Nor release the new job's lease, nor settle it (the SDK's own state machine
    # checks the version on fence only).
    for request in (
        {"kind": "task.release", "id": "job", "version": old["version"]},
        {
            "kind": "task.fulfill",
            "id": "job",
            "version": old["version"],
            "action": {"data": {"id": "job", "state": "resolved", "value": {}}},
        },
    ):
        assert (await send(request))["head"]["status"] == 409  # type: ignore[index]
    assert (store.state.tasks["job"].state, promise_of(store.state, "job").state) == (
        "acquired",
        "pending",
    )
    store.close()  # as kill -9 would

    reopened = EmbeddedStore(tmp_path, pid="p", group="g")
    reopened.open()
    assert promise_of(reopened.state, "job").state == "pending"
    assert reopened.state.tasks["job"].version == new["version"]
    reopened.close()
