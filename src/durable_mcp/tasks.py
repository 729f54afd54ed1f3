"""MCP tasks (the ``io.modelcontextprotocol/tasks`` extension, SEP-2663) served by the jobs.

A client that opts in to the extension on a ``tools/call`` of a durable start
tool gets a task instead of the tool's answer, and the task is the job: its id
is the job's name, ``tasks/get`` reads the job's status (its progress is the
``statusMessage``; a question it asks is ``input_required`` with the question
as an elicitation in ``inputRequests``), ``tasks/update`` answers the
question (``answer_job``), ``tasks/cancel`` is ``cancel_job``. Nothing about
a task is kept here, so a task survives what a job survives (a crash, a
restart), and both views describe one job: a task can be probed with
``probe_status``, a job started the old way read with ``tasks/get``. A client
that does not opt in gets the start tool's own answer.

The wire models are our own: ``fastmcp-tasks`` has them, but it pins an older
FastMCP than ours, and its engine (Docket) is what this module replaces.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from fastmcp.exceptions import ToolError
from fastmcp.server.dependencies import get_http_request
from fastmcp.server.extensions import (
    MethodBinding,
    ServerExtension,
    ToolCallContinuation,
    ToolCallOutcome,
    read_client_extension_settings,
)
from fastmcp.utilities.tasks import TASKS_EXTENSION_ID
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_NAME_HEADER, decode_header_value
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, CallToolRequestParams, RequestParams, Result
from mcp_types.jsonrpc import HEADER_MISMATCH, MISSING_REQUIRED_CLIENT_CAPABILITY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from durable_mcp.jobs.registry import check_job_name, shown
from durable_mcp.jobs.service import InvalidArgument, Jobs, starting_job
from durable_mcp.jobs.status import JobStatus
from durable_mcp.security import TaskPollingLimit
from durable_mcp.store.state import is_job

if TYPE_CHECKING:
    from fastmcp.server.context import Context

TaskStatus = Literal["working", "input_required", "completed", "failed", "cancelled"]

#: The task status for each job status.
TASK_STATUS: dict[JobStatus, TaskStatus] = {
    JobStatus.running: "working",
    JobStatus.input_required: "input_required",
    JobStatus.completed: "completed",
    JobStatus.failed: "failed",
    JobStatus.cancelled: "cancelled",
}

#: A ``tasks/get`` over the polling limit (FastMCP's rate limit answers with this code too).
TOO_MANY_REQUESTS = -32000

#: The extension's methods exist on the 2026-07-28 protocol only.
MODERN = frozenset(MODERN_PROTOCOL_VERSIONS)


class Task(Result):
    """The task fields every result of the extension carries (camelCase on the wire)."""

    task_id: str
    status: TaskStatus
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    status_message: str | None = None
    poll_interval_ms: int | None = None

    @model_serializer(mode="wrap")
    def _keep_ttl(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        data.setdefault("ttlMs", None)  # required, null for "kept as long as the store is"
        return data


class CreateTaskResult(Task):
    """A ``tools/call`` answered with a task rather than the tool's result."""

    result_type: Literal["task"] = "task"


class GetTaskResult(Task):
    """``tasks/get``: the task, with the tool's result or the error once it has one,
    or the requests for input it waits on."""

    result_type: Literal["complete"] = "complete"
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    input_requests: dict[str, Any] | None = None


class CompleteResult(Result):
    """The acknowledgement of ``tasks/update`` and ``tasks/cancel``."""

    result_type: Literal["complete"] = "complete"


class TaskParams(RequestParams):
    task_id: str | None = None  # checked by the method, which says what is missing


class UpdateTaskParams(TaskParams):
    input_responses: dict[str, Any] = Field(default_factory=dict)


