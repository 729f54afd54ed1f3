"""The tools that work on any job: probe, await, answer, cancel and list."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastmcp import Context, FastMCP
from pydantic import Field

from durable_mcp.jobs.service import Jobs
from durable_mcp.jobs.status import JobStatus
from durable_mcp.tools.arguments import JobName, JobNames, NotABoolean

WaitSeconds = Annotated[
    float | None,
    Field(
        ge=0,
        allow_inf_nan=False,
        description="Longest time to wait, in seconds; the server caps it below client time-outs.",
    ),
    NotABoolean,
]

#: What list_jobs filters on: a status a job in the store has (never not_found).
ListedStatus = Literal["running", "input_required", "completed", "failed", "cancelled"]

Answer = Annotated[
    dict[str, Any],
    Field(
        description="The answer, a JSON object that fits the question's schema "
        "(probe_status shows the question, with its schema)."
    ),
]


def register(mcp: FastMCP, jobs: Jobs) -> None:
    @mcp.tool
    async def probe_status(job_names: JobNames) -> list[dict[str, Any]]:
        """Check one or more jobs (at most 100 names) without waiting.

        Returns [{"job_name", "status"}] per job; status is "running" (maybe
        with "progress"), "input_required" (the job asks a "question": answer
        it with answer_job), "completed", "failed" (with an "error"),
        "cancelled" or "not_found". For completed jobs call await_result to get
        their results. For running jobs, probe again later rather than in a
        tight loop.
        """
        return [_without_result(await jobs.read_status(name)) for name in job_names]

    @mcp.tool
    async def answer_job(job_name: JobName, answer: Answer) -> dict[str, Any]:
        """Answer the question a job waits on (its status is "input_required").

        The answer must fit the question's schema; ask the user the question's
        message first. Returns the job's status object once the answer is
        saved: the job then goes on by itself (probe_status or await_result).
        """
        return _without_result(await jobs.answer(job_name, answer))

    @mcp.tool
    async def cancel_job(job_name: JobName) -> dict[str, Any]:
        """Cancel a running job: it stops and its status becomes "cancelled".

        Returns the job's status object after the cancel. Cancelling a job that
        has already finished changes nothing and returns its final status;
        an unknown name returns "not_found".
        """
        return _without_result(await jobs.cancel(job_name))

    @mcp.tool
    async def list_jobs(
        status: ListedStatus | None = None,
        kind: str | None = None,
        limit: Annotated[int, Field(ge=1, le=100), NotABoolean] = 20,
        cursor: Annotated[str, Field(max_length=1000)] | None = None,
    ) -> dict[str, Any]:
        """List jobs, newest first: {"jobs": [...], "next_cursor": ...}.

        Each job has job_name, kind (e.g. "timer", "weather_data"), status,
        created_at and settled_at. Filter by status and kind; pass next_cursor
        back as cursor for the next page (null when there is none).
        """
        return await jobs.list(JobStatus(status) if status else None, kind, limit, cursor)

    @mcp.tool
    async def await_result(
        job_names: JobNames, timeout_seconds: WaitSeconds = None, ctx: Context | None = None
    ) -> dict[str, Any]:
        """Wait for jobs (at most 100 names) to finish and return their results.

        Returns {job_name: result} for completed jobs and {job_name: {"status": ...}}
        for the others ("failed" with an "error", "cancelled", "not_found").
        A job that asks a question is {"status": "input_required", "question":
        ...} at once: ask the user, then answer it with answer_job. Waits at
        most `timeout_seconds`, and never longer than the server's cap (45 s by
        default); jobs still running then are {"status": "running"}: call
        await_result again for them.
        """

        async def report(progress: float, total: float | None, message: str) -> None:
            if ctx is not None:
                await ctx.report_progress(progress, total, message)

        statuses = await jobs.wait(job_names, timeout_seconds, on_progress=report)
        return {
            name: job["result"] if job["status"] == JobStatus.completed else _without_result(job)
            for name, job in statuses.items()
        }


def _without_result(job: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in job.items() if key != "result"}
