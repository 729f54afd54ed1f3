"""The job layer: one durable promise per job, addressed by a deterministic id.

A job is a Resonate durable function started under an id the tool derives
from its arguments. This module owns what every long-running tool shares:
starting (or attaching to) a job, refusing an id that already names a job with
other arguments, mapping the promise's state onto the status vocabulary the
tools speak, cancelling, and waiting with a bound. It holds no job state of
its own -- everything is read back from the store through Resonate, so a
restart or a second replica sees the same jobs.

A new durable tool is a durable function plus a start tool::

    jobs.register(countdown, deadline=timedelta(hours=1))

    @jobs.starter(mcp)
    async def start_countdown(seconds: int) -> Start:
        # The docstring, as the model's description of the tool, goes here.
        return Start(f"countdown_{seconds}", countdown, seconds)

``probe_status``, ``await_result``, ``cancel_job`` and ``list_jobs`` then work
for its jobs as for any other.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import datetime as dt
import functools
import inspect
import json
import logging
import pickle
import typing
import weakref
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from pydantic import Field
from resonate.codec import Codec, NoopEncryptor
from resonate.connections.local import DurablePromise
from resonate.error import ServerError
from resonate.resonate import Resonate
from resonate.send import parse_promise
from resonate.timing import Clock, Sleeper, now_ms, sleep
from resonate.types import PromiseRecord, Value
from resonate_base.error import ConnectorError

from durable_mcp.events import job_event
from durable_mcp.store.state import JOB_TAG, KIND_TAG, STATUS_TAG, is_job

#: Called while :meth:`Jobs.wait` waits: (jobs finished, jobs asked for).
ProgressCallback = Callable[[int, int], Awaitable[None]]

#: Extra status fields for one kind of job: (its args, when it was created in ms, now in ms).
Details = Callable[[list[Any], int, int], dict[str, Any]]

#: How often a wait reads the store, in case a job's settle was not pushed.
RECHECK = 1.0

#: How long a job may run when its kind names no deadline.
DEFAULT_DEADLINE = timedelta(hours=1)

#: Polling hints grow with a job's age: a quarter of it, from 1 s up to 30 s.
MIN_POLL_SECONDS, MAX_POLL_SECONDS = 1.0, 30.0

#: When a busy server asks a caller to try a start again.
BUSY_RETRY_SECONDS = 10

#: The argument every start tool gains (see :meth:`Jobs.starter`).
RETRY_PARAMETER = inspect.Parameter(
    "retry",
    inspect.Parameter.KEYWORD_ONLY,
    default=False,
    annotation=Annotated[
        bool,
        Field(
            description="If the job with this name failed or was cancelled, start it again "
            "(with these arguments). A running or completed job is returned as it is."
        ),
    ],
)


#: Decodes the store's promise records the way the SDK does (values are plain JSON).
_CODEC = Codec(NoopEncryptor())


class JobStatus(StrEnum):
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    not_found = "not_found"


#: Lists jobs where the engine does not search its promises but keeps an index
#: of them (Postgres): (status, kind, limit, cursor) -> what :meth:`Jobs.list` answers.
JobLister = Callable[[JobStatus | None, str | None, int, str | None], Awaitable[dict[str, Any]]]


#: What list_jobs shows of each job.
LISTED = ("job_name", "kind", "status", "created_at", "settled_at")

#: The store's promise state for each job status (``failed`` and ``cancelled``
#: are both ``rejected_*``, told apart afterwards).
_SEARCH_STATE = {
    JobStatus.running: "pending",
    JobStatus.completed: "resolved",
    JobStatus.failed: "rejected",
    JobStatus.cancelled: "rejected",
}


class InvalidArgument(ToolError):
    """Bad input from the caller: a tool error the model can fix, logged as a warning."""

    def __init__(self, message: str) -> None:
        super().__init__(message, log_level=logging.WARNING)


def unknown_cursor(cursor: str) -> InvalidArgument:
    return InvalidArgument(
        f"cursor {cursor!r} names no job (it may have been removed): list again without a cursor"
    )


class JobConflictError(InvalidArgument):
    """The id already names a job that was started with other arguments."""


class Busy(ToolError):
    """As many jobs are running as the server takes: a new one must wait."""

    def __init__(self, running: int) -> None:
        super().__init__(
            f"busy: {running} jobs are running, the most this server runs at once "
            f"(DURABLE_MCP_MAX_RUNNING_JOBS); retry after {BUSY_RETRY_SECONDS} s",
            log_level=logging.WARNING,
        )


class EngineUnavailable(ToolError):
    """The engine could not do what was asked; nothing was changed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, log_level=logging.WARNING)