class DurableTasks(ServerExtension):
    """The tasks extension on :class:`Jobs`: every start tool may run as a task.

    ``retention`` is how long the store keeps a finished job (``ttlMs``); None
    where it keeps jobs as long as it runs (the memory store) or has no sweep.
    ``polls_per_second`` bounds ``tasks/get`` per client and task.
    """

    identifier = TASKS_EXTENSION_ID

    def __init__(
        self,
        jobs: Jobs,
        retention: timedelta | None = None,
        polls_per_second: float = 10.0,
        limit: TaskPollingLimit | None = None,
    ) -> None:
        self.jobs = jobs
        self.retention = retention
        self.limit = limit or TaskPollingLimit(polls_per_second)

    def clone(self) -> DurableTasks:
        # The jobs and the polling buckets are shared, not copied.
        return DurableTasks(self.jobs, self.retention, limit=self.limit)

    def methods(self) -> Sequence[MethodBinding]:
        return [
            MethodBinding("tasks/get", TaskParams, self.get, MODERN),
            MethodBinding("tasks/update", UpdateTaskParams, self.update, MODERN),
            MethodBinding("tasks/cancel", TaskParams, self.cancel, MODERN),
        ]

    async def intercept_tool_call(
        self, params: CallToolRequestParams, context: Context, call_next: ToolCallContinuation
    ) -> ToolCallOutcome:
        """A start tool called by a client that opted in answers with its job as a task.

        The tool runs as it always does (arguments checked, the job started or
        attached to, a conflict refused); only its answer is the task.
        """
        request = context.request_context
        opted_in = (
            request is not None
            and request.protocol_version in MODERN
            and context.client_extension_settings(TASKS_EXTENSION_ID) is not None
        )
        if not opted_in:
            return await call_next()
        with starting_job() as started:
            outcome = await call_next()
        if started.job is None:
            return outcome  # not a durable start tool: its own answer
        return CreateTaskResult(**self._fields(started.job))

    async def get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> GetTaskResult:
        job = await self._job(ctx, params)
        if not await self.limit.allows(job["job_name"]):
            raise MCPError(
                code=TOO_MANY_REQUESTS,
                message=f"too many tasks/get calls for task {shown(job['job_name'])}: at most "
                f"{self.limit.per_second:g} a second per task; poll at its pollIntervalMs",
            )
        return self.detailed(job)

    def detailed(self, job: dict[str, Any]) -> GetTaskResult:
        """The task of a job's status object, as ``tasks/get`` and ``notifications/tasks``
        give it: its fields, with the result, the error or the requests for input."""
        task = GetTaskResult(**self._fields(job))
        if job["status"] == JobStatus.input_required:
            question = job["question"]
            task.input_requests = {question["id"]: elicitation(question)}
        elif job["status"] == JobStatus.completed:
            task.result = _tool_result(job["result"])
        elif job["status"] == JobStatus.failed:
            error = job["error"]
            task.error = {
                "code": INTERNAL_ERROR,
                "message": f"{error['type']}: {error['message']}",
                "data": error,
            }
        return task

    async def update(
        self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams
    ) -> CompleteResult:
        """Answer the question the task waits on: the response under its key.

        Responses under any other key are ignored, as the extension asks (a
        question answered already, or never asked). A response that does not
        fit the question's schema is refused and changes nothing.
        """
        job = await self._job(ctx, params)
        question = job.get("question")
        response = params.input_responses.get(question["id"]) if question else None
        if question is None or response is None:
            return CompleteResult()  # nothing outstanding under these keys
        action = response.get("action", "accept") if isinstance(response, dict) else None
        content = response.get("content") if isinstance(response, dict) else None
        try:
            await self.jobs.answer(
                job["job_name"], content, action=str(action), question_id=question["id"]
            )
        except InvalidArgument as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc)) from exc
        except ToolError as exc:  # the store could not write it (a full disk): its one line
            raise MCPError(code=INTERNAL_ERROR, message=str(exc)) from exc
        return CompleteResult()

    async def cancel(
        self, ctx: ServerRequestContext[Any, Any], params: TaskParams
    ) -> CompleteResult:
        job = await self._job(ctx, params)
        try:
            await self.jobs.cancel(job["job_name"])
        except ToolError as exc:  # the store could not write it (a full disk): its one line
            raise MCPError(code=INTERNAL_ERROR, message=str(exc)) from exc
        return CompleteResult()

    async def _job(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> dict[str, Any]:
        """The job behind the request's task id, after the checks every task method shares.

        An id that no job could have (empty, control characters, a ``:``, too
        long) is the extension's "not found", as an unknown one is.
        """
        if read_client_extension_settings(ctx, TASKS_EXTENSION_ID) is None:
            raise MCPError(
                code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                message=f"the client did not declare the tasks extension ({TASKS_EXTENSION_ID}) "
                "for this request",
                data={"requiredCapabilities": {"extensions": {TASKS_EXTENSION_ID: {}}}},
            )
        task_id = params.task_id
        if task_id is None:
            raise MCPError(code=INVALID_PARAMS, message="the request has no taskId")
        _check_name_header(task_id)
        job = await self.jobs.read_status(task_id) if can_name_a_job(task_id) else None
        if job is None or job["status"] == JobStatus.not_found:
            # Unknown, or removed after its retention: the extension's one "not found".
            raise MCPError(code=INVALID_PARAMS, message=f"Task {shown(task_id)} not found")
        return job

    def _fields(self, job: dict[str, Any]) -> dict[str, Any]:
        """The task fields of a job's status object."""
        created = job["created_at"]
        updated = job.get("settled_at", created)
        fields: dict[str, Any] = {
            "task_id": job["job_name"],
            "status": TASK_STATUS[job["status"]],
            "created_at": created,
            "last_updated_at": updated,
            "ttl_ms": None,
        }
        if self.retention is not None:
            # Kept until the retention has passed after it ends: at least this long.
            end = _ms(job["settled_at"]) if "settled_at" in job else self.jobs.clock()
            retention_ms = int(self.retention.total_seconds() * 1000)
            fields["ttl_ms"] = max(end - _ms(created), 0) + retention_ms
        if job["status"] == JobStatus.running:
            fields["poll_interval_ms"] = int(job["poll_after_seconds"] * 1000)
            if "retrying" in job:
                fields["status_message"] = retrying_message(job["retrying"])
            elif "progress" in job:
                fields["status_message"] = progress_message(job["progress"])
            elif "remaining_seconds" in job:
                fields["status_message"] = f"due in {job['remaining_seconds']} s"
        elif job["status"] == JobStatus.input_required:
            fields["status_message"] = job["question"]["message"]
        elif job["status"] == JobStatus.failed:
            fields["status_message"] = job["error"]["message"]
        return fields


def elicitation(question: dict[str, Any]) -> dict[str, Any]:
    """A job's question as the extension's input request: an elicitation form."""
    return {
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": question["message"],
            "requestedSchema": question["schema"],
        },
    }


