"""A bare MCP tasks client for in-process tests: opt in, start a task, send tasks/*.

FastMCP's own tasks client (``fastmcp-tasks``) pins an older FastMCP than the
server's, so the tests that use it run it in its own environment
(``examples/tasks_client.py``); this one speaks the same wire from the
server's environment, to check each field without starting processes.
"""

from __future__ import annotations

from typing import Any, Literal

import mcp_types
from fastmcp import Client
from fastmcp.utilities.tasks import TASKS_EXTENSION_ID
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from pydantic import ConfigDict, SerializeAsAny

from durable_mcp.tasks import TaskParams, UpdateTaskParams


class CreatedTask(mcp_types.Result):
    """A ``tools/call`` answered with a task, as the client reads it."""

    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"]


class TaskState(mcp_types.Result):
    """Any ``tasks/*`` answer, every field kept."""

    model_config = ConfigDict(extra="allow")


class TasksOptIn(ClientExtension):
    """Declares the tasks extension on every request; a task comes back as its fields."""

    identifier = TASKS_EXTENSION_ID

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=self._as_result)]

    async def _as_result(self, task: CreatedTask, ctx: ClaimContext) -> mcp_types.CallToolResult:
        fields = task.model_dump(by_alias=True, exclude_unset=True)
        return mcp_types.CallToolResult(content=[], structured_content=fields)


class TaskMethod(mcp_types.Request[TaskParams, str]):
    method: str
    params: SerializeAsAny[TaskParams]  # an UpdateTaskParams keeps its inputResponses


def tasks_client(server: Any) -> Client[Any]:
    """A client of ``server`` that opts in to tasks on every request."""
    return Client(server, extensions=[TasksOptIn()])


async def start_task(client: Client[Any], tool: str, **arguments: object) -> dict[str, Any]:
    """Call a start tool as a task: the ``CreateTaskResult`` fields, camelCase."""
    result = await client.call_tool(tool, arguments)
    assert isinstance(result.structured_content, dict), result
    return result.structured_content


async def task_method(
    client: Client[Any],
    method: str,
    task_id: str,
    input_responses: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Send ``tasks/get``, ``tasks/cancel`` or ``tasks/update`` (with ``input_responses``,
    default none): the answer's fields, camelCase, without its ``_meta``."""
    params = (
        UpdateTaskParams(task_id=task_id, input_responses=input_responses or {})
        if method == "tasks/update"
        else TaskParams(task_id=task_id)
    )
    request = TaskMethod(method=method, params=params)
    answer = await client.session.send_request(request, TaskState)
    fields = answer.model_dump(by_alias=True, exclude_unset=True)
    fields.pop("_meta", None)  # the server's info
    return fields
