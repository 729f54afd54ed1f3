from datetime import timedelta
from typing import Annotated

from pydantic import Field
from resonate.context import Context

from durable_mcp import DurableTools

durable = DurableTools()


@durable.tool(
    name="start_countdown",
    job_name=lambda seconds: f"countdown_{seconds}",
    deadline=timedelta(hours=2),
)
async def countdown(ctx: Context, seconds: Annotated[int, Field(ge=1, le=3600)]) -> str:
    """Start a countdown; returns {"job_name"} at once. Then call await_result."""
    for _ in range(seconds):
        await ctx.sleep(timedelta(seconds=1))  # durable: survives restarts
    return "liftoff"