class Start:
    """What a start tool returns: start ``fn(*args)`` as the job ``job_name``.

    ``deadline`` overrides the kind's own for this job (a timer's depends on
    its length).
    """

    def __init__(
        self, job_name: str, fn: Callable[..., Any], *args: Any, deadline: timedelta | None = None
    ) -> None:
        self.job_name = job_name
        self.fn = fn
        self.args = args
        self.deadline = deadline


@dataclass
class StartedJob:
    """The status object of the job a start tool started or attached to, once it has."""

    job: dict[str, Any] | None = None


_started_job: contextvars.ContextVar[StartedJob | None] = contextvars.ContextVar(
    "durable_mcp_started_job", default=None
)


@contextlib.contextmanager
def starting_job() -> Iterator[StartedJob]:
    """Catch the job of the start tool called within (the tasks extension answers with it)."""
    started = StartedJob()
    token = _started_job.set(started)
    try:
        yield started
    finally:
        _started_job.reset(token)


@dataclass(frozen=True)
class JobKind:
    deadline: timedelta
    details: Details | None


class Jobs:
    """Start, look up, cancel and wait for durable jobs on one Resonate instance."""

    def __init__(
        self,
        resonate: Resonate,
        *,
        await_max_seconds: float,
        progress_interval_seconds: float = 5.0,
        deadlines: Mapping[str, timedelta] | None = None,
        clock: Clock = now_ms,
        sleeper: Sleeper = sleep,
        running_jobs: Callable[[], int] | None = None,
        max_running_jobs: int | None = None,
        forget: Callable[[str], Awaitable[None]] | None = None,
        stopping: asyncio.Event | None = None,
        lister: JobLister | None = None,
        registered: Collection[Callable[..., Any]] = (),
    ) -> None:
        """A new job is refused as :class:`Busy` while ``running_jobs()`` is at
        ``max_running_jobs`` (attaching to a job never is). ``forget(id)``
        removes a failed or cancelled job, for ``retry``; None where the engine
        cannot. ``lister`` lists the jobs where the engine cannot search its
        promises. Once ``stopping`` is set (the server is shutting down), every
        :meth:`wait` answers at once; the jobs go on at the next start. The
        engine answers only what is durable (the embedded store commits before
        it answers), so nothing is reported that a crash could undo.
        ``clock`` (ms since the epoch) and ``sleeper`` are the SDK's time seams:
        statuses and waits take their time from them. ``registered`` are the
        durable functions the engine was started with (`durable-mcp serve`):
        :meth:`register` does not register them again.
        """
        self.resonate = resonate
        self.running_jobs = running_jobs
        self.max_running_jobs = max_running_jobs
        self.forget = forget
        self.lister = lister
        self.registered = tuple(registered)
        self._starting: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self.await_max_seconds = await_max_seconds
        self.progress_interval_seconds = progress_interval_seconds
        self.deadlines = dict(deadlines or {})  # configured, by kind: they win
        self.kinds: dict[str, JobKind] = {}
        self.clock = clock
        self.sleeper = sleeper
        self.stopping = stopping if stopping is not None else asyncio.Event()

    def register(
        self,
        fn: Callable[..., Any],
        *,
        deadline: timedelta = DEFAULT_DEADLINE,
        details: Details | None = None,
    ) -> None:
        """Make the durable function ``fn`` a kind of job, named after it.

        ``deadline`` is the longest its jobs may run before they fail with a
        timeout error (``DURABLE_MCP_JOB_DEADLINES`` overrides it);
        ``details`` adds fields to its jobs' status objects.
        """
        if fn not in self.registered:
            self.resonate.register(fn)
        kind = fn.__name__
        self.kinds[kind] = JobKind(self.deadlines.get(kind, deadline), details)

    def starter(
        self, mcp: FastMCP, *, result: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    ) -> Callable[[Callable[..., Awaitable[Start]]], Callable[..., Awaitable[dict[str, Any]]]]:
        """Decorate a start tool: its body says which job to start, this starts it.

        The tool keeps its name, docstring and typed arguments (the schema the
        model reads), gains ``retry`` (start a failed or cancelled job again),
        and returns ``{"job_name", "status"}`` at once, or ``result(status
        object)`` when given; a failed or cancelled job adds a ``hint``.
        """

        def decorate(
            tool: Callable[..., Awaitable[Start]],
        ) -> Callable[..., Awaitable[dict[str, Any]]]:
            @functools.wraps(tool)
            async def start_tool(*args: Any, retry: bool = False, **kwargs: Any) -> dict[str, Any]:
                start = await tool(*args, **kwargs)
                job = await self.start(
                    start.job_name, start.fn, *start.args, deadline=start.deadline, retry=retry
                )
                if (started := _started_job.get()) is not None:
                    started.job = job
                out = result(job) if result is not None else _started(job)
                if job["status"] in (JobStatus.failed, JobStatus.cancelled):
                    out["hint"] = f"this job is {job['status']}; pass retry=true to run it again"
                return out

            # FastMCP reads the schema off the signature: the tool's own, resolved
            # (its module may use string annotations), plus retry, returning a dict.
            hints = typing.get_type_hints(tool, include_extras=True)
            signature = inspect.signature(tool)
            if "retry" in signature.parameters:
                raise TypeError(f"start tool {tool.__name__} has an argument named retry")
            parameters = [
                p.replace(annotation=hints[p.name]) for p in signature.parameters.values()
            ]
            parameters.append(RETRY_PARAMETER)
            hints |= {"retry": RETRY_PARAMETER.annotation, "return": dict[str, Any]}
            start_tool.__signature__ = signature.replace(  # type: ignore[attr-defined]
                parameters=parameters, return_annotation=dict[str, Any]
            )
            start_tool.__annotations__ = hints
            del start_tool.__wrapped__
            mcp.tool(start_tool)
            return start_tool

        return decorate

    async def start(
        self,
        job_id: str,
        fn: Callable[..., Any],
        *args: Any,
        deadline: timedelta | None = None,
        retry: bool = False,
    ) -> dict[str, Any]:
        r"""Start ``fn(*args)`` as job ``job_id``, or attach to the job already there.

        ``fn`` must have been :meth:`register`\ ed. ``deadline`` (default: the
        kind's) bounds the whole job: past it the job fails with a timeout error.
        Returns the job's status object once the job is durably created. The
        same id with the same function and arguments attaches (one execution,
        one answer); with anything else it raises :class:`JobConflictError`
        and changes nothing. With ``retry``, a failed or cancelled job of that
        id is removed first and started again, with these arguments; a
        running or completed one is attached to as without it. A name that
        begins with another kind's name and ``_`` is that kind's to use.
        """
        owner = self._owner_of(job_id)
        if owner not in (None, fn.__name__):
            raise InvalidArgument(
                f"the name {job_id!r} is kept for {owner} jobs (names that begin with "
                f"'{owner}_'); choose another name"
            )
        # One start of an id at a time in this process, so that of concurrent
        # starts exactly one creates the job (and logs it) and the rest attach.
        async with self._starting.setdefault(job_id, asyncio.Lock()):
            return await self._start(job_id, fn, args, deadline, retry)

    async def _start(
        self,
        job_id: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        deadline: timedelta | None,
        retry: bool,
    ) -> dict[str, Any]:
        wanted = (fn.__name__, json.loads(json.dumps(list(args))))
        record = await self._get(job_id)
        if retry and record is not None and record.state.startswith("rejected"):
            if self.forget is None:
                raise InvalidArgument("retry needs the embedded or memory store; use another name")
            self._refuse_if_busy()  # before the old job is removed, not after
            with _engine_errors():
                await self.forget(job_id)  # only if still failed: two retries make one job
            record = await self._get(job_id)
        created = record is None
        if record is None:
            self._refuse_if_busy()
            timeout = deadline or self.kinds[fn.__name__].deadline
            handle = self.resonate.options(timeout=timeout).run(job_id, fn, *args)
            with _engine_errors():
                await handle.id()  # the store has the job, on disk
            record = await self._get(job_id)
            assert record is not None, f"job {job_id} vanished right after it was created"
        # Checked after the create as well: a concurrent start may have won the id.
        existing = _invocation_of(record)
        if existing != wanted:
            # retry replaces a failed or cancelled job only (not a running or completed one).
            replaceable = not retry and record.state.startswith("rejected")
            hint = ", or retry=true to replace it" if replaceable else ""
            raise JobConflictError(
                f"job {job_id!r} already exists with other arguments "
                f"({_describe(existing)}); use another name, or the same arguments to attach"
                f"{hint}"
            )
        if created:
            job_event("started", job_id, kind=fn.__name__)  # on disk by now
        return self.status_of(job_id, record)

    def _owner_of(self, job_id: str) -> str | None:
        """The kind whose own names ``job_id`` has (``weather_data_...``), if any."""
        return max((k for k in self.kinds if job_id.startswith(f"{k}_")), key=len, default=None)

    async def status(self, job_id: str) -> dict[str, Any]:
        """The job's status object, read from the store; never blocks on the job."""
        return self.status_of(job_id, await self._get(job_id))

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a running job; a finished or unknown job is reported unchanged.

        The job's promise settles as cancelled, durably: its function never
        completes it afterwards (a sleeping timer never fires, a job between
        steps stops at its next one), across restarts too.
        """
        record = await self._get(job_id)
        if record is not None and record.state == "pending":
            with _engine_errors():
                record = await self.resonate.promises.cancel(job_id, Value())
        return self.status_of(job_id, record)

    async def list(
        self,
        status: JobStatus | None = None,
        kind: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Jobs newest first, filtered by status and kind, ``limit`` at a time.

        Built on the store's promise search, or on the engine's ``lister``;
        ``next_cursor`` (the last job listed) continues the listing, unshifted
        by jobs started meanwhile.
        """
        if status == JobStatus.not_found:
            raise InvalidArgument("status not_found names no job; use running, completed, ...")
        if self.lister is not None:
            with _engine_errors():
                return await self.lister(status, kind, limit, cursor)
        state = _SEARCH_STATE.get(status) if status else None
        # The in-process stores answer these tags from their job index: only
        # jobs of this status and kind, so one page of ``limit`` is the answer.
        tags = {"resonate:scope": "global", JOB_TAG: "true"}
        if status is not None:
            tags[STATUS_TAG] = status.value
        if kind is not None:
            tags[KIND_TAG] = kind
        found: list[dict[str, Any]] = []
        while True:
            try:
                with _engine_errors():
                    page = await self.resonate.promises.search(state, tags, limit, cursor)
            except ServerError as exc:
                if exc.code == 400 and cursor:
                    raise unknown_cursor(cursor) from exc
                raise InvalidArgument(
                    f"cannot list jobs: this engine does not search its promises ({exc}); "
                    "list_jobs works on the embedded and memory stores"
                ) from exc
            for record in page.promises:
                cursor = record.id
                if not is_job(record.id):
                    continue  # a step of a job (its durable sleeps), not a job
                job = self.status_of(record.id, record)
                if (status is None or job["status"] == status) and kind in (None, job["kind"]):
                    found.append({key: job[key] for key in LISTED if key in job})
                    if len(found) == limit:
                        return {"jobs": found, "next_cursor": cursor}
            if page.cursor is None:
                return {"jobs": found, "next_cursor": None}
            cursor = page.cursor

    async def wait(
        self,
        job_ids: Sequence[str],
        timeout_seconds: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Wait until every job has finished or the bound passes; then their statuses.

        The wait is capped at ``await_max_seconds`` whatever ``timeout_seconds``
        asks for, so a call never outlives the client's patience. Jobs still
        running at the end are reported as ``running``, as they are when the
        server starts stopping. ``on_progress`` is called every
        ``progress_interval_seconds`` while waiting.
        """
        bound = self.await_max_seconds
        if timeout_seconds is not None:
            bound = min(bound, max(timeout_seconds, 0.0))
        deadline = self.clock() + int(bound * 1000)

        waiters: dict[str, asyncio.Task[Any]] = {}
        for job_id in job_ids:
            record = await self._get(job_id)
            if record is None or record.state != "pending":
                continue  # finished, or not found: nothing to wait for
            with contextlib.suppress(ServerError):  # removed meanwhile
                handle = await self.resonate.get(job_id)
                waiters[job_id] = asyncio.create_task(handle.result())
        stopping = asyncio.create_task(self.stopping.wait())  # the server is shutting down
        try:
            pending = set(waiters.values())
            interval = int(self.progress_interval_seconds * 1000)
            next_progress = self.clock() + interval
            while pending and not stopping.done():
                now = self.clock()
                if now >= deadline:
                    break
                wake = min(deadline, now + int(RECHECK * 1000))
                if on_progress is not None:  # else next_progress never moves: no pause at all
                    wake = min(wake, next_progress)
                pending = await self._all_done_or_slept(pending, (wake - now) / 1000, stopping)
                # A settle is pushed to us, but a push can be lost (a dropped
                # connection; the SDK drops one it cannot parse): look as well.
                for job_id, task in waiters.items():
                    if task in pending:
                        record = await self._get(job_id)
                        if record is None or record.state != "pending":
                            pending.discard(task)
                if pending and on_progress is not None and self.clock() >= next_progress:
                    next_progress = self.clock() + interval  # after a stall: no burst of reports
                    await on_progress(len(job_ids) - len(pending), len(job_ids))
        finally:
            stopping.cancel()
            for task in waiters.values():
                task.cancel()
        return {job_id: await self.status(job_id) for job_id in job_ids}

    async def _all_done_or_slept(
        self, tasks: set[asyncio.Task[Any]], seconds: float, stopping: asyncio.Task[Any]
    ) -> set[asyncio.Task[Any]]:
        """Wait until every task is done, ``seconds`` pass on the sleeper or the server
        starts stopping; the undone tasks.

        ``asyncio.wait``'s own timeout would read the event loop's clock: the
        sleeper is what lets a test's fake time end a wait.
        """
        all_done = asyncio.ensure_future(asyncio.wait(tasks))
        slept = asyncio.ensure_future(self.sleeper(seconds))
        try:
            await asyncio.wait({all_done, slept, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            all_done.cancel()  # stops waiting; the tasks themselves run on
            slept.cancel()
        return {task for task in tasks if not task.done()}

    def status_of(self, job_id: str, record: PromiseRecord | None) -> dict[str, Any]:
        return job_status(job_id, record, self.clock(), self.kinds)

    def settled(self, promise: DurablePromise) -> None:
        """Log a job's end (the in-process store calls this as the job's promise settles)."""
        job = stored_job_status(promise, self.clock())
        error = job.get("error") or {}
        job_event(job["status"], promise.id, kind=job["kind"], **error)

    def _refuse_if_busy(self) -> None:
        if self.running_jobs is None or self.max_running_jobs is None:
            return
        running = self.running_jobs()
        if running >= self.max_running_jobs:
            raise Busy(running)

    async def _get(self, job_id: str) -> PromiseRecord | None:
        try:
            with _engine_errors():
                return await self.resonate.promises.get(job_id)
        except ServerError as exc:
            if exc.code == 404:
                return None
            raise


@contextlib.contextmanager
def _engine_errors() -> Iterator[None]:
    """The engine's own failures (a full disk, say) as one line to the caller.

    The engine has logged them already, so the tool error is a warning.
    """
    try:
        yield
    except ConnectorError as exc:
        raise EngineUnavailable(str(exc.error)) from exc


def job_status(
    job_id: str,
    record: PromiseRecord | None,
    now: int,
    kinds: Mapping[str, JobKind] | None = None,
) -> dict[str, Any]:
    """Map a promise record onto the tools' status object.

    ``result`` is present for completed jobs, ``error`` (type and message)
    for failed ones; times are ISO 8601 in UTC; ``poll_after_seconds``
    suggests when to look again at a running job, later the older it is.
    """
    if record is None:
        return {"job_name": job_id, "status": JobStatus.not_found}
    kind, args = _invocation_of(record)
    out: dict[str, Any] = {"job_name": job_id, "kind": kind}
    out["created_at"] = iso(record.created_at)
    if record.settled_at is not None:
        out["settled_at"] = iso(record.settled_at)
    match record.state:
        case "pending":
            out["status"] = JobStatus.running
            age = max(now - record.created_at, 0) / 1000
            poll = min(max(age / 4, MIN_POLL_SECONDS), MAX_POLL_SECONDS)
            job_kind = (kinds or {}).get(kind)
            if job_kind is not None and job_kind.details is not None:
                out |= job_kind.details(args or [], record.created_at, now)
                if "remaining_seconds" in out:  # no point looking before it is due
                    poll = min(poll, max(out["remaining_seconds"], 0.5))
            out["poll_after_seconds"] = round(poll, 1)
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


def stored_job_status(promise: DurablePromise, now: int) -> dict[str, Any]:
    """:func:`job_status` of a promise read straight from the in-process state."""
    record = _CODEC.decode_promise(parse_promise({"promise": promise.to_record()}))
    return job_status(promise.id, record, now)


def iso(ms: int) -> str:
    """A time in ms since the epoch as ISO 8601, UTC."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


def _invocation_of(record: PromiseRecord) -> tuple[Any, ...]:
    """(function name, JSON args) as the store recorded them when the job started."""
    data = record.param.data if isinstance(record.param.data, dict) else {}
    return data.get("func"), data.get("args")


def _started(job: dict[str, Any]) -> dict[str, Any]:
    return {"job_name": job["job_name"], "status": job["status"]}


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
