"""probe_status and await_result: never block, bounded waits, progress, tolerant lists."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from resonate.context import Context

from durable_mcp.config import Settings
from durable_mcp.engine import build_engine
from durable_mcp.jobs import Jobs

from fake_open_meteo import FakeOpenMeteo
from helpers import call, core


async def test_probe_reports_each_job_and_never_blocks(client: Client) -> None:
    await call(client, "set_timer", timer_name="long", seconds=60)
    await call(client, "set_timer", timer_name="now", seconds=0)
    await call(client, "await_result", job_names=["now"])
    started = time.monotonic()
    statuses = await call(client, "probe_status", job_names=["long", "now", "missing"])
    assert time.monotonic() - started < 1
    assert [core(status) for status in statuses] == [
        {"job_name": "long", "kind": "timer", "status": "running"},
        {"job_name": "now", "kind": "timer", "status": "completed"},
        {"job_name": "missing", "status": "not_found"},
    ]


@pytest.mark.parametrize(
    "job_names",
    ['["a", "b"]', ["a", "b"], [{"job_name": "a"}, "b"], ["a", "b", "a"]],
)
async def test_probe_accepts_names_as_json_string_or_wrapped(
    client: Client, job_names: object
) -> None:
    statuses = await call(client, "probe_status", job_names=job_names)
    assert [s["job_name"] for s in statuses] == ["a", "b"]


async def test_a_single_name_string_is_a_list_of_one(client: Client) -> None:
    assert await call(client, "probe_status", job_names="a") == [
        {"job_name": "a", "status": "not_found"}
    ]


async def test_probe_shows_the_error_of_a_failed_job(
    client: Client, fake_archive: FakeOpenMeteo
) -> None:
    fake_archive.fail_with(404)
    name = (await call(client, "start_gathering", latitude=1, longitude=2, year=2020, month=1))[
        "job_name"
    ]
    await call(client, "await_result", job_names=[name])
    (status,) = await call(client, "probe_status", job_names=[name])
    assert status["status"] == "failed"
    assert status["error"]["type"] == "ArchiveError"
    assert "HTTP 404" in status["error"]["message"]


async def test_await_returns_results_of_finished_jobs(client: Client) -> None:
    await call(client, "set_timer", timer_name="a", seconds=0.2)
    await call(client, "set_timer", timer_name="b", seconds=0.4)
    assert await call(client, "await_result", job_names=["a", "b", "zzz"]) == {
        "a": "complete",
        "b": "complete",
        "zzz": {"job_name": "zzz", "status": "not_found"},
    }


async def test_await_is_bounded_and_reports_unfinished_jobs_as_running(client: Client) -> None:
    await call(client, "set_timer", timer_name="slow", seconds=60)
    await call(client, "set_timer", timer_name="quick", seconds=0.1)
    started = time.monotonic()
    result = await call(client, "await_result", job_names=["slow", "quick"], timeout_seconds=0.5)
    assert 0.5 <= time.monotonic() - started < 2
    assert core(result["slow"]) == {"job_name": "slow", "kind": "timer", "status": "running"}
    assert result["quick"] == "complete"


async def test_await_never_waits_past_the_server_cap(client: Client) -> None:
    # The test server's cap is 5 s; the caller asks for an hour.
    await call(client, "set_timer", timer_name="slow", seconds=60)
    started = time.monotonic()
    result = await call(client, "await_result", job_names=["slow"], timeout_seconds=3600)
    assert 5 <= time.monotonic() - started < 7
    assert result["slow"]["status"] == "running"


async def test_await_sends_progress_while_it_waits(client: Client) -> None:
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    await call(client, "set_timer", timer_name="a", seconds=0.1)
    await call(client, "set_timer", timer_name="b", seconds=1.5)
    result = await client.call_tool(
        "await_result", {"job_names": ["a", "b"]}, progress_handler=on_progress
    )
    assert result.data == {"a": "complete", "b": "complete"}
    assert len(updates) >= 3  # every 0.2 s on the test server, for about 1.5 s
    assert updates[-1] == (1, 2, "1 of 2 jobs finished")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"job_names": []}, "job_names: Value should have at least 1 item"),
        ({"job_names": ["ok", ""]}, r"job_names.1: a job name must not be empty"),
        ({"job_names": ["a"], "timeout_seconds": -1}, "timeout_seconds: Input should be greater"),
        (
            {"job_names": ["a"], "timeout_seconds": "inf"},
            "timeout_seconds: Input should be a finite",
        ),
    ],
)
async def test_await_rejects_bad_input(
    client: Client, arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ToolError, match=message):
        await client.call_tool("await_result", arguments)


async def test_probe_gives_times_and_for_timers_the_deadline(client: Client) -> None:
    await call(client, "set_timer", timer_name="tea", seconds=60)
    await call(client, "set_timer", timer_name="now", seconds=0)
    await call(client, "await_result", job_names=["now"])
    tea, now = await call(client, "probe_status", job_names=["tea", "now"])
    created = dt.datetime.fromisoformat(tea["created_at"])
    assert abs((created - dt.datetime.now(dt.UTC)).total_seconds()) < 5
    assert dt.datetime.fromisoformat(tea["deadline"]) - created == dt.timedelta(seconds=60)
    assert 55 < tea["remaining_seconds"] <= 60
    assert tea["poll_after_seconds"] == 1.0  # a young job: look again soon
    assert "settled_at" not in tea
    assert dt.datetime.fromisoformat(now["settled_at"]) >= dt.datetime.fromisoformat(
        now["created_at"]
    )
    assert "poll_after_seconds" not in now


async def test_the_polling_hint_grows_with_age_and_is_capped() -> None:
    clock = [1_000_000]
    resonate = build_engine(Settings(store="memory")).resonate
    jobs = Jobs(resonate, await_max_seconds=1, clock=lambda: clock[0])

    async def work(ctx: Context) -> None:
        await ctx.sleep(dt.timedelta(hours=1))

    jobs.register(work)
    resonate.start()
    try:
        await jobs.start("job", work)
        hints = []
        for age_seconds in (0, 20, 60, 3600):
            clock[0] = (await resonate.promises.get("job")).created_at + age_seconds * 1000
            hints.append((await jobs.status("job"))["poll_after_seconds"])
        assert hints == [1.0, 5.0, 15.0, 30.0]
    finally:
        await resonate.stop()
