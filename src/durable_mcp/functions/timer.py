"""The durable timer as a durable function: ``timer``.

Imports only Resonate and the standard library (see ``durable_mcp.functions``);
its tools, ``set_timer`` and ``get_timer_status``, are in ``durable_mcp.tools.timer``.
"""

from __future__ import annotations

from datetime import timedelta

from resonate.context import Context


async def timer(ctx: Context, timer_name: str, seconds: float) -> str:
    """Sleep durably for ``seconds``, then return ``"complete"``."""
    await ctx.sleep(timedelta(seconds=seconds))
    return "complete"
