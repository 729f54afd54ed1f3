"""set_timer / get_timer_status, through an in-memory MCP client (seed 000)."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from helpers import call


async def wait_for_status(client: Client, name: str, status: str, within: float = 10) -> float:
    """Poll get_timer_status until it reports ``status``; return when that happened."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await call(client, "get_timer_status", timer_name=name) == {"status": status}:
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise AssertionError(f"timer {name} never reached {status}")


async def test_set_timer_returns_the_name_as_promise_id_at_once(client: Client) -> None:
    started = time.monotonic()
    result = await call(client, "set_timer", timer_name="tea", seconds=30)
    assert time.monotonic() - started < 2
    assert result == {"promise_id": "tea", "status": "running"}


async def test_timer_runs_then_completes_on_its_deadline(client: Client) -> None:
    started = time.monotonic()
    await call(client, "set_timer", timer_name="egg", seconds=0.6)
    assert await call(client, "get_timer_status", timer_name="egg") == {"status": "running"}
    finished = await wait_for_status(client, "egg", "complete")
    assert 0.6 <= finished - started < 3


async def test_setting_the_same_timer_twice_attaches_to_one_timer(client: Client) -> None:
    started = time.monotonic()
    await call(client, "set_timer", timer_name="tea", seconds=0.8)
    await asyncio.sleep(0.4)
    again = await call(client, "set_timer", timer_name="tea", seconds=0.8)
    assert again == {"promise_id": "tea", "status": "running"}
    finished = await wait_for_status(client, "tea", "complete")
    # One timer, on the first call's deadline: a second one would end 0.4 s later.
    assert finished - started < 1.15


async def test_setting_a_finished_timer_again_returns_it_complete(client: Client) -> None:
    await call(client, "set_timer", timer_name="done", seconds=0)
    await wait_for_status(client, "done", "complete")
    again = await call(client, "set_timer", timer_name="done", seconds=0)
    assert again == {"promise_id": "done", "status": "completed"}


async def test_same_name_with_other_seconds_is_a_conflict(client: Client) -> None:
    await call(client, "set_timer", timer_name="tea", seconds=30)
    with pytest.raises(ToolError, match=r"already exists with other arguments.*timer\(\"tea\", 30"):
        await call(client, "set_timer", timer_name="tea", seconds=60)
    assert await call(client, "get_timer_status", timer_name="tea") == {"status": "running"}


async def test_status_of_an_unknown_timer_is_not_found(client: Client) -> None:
    assert await call(client, "get_timer_status", timer_name="nope") == {"status": "not_found"}


@pytest.mark.parametrize("wrapped", [{"timer_name": "tea"}, {"job_name": "tea"}])
async def test_a_name_wrapped_in_a_dict_is_accepted(
    client: Client, wrapped: dict[str, str]
) -> None:
    result = await call(client, "set_timer", timer_name=wrapped, seconds=30)
    assert result == {"promise_id": "tea", "status": "running"}
    assert await call(client, "get_timer_status", timer_name=wrapped) == {"status": "running"}


async def test_seconds_given_as_a_string_is_accepted(client: Client) -> None:
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
    client: Client, arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ToolError, match=f"invalid arguments for set_timer: {message}"):
        await client.call_tool("set_timer", arguments)
    # Every valid-looking name above is "t"; none of these calls may have created it.
    assert await call(client, "get_timer_status", timer_name="t") == {"status": "not_found"}
