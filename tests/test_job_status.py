"""A promise record as a job's status object: pure, checked on records alone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from resonate.types import PromiseRecord, Value

from durable_mcp.jobs.registry import JobKind
from durable_mcp.jobs.status import JobStatus, status_from_record


def record(state: str, value: Any = None, settled_at: int | None = 2_000) -> PromiseRecord:
    return PromiseRecord(
        id="tea",
        state=state,  # type: ignore[arg-type]
        param=Value(data={"func": "timer", "args": ["tea", 60]}),
        value=Value(data=value),
        timeout_at=100_000,
        created_at=1_000,
        settled_at=None if state == "pending" else settled_at,
    )


def test_no_record_is_not_found() -> None:
    assert status_from_record("tea", None, 5_000) == {"job_name": "tea", "status": "not_found"}


@pytest.mark.parametrize(
    ("state", "value", "expected"),
    [
        ("resolved", "complete", {"status": JobStatus.completed, "result": "complete"}),
        (
            "rejected",
            {"message": "no archive"},
            {"status": JobStatus.failed, "error": {"type": "Error", "message": "no archive"}},
        ),
        (
            "rejected_timedout",
            None,
            {
                "status": JobStatus.failed,
                "error": {"type": "Timeout", "message": "the job ran past its deadline"},
            },
        ),
        ("rejected_canceled", None, {"status": JobStatus.cancelled}),
    ],
)
def test_a_settled_record_maps_to_its_status(
    state: str, value: Any, expected: dict[str, Any]
) -> None:
    assert status_from_record("tea", record(state, value), 5_000) == {
        "job_name": "tea",
        "kind": "timer",
        "created_at": "1970-01-01T00:00:01.000+00:00",
        "settled_at": "1970-01-01T00:00:02.000+00:00",
        **expected,
    }


def test_a_pending_record_is_running_with_a_poll_hint_that_grows_with_its_age() -> None:
    young = status_from_record("tea", record("pending"), 2_000)
    old = status_from_record("tea", record("pending"), 1_000 + 80_000)
    assert (young["status"], young["poll_after_seconds"]) == (JobStatus.running, 1.0)
    assert old["poll_after_seconds"] == 20.0


def test_a_kinds_details_are_added_to_a_running_job() -> None:
    def details(args: list[Any], created_at: int, now: int) -> dict[str, Any]:
        return {"remaining_seconds": args[1] - (now - created_at) / 1000}

    kinds = {"timer": JobKind(timedelta(hours=1), details)}
    job = status_from_record("tea", record("pending"), 59_000, kinds)
    assert (job["remaining_seconds"], job["poll_after_seconds"]) == (2.0, 2.0)
