"""The job service: start or attach, cancel, list and wait, on one Resonate instance.

A job is a durable function started under a name its start tool derives from
its arguments (see ``registry``), and belongs to whoever started it: every
method acts as the current request's owner (``owners.current()``), on that
owner's jobs only, and names them as the owner does (the store's id of bob's
``tea`` is ``~bob/tea``). Another owner's job is not found, as a job that does
not exist is. This module owns what every job shares:
starting (or attaching to) a job, refusing an id that already names a job with
other arguments, cancelling, listing, and waiting with a bound. It holds no job
state of its own -- everything is read back from the store through Resonate
(and mapped by ``status``), so a restart or a second replica sees the same jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import weakref
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import msgspec
from fastmcp.exceptions import ToolError
from resonate.codec import enc_hook
from resonate.error import ServerError
from resonate.resonate import Resonate
from resonate.timing import Clock, Sleeper, now_ms, sleep
from resonate.types import PromiseRecord, Value
from resonate_base.error import ConnectorError

from durable_mcp import owners, tracing
from durable_mcp.events import job_event
from durable_mcp.jobs.notes import JobNotes
from durable_mcp.jobs.questions import (
    ACTIONS,
    Question,
    QuestionFinder,
    answer_value,
    check_answer,
    no_questions,
    question_of,
)
from durable_mcp.jobs.registry import (
    DEFAULT_DEADLINE,
    JobKind,
    check_job_name,
    shown,
)
from durable_mcp.jobs.status import (
    LISTED,
    Details,
    JobStatus,
    describe,
    invocation_of,
    status_from_promise,
    status_from_record,
)
from durable_mcp.sdk_compat import DurablePromise
from durable_mcp.store.job_changes import is_job_end
from durable_mcp.store.state import JOB_TAG, KIND_TAG, NAME_TAG, OWNER_TAG, STATUS_TAG, is_job

#: Called while :meth:`Jobs.wait` waits: (progress, total or None, message).
ProgressCallback = Callable[[float, float | None, str], Awaitable[None]]

#: How often a wait reads the store, in case a job's settle was not pushed.
RECHECK = 1.0

#: When a busy server asks a caller to try a start again.
BUSY_RETRY_SECONDS = 10

#: Lists jobs where the engine does not search its promises but keeps an index
#: of them (Postgres): (status, kind, limit, cursor, name, owner) -> what
#: :meth:`Jobs.list` answers, with the store's ids as names; the cursor is an id,
#: the owner a key (None: every owner's jobs).
JobLister = Callable[
    [JobStatus | None, str | None, int, str | None, str | None, str | None],
    Awaitable[dict[str, Any]],
]


#: The store's promise state for each job status (``failed`` and ``cancelled``
#: are both ``rejected_*``, told apart afterwards).
_SEARCH_STATE = {
    JobStatus.running: "pending",
    JobStatus.input_required: "pending",
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
        f"cursor {shown(cursor)} names no job (it may have been removed): list again without "
        "a cursor"
    )


class JobConflictError(InvalidArgument):
    """The id already names a job that was started with other arguments."""


class AnswerTaken(InvalidArgument):
    """Another caller answered the question first: that answer is the one taken."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"the question of job {shown(job_id)} was answered already (another answer was "
            "taken first); probe_status shows how the job goes on"
        )


class Busy(ToolError):
    """As many jobs are running as the server takes, or as one owner may run: a new one
    must wait."""

    def __init__(self, running: int, *, yours: bool = False) -> None:
        whose = (
            "of yours are running, the most one owner runs at once "
            "(DURABLE_MCP_MAX_RUNNING_JOBS_PER_OWNER)"
            if yours
            else "are running, the most this server runs at once (DURABLE_MCP_MAX_RUNNING_JOBS)"
        )
        super().__init__(
            f"busy: {running} jobs {whose}; retry after {BUSY_RETRY_SECONDS} s",
            log_level=logging.WARNING,
        )


