"""Pushes of task changes: ``subscriptions/listen`` with ``taskIds`` (SEP-2575 and the
tasks extension), so that a client need not poll ``tasks/get``.

A client on the 2026-07-28 protocol that declared the tasks extension sends
``subscriptions/listen`` with ``notifications: {"taskIds": [...]}``; the
response is a stream. Its first frame acknowledges what is honored; then a
``notifications/tasks`` (the whole task, as ``tasks/get`` would give it) is
sent each time one of those tasks moves between ``working``,
``input_required`` and an end. The stream ends when the client goes, or with
a ``SubscriptionsListenResult`` when the server stops.

A change is looked at once it is on disk: the in-process stores tell of each
job that ended or asked (``store/job_changes.py``), after its commit, and the
job's status is then read through the store. Where the engine tells nothing
(Postgres, whose other replicas change jobs too), each stream reads its
tasks again every ``poll_seconds``.

The kinds of notification the protocol itself defines (lists changed,
resources updated) are honored as asked, and never sent: the server's lists
do not change and it has no resources.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, Literal

from fastmcp.server.extensions import read_client_extension_settings
from fastmcp.utilities.tasks import TASKS_EXTENSION_ID
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY
from mcp_types import (
    INVALID_PARAMS,
    Notification,
    NotificationParams,
    SubscriptionFilter,
    SubscriptionsAcknowledgedNotification,
    SubscriptionsAcknowledgedNotificationParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
)
from mcp_types.jsonrpc import INTERNAL_ERROR, MISSING_REQUIRED_CLIENT_CAPABILITY
from pydantic import ConfigDict

from durable_mcp import owners
from durable_mcp.jobs.status import JobStatus
from durable_mcp.sdk_compat import DurablePromise
from durable_mcp.store.state import is_job
from durable_mcp.tasks import DurableTasks, can_name_a_job

#: The most tasks one stream follows, and the most streams open at once.
MOST_TASKS, MOST_STREAMS = 100, 1000


class TaskStatusParams(NotificationParams):
    """A ``notifications/tasks``'s params: the whole task, as ``tasks/get`` gives it."""

    model_config = ConfigDict(extra="allow")


class TaskStatusNotification(Notification[TaskStatusParams, Literal["notifications/tasks"]]):
    method: Literal["notifications/tasks"] = "notifications/tasks"


