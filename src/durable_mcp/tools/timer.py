"""The durable timer (seed 000): ``set_timer`` and ``get_timer_status``.

The timer's id is its name, so setting the same timer twice attaches to the
one already running. The sleep is ``ctx.sleep``: a deadline kept by the store,
not by this process, so it fires even if the server restarted meanwhile.
The durable function, ``timer``, lives in ``durable_mcp.functions.timer``
(no MCP imports: it resumes before the MCP layer is up).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastmcp import FastMCP
from pydantic import Field

from durable_mcp.functions.timer import timer
from durable_mcp.jobs import InvalidArgument, Jobs, JobStatus, Start, iso
from durable_mcp.tools.arguments import JobName, NotABoolean

__all__ = ["details", "register", "timer"]

#: The longest timer we accept.
MAX_TIMER_SECONDS = 30 * 24 * 3600

#: Room past the timer's own deadline before its job counts as stuck.
DEADLINE_MARGIN = timedelta(hours=1)

Seconds = Annotated[
    float,
    Field(
        ge=0,
        le=MAX_TIMER_SECONDS,
        allow_inf_nan=False,
        description="How long the timer runs, in seconds (at most 30 days).",
    ),
    NotABoolean,
]


def details(args: list[Any], created_at_ms: int, now_ms: int) -> dict[str, Any]:
    """A running timer's deadline and how long until it fires."""
    _, seconds = args
    deadline_ms = created_at_ms + int(seconds * 1000)
    return {
        "deadline": iso(deadline_ms),
        "remaining_seconds": round(max(deadline_ms - now_ms, 0) / 1000, 1),
    }


def register(mcp: FastMCP, jobs: Jobs) -> None:
    jobs.register(timer, details=details)

    @jobs.starter(mcp, result=lambda job: {"promise_id": job["job_name"], "status": job["status"]})
    async def set_timer(timer_name: JobName, seconds: Seconds) -> Start:
        """Start a durable timer named `timer_name` that completes after `seconds`.

        Returns at once with {"promise_id": timer_name, "status": ...}; the timer
        keeps running even if the server restarts. Setting a timer with a name
        that is already running attaches to it instead of starting a second one.
        Call get_timer_status(timer_name) later to see whether it has finished.
        """
        return Start(timer_name, timer, timer_name, seconds, deadline=_deadline(seconds))

    @mcp.tool
    async def get_timer_status(timer_name: JobName) -> dict[str, Any]:
        """Check a timer set with set_timer, without waiting.

        Returns {"status": "running"} while it runs and {"status": "complete"}
        once it has finished; "failed", "cancelled" or "not_found" otherwise.
        probe_status([timer_name]) also tells how long until it fires.
        """
        job = await jobs.status(timer_name)
        if job.get("kind", "timer") != "timer":
            raise InvalidArgument(
                f"{timer_name!r} is a {job['kind']} job, not a timer: "
                "use probe_status or await_result for it"
            )
        if job["status"] == JobStatus.completed:
            return {"status": job["result"]}
        return {key: value for key, value in job.items() if key in ("status", "error")}


def _deadline(seconds: float) -> timedelta:
    return timedelta(seconds=seconds) + DEADLINE_MARGIN
