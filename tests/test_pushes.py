"""Pushes of task changes: ``subscriptions/listen`` on the 2026-07-28 wire, to a real
server process (the report builder example), with a raw client of that wire."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from durable_mcp_testing.held_report_builder import ReportBuilder
from durable_mcp_testing.modern_client import ModernClient

JOB = "report_q5"
START = {"report_id": "q5", "topic": "sales", "sections": 2}


@pytest.fixture
def builder(tmp_path: Path) -> Iterator[ReportBuilder]:
    builder = ReportBuilder(tmp_path)
    builder.start()
    yield builder
    builder.stop()


@pytest.fixture
async def client(builder: ReportBuilder) -> AsyncIterator[ModernClient]:
    async with ModernClient(builder.url) as client:
        yield client


async def test_a_listening_client_is_pushed_each_change_of_its_task(
    client: ModernClient,
) -> None:
    # A task's id is its job's name: a client may listen before it starts it.
    async with client.listen([JOB]) as messages:
        ack = await anext(messages)
        assert ack["method"] == "notifications/subscriptions/acknowledged"
        assert ack["params"]["notifications"] == {"taskIds": [JOB]}
        subscription = ack["params"]["_meta"]

        created = await client.call_tool("build_report", START)
        assert (created["resultType"], created["taskId"]) == ("task", JOB)

        asked = await anext(messages)
        assert asked["method"] == "notifications/tasks"
        assert asked["params"]["_meta"] == subscription
        task = asked["params"]
        assert (task["taskId"], task["status"]) == (JOB, "input_required")
        ((key, request),) = task["inputRequests"].items()
        assert request["method"] == "elicitation/create"
        assert request["params"]["message"] == "Approve this outline:\nsales, part 1\nsales, part 2"

        update = {
            "taskId": JOB,
            "inputResponses": {key: {"action": "accept", "content": {"approve": True}}},
        }
        assert await client.request("tasks/update", update) == {"resultType": "complete"}

        pushed = [await anext(messages)]
        while pushed[-1]["params"]["status"] == "working":  # answered: it works again
            pushed.append(await anext(messages))
    done = pushed[-1]["params"]
    assert done["status"] == "completed"
    assert len(pushed) <= 2
    got = await client.request("tasks/get", {"taskId": JOB})
    # The whole task, as tasks/get gives it.
    assert {**done, "resultType": "complete"} == {**got, "_meta": subscription}
    assert done["result"]["structuredContent"]["sections"] == [
        "sales, part 1: 3 words on it.",
        "sales, part 2: 3 words on it.",
    ]


async def test_each_listener_is_pushed_the_cancel_of_a_task_that_waits_for_an_answer(
    client: ModernClient, builder: ReportBuilder
) -> None:
    async with (
        ModernClient(builder.url) as other,
        client.listen([JOB]) as first,
        other.listen([JOB, "report_unknown"]) as second,
    ):
        assert (await anext(first))["params"]["notifications"] == {"taskIds": [JOB]}
        assert (await anext(second))["params"]["notifications"] == {
            "taskIds": [JOB, "report_unknown"]
        }
        await client.call_tool("build_report", START)
        for stream in (first, second):
            assert (await anext(stream))["params"]["status"] == "input_required"

        assert await client.request("tasks/cancel", {"taskId": JOB}) == {"resultType": "complete"}
        for stream in (first, second):
            assert (await anext(stream))["params"]["status"] == "cancelled"
    update = {"taskId": JOB, "inputResponses": {f"{JOB}:2": {"action": "accept"}}}
    assert await client.request("tasks/update", update) == {"resultType": "complete"}  # ignored
    assert (await client.request("tasks/get", {"taskId": JOB}))["status"] == "cancelled"


async def test_a_client_that_did_not_declare_tasks_cannot_listen_to_them(
    builder: ReportBuilder,
) -> None:
    async with ModernClient(builder.url, tasks=False) as plain, plain.listen([JOB]) as messages:
        refused = await anext(messages)
    assert refused["error"]["code"] == -32021
    assert refused["error"]["data"] == {
        "requiredCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}}
    }