def progress_message(progress: dict[str, Any]) -> str:
    """A job's progress in a line: ``3 of 5: writing section 3``."""
    done, total = progress["done"], progress.get("total")
    amount = f"{done:g} of {total:g}" if total is not None else f"{done:g} done"
    message = progress.get("message")
    return f"{amount}: {message}" if message else amount


def retrying_message(retrying: dict[str, Any]) -> str:
    """A retry under way, in a line: which step, which attempt, after which error."""
    of = f" of {retrying['of']}" if "of" in retrying else ""
    error = retrying["error"]
    return (
        f"retrying step {retrying['step']} (attempt {retrying['attempt']}{of} at "
        f"{retrying['at']}) after {error['type']}: {error['message']}"
    )


def _tool_result(result: Any) -> dict[str, Any]:
    """A job's result as the ``CallToolResult`` of its task.

    The start tools declare an object as their output, so a result that is not
    one (a timer's ``"complete"``) is given as ``{"result": ...}``.
    """
    structured = result if isinstance(result, dict) else {"result": result}
    text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
    return {
        "content": [{"type": "text", "text": text}],
        "structuredContent": structured,
        "isError": False,
    }


def can_name_a_job(task_id: str) -> bool:
    """Whether ``task_id`` could be a job's name (else no task has it)."""
    try:
        check_job_name(task_id)
    except ValueError:
        return False
    return is_job(task_id)


def _check_name_header(task_id: str) -> None:
    """Refuse a request whose ``Mcp-Name`` header names another task (SEP-2243)."""
    try:
        header = get_http_request().headers.get(MCP_NAME_HEADER)
    except RuntimeError:
        return  # not over HTTP
    if header is not None and decode_header_value(header) != task_id:
        raise MCPError(
            code=HEADER_MISMATCH,
            message=f"{MCP_NAME_HEADER} header does not match the request's taskId",
        )


def _ms(timestamp: str) -> int:
    """An ISO 8601 time of a status object in ms since the epoch."""
    return int(datetime.fromisoformat(timestamp).timestamp() * 1000)
