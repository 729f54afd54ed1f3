"""set_timer / get_timer_status, through an in-memory MCP client (seed 000).

The server runs on fake time (conftest): a timer fires when the test moves
the clock past its deadline, and the store's records say when that was.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from durable_mcp.jobs.service import Jobs
from durable_mcp.jobs.status import iso
from durable_mcp_testing.helpers import (
    FAKE_START_MS,
    STORE_TICK,
    FakeTime,
    call,
    steps_of,
    the_sleep_of,
)


def ms(timestamp: str) -> int:
    return round(dt.datetime.fromisoformat(timestamp).timestamp() * 1000)


async def test_set_timer_returns_the_name_as_promise_id_at_once(
    client: Client[Any], fake_time: FakeTime
) -> None:
    # The clock never moves: an answer that waited for the timer would never come.
    result = await call(client, "set_timer", timer_name="tea", seconds=30)
    assert result == {"promise_id": "tea", "status": "running"}
    assert fake_time.now == FAKE_START_MS


async def test_timer_runs_until_its_deadline_then_completes(
    client: Client[Any], jobs: Jobs, fake_time: FakeTime
) -> None:
    await call(client, "set_timer", timer_name="egg", seconds=60)
    deadline = FAKE_START_MS + 60_000
    assert (await the_sleep_of(jobs, "egg")).timeout_at == deadline
    (egg,) = await call(client, "probe_status", job_names=["egg"])
    assert (egg["created_at"], egg["deadline"]) == (iso(FAKE_START_MS), iso(deadline))

    await fake_time.advance(59.999)
    assert await call(client, "get_timer_status", timer_name="egg") == {"status": "running"}
    await fake_time.advance(0.001)  # on the deadline: it fires at the store's next look
    result = await fake_time.run(
        call(client, "await_result", job_names=["egg"]), step=STORE_TICK, within=5
    )
    assert result == {"egg": "complete"}
    assert await call(client, "get_timer_status", timer_name="egg") == {"status": "complete"}
    (egg,) = await call(client, "probe_status", job_names=["egg"])
    assert deadline <= ms(egg["settled_at"]) <= deadline + 1000
    (sleep,) = await steps_of(jobs, "egg")
    assert (sleep.state, sleep.settled_at) == ("resolved", deadline)


async def test_setting_the_same_timer_twice_attaches_to_one_timer(
    client: Client[Any], jobs: Jobs, fake_time: FakeTime
) -> None:
    await call(client, "set_timer", timer_name="tea", seconds=0.8)
    first = await the_sleep_of(jobs, "tea")
    await fake_time.advance(0.4)
    again = await call(client, "set_timer", timer_name="tea", seconds=0.8)
    assert again == {"promise_id": "tea", "status": "running"}
    # One job, one sleep, one deadline: the first call's.
    (tea,) = await call(client, "probe_status", job_names=["tea"])
    assert (tea["created_at"], tea["deadline"]) == (iso(FAKE_START_MS), iso(FAKE_START_MS + 800))
    assert await steps_of(jobs, "tea") == [first]
    assert first.timeout_at == FAKE_START_MS + 800
    assert [job["job_name"] for job in (await call(client, "list_jobs"))["jobs"]] == ["tea"]
    await fake_time.advance(0.4 + STORE_TICK)
    assert await call(client, "await_result", job_names=["tea"]) == {"tea": "complete"}


async def test_setting_a_finished_timer_again_returns_it_complete(client: Client[Any]) -> None:
    await call(client, "set_timer", timer_name="done", seconds=0)
    assert await call(client, "await_result", job_names=["done"]) == {"done": "complete"}
    again = await call(client, "set_timer", timer_name="done", seconds=0)
    assert again == {"promise_id": "done", "status": "completed"}


async def test_same_name_with_other_seconds_is_a_conflict(client: Client[Any]) -> None:
    await call(client, "set_timer", timer_name="tea", seconds=30)
    with pytest.raises(ToolError, match=r"already exists with other arguments.*timer\(\"tea\", 30"):
        await call(client, "set_timer", timer_name="tea", seconds=60)
    assert await call(client, "get_timer_status", timer_name="tea") == {"status": "running"}


async def test_status_of_an_unknown_timer_is_not_found(client: Client[Any]) -> None:
    assert await call(client, "get_timer_status", timer_name="nope") == {"status": "not_found"}


@pytest.mark.parametrize("wrapped", [{"timer_name": "tea"}, {"job_name": "tea"}])
async def test_a_name_wrapped_in_a_dict_is_accepted(
    client: Client[Any], wrapped: dict[str, str]
) -> None:
    result = await call(client, "set_timer", timer_name=wrapped, seconds=30)
    assert result == {"promise_id": "tea", "status": "running"}
    assert await call(client, "get_timer_status", timer_name=wrapped) == {"status": "running"}


async def test_seconds_given_as_a_string_is_accepted(client: Client[Any]) -> None:
    result = await call(client, "set_timer", timer_name="tea", seconds="30")
    assert result == {"promise_id": "tea", "status": "running"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"timer_name": "t", "seconds": -1}, "seconds: Input should be greater than or equal to 0"),
        ({"timer_name": "t", "seconds": "nan"}, "seconds: Input should be a finite number"),
        ({"timer_name": "t", "seconds": "inf"}, "seconds: Input should be a finite number"),
        ({"timer_name": "t", "seconds": 31 * 86400}, "seconds: Input should be less than or equal"),
        ({"timer_name": "t", "seconds": "soon"}, "seconds: Input should be a valid number"),
        ({"timer_name": "", "seconds": 1}, "timer_name: a job name must not be empty"),
        ({"timer_name": "x" * 201, "seconds": 1}, "timer_name: a job name must be at most 200"),
        ({"timer_name": "a\nb", "seconds": 1}, "timer_name: a job name must not contain control"),
        ({"timer_name": "a:b", "seconds": 1}, "timer_name: a job name must not contain ':'"),
        ({"timer_name": 5, "seconds": 1}, "timer_name: Input should be a valid string"),
        ({"seconds": 1}, "timer_name: Missing required argument"),
    ],
)
async def test_bad_input_is_a_clear_tool_error_and_creates_nothing(
    client: Client[Any], arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ToolError, match=f"invalid arguments for set_timer: {message}"):
        await client.call_tool("set_timer", arguments)
    # Every valid-looking name above is "t"; none of these calls may have created it.
    assert await call(client, "get_timer_status", timer_name="t") == {"status": "not_found"}