class EngineUnavailable(ToolError):
    """The engine could not do what was asked; nothing was changed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, log_level=logging.WARNING)


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


def report_started(job: dict[str, Any]) -> None:
    """Hand the job a start tool started or attached to to :func:`starting_job`'s caller."""
    if (started := _started_job.get()) is not None:
        started.job = job


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
        running_jobs: Callable[[str | None], int] | None = None,
        max_running_jobs: int | None = None,
        max_running_jobs_per_owner: int | None = None,
        forget: Callable[[str], Awaitable[None]] | None = None,
        stopping: asyncio.Event | None = None,
        lister: JobLister | None = None,
        registered: Collection[Callable[..., Any]] = (),
        notes: JobNotes | None = None,
        questions: QuestionFinder | None = None,
    ) -> None:
        """A new job is refused as :class:`Busy` while ``running_jobs(None)`` (all
        owners') is at ``max_running_jobs``, or the caller's own
        (``running_jobs(key)``) at ``max_running_jobs_per_owner`` (attaching to a
        job never is). ``forget(id)``
        removes a failed or cancelled job, for ``retry``; None where the engine
        cannot. ``lister`` lists the jobs where the engine cannot search its
        promises. Once ``stopping`` is set (the server is shutting down), every
        :meth:`wait` answers at once; the jobs go on at the next start. The
        engine answers only what is durable (the embedded store commits before
        it answers), so nothing is reported that a crash could undo.
        ``clock`` (ms since the epoch) and ``sleeper`` are the SDK's time seams:
        statuses and waits take their time from them. ``registered`` are the
        durable functions the engine was started with (`durable-mcp serve`):
        :meth:`register` does not register them again. ``notes`` are what the
        jobs say of themselves as they run (progress, a retry under way), and
        ``questions`` finds the questions they wait to have answered: statuses
        show both.
        """
        self.resonate = resonate
        self.running_jobs = running_jobs
        self.max_running_jobs = max_running_jobs
        self.max_running_jobs_per_owner = max_running_jobs_per_owner
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
        #: The durable function of each kind (to run a failed or cancelled job again).
        self.functions: dict[str, Callable[..., Any]] = {}
        #: Told ``(job_id, kind)`` of each job this process creates, once it is on disk.
        self.on_started: list[Callable[[str, str], None]] = []
        self.clock = clock
        self.sleeper = sleeper
        self.stopping = stopping if stopping is not None else asyncio.Event()
        self.notes = notes if notes is not None else JobNotes(clock)
        self.questions = questions or no_questions
        self._answering: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

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
        self.functions[kind] = fn

    async def start(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        deadline: timedelta | None = None,
        retry: bool = False,
    ) -> dict[str, Any]:
        r"""Start ``fn(*args)`` as the caller's job ``name``, or attach to the job already there.

        ``fn`` must have been :meth:`register`\ ed; ``name`` must pass
        ``registry.check_job_name`` (else :class:`InvalidArgument`). ``deadline`` (default: the
        kind's) bounds the whole job: past it the job fails with a timeout error.
        Returns the job's status object once the job is durably created. The
        same id with the same function and arguments attaches (one execution,
        one answer); with anything else it raises :class:`JobConflictError`
        and changes nothing. With ``retry``, a failed or cancelled job of that
        id is removed first and started again, with these arguments; a
        running or completed one is attached to as without it. A name that
        begins with another kind's name and ``_`` is that kind's to use.
        """
        try:
            check_job_name(name)
            if name.startswith(owners.OWNED):
                raise ValueError(f"a job name must not begin with {owners.OWNED!r}")
        except ValueError as exc:
            raise InvalidArgument(f"cannot start job {shown(name)}: {exc}") from exc
        kind = self._kind_of_name(name)
        if kind not in (None, fn.__name__):
            raise InvalidArgument(
                f"the name {shown(name)} is kept for {kind} jobs (names that begin with "
                f"'{kind}_'); choose another name"
            )
        stored = owners.current().job_id(name)
        assert stored is not None, "a name that begins with no ~ is every owner's to use"
        return await self._start_once(stored, name, fn, args, deadline, retry)

    async def _start_once(
        self,
        job_id: str,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        deadline: timedelta | None,
        retry: bool,
    ) -> dict[str, Any]:
        # One start of an id at a time in this process, so that of concurrent
        # starts exactly one creates the job (and logs it) and the rest attach.
        async with self._starting.setdefault(job_id, asyncio.Lock()):
            return await self._start(job_id, name, fn, args, deadline, retry)

    async def _start(
        self,
        job_id: str,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        deadline: timedelta | None,
        retry: bool,
    ) -> dict[str, Any]:
        # As the store keeps them (and the same every time: sets sorted), so that
        # the same call compares equal to the job it started.
        args = tuple(msgspec.to_builtins(list(args), enc_hook=enc_hook, order="deterministic"))
        wanted = (fn.__name__, list(args))
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
            # The trace of the call that starts it, kept with the job: its runs join it.
            tracing.keep_trace(self.notes, job_id)
            handle = self.resonate.options(timeout=timeout).run(job_id, fn, *args)
            try:
                with _engine_errors():
                    await handle.id()  # the store has the job, on disk
            except BaseException:
                self.notes.drop(job_id, tracing.TRACE_NOTE)  # no job to keep it with
                raise
            record = await self._get(job_id)
            assert record is not None, f"job {job_id} vanished right after it was created"
        # Checked after the create as well: a concurrent start may have won the id.
        existing = invocation_of(record)
        if existing != wanted:
            # retry replaces a failed or cancelled job only (not a running or completed one).
            replaceable = not retry and record.state.startswith("rejected")
            hint = ", or retry=true to replace it" if replaceable else ""
            raise JobConflictError(
                f"job {shown(name)} already exists with other arguments "
                f"({describe(existing)}); use another name, or the same arguments to attach"
                f"{hint}"
            )
        if created:
            job_event("started", job_id, kind=fn.__name__)  # on disk by now
            for told in self.on_started:
                told(job_id, fn.__name__)
        return await self._status(job_id, record)

    def _kind_of_name(self, name: str) -> str | None:
        """The kind whose own names ``name`` has (``weather_data_...``), if any."""
        return max((k for k in self.kinds if name.startswith(f"{k}_")), key=len, default=None)

    async def read_status(self, name: str) -> dict[str, Any]:
        """The job's status object, read from the store; never blocks on the job.

        A job being started again (``retry``) is removed and created anew: a
        read in between waits for the new one (a few ms) rather than say it is gone.
        """
        job_id = owners.current().job_id(name)
        if job_id is None:
            return status_from_record(name, None, self.clock())
        record = await self._get(job_id)
        starting = self._starting.get(job_id)
        if record is None and starting is not None and starting.locked():
            async with starting:
                record = await self._get(job_id)
        return await self._status(job_id, record)

    async def retry(self, name: str) -> dict[str, Any]:
        """Start a failed or cancelled job again, with its own arguments (``retry=true``
        on its start tool, for someone who has the job's name only)."""
        job_id, record = await self._owned(name)
        if job_id is None or record is None:
            raise InvalidArgument(f"no job is named {shown(name)}")
        if not record.state.startswith("rejected"):
            status = (await self._status(job_id, record))["status"]
            raise InvalidArgument(
                f"job {shown(name)} is {status}: only a failed or cancelled job can be retried"
            )
        kind, args = invocation_of(record)
        fn = self.functions.get(kind) if kind is not None else None
        if fn is None:
            raise InvalidArgument(f"this server has no {kind} jobs to run {shown(name)} again")
        return await self._start_once(job_id, name, fn, tuple(args or []), None, True)

    async def invocation(self, name: str) -> tuple[str, list[Any]] | None:
        """The job's kind and arguments, as stored; None if there is no such job."""
        _, record = await self._owned(name)
        if record is None:
            return None
        kind, args = invocation_of(record)
        return kind or "", list(args or [])

    async def cancel(self, name: str) -> dict[str, Any]:
        """Cancel a running job; a finished or unknown job is reported unchanged.

        The job's promise settles as cancelled, durably: its function never
        completes it afterwards (a sleeping timer never fires, a job between
        steps stops at its next one), across restarts too.
        """
        job_id, record = await self._owned(name)
        if job_id is None:
            return status_from_record(name, None, self.clock())
        if record is not None and record.state == "pending":
            with _engine_errors():
                record = await self.resonate.promises.cancel(job_id, Value())
        return await self._status(job_id, record)

    async def list(
        self,
        status: JobStatus | None = None,
        kind: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Jobs newest first, filtered by status and kind, ``limit`` at a time;
        with ``name``, only the jobs whose names contain it.

        Built on the store's promise search, or on the engine's ``lister``;
        ``next_cursor`` (the last job listed) continues the listing, unshifted
        by jobs started meanwhile.
        """
        if status == JobStatus.not_found:
            raise InvalidArgument("status not_found names no job; use running, completed, ...")
        owner = owners.current()
        given_cursor = cursor
        if cursor is not None:
            cursor = owner.job_id(cursor)
            if cursor is None:
                raise unknown_cursor(given_cursor or "")
        if self.lister is not None:
            with _engine_errors():
                listed = await self.lister(status, kind, limit, cursor, name, owner.sees)
            for job in listed["jobs"]:
                job |= _named(owner, job["job_name"])
            if listed["next_cursor"] is not None:
                listed["next_cursor"] = owner.name_of(listed["next_cursor"])
            return listed
        state = _SEARCH_STATE.get(status) if status else None
        # The in-process stores answer these tags from their job index: only
        # jobs of this status and kind, so one page of ``limit`` is the answer.
        tags = {"resonate:scope": "global", JOB_TAG: "true"}
        if status is not None:  # a job that waits for input is a running one to the store
            tags[STATUS_TAG] = "running" if status == JobStatus.input_required else status.value
        if kind is not None:
            tags[KIND_TAG] = kind
        if name:
            tags[NAME_TAG] = name
        if owner.sees is not None:
            tags[OWNER_TAG] = owner.sees
        found: list[dict[str, Any]] = []
        while True:
            try:
                with _engine_errors():
                    page = await self.resonate.promises.search(state, tags, limit, cursor)
            except ServerError as exc:
                if exc.code == 400 and cursor:
                    raise unknown_cursor(given_cursor or "") from exc
                raise InvalidArgument(
                    f"cannot list jobs: this engine does not search its promises ({exc}); "
                    "list_jobs works on the embedded and memory stores"
                ) from exc
            jobs = [record for record in page.promises if is_job(record.id)]
            described = await self._statuses(jobs)
            for record in page.promises:
                cursor = record.id
                if not is_job(record.id):
                    continue  # a step of a job (its durable sleeps), not a job
                job = described[record.id]
                if (status is None or job["status"] == status) and kind in (None, job["kind"]):
                    found.append({key: job[key] for key in LISTED if key in job})
                    if len(found) == limit:
                        return {"jobs": found, "next_cursor": owner.name_of(cursor)}
            if page.cursor is None:
                return {"jobs": found, "next_cursor": None}
            cursor = page.cursor

    async def wait(
        self,
        job_ids: Sequence[str],
        timeout_seconds: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Wait until every job has finished, waits for an answer, or the bound
        passes; then their statuses.

        The wait is capped at ``await_max_seconds`` whatever ``timeout_seconds``
        asks for, so a call never outlives the client's patience. Jobs still
        running at the end are reported as ``running``, as they are when the
        server starts stopping; a job that asks a question is reported
        ``input_required`` at once (nothing changes until someone answers).
        ``on_progress`` is called every ``progress_interval_seconds`` while
        waiting: with the job's own progress when there is one job, else with
        how many of them have finished.
        """
        bound = self.await_max_seconds
        if timeout_seconds is not None:
            bound = min(bound, max(timeout_seconds, 0.0))
        deadline = self.clock() + int(bound * 1000)
        names = job_ids
        owner = owners.current()
        job_ids = [job_id for job_id in map(owner.job_id, names) if job_id is not None]

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
            pending -= await self._waiting_for_answers(waiters, pending)
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
                pending -= await self._waiting_for_answers(waiters, pending)
                if pending and on_progress is not None and self.clock() >= next_progress:
                    next_progress = self.clock() + interval  # after a stall: no burst of reports
                    await self._report_progress(job_ids, len(pending), on_progress)
        finally:
            stopping.cancel()
            for task in waiters.values():
                task.cancel()
        return {name: await self.read_status(name) for name in names}

    async def _waiting_for_answers(
        self, waiters: Mapping[str, asyncio.Task[Any]], pending: set[asyncio.Task[Any]]
    ) -> set[asyncio.Task[Any]]:
        """The waits of the jobs among ``pending`` that wait for an answer."""
        running = [job_id for job_id, task in waiters.items() if task in pending]
        if not running:
            return set()
        with _engine_errors():
            asked = await self.questions(running)
        return {waiters[job_id] for job_id in asked}

    async def _report_progress(
        self, job_ids: Sequence[str], unfinished: int, on_progress: ProgressCallback
    ) -> None:
        """One job: its own progress; more: how many have finished."""
        if len(job_ids) == 1:
            notes = (await self.notes.read(job_ids)).get(job_ids[0], {})
            progress = notes.get("progress")
            if progress is not None:
                name = owners.current().name_of(job_ids[0])
                message = progress.get("message") or f"job {name} is running"
                await on_progress(progress["done"], progress.get("total"), message)
                return
        finished = len(job_ids) - unfinished
        await on_progress(finished, len(job_ids), f"{finished} of {len(job_ids)} jobs finished")

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

    async def _status(self, job_id: str, record: PromiseRecord | None) -> dict[str, Any]:
        if record is None:
            return status_from_record(owners.current().name_of(job_id), None, self.clock())
        return (await self._statuses([record]))[job_id]

    async def _owned(self, name: str) -> tuple[str | None, PromiseRecord | None]:
        """The caller's job ``name``: its id in the store and its record (None, None:
        no job of theirs can have the name; an id and None: there is no such job)."""
        job_id = owners.current().job_id(name)
        return job_id, (await self._get(job_id) if job_id is not None else None)

    async def _statuses(self, records: Sequence[PromiseRecord]) -> dict[str, dict[str, Any]]:
        """Each job's status object, by id, with its notes and the question it waits on;
        named as the caller names it."""
        running = [record.id for record in records if record.state == "pending"]
        notes = await self.notes.read(running) if running else {}
        asked = await self._questions(running) if running else {}
        now, owner = self.clock(), owners.current()
        return {
            record.id: status_from_record(
                record.id, record, now, self.kinds, notes.get(record.id), asked.get(record.id)
            )
            | _named(owner, record.id)
            for record in records
        }

    async def _questions(self, job_ids: Sequence[str]) -> dict[str, Question]:
        """The questions ``job_ids`` wait to have answered, read from the store."""
        with _engine_errors():
            found = await self.questions(job_ids)
        questions = {}
        for job_id, question_id in found.items():
            with contextlib.suppress(ServerError):  # answered and removed meanwhile
                record = await self.resonate.promises.get(question_id)
                if record.state == "pending":
                    questions[job_id] = question_of(question_id, record.param.data)
        return questions

    async def answer(
        self,
        name: str,
        content: dict[str, Any] | None,
        *,
        action: str = "accept",
        question_id: str | None = None,
    ) -> dict[str, Any]:
        """Answer the question job ``name`` waits on; its status once the answer is on disk.

        ``content`` must fit the question's schema (``action`` accept), else
        :class:`InvalidArgument` says why and nothing changes. A job that does
        not wait (or not on ``question_id``, when given) is an error too, as is
        an answer that another caller gave first: of two racing, one is taken.
        """
        stored, record = await self._owned(name)
        if stored is None or record is None:
            raise InvalidArgument(f"no job is named {shown(name)}")
        job_id = stored
        asked = await self._questions([job_id]) if record.state == "pending" else {}
        question = asked.get(job_id)
        if question is None or question_id not in (None, question.id):
            status = (await self._status(job_id, record))["status"]
            raise InvalidArgument(
                f"job {shown(name)} is not waiting for an answer (it is {status})"
            )
        if action not in ACTIONS:
            raise InvalidArgument(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
        if action == "accept":
            try:
                check_answer(question, content)
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from exc
        answer = answer_value(content if action == "accept" else None, action)
        async with self._answering.setdefault(question.id, asyncio.Lock()):
            with _engine_errors():
                current = await self.resonate.promises.get(question.id)
                if current.state == "pending":
                    current = await self.resonate.promises.resolve(question.id, Value(data=answer))
            taken = current.value.data if isinstance(current.value.data, dict) else {}
            if current.state != "resolved" or taken.get("id") != answer["id"]:
                raise AnswerTaken(name)
        job_event("answered", job_id, question=question.id, action=action)
        return await self.read_status(name)

    def log_end(self, promise: DurablePromise) -> None:
        """Log a job's end (the in-process store reports each job's promise as it
        settles, and each question asked or answered, which is not logged here)."""
        if not is_job_end(promise):
            return
        job = status_from_promise(promise, self.clock(), self.notes.of(promise.id))
        if promise.state != "rejected_timedout":
            # What it said while it ran is over; a timeout keeps the step it was retrying.
            self.notes.forget(promise.id)
        error = job.get("error") or {}
        scalars = {key: value for key, value in error.items() if not isinstance(value, dict)}
        job_event(job["status"], promise.id, kind=job["kind"], **scalars)

    def _refuse_if_busy(self) -> None:
        if self.running_jobs is None:
            return
        if self.max_running_jobs is not None:
            running = self.running_jobs(None)
            if running >= self.max_running_jobs:
                raise Busy(running)
        owner = owners.current()
        if self.max_running_jobs_per_owner is not None and not owner.admin:
            mine = self.running_jobs(owner.key)
            if mine >= self.max_running_jobs_per_owner:
                raise Busy(mine, yours=True)

    async def _get(self, job_id: str) -> PromiseRecord | None:
        try:
            with _engine_errors():
                return await self.resonate.promises.get(job_id)
        except ServerError as exc:
            if exc.code == 404:
                return None
            raise


def _named(owner: owners.Owner, job_id: str) -> dict[str, Any]:
    """A status object's name as ``owner`` knows the job; to the admin, whose it is too."""
    named: dict[str, Any] = {"job_name": owner.name_of(job_id)}
    if owner.admin and (subject := owners.subject_of(job_id)) is not None:
        named["owner"] = subject
    return named


@contextlib.contextmanager
def _engine_errors() -> Iterator[None]:
    """The engine's own failures (a full disk, say) as one line to the caller.

    The engine has logged them already, so the tool error is a warning.
    """
    try:
        yield
    except ConnectorError as exc:
        raise EngineUnavailable(str(exc.error)) from exc
