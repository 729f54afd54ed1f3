"""A server of one's own whose durable tools have the bugs users' tools have, beside
a tool that works: ``python -m durable_mcp_testing.poison_app PORT DATA_DIR [v1]``.

- ``normal``: sleeps ``seconds`` durably, then returns ``n`` (the one that works);
- ``unencodable``: returns an object no store can keep;
- ``raising_step``: its step raises ``ValueError("boom <n>")`` every time
  (retried twice, a second apart);
- ``generator_step``: its step is a sync generator function;
- ``doomed``: only in version ``v1``; its step waits forever, so that a
  ``kill -9`` leaves its job in flight, and version 2, which no longer has the
  function, finds the job stranded when it restarts.

For the tests and the bench that measure a server beside poison jobs; the
other settings come from the DURABLE_MCP_* environment.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from typing import Any

from fastmcp import FastMCP
from resonate.context import Context
from resonate.retry import Constant

from durable_mcp import DurableTools, load_settings
from durable_mcp.logs import configure_logging

durable = DurableTools()


class Unstorable:
    """A plain object: what no store can encode."""


def failing(ctx: Context, n: int) -> int:
    raise ValueError(f"boom {n}")


def generated(ctx: Context) -> Any:
    yield 1


async def forever(ctx: Context) -> None:
    await asyncio.Event().wait()


@durable.tool(job_name=lambda n: f"normal_{n}")
async def normal(ctx: Context, n: int, seconds: float = 2) -> int:
    """Sleep, durably, then return n."""
    await ctx.sleep(timedelta(seconds=seconds))
    return n


@durable.tool(job_name=lambda n: f"unencodable_{n}")
async def unencodable(ctx: Context, n: int) -> Any:
    """Return what no store can keep."""
    return Unstorable()


@durable.tool(job_name=lambda n: f"raising_{n}", retry=Constant(delay=1, max_retries=2))
async def raising_step(ctx: Context, n: int) -> int:
    """A step that always raises."""
    result: int = await ctx.run(failing, n)
    return result


@durable.tool(job_name=lambda n: f"generator_{n}")
async def generator_step(ctx: Context, n: int) -> Any:
    """A generator function as a step."""
    return await ctx.run(generated)


def main() -> None:
    port, data_dir = int(sys.argv[1]), sys.argv[2]
    tools = DurableTools(durable)
    if sys.argv[3:] == ["v1"]:

        @tools.tool(job_name=lambda n: f"doomed_{n}")
        async def doomed(ctx: Context, n: int) -> None:
            """Waits forever in its step (removed in the next version)."""
            await ctx.run(forever)

    configure_logging()
    mcp = FastMCP("poison")
    tools.add_to(mcp, load_settings({**os.environ, "DURABLE_MCP_DATA_DIR": data_dir}))
    mcp.run(transport="http", host="127.0.0.1", port=port, show_banner=False)


if __name__ == "__main__":
    main()
