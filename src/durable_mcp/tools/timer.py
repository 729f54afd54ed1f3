"""``get_timer_status``, the timer's own status tool (seed 000).

``set_timer`` and its durable function, ``timer``, are declared in
``durable_mcp.functions.timer`` (no MCP imports: it resumes before the MCP layer is up).
"""

from __future__ import annotations

from typing import Any

from fastmcp import FastMCP

from durable_mcp.functions.timer import TimerName, details, timer
from durable_mcp.jobs.service import InvalidArgument, Jobs
from durable_mcp.jobs.status import JobStatus

__all__ = ["details", "register", "timer"]


def register(mcp: FastMCP, jobs: Jobs) -> None:
    @mcp.tool
    async def get_timer_status(timer_name: TimerName) -> dict[str, Any]:
        """Check a timer set with set_timer (by the timer_name you chose), without waiting.

        Returns {"status": "running"} while it runs and {"status": "complete"}
        once it has finished; "failed", "cancelled" or "not_found" otherwise.
        probe_status([timer_name]) also tells how long until it fires.
        """
        job = await jobs.read_status(timer_name)
        if job.get("kind", "timer") != "timer":
            raise InvalidArgument(
                f"{timer_name!r} is a {job['kind']} job, not a timer: "
                "use probe_status or await_result for it"
            )
        if job["status"] == JobStatus.completed:
            return {"status": job["result"]}
        return {key: value for key, value in job.items() if key in ("status", "error")}
