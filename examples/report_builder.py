"""A report builder: a FastMCP server of its own with one durable tool.

`build_report` returns at once; its job writes an outline, asks for it to be
approved (or edited), then writes each section, reporting its progress. Each
step is checkpointed: after a crash the job goes on from the last step done.
The question waits on disk, for as long as the job's deadline (a week), and
holds no worker meanwhile. probe_status, await_result, answer_job, cancel_job
and list_jobs come with it.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Annotated, Any

from fastmcp import FastMCP
from pydantic import Field
from resonate.context import Context

from durable_mcp import DurableTools, Settings, ask, load_settings, report_progress

durable = DurableTools()

#: Its own store, beside `make run`'s ./.durable-mcp: one server process owns a data dir.
DATA_DIR = "./.report-builder"

#: The answer to "approve the outline?": an MCP elicitation form.
APPROVAL = {
    "type": "object",
    "properties": {
        "approve": {"type": "boolean", "title": "Write the report on this outline"},
        "outline": {"type": "string", "title": "Or your own headings, one per line"},
    },
    "required": ["approve"],
}


def outline(ctx: Context, topic: str, sections: int) -> list[str]:
    return [f"{topic}, part {n}" for n in range(1, sections + 1)]


def write_section(ctx: Context, heading: str) -> str:
    return f"{heading}: {len(heading.split())} words on it."


@durable.tool(job_name=lambda report_id: f"report_{report_id}", deadline=timedelta(days=7))
async def build_report(
    ctx: Context,
    report_id: str,
    topic: str,
    sections: Annotated[int, Field(ge=1, le=20)] = 3,
) -> dict[str, Any]:
    """Start building a report on `topic`; returns {"job_name"} at once.

    The job asks for its outline to be approved: answer it with answer_job.
    Then call await_result([job_name]) for the report.
    """
    headings = await ctx.run(outline, topic, sections)
    answer = await ask(ctx, "Approve this outline:\n" + "\n".join(headings), APPROVAL)
    edited = [line.strip() for line in answer.get("outline", "").splitlines() if line.strip()]
    if edited:
        headings = edited
    elif not answer["approve"]:
        return {"report_id": report_id, "topic": topic, "sections": [], "approved": False}
    texts = []
    for done, heading in enumerate(headings):
        report_progress(ctx, done, len(headings), f"writing {heading!r}")
        texts.append(await ctx.run(write_section, heading))
    report_progress(ctx, len(headings), len(headings), "written")
    return {"report_id": report_id, "topic": topic, "sections": texts}


def build(settings: Settings | None = None) -> FastMCP:
    """The app; ``settings`` default to the DURABLE_MCP_* environment, and
    the data dir to DATA_DIR."""
    mcp = FastMCP("report-builder")
    durable.add_to(mcp, settings or load_settings({"DURABLE_MCP_DATA_DIR": DATA_DIR, **os.environ}))
    return mcp


if __name__ == "__main__":
    build().run(transport="http", host="127.0.0.1", port=5002)
