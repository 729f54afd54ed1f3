"""The job layer: one durable promise per job, addressed by a deterministic id.

A job is a Resonate durable function started under an id the tool derives
from its arguments. This module owns what every long-running tool shares:
starting (or attaching to) a job, refusing an id that already names a job with
other arguments, mapping the promise's state onto the status vocabulary the
tools speak, and waiting for jobs with a bound. It holds no job state of its
own -- everything is read back from the store through Resonate, so a restart
or a second replica sees the same jobs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import pickle
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Any

from fastmcp.exceptions import ToolError
from resonate.error import ServerError
from resonate.resonate import Resonate
from resonate.types import PromiseRecord, Value

#: Called while :meth:`Jobs.wait` waits: (jobs finished, jobs asked for).
ProgressCallback = Callable[[int, int], Awaitable[None]]


class JobStatus(StrEnum):
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    not_found = "not_found"


class InvalidArgument(ToolError):
    """Bad input from the caller: a tool error the model can fix, logged as a warning."""

    def __init__(self, message: str) -> None:
        super().__init__(message, log_level=logging.WARNING)


class JobConflictError(InvalidArgument):
    """The id already names a job that was started with other arguments."""


class Jobs:
    """Start, look up and wait for durable jobs on one Resonate instance."""

    def __init__(
        self,
        resonate: Resonate,
        *,
        await_max_seconds: float,
        progress_interval_seconds: float = 5.0,
    ) -> None:
        self.resonate = resonate
        self.await_max_seconds = await_max_seconds
        self.progress_interval_seconds = progress_interval_seconds

    async def start(
        self,
        job_id: str,
        fn: Callable[..., Any],
        *args: Any,
        deadline: timedelta,
    ) -> dict[str, Any]:
        """Start ``fn(*args)`` as job ``job_id``, or attach to the job already there.

        ``fn`` must be registered with Resonate under its own name. ``deadline``
        bounds the whole job: past it the job fails with a timeout error.
        Returns the job's status object once the job is durably created. The
        same id with the same function and arguments attaches (one execution,
        one answer); with anything else it raises :class:`JobConflictError`
        and changes nothing.
        """
        wanted = (fn.__name__, json.loads(json.dumps(list(args))))
        record = await self._get(job_id)
        if record is None:
            handle = self.resonate.options(timeout=deadline).run(job_id, fn, *args)
            await handle.id()  # returns once the store has acknowledged the create
            record = await self._get(job_id)
            assert record is not None, f"job {job_id} vanished right after it was created"
        # Checked after the create as well: a concurrent start may have won the id.
        existing = _invocation_of(record)
        if existing != wanted:
            raise JobConflictError(
                f"job {job_id!r} already exists with other arguments "
                f"({_describe(existing)}); use another name, or the same arguments to attach"
            )
        return status_of(job_id, record)

    async def status(self, job_id: str) -> dict[str, Any]:
        """The job's status object, read from the store; never blocks on the job."""
        return status_of(job_id, await self._get(job_id))

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a running job; a finished or unknown job is reported unchanged.

        The job's promise settles as cancelled, durably: its function never
        completes it afterwards (a sleeping timer never fires, a job between
        steps stops at its next one), across restarts too.
        """
        record = await self._get(job_id)
        if record is not None and record.state == "pending":
            record = await self.resonate.promises.cancel(job_id, Value())
        return status_of(job_id, record)

    async def wait(
        self,
        job_ids: Sequence[str],
        timeout_seconds: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Wait until every job has finished or the bound passes; then their statuses.

        The wait is capped at ``await_max_seconds`` whatever ``timeout_seconds``
        asks for, so a call never outlives the client's patience. Jobs still
        running at the end are reported as ``running``. ``on_progress`` is
        called every ``progress_interval_seconds`` while waiting.
        """
        bound = self.await_max_seconds
        if timeout_seconds is not None:
            bound = min(bound, max(timeout_seconds, 0.0))
        deadline = time.monotonic() + bound

        waiters: dict[str, asyncio.Task[Any]] = {}
        for job_id in job_ids:
            with contextlib.suppress(ServerError):  # not found: nothing to wait for
                handle = await self.resonate.get(job_id)
                if not handle.done():
                    waiters[job_id] = asyncio.create_task(handle.result())
        try:
            pending = set(waiters.values())
            while pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                _, pending = await asyncio.wait(
                    pending, timeout=min(remaining, self.progress_interval_seconds)
                )
                if pending and on_progress is not None:
                    await on_progress(len(job_ids) - len(pending), len(job_ids))
        finally:
            for task in waiters.values():
                task.cancel()
        return {job_id: await self.status(job_id) for job_id in job_ids}

    async def _get(self, job_id: str) -> PromiseRecord | None:
        try:
            return await self.resonate.promises.get(job_id)
        except ServerError as exc:
            if exc.code == 404:
                return None
            raise


def status_of(job_id: str, record: PromiseRecord | None) -> dict[str, Any]:
    """Map a promise record onto the tools' status object.

    ``result`` is present for completed jobs, ``error`` (type and message) for
    failed ones.
    """
    if record is None:
        return {"job_name": job_id, "status": JobStatus.not_found}
    out: dict[str, Any] = {"job_name": job_id, "kind": _invocation_of(record)[0]}
    match record.state:
        case "pending":
            out["status"] = JobStatus.running
        case "resolved":
            out["status"] = JobStatus.completed
            out["result"] = record.value.data
        case "rejected":
            out["status"] = JobStatus.failed
            out["error"] = _error_of(record.value.data)
        case "rejected_timedout":
            out["status"] = JobStatus.failed
            out["error"] = {"type": "Timeout", "message": "the job ran past its deadline"}
        case "rejected_canceled":
            out["status"] = JobStatus.cancelled
    return out


def _invocation_of(record: PromiseRecord) -> tuple[Any, ...]:
    """(function name, JSON args) as the store recorded them when the job started."""
    data = record.param.data if isinstance(record.param.data, dict) else {}
    return data.get("func"), data.get("args")


def _describe(invocation: tuple[Any, ...]) -> str:
    func, args = invocation
    return f"{func}({', '.join(json.dumps(a) for a in args or [])})"


def _error_of(value: Any) -> dict[str, str]:
    """The ``{"type", "message"}`` of a rejected promise's stored error."""
    if not isinstance(value, dict):
        return {"type": "Error", "message": str(value)}
    error_type = "Error"
    pickled = value.get("__py_pickle")
    if isinstance(pickled, str):
        # The SDK stores the original exception pickled; we only read its type.
        with contextlib.suppress(Exception):
            error_type = type(pickle.loads(base64.b64decode(pickled))).__name__
    return {"type": error_type, "message": str(value.get("message", ""))}
