"""A job's steps as the store keeps them: each checkpointed step, durable sleep
and question, with when it began and ended (the jobs page's timeline).

A step's promise is named ``<job>:<n>`` in the order the job made it, and
carries the job's id as its origin (``resonate:origin``); a sleep is tagged
``resonate:timer``, a question :data:`QUESTION_TAG`. The store keeps no step's
function name (the SDK stores a local step without its arguments), so a step
is shown by its kind and number. The engine reads them (``engine.py``): the
in-process stores from their branch and question indexes, Postgres by ``origin_id``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from durable_mcp.jobs.status import iso
from durable_mcp.store.state import QUESTION_TAG

#: ``steps(job_id)``: the job's steps, oldest first (see :func:`step_of`).
StepReader = Callable[[str], Awaitable[list[dict[str, Any]]]]


async def no_steps(job_id: str) -> list[dict[str, Any]]:
    """An engine that cannot read a job's steps (a Resonate Server)."""
    return []


def step_of(
    promise_id: str,
    tags: Mapping[str, str],
    state: str,
    created_at: int,
    settled_at: int | None,
) -> dict[str, Any]:
    """One step, as the page shows it: id, number, kind, state, start and end (ISO)."""
    if tags.get("resonate:timer") == "true":
        kind = "sleep"
    elif QUESTION_TAG in tags:
        kind = "question"
    else:
        kind = "step"
    return {
        "id": promise_id,
        "seq": promise_id.rsplit(":", 1)[-1],
        "kind": kind,
        "state": state,
        "started_at": iso(created_at),
        "ended_at": iso(settled_at) if settled_at is not None else None,
    }


def by_start(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Oldest first, then by number (``job:2`` before ``job:10``)."""
    return sorted(steps, key=lambda s: (s["started_at"], [int(p) for p in _numbers(s["id"])]))


def _numbers(promise_id: str) -> list[str]:
    return [part for part in promise_id.split(":")[1:] if part.isdigit()]
