from datetime import timedelta
from typing import Annotated

from fastmcp import FastMCP
from pydantic import Field
from resonate.context import Context

from durable_mcp.jobs import Jobs, Start


async def countdown(ctx: Context, seconds: int) -> str:
    for _ in range(seconds):
        await ctx.sleep(timedelta(seconds=1))  # durable: survives restarts
    return "liftoff"


def register(mcp: FastMCP, jobs: Jobs) -> None:
    jobs.register(countdown, deadline=timedelta(hours=2))

    @jobs.starter(mcp)
    async def start_countdown(seconds: Annotated[int, Field(ge=1, le=3600)]) -> Start:
        """Start a countdown; returns {"job_name"} at once. Then call await_result."""
        return Start(f"countdown_{seconds}", countdown, seconds)
