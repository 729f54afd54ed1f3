"""Jobs that talk, on Postgres: two replicas of the report builder example on one
database. A question asked on one is seen and answered on the other, progress
shows on both, a change made on one is pushed by the other, and of twenty
answers raced across both, one is taken."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from durable_mcp_testing.held_report_builder import ReportBuilder
from durable_mcp_testing.helpers import call, eventually
from durable_mcp_testing.modern_client import ModernClient
from durable_mcp_testing.postgres_server import needs_schema

pytestmark = needs_schema

HOLD = "sales, part 2"


@pytest.fixture
def replicas(postgres: Any, tmp_path: Path) -> Iterator[tuple[ReportBuilder, ReportBuilder]]:
    """Replicas A and B, each holding the second section when it comes to it."""
    builders = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        builders.append(ReportBuilder(tmp_path / name, env={"RESONATE_PG_DSN": postgres.get_uri()}))
    try:
        for builder in builders:
            builder.start(hold=HOLD)
        yield builders[0], builders[1]
    finally:
        for builder in builders:
            builder.stop()
    for builder in builders:
        logged = builder.log.read_text()
        assert "Traceback" not in logged and " ERROR " not in logged, logged


async def on(builder: ReportBuilder, tool: str, **arguments: object) -> Any:
    async with Client(builder.url) as client:
        return await call(client, tool, **arguments)


async def status_on(builder: ReportBuilder, job: str) -> dict[str, Any]:
    (status,) = await on(builder, "probe_status", job_names=[job])
    return dict(status)


async def test_a_question_asked_on_one_replica_is_answered_on_the_other(
    replicas: tuple[ReportBuilder, ReportBuilder],
) -> None:
    a, b = replicas
    await on(a, "build_report", report_id="q1", topic="sales")

    async def asked_on_b() -> dict[str, Any] | None:
        status = await status_on(b, "report_q1")
        return status if status["status"] == "input_required" else None

    asked = await eventually(asked_on_b)
    assert asked["question"]["message"].startswith("Approve this outline:")
    listed = await on(b, "list_jobs", status="input_required")
    assert [(j["job_name"], j["question"]) for j in listed["jobs"]] == [
        ("report_q1", asked["question"])
    ]
    assert await status_on(a, "report_q1") == asked

    # A listens to the task on the 2026-07-28 wire; the answer is given on B.
    async with ModernClient(a.url) as listener, listener.listen(["report_q1"]) as pushes:
        await anext(pushes)  # the acknowledgement
        answered = await on(b, "answer_job", job_name="report_q1", answer={"approve": True})
        assert answered["status"] == "running"
        pushed = await anext(pushes)
    assert (pushed["params"]["taskId"], pushed["params"]["status"]) == ("report_q1", "working")

    # Whichever replica runs the job now holds it at part 2: both show its progress.
    expected = {"done": 1, "total": 3, "message": f"writing {HOLD!r}"}
    for replica in (a, b):

        async def progress(replica: ReportBuilder = replica) -> dict[str, Any] | None:
            return (await status_on(replica, "report_q1")).get("progress")

        assert await eventually(progress) == expected


async def test_of_twenty_answers_raced_across_two_replicas_one_is_taken(
    replicas: tuple[ReportBuilder, ReportBuilder],
) -> None:
    a, b = replicas
    await on(a, "build_report", report_id="q2", topic="sales", sections=1)

    async def asking() -> bool | None:
        return True if (await status_on(b, "report_q2"))["status"] == "input_required" else None

    await eventually(asking)

    async def answer(replica: ReportBuilder, n: int) -> Any:
        outline = f"answer {n}"
        return await on(
            replica,
            "answer_job",
            job_name="report_q2",
            answer={"approve": False, "outline": outline},
        )

    outcomes = await asyncio.gather(
        *(answer(a if n % 2 else b, n) for n in range(20)), return_exceptions=True
    )
    taken = [n for n, outcome in enumerate(outcomes) if not isinstance(outcome, BaseException)]
    assert len(taken) == 1, outcomes
    for refused in outcomes:
        if isinstance(refused, BaseException):
            assert isinstance(refused, ToolError), refused
            message = str(refused)
            assert "was answered already" in message or "is not waiting" in message, message
    result = await on(b, "await_result", job_names=["report_q2"])
    assert result["report_q2"]["sections"] == [f"answer {taken[0]}: 2 words on it."]
