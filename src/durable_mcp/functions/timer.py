"""The durable timer (seed 000) as a durable tool: ``timer``, started by ``set_timer``.

Imports only Resonate, pydantic and the standard library (see
``durable_mcp.functions``); ``get_timer_status`` is in ``durable_mcp.tools.timer``.
The timer's id is its name, so setting the same timer twice attaches to the
one already running. The sleep is ``ctx.sleep``: a deadline kept by the store,
not by this process, so it fires even if the server restarted meanwhile.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field
from resonate.context import Context

from durable_mcp.jobs.registry import DurableTools
from durable_mcp.jobs.status import iso
from durable_mcp.tools.arguments import JobName, NotABoolean

durable = DurableTools()

#: The longest timer we accept.
MAX_TIMER_SECONDS = 30 * 24 * 3600

#: Room past the timer's own deadline before its job counts as stuck.
DEADLINE_MARGIN = timedelta(hours=1)

TimerName = Annotated[
    JobName,
    Field(
        description="A name you choose for the timer; it is also its job name "
        "(probe_status, await_result, cancel_job)."
    ),
]

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


def deadline(seconds: float) -> timedelta:
    return timedelta(seconds=seconds) + DEADLINE_MARGIN


@durable.tool(
    name="set_timer",
    job_name=lambda timer_name: timer_name,
    deadline=deadline,
    details=details,
    result=lambda job: {"promise_id": job["job_name"], "status": job["status"]},
)
async def timer(ctx: Context, timer_name: TimerName, seconds: Seconds) -> str:
    """Start a durable timer named `timer_name` that completes after `seconds`.

    You choose `timer_name`. Returns at once with {"promise_id": timer_name,
    "status": ...}; the timer keeps running even if the server restarts.
    Setting a timer with a name that is already running attaches to it instead
    of starting a second one. Call get_timer_status(timer_name) later to see
    whether it has finished.
    """
    await ctx.sleep(timedelta(seconds=seconds))
    return "complete"
