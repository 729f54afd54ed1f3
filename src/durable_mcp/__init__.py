"""Durable MCP tools: a start tool answers at once, its job runs on Resonate.

The public API::

    from durable_mcp import DurableTools

    durable = DurableTools()

    @durable.tool(job_name=lambda report_id: f"report_{report_id}")
    async def build_report(ctx: Context, report_id: str) -> dict[str, Any]:
        report_progress(ctx, 1, 3, "writing the outline")  # how far it has got
        ok = await ask(ctx, "Approve the outline?", schema)  # waits for a person's answer
        ...

    durable.add_to(mcp)  # mcp: your FastMCP app

Importing this package imports nothing of MCP (see ``jobs.registry``);
``InvalidArgument`` and ``Jobs`` (which do) load when first named.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from durable_mcp.config import Settings, StartError, load_settings
from durable_mcp.jobs.progress import report_progress
from durable_mcp.jobs.questions import Declined, ask
from durable_mcp.jobs.registry import DurableTools
from durable_mcp.jobs.status import JobStatus

if TYPE_CHECKING:
    from durable_mcp.jobs.service import InvalidArgument, Jobs

#: The distribution this package is installed as (``pip install mcp-durable-jobs``).
DISTRIBUTION = "mcp-durable-jobs"
__version__ = version(DISTRIBUTION)

__all__ = [
    "Declined",
    "DurableTools",
    "InvalidArgument",
    "JobStatus",
    "Jobs",
    "Settings",
    "StartError",
    "ask",
    "load_settings",
    "report_progress",
]


def __getattr__(name: str) -> Any:
    if name in ("InvalidArgument", "Jobs"):
        from durable_mcp.jobs import service

        return getattr(service, name)
    raise AttributeError(f"module 'durable_mcp' has no attribute {name!r}")