class TaskPushes:
    """Serves ``subscriptions/listen`` for the tasks of :class:`DurableTasks`.

    ``changed`` is given every change the store tells of (a job's end, a
    question asked or answered); ``poll_seconds``, where the store tells of
    none, is how often a stream reads its tasks again.
    """

    def __init__(self, tasks: DurableTasks, poll_seconds: float | None = None) -> None:
        self.tasks = tasks
        self.poll_seconds = poll_seconds
        self._kicks: dict[str, set[asyncio.Event]] = {}
        self._streams = 0

    def changed(self, promise: DurablePromise) -> None:
        """A job changed (its end, or its question): its listeners look again (they
        watch its id in the store)."""
        job_id = promise.id if is_job(promise.id) else promise.tags.get("resonate:origin", "")
        for kick in self._kicks.get(job_id, ()):
            kick.set()

    async def listen(
        self, ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        """One stream: acknowledge, then push each change of the tasks asked for."""
        subscription_id = ctx.request_id
        if subscription_id is None:
            raise MCPError(INVALID_PARAMS, "subscriptions/listen needs a request id")
        task_ids = self._task_ids(ctx, params.notifications)
        if self._streams >= MOST_STREAMS:
            raise MCPError(INTERNAL_ERROR, "Subscription limit reached")
        meta: dict[str, Any] = {SUBSCRIPTION_ID_META_KEY: subscription_id}
        kick = asyncio.Event()
        owner = owners.current()  # a task id is the caller's name of its job
        job_ids = [job_id for job_id in map(owner.job_id, task_ids) if job_id is not None]
        with self._watching(job_ids, kick):
            # Read before the acknowledgement: a client that reads its tasks
            # once acknowledged misses no change made in between.
            sent = {task_id: await self._state(task_id) for task_id in task_ids}
            await ctx.session.send_notification(
                SubscriptionsAcknowledgedNotification(
                    params=SubscriptionsAcknowledgedNotificationParams(
                        notifications=_honored(params.notifications, task_ids), _meta=meta
                    )
                ),
                related_request_id=subscription_id,
            )
            while not self.tasks.jobs.stopping.is_set():
                await self._woken(kick)
                kick.clear()
                for task_id in task_ids:
                    job = await self.tasks.jobs.read_status(task_id)
                    state = _state_of(job)
                    if state != sent[task_id] and job["status"] != JobStatus.not_found:
                        sent[task_id] = state
                        await self._push(ctx, job, meta)
        return SubscriptionsListenResult(_meta=meta)

    async def _push(
        self, ctx: ServerRequestContext[Any, Any], job: dict[str, Any], meta: dict[str, Any]
    ) -> None:
        """A ``notifications/tasks`` of ``job``'s task, on the stream."""
        task = self.tasks.detailed(job).model_dump(by_alias=True, mode="json", exclude_none=True)
        task.pop("resultType", None)
        pushed = TaskStatusNotification(params=TaskStatusParams(_meta=meta, **task))
        # An extension's notification: the session sends any model (it dumps it).
        await ctx.session.send_notification(pushed, related_request_id=ctx.request_id)  # type: ignore[arg-type]

    def _task_ids(
        self, ctx: ServerRequestContext[Any, Any], wanted: SubscriptionFilter
    ) -> list[str]:
        extra = wanted.model_extra or {}
        task_ids = extra.get("taskIds")
        if task_ids is None:
            return []
        if read_client_extension_settings(ctx, TASKS_EXTENSION_ID) is None:
            raise MCPError(
                code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                message="Missing required client capability",
                data={"requiredCapabilities": {"extensions": {TASKS_EXTENSION_ID: {}}}},
            )
        if not isinstance(task_ids, list) or not all(isinstance(t, str) for t in task_ids):
            raise MCPError(INVALID_PARAMS, "taskIds must be a list of task ids")
        if len(task_ids) > MOST_TASKS:
            raise MCPError(INVALID_PARAMS, f"a stream follows at most {MOST_TASKS} tasks")
        return list(dict.fromkeys(t for t in task_ids if can_name_a_job(t)))

    async def _state(self, task_id: str) -> tuple[str, str | None]:
        return _state_of(await self.tasks.jobs.read_status(task_id))

    async def _woken(self, kick: asyncio.Event) -> None:
        """Until a change is told, the server stops, or (polling) the time comes."""
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(kick.wait())]
        waits.append(asyncio.ensure_future(self.tasks.jobs.stopping.wait()))
        if self.poll_seconds is not None:
            waits.append(asyncio.ensure_future(self.tasks.jobs.sleeper(self.poll_seconds)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    @contextlib.contextmanager
    def _watching(self, task_ids: list[str], kick: asyncio.Event) -> Iterator[None]:
        self._streams += 1
        for task_id in task_ids:
            self._kicks.setdefault(task_id, set()).add(kick)
        try:
            yield
        finally:
            self._streams -= 1
            for task_id in task_ids:
                kicks = self._kicks.get(task_id, set())
                kicks.discard(kick)
                if not kicks:
                    self._kicks.pop(task_id, None)


def _state_of(job: dict[str, Any]) -> tuple[str, str | None]:
    """What a push is about: the status, and the question a job waits on."""
    question = job.get("question")
    return str(job["status"]), question["id"] if question else None


def _honored(wanted: SubscriptionFilter, task_ids: list[str]) -> SubscriptionFilter:
    """What the stream will honor: the protocol's own kinds as asked (none will
    fire), and the tasks that could be ones."""
    tasks = {"taskIds": task_ids} if task_ids else {}
    return SubscriptionFilter(
        tools_list_changed=True if wanted.tools_list_changed else None,
        prompts_list_changed=True if wanted.prompts_list_changed else None,
        resources_list_changed=True if wanted.resources_list_changed else None,
        resource_subscriptions=list(wanted.resource_subscriptions)
        if wanted.resource_subscriptions
        else None,
        **tasks,
    )
