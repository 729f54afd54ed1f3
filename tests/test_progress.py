"""A job's progress, ``report_progress(ctx, done, total, message)``: shown by
probe_status, list_jobs, tasks/get and await_result's notifications, saved by
the embedded store with its commits (coalesced, at most half a second later)."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from resonate.context import Context

from durable_mcp import DurableTools, report_progress
from durable_mcp.config import Settings
from durable_mcp.functions import BUILT_IN
from durable_mcp.store.embedded import NOTES_DELAY
from durable_mcp.store.journal import Journal, Write
from durable_mcp_testing.crashes import saved_notes
from durable_mcp_testing.helpers import STORE_TICK, FakeTime, call
from durable_mcp_testing.tasks_client import start_task, task_method, tasks_client

talking = DurableTools()


@talking.tool(job_name=lambda name: f"steps_{name}")
async def count_steps(ctx: Context, name: str, steps: int = 3) -> int:
    """Counts ``steps`` steps of 1 s, saying which it is on."""
    for n in range(steps):
        report_progress(ctx, n, steps, f"step {n + 1}")
        await ctx.sleep(timedelta(seconds=1))
    return steps


#: What a chatty step waits for once it has reported, by job: set by the test.
HELD: dict[str, asyncio.Event] = {}


async def report_many(ctx: Context, name: str, reports: int) -> int:
    for n in range(reports):
        report_progress(ctx, n + 1, reports)
    await HELD[name].wait()
    return reports


@talking.tool(job_name=lambda name: f"chatty_{name}")
async def chatter(ctx: Context, name: str, reports: int) -> int:
    """One step that reports ``reports`` times in a row, then waits for the test."""
    return await ctx.run(report_many, name, reports)


@talking.tool(job_name=lambda name: f"bad_{name}")
async def bad_progress(ctx: Context, name: str, done: float, total: float | None) -> int:
    report_progress(ctx, done, total)
    return 0


@pytest.fixture
def durable() -> DurableTools:
    return DurableTools(BUILT_IN, talking)


async def probed(client: Client[Any], job: str) -> dict[str, Any]:
    (status,) = await call(client, "probe_status", job_names=[job])
    return dict(status)


async def test_a_running_job_shows_its_progress_and_a_finished_one_none(
    client: Client[Any], fake_time: FakeTime
) -> None:
    await call(client, "count_steps", name="a")
    await fake_time.turns()
    assert (await probed(client, "steps_a"))["progress"] == {
        "done": 0,
        "total": 3,
        "message": "step 1",
    }
    await fake_time.advance(1 + STORE_TICK, step=STORE_TICK)
    assert (await probed(client, "steps_a"))["progress"] == {
        "done": 1,
        "total": 3,
        "message": "step 2",
    }
    (listed,) = (await call(client, "list_jobs", kind="count_steps"))["jobs"]
    assert listed["progress"] == {"done": 1, "total": 3, "message": "step 2"}

    await fake_time.advance(2 + STORE_TICK, step=STORE_TICK)
    finished = await probed(client, "steps_a")
    assert finished["status"] == "completed"
    assert "progress" not in finished


async def test_tasks_get_says_the_progress_in_its_status_message(
    server: FastMCP, fake_time: FakeTime
) -> None:
    async with tasks_client(server) as client:
        await start_task(client, "count_steps", name="b")
        await fake_time.advance(1 + STORE_TICK, step=STORE_TICK)
        task = await task_method(client, "tasks/get", "steps_b")
    assert (task["status"], task["statusMessage"]) == ("working", "1 of 3: step 2")


async def test_await_result_on_one_job_sends_that_jobs_own_progress(
    client: Client[Any], fake_time: FakeTime
) -> None:
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if not updates or updates[-1] != (progress, total, message):
            updates.append((progress, total, message))  # it repeats every 0.2 s

    await call(client, "count_steps", name="c")
    awaited = client.call_tool(
        "await_result", {"job_names": ["steps_c"]}, progress_handler=on_progress
    )
    result = await fake_time.run(awaited, step=STORE_TICK, within=60)
    assert result.data == {"steps_c": 3}
    assert updates == [(0, 3, "step 1"), (1, 3, "step 2"), (2, 3, "step 3")]


@pytest.mark.parametrize(
    ("done", "total", "error"),
    [
        (-1, None, "progress: done must be a finite number of at least 0, got -1.0"),
        (1, -2, "progress: total must be a finite number above 0, got -2.0"),
        (1, 0, "progress: total must be a finite number above 0, got 0.0"),
    ],
)
async def test_a_bad_report_fails_its_job_with_what_was_wrong(
    client: Client[Any], fake_time: FakeTime, done: float, total: float | None, error: str
) -> None:
    await call(client, "bad_progress", name="x", done=done, total=total)
    await fake_time.turns()
    failed = await probed(client, "bad_x")
    assert failed["status"] == "failed"
    assert (failed["error"]["type"], failed["error"]["message"]) == ("ValueError", error)


@pytest.mark.parametrize(("done", "total"), [(math.nan, None), (math.inf, None), (1, math.inf)])
def test_a_report_that_json_cannot_carry_is_refused_before_anything_is_noted(
    done: float, total: float | None
) -> None:
    with pytest.raises(ValueError, match="must be a finite number"):
        report_progress(None, done, total)  # type: ignore[arg-type]  # never read: refused first


@pytest.mark.parametrize("settings", ["embedded"], indirect=True)
async def test_a_thousand_reports_are_saved_once_half_a_second_later_and_gone_at_the_end(
    client: Client[Any], fake_time: FakeTime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []
    write = Journal.write

    def counted(journal: Journal, pending: list[Write]) -> None:
        writes.append(len(pending))
        write(journal, pending)

    monkeypatch.setattr(Journal, "write", counted)
    HELD["d"] = asyncio.Event()
    await call(client, "chatter", name="d", reports=1000)
    await fake_time.turns()
    assert (await probed(client, "chatty_d"))["progress"] == {"done": 1000, "total": 1000}
    assert "chatty_d" not in saved_notes(Path(settings.data_dir))  # not yet: no commit since
    writes_before = len(writes)

    await fake_time.advance(NOTES_DELAY)
    assert saved_notes(Path(settings.data_dir)) == {
        "chatty_d": {"progress": {"done": 1000, "total": 1000}}
    }
    assert len(writes) == writes_before + 1  # one commit for the thousand reports

    HELD.pop("d").set()
    await fake_time.advance(STORE_TICK, step=STORE_TICK)
    assert (await probed(client, "chatty_d"))["status"] == "completed"
    await fake_time.advance(NOTES_DELAY)
    assert saved_notes(Path(settings.data_dir)) == {}  # an ended job's notes are deleted
