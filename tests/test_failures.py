"""A bug in one job fails that job alone, with its own error: retries as the tool
says and shown while they last, values the store cannot keep, the real exception.

In-memory servers on fake time, on both in-process stores; the real process
beside 50 normal jobs, and a function removed between restarts, are in
``test_poison.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from resonate.context import Context
from resonate.retry import Constant, Never

from durable_mcp.config import Settings
from durable_mcp.functions import BUILT_IN
from durable_mcp.functions.weather import OpenMeteoArchive
from durable_mcp.jobs.registry import DurableTools
from durable_mcp.server import create_server
from durable_mcp_testing.helpers import FakeTime, call, core
from durable_mcp_testing.tasks_client import task_method, tasks_client

durable = DurableTools()


class Thing:
    """What no store can keep."""


#: How many times each job's steps ran, by job.
RUNS: dict[str, int] = {}


def failing(ctx: Context, job: str) -> str:
    RUNS[job] = RUNS.get(job, 0) + 1
    raise ValueError(f"boom {RUNS[job]}")


def a_thing(ctx: Context) -> Thing:
    return Thing()


def generated(ctx: Context) -> Any:
    yield 1  # a sync generator function as a step: its value is a generator


@durable.tool(job_name=lambda n: f"flaky_{n}", retry=Constant(delay=5, max_retries=2))
async def flaky(ctx: Context, n: int) -> str:
    """Fails in its step every time."""
    return str(await ctx.run(failing, f"flaky_{n}"))


@durable.tool(job_name=lambda n: f"once_{n}", retry=Never())
async def once(ctx: Context, n: int) -> str:
    """Fails in its step, never retried."""
    return str(await ctx.run(failing, f"once_{n}"))


@durable.tool(job_name=lambda n: f"thing_{n}")
async def returns_a_thing(ctx: Context, n: int) -> Any:
    """Returns what no store can keep."""
    return Thing()


@durable.tool(job_name=lambda n: f"step_thing_{n}")
async def step_returns_a_thing(ctx: Context, n: int) -> Any:
    """Its step returns what no store can keep."""
    return await ctx.run(a_thing)


@durable.tool(job_name=lambda n: f"generator_{n}")
async def generator_step(ctx: Context, n: int) -> Any:
    """Its step is a generator function."""
    return await ctx.run(generated)


@durable.tool(job_name=lambda n: f"body_{n}")
async def raises_in_its_body(ctx: Context, n: int) -> str:
    """Raises before any step."""
    raise KeyError(f"no such thing as {n}")


@durable.tool(job_name=lambda n: f"fine_{n}")
async def fine(ctx: Context, n: int) -> str:
    """Sleeps a second, durably."""
    await ctx.sleep(timedelta(seconds=1))
    return "fine"


@pytest.fixture(autouse=True)
def no_runs() -> Iterator[None]:
    RUNS.clear()
    yield


@pytest.fixture
def server(settings: Settings, archive: OpenMeteoArchive, fake_time: FakeTime) -> FastMCP:
    return create_server(
        settings, archive=archive, durable=DurableTools(BUILT_IN, durable), **fake_time.seams
    )


async def status(client: Client[Any], job: str) -> dict[str, Any]:
    (found,) = await call(client, "probe_status", job_names=[job])
    return dict(found)


async def test_a_failing_step_is_retried_as_its_tool_says_shown_meanwhile_then_fails_with_its_error(
    client: Client[Any], fake_time: FakeTime
) -> None:
    await call(client, "flaky", n=1)
    await fake_time.advance(0)

    retrying = await status(client, "flaky_1")
    assert retrying["status"] == "running"
    assert {k: v for k, v in retrying["retrying"].items() if k != "at"} == {
        "step": "failing",
        "attempt": 2,
        "of": 3,
        "error": {"type": "ValueError", "message": "boom 1"},
    }
    assert RUNS == {"flaky_1": 1}

    await fake_time.advance(5, step=1)  # the policy: 5 s, then the second attempt
    assert (await status(client, "flaky_1"))["retrying"]["attempt"] == 3
    await fake_time.advance(5, step=1)

    failed = await status(client, "flaky_1")
    assert RUNS == {"flaky_1": 3}
    assert core(failed) == {
        "job_name": "flaky_1",
        "kind": "flaky",
        "status": "failed",
        "error": {"type": "ValueError", "message": "boom 3", "step": "failing", "attempts": 3},
    }


async def test_a_policy_of_never_fails_at_the_first_error(
    client: Client[Any], fake_time: FakeTime
) -> None:
    await call(client, "once", n=1)
    await fake_time.advance(0)

    failed = await status(client, "once_1")

    assert RUNS == {"once_1": 1}
    assert failed["error"] == {
        "type": "ValueError",
        "message": "boom 1",
        "step": "failing",
        "attempts": 1,
    }


@pytest.mark.parametrize(
    ("tool", "job", "message"),
    [
        ("returns_a_thing", "thing_1", "the result of returns_a_thing is a Thing, which cannot"),
        ("step_returns_a_thing", "step_thing_1", "the value of step a_thing is a Thing, which"),
        ("generator_step", "generator_1", "the value of step generated is a generator, which"),
    ],
)
async def test_a_value_no_store_can_keep_fails_its_job_once_naming_its_type_and_step(
    client: Client[Any],
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
    tool: str,
    job: str,
    message: str,
) -> None:
    caplog.set_level(logging.INFO)
    await call(client, "fine", n=1)
    await call(client, tool, n=1)
    await fake_time.advance(0)

    failed = await status(client, job)
    await fake_time.advance(1, step=0.5)

    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "Unstorable"
    assert failed["error"]["message"].startswith(message)
    assert (await status(client, "fine_1"))["status"] == "completed"  # the rest runs on
    about_it = [r for r in caplog.records if job in r.getMessage()]
    assert len(about_it) <= 3, [r.getMessage() for r in about_it]  # started, failed (+ step)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_an_error_in_the_body_fails_the_job_at_once_with_its_type_and_message(
    client: Client[Any], fake_time: FakeTime
) -> None:
    await call(client, "raises_in_its_body", n=7)
    await fake_time.advance(0)

    failed = await status(client, "body_7")

    assert failed["error"] == {"type": "KeyError", "message": "'no such thing as 7'"}


async def test_tasks_get_shows_the_retry_and_then_the_real_error(
    server: FastMCP, fake_time: FakeTime
) -> None:
    async with tasks_client(server) as client:
        await call(client, "flaky", n=2)
        await fake_time.advance(0)

        working = await task_method(client, "tasks/get", "flaky_2")
        assert working["status"] == "working"
        assert working["statusMessage"].startswith(
            "retrying step failing (attempt 2 of 3 at 2026-01-01T00:00:05.000+00:00) "
            "after ValueError: boom 1"
        )
        assert working["pollIntervalMs"] == 5000  # when the next attempt comes, no sooner

        await fake_time.advance(10, step=1)
        failed = await task_method(client, "tasks/get", "flaky_2")

    assert failed["status"] == "failed"
    assert failed["statusMessage"] == "boom 3"
    assert failed["error"]["data"] == {
        "type": "ValueError",
        "message": "boom 3",
        "step": "failing",
        "attempts": 3,
    }
