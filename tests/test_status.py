"""probe_status and await_result: never block, bounded waits, progress, tolerant lists.

The server runs on fake time (conftest): a wait's bound and its progress
reports pass as the test moves the clock, not as the wall clock does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from resonate.context import Context

from durable_mcp.config import DEFAULT_AWAIT_MAX_SECONDS, Settings
from durable_mcp.engine import build_engine
from durable_mcp.functions.weather import OpenMeteoArchive
from durable_mcp.jobs.service import Jobs
from durable_mcp.jobs.status import iso
from durable_mcp.server import create_server
from durable_mcp.tools.arguments import MAX_NAMES
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.helpers import FAKE_START_MS, STORE_TICK, FakeTime, call, core


async def test_probe_reports_each_job_and_never_blocks(
    client: Client[Any], fake_time: FakeTime
) -> None:
    await call(client, "set_timer", timer_name="long", seconds=60)
    await call(client, "set_timer", timer_name="now", seconds=0)
    await call(client, "await_result", job_names=["now"])
    # The clock stands still: a probe that waited for "long" would never answer.
    statuses = await call(client, "probe_status", job_names=["long", "now", "missing"])
    assert fake_time.now == FAKE_START_MS
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
    client: Client[Any], job_names: object
) -> None:
    statuses = await call(client, "probe_status", job_names=job_names)
    assert [s["job_name"] for s in statuses] == ["a", "b"]


async def test_a_single_name_string_is_a_list_of_one(client: Client[Any]) -> None:
    assert await call(client, "probe_status", job_names="a") == [
        {"job_name": "a", "status": "not_found"}
    ]


async def test_probe_shows_the_error_of_a_failed_job(
    client: Client[Any], fake_archive: FakeOpenMeteo
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


async def test_await_returns_results_of_finished_jobs(
    client: Client[Any], fake_time: FakeTime
) -> None:
    await call(client, "set_timer", timer_name="a", seconds=0.2)
    await call(client, "set_timer", timer_name="b", seconds=0.4)
    await fake_time.advance(0.4 + STORE_TICK)
    assert await call(client, "await_result", job_names=["a", "b", "zzz"]) == {
        "a": "complete",
        "b": "complete",
        "zzz": {"job_name": "zzz", "status": "not_found"},
    }


async def test_await_is_bounded_and_reports_unfinished_jobs_as_running(
    client: Client[Any], fake_time: FakeTime
) -> None:
    await call(client, "set_timer", timer_name="slow", seconds=60)
    await call(client, "set_timer", timer_name="quick", seconds=0.1)
    await fake_time.advance(0.1 + STORE_TICK)
    await_slow_and_quick = call(
        client, "await_result", job_names=["slow", "quick"], timeout_seconds=0.5
    )
    called_at = fake_time.now
    result = await fake_time.run(await_slow_and_quick, step=0.1, within=30)
    assert fake_time.now - called_at >= 500  # it waited its bound for "slow" ...
    assert core(result["slow"]) == {"job_name": "slow", "kind": "timer", "status": "running"}
    assert result["quick"] == "complete"  # ... and gave what had finished


@pytest.fixture
async def default_cap_client(
    settings: Settings, archive: OpenMeteoArchive, fake_time: FakeTime
) -> AsyncIterator[Client[Any]]:
    """A server with the shipped cap on waits, on fake time."""
    default = dataclasses.replace(settings, await_max_seconds=DEFAULT_AWAIT_MAX_SECONDS)
    server = create_server(
        default,
        archive=archive,
        **fake_time.seams,
    )
    async with Client(server) as client:
        yield client


async def test_await_never_waits_past_the_server_cap(
    default_cap_client: Client[Any], fake_time: FakeTime
) -> None:
    client = default_cap_client
    await call(client, "set_timer", timer_name="slow", seconds=3600)
    # The caller asks for an hour; the cap is 45 s, which fake time passes at once.
    await_slow = call(client, "await_result", job_names=["slow"], timeout_seconds=3600)
    called_at = fake_time.now
    result = await fake_time.run(await_slow, step=1, within=600)
    assert result["slow"]["status"] == "running"
    waited = (fake_time.now - called_at) / 1000
    assert DEFAULT_AWAIT_MAX_SECONDS <= waited < 3600


async def test_await_sends_progress_while_it_waits(
    client: Client[Any], fake_time: FakeTime
) -> None:
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    await call(client, "set_timer", timer_name="a", seconds=0.1)
    await call(client, "set_timer", timer_name="b", seconds=1.5)
    await_both = client.call_tool(
        "await_result", {"job_names": ["a", "b"]}, progress_handler=on_progress
    )
    result = await fake_time.run(await_both, step=0.1, within=30)
    assert result.data == {"a": "complete", "b": "complete"}
    assert len(updates) >= 3  # every 0.2 s on the test server, for 1.5 s of fake time
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
    client: Client[Any], arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ToolError, match=message):
        await client.call_tool("await_result", arguments)


async def test_probe_gives_times_and_for_timers_the_deadline(
    client: Client[Any], fake_time: FakeTime
) -> None:
    await call(client, "set_timer", timer_name="tea", seconds=60)
    await call(client, "set_timer", timer_name="now", seconds=0)
    await call(client, "await_result", job_names=["now"])
    await fake_time.advance(2)
    tea, now = await call(client, "probe_status", job_names=["tea", "now"])
    assert tea["created_at"] == iso(FAKE_START_MS)
    assert tea["deadline"] == iso(FAKE_START_MS + 60_000)
    assert tea["remaining_seconds"] == 58
    assert tea["poll_after_seconds"] == 1.0  # a young job: look again soon
    assert "settled_at" not in tea
    assert now["created_at"] == now["settled_at"] == iso(FAKE_START_MS)
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
            hints.append((await jobs.read_status("job"))["poll_after_seconds"])
        assert hints == [1.0, 5.0, 15.0, 30.0]
    finally:
        await resonate.stop()


async def test_the_job_tools_say_who_chooses_names_and_how_many_they_take() -> None:
    server = create_server(Settings(store="memory"))
    async with Client(server) as client:
        tools = {tool.name: tool for tool in await client.list_tools()}
    for name in ("probe_status", "await_result"):
        assert f"at most {MAX_NAMES} names" in (tools[name].description or "")
        names = tools[name].input_schema["properties"]["job_names"]
        assert names["maxItems"] == MAX_NAMES
    timer_name = tools["set_timer"].input_schema["properties"]["timer_name"]
    assert timer_name["description"].startswith("A name you choose for the timer")
    assert (
        "as returned"
        not in tools["get_timer_status"].input_schema["properties"]["timer_name"]["description"]
    )
