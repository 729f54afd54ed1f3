"""A job asks a person a question, ``ask(ctx, message, schema)``, and waits for the
answer: input_required in every status, answered by answer_job or tasks/update,
checked against the schema, one of two racing answers taken. In-process, on both
stores, on fake time; the kill -9 tests are the report builder's (test_own_tool.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from resonate.context import Context

from durable_mcp import DurableTools, ask
from durable_mcp.functions import BUILT_IN
from durable_mcp_testing.helpers import STORE_TICK, FakeTime, call
from durable_mcp_testing.tasks_client import start_task, task_method, tasks_client

SCHEMA = {
    "type": "object",
    "properties": {
        "go": {"type": "boolean", "title": "Go on?"},
        "note": {"type": "string", "maxLength": 20},
    },
    "required": ["go"],
}
JOB = "ask_a"
QUESTION = {"id": "ask_a:2", "message": "Go on with a?", "schema": SCHEMA}

talking = DurableTools()
#: The steps each job ran, in order: (job name, before or after the question).
RAN: list[tuple[str, str]] = []


def count(ctx: Context, name: str, when: str) -> str:
    RAN.append((name, when))
    return when


@talking.tool(job_name=lambda name: f"ask_{name}", deadline=timedelta(days=7))
async def approve(ctx: Context, name: str) -> dict[str, Any]:
    """A step, a question, a step: returns the answer."""
    await ctx.run(count, name, "before")
    answer = await ask(ctx, f"Go on with {name}?", SCHEMA)
    await ctx.run(count, name, "after")
    return answer


@talking.tool(job_name=lambda name: f"badly_{name}")
async def ask_badly(ctx: Context, name: str) -> dict[str, Any]:
    return await ask(ctx, "What?", {"type": "string"})


@pytest.fixture(autouse=True)
def clear_ran() -> None:
    RAN.clear()


@pytest.fixture
def durable() -> DurableTools:
    return DurableTools(BUILT_IN, talking)


async def asking(client: Client[Any], fake_time: FakeTime, name: str = "a") -> dict[str, Any]:
    """Start ``approve`` and return its status once it waits for the answer."""
    await call(client, "approve", name=name)
    await fake_time.turns()
    (status,) = await call(client, "probe_status", job_names=[f"ask_{name}"])
    assert status["status"] == "input_required", status
    return dict(status)


async def finished(client: Client[Any], fake_time: FakeTime, job: str = JOB) -> Any:
    awaited = call(client, "await_result", job_names=[job])
    return (await fake_time.run(awaited, step=STORE_TICK, within=30))[job]


async def test_a_question_shows_in_every_status_and_its_answer_ends_the_job(
    client: Client[Any], fake_time: FakeTime
) -> None:
    status = await asking(client, fake_time)
    assert status["question"] == QUESTION
    assert status["hint"].startswith("this job waits for an answer: ask the user 'Go on with a?'")
    listed = await call(client, "list_jobs", status="input_required")
    assert [(job["job_name"], job["question"]) for job in listed["jobs"]] == [(JOB, QUESTION)]
    # await_result does not wait for an answer that only a person can give.
    awaited = await call(client, "await_result", job_names=[JOB])
    assert awaited[JOB]["status"] == "input_required"
    assert awaited[JOB]["question"] == QUESTION

    answered = await call(client, "answer_job", job_name=JOB, answer={"go": True, "note": "ok"})
    assert answered["status"] == "running"
    assert await finished(client, fake_time) == {"go": True, "note": "ok"}
    assert RAN == [("a", "before"), ("a", "after")]


async def test_a_question_waits_a_day_and_is_answered_then(
    client: Client[Any], fake_time: FakeTime
) -> None:
    await asking(client, fake_time)
    await fake_time.advance(24 * 3600, step=3600)  # leases would have lapsed many times
    (status,) = await call(client, "probe_status", job_names=[JOB])
    assert status["question"] == QUESTION
    await call(client, "answer_job", job_name=JOB, answer={"go": False})
    assert await finished(client, fake_time) == {"go": False}


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({}, "the answer does not fit the question's schema: 'go' is a required property"),
        (
            {"go": "yes"},
            "the answer does not fit the question's schema: 'yes' is not of type 'boolean' "
            r"\(at go\)",
        ),
        (
            {"go": True, "note": "x" * 21},
            "the answer does not fit the question's schema: .* is too long \\(at note\\)",
        ),
        ("yes", "answer: Input should be a valid dictionary"),
    ],
)
async def test_a_wrong_answer_is_refused_and_changes_nothing(
    client: Client[Any], fake_time: FakeTime, answer: Any, error: str
) -> None:
    before = await asking(client, fake_time)
    with pytest.raises(ToolError, match=error):
        await call(client, "answer_job", job_name=JOB, answer=answer)
    (after,) = await call(client, "probe_status", job_names=[JOB])
    assert after == before
    assert RAN == [("a", "before")]


async def test_an_answer_to_a_job_that_does_not_wait_for_one_is_refused(
    client: Client[Any], fake_time: FakeTime
) -> None:
    with pytest.raises(ToolError, match="no job is named 'ask_b'"):
        await call(client, "answer_job", job_name="ask_b", answer={"go": True})
    await call(client, "set_timer", timer_name="tea", seconds=60)
    with pytest.raises(ToolError, match=r"'tea' is not waiting for an answer \(it is running\)"):
        await call(client, "answer_job", job_name="tea", answer={"go": True})
    await asking(client, fake_time)
    await call(client, "answer_job", job_name=JOB, answer={"go": True})
    await finished(client, fake_time)
    with pytest.raises(
        ToolError, match=r"job 'ask_a' is not waiting for an answer \(it is completed\)"
    ):
        await call(client, "answer_job", job_name=JOB, answer={"go": False})
    assert await finished(client, fake_time) == {"go": True}


async def test_of_twenty_racing_answers_one_is_taken_and_the_others_are_told(
    client: Client[Any], fake_time: FakeTime
) -> None:
    await asking(client, fake_time)
    answers = [
        call(client, "answer_job", job_name=JOB, answer={"go": True, "note": f"answer {n}"})
        for n in range(20)
    ]
    outcomes = await asyncio.gather(*answers, return_exceptions=True)
    taken = [n for n, outcome in enumerate(outcomes) if not isinstance(outcome, BaseException)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(taken) == 1, outcomes
    for error in refused:
        assert isinstance(error, ToolError)
        assert "was answered already" in str(error) or "is not waiting for an answer" in str(
            error
        ), error
    assert await finished(client, fake_time) == {"go": True, "note": f"answer {taken[0]}"}
    assert RAN == [("a", "before"), ("a", "after")]  # the job went on once


async def test_cancelling_a_job_that_waits_for_an_answer_cancels_it(
    client: Client[Any], fake_time: FakeTime
) -> None:
    await asking(client, fake_time)
    cancelled = await call(client, "cancel_job", job_name=JOB)
    assert cancelled["status"] == "cancelled"
    assert "question" not in cancelled
    with pytest.raises(ToolError, match=r"is not waiting for an answer \(it is cancelled\)"):
        await call(client, "answer_job", job_name=JOB, answer={"go": True})
    await fake_time.advance(STORE_TICK, step=STORE_TICK)
    assert RAN == [("a", "before")]


async def test_a_question_with_a_schema_that_is_not_an_objects_fails_its_job(
    client: Client[Any], fake_time: FakeTime
) -> None:
    await call(client, "ask_badly", name="x")
    await fake_time.turns()
    (failed,) = await call(client, "probe_status", job_names=["badly_x"])
    assert failed["status"] == "failed"
    assert failed["error"]["message"] == (
        'a question\'s schema must be a JSON Schema with "type": "object"'
    )


async def test_a_task_asks_through_input_requests_and_is_answered_with_tasks_update(
    server: FastMCP, fake_time: FakeTime
) -> None:
    async with tasks_client(server) as client:
        await start_task(client, "approve", name="a")
        await fake_time.turns()
        task = await task_method(client, "tasks/get", JOB)
        assert (task["status"], task["statusMessage"]) == ("input_required", "Go on with a?")
        assert task["inputRequests"] == {
            "ask_a:2": {
                "method": "elicitation/create",
                "params": {"mode": "form", "message": "Go on with a?", "requestedSchema": SCHEMA},
            }
        }
        # A response under another key is ignored; a wrong one refused: nothing changes.
        ignored = await task_method(client, "tasks/update", JOB, {"ask_a:9": {"action": "accept"}})
        assert ignored == {"resultType": "complete"}
        wrong = {"ask_a:2": {"action": "accept", "content": {"go": 1}}}
        with pytest.raises(MCPError, match="1 is not of type 'boolean'") as refused:
            await task_method(client, "tasks/update", JOB, wrong)
        assert refused.value.error.code == INVALID_PARAMS
        assert (await task_method(client, "tasks/get", JOB))["status"] == "input_required"

        right = {"ask_a:2": {"action": "accept", "content": {"go": True}}}
        assert await task_method(client, "tasks/update", JOB, right) == {"resultType": "complete"}
        await fake_time.advance(STORE_TICK, step=STORE_TICK)
        done = await task_method(client, "tasks/get", JOB)
    assert done["status"] == "completed"
    assert done["result"]["structuredContent"] == {"go": True}


async def test_a_declined_question_fails_its_job_saying_so(
    server: FastMCP, fake_time: FakeTime
) -> None:
    async with tasks_client(server) as client:
        await start_task(client, "approve", name="a")
        await fake_time.turns()
        declined = {"ask_a:2": {"action": "decline"}}
        assert await task_method(client, "tasks/update", JOB, declined) == {
            "resultType": "complete"
        }
        await fake_time.advance(STORE_TICK, step=STORE_TICK)
        failed = await task_method(client, "tasks/get", JOB)
    assert failed["status"] == "failed"
    assert failed["statusMessage"] == "the question 'Go on with a?' was not answered: decline"
    assert RAN == [("a", "before")]
