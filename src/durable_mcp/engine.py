"""Builds the one Resonate instance a server runs on, for the configured store.

The choice of engine is made here and nowhere else: the job layer and the
tools only ever see a :class:`Resonate`. The instance is built without
starting it (``autostart=False``). Either the server's lifespan starts it
(``create_server``), or `durable-mcp serve` starts it with :func:`start_engine`
before it even imports the MCP layer, so that the jobs a restart interrupted
resume at once; the lifespan then only stops it. Nothing here imports FastMCP.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resonate.heartbeat import Heartbeat
from resonate.resonate import Resonate
from resonate.retry import Never
from resonate.timing import Clock, Sleeper, now_ms, sleep
from resonate_base.connections import Network

from durable_mcp.config import Settings
from durable_mcp.functions import FUNCTIONS
from durable_mcp.functions.weather import OpenMeteoArchive
from durable_mcp.jobs.failures import FailFastCore
from durable_mcp.jobs.notes import JobNotes
from durable_mcp.jobs.questions import QuestionFinder, no_questions
from durable_mcp.jobs.steps import StepReader, no_steps, step_of
from durable_mcp.owners import owner_key
from durable_mcp.sdk_compat import (
    CORE_LOGGER,
    DEFAULT_TTL,
    HEARTBEAT_INTERVAL_DIVISOR,
    AsyncHeartbeat,
    DurablePromise,
    ExpectedEnds,
    RunCountingHeartbeat,
    Sender,
    Transport,
    quiet_observer,
    replace_core,
)
from durable_mcp.store import (
    STOPPED,
    UNWRITABLE_HINT,
    EmbeddedStore,
    StoreStopped,
    StoreUnavailable,
)
from durable_mcp.store.memory import MemoryStore
from durable_mcp.store.state import IndexedState, kind_of
from durable_mcp.webhook import Webhook

if TYPE_CHECKING:
    from durable_mcp.jobs.service import JobLister

#: The routing group our workers join; every replica of the server shares it.
GROUP = "durable-mcp"

#: How often the in-process store checks deadlines. The SDK's default of 1 s
#: makes a timer fire up to a second late; a tenth of that costs nothing.
LOCAL_TICK_SECONDS = 0.1

#: The lease a replica holds on a job it runs on Postgres, and how often it
#: renews the lease while the job runs. A replica that dies (kill -9, a lost
#: machine) stops renewing; at most PG_LEASE later the lease has lapsed, the
#: next firing of the durable timers (any replica's timer loop, every 0.25 s:
#: postgres.TIMER_SECONDS) hands the job back to the group -- an execute row in
#: resonate-pg's outbox, announced by NOTIFY -- and a live replica takes it and
#: replays it from its last finished step. So takeover comes within about
#: PG_LEASE + 0.5 s of the death (the goal is 5 s; `make bench`, pg_takeover),
#: not the SDK's 60 s. Four renewals fit in each lease: a live replica loses a
#: job only if three in a row fail to land (its event loop or Postgres stalled
#: for 3 s and more), and even then the job is not lost but run on elsewhere,
#: its step in flight once more, as after a death. Leases are kept on the
#: database's clock, so the replicas' clocks need not agree. The cost: each
#: durable sleep's task, which workers take and drop, comes round once a lease.
PG_LEASE = timedelta(seconds=4)
PG_HEARTBEAT = timedelta(seconds=1)


logger = logging.getLogger(__name__)


#: The SDK's observer, quiet about a 409 that ends nothing (see quiet_observer), about a
#: task cut off by the embedded store stopping (it resumes at the next start), and about
#: work the store could not write (a full disk: the store has said so in one line, and
#: the work runs again once it can).
observe = quiet_observer(STOPPED, UNWRITABLE_HINT)

#: A job still running when the server shuts down (the store refuses it; the job resumes
#: at the next start), or whose store could not write (the store logs that once), ends
#: as planned too.
_expected_ends = ExpectedEnds(StoreStopped, StoreUnavailable)


def quiet_expected_ends() -> None:
    """Keep the SDK's core logger from logging those ends as errors (once per process)."""
    core_logger = logging.getLogger(CORE_LOGGER)
    if _expected_ends not in core_logger.filters:
        core_logger.addFilter(_expected_ends)


class JobChanges:
    """The observer the engine gives its in-process store: each job's end, and
    each question asked or answered (``store/job_changes.py``), goes to every
    listener of the app (the job log, the pushes, the webhook).

    The app listens once it exists; the changes before that (jobs resumed by
    ``start_engine`` before the MCP layer was imported) are kept, and told to
    each listener as it comes. An engine that no app ever listens to (a script
    on the engine alone) keeps them all: a promise per change.
    """

    def __init__(self) -> None:
        self.early: list[DurablePromise] = []
        self.listeners: list[Callable[[DurablePromise], None]] = []

    def __call__(self, promise: DurablePromise) -> None:
        if not self.listeners:
            self.early.append(promise)
        for listener in self.listeners:
            listener(promise)

    def listen(self, listener: Callable[[DurablePromise], None]) -> None:
        self.listeners.append(listener)
        for promise in self.early:
            listener(promise)


def _none_running(owner: str | None) -> int:
    return 0


def questions_in(state: IndexedState) -> QuestionFinder:
    """The questions jobs wait on, from an in-process store's state (its index)."""

    async def pending(job_ids: Sequence[str]) -> dict[str, str]:
        found = {}
        for job_id in job_ids:
            question = state.promises.pending_question(job_id)
            if question is not None:
                found[job_id] = question.id
        return found

    return pending


#: ``counts(owner)``: jobs running and waiting for input now, by kind, of one owner
#: (a key, ``owners.py``; None: every owner):
#: ``{"running": {kind: n}, "input_required": {kind: n}}``.
JobCounter = Callable[[str | None], Awaitable[dict[str, dict[str, int]]]]


def steps_in(state: IndexedState) -> StepReader:
    """A job's steps, from an in-process store's state (its branch and question indexes)."""

    async def steps(job_id: str) -> list[dict[str, Any]]:
        promises = state.promises
        if job_id not in promises and state.archive is not None:  # an ended job
            archived = state.archive.job(job_id)
            found = archived.steps if archived is not None else []
        else:
            ids = {**promises.by_branch.get(job_id, {}), **promises.questions.get(job_id, {})}
            found = [promises[pid] for pid in ids]
        return [
            step_of(p.id, p.tags, p.state, p.created_at, p.settled_at)
            for p in found
            if p.id != job_id
        ]

    return steps


def counts_in(state: IndexedState) -> JobCounter:
    """Jobs running and waiting for input now, by kind, from an in-process store's state."""

    async def counts(owner: str | None) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {"running": {}, "input_required": {}}
        jobs = state.promises.job_index()
        for (status, kind, bucket_owner), ids in jobs.buckets.items():
            if status == "running" and ids and owner in (None, bucket_owner):
                found["running"][kind or ""] = found["running"].get(kind or "", 0) + len(ids)
        for job_id in state.promises.questions:
            if owner not in (None, owner_key(job_id)):
                continue
            job = state.promises.get(job_id)
            if job is not None and state.promises.pending_question(job_id) is not None:
                kind = kind_of(job) or ""
                found["running"][kind] = found["running"].get(kind, 0) - 1
                found["input_required"][kind] = found["input_required"].get(kind, 0) + 1
        found["running"] = {kind: n for kind, n in found["running"].items() if n > 0}
        return found

    return counts


async def _no_counts(owner: str | None) -> dict[str, dict[str, int]]:
    return {"running": {}, "input_required": {}}


@dataclass(frozen=True)
class Engine:
    """The Resonate instance, and what the job layer must know of its store.

    Every field has a default that does nothing, so the job layer is built the
    same way on every engine.
    """

    resonate: Resonate
    #: The embedded store, when it is the engine.
    store: EmbeddedStore | None = None
    #: The state machine, when it runs in this process (embedded and memory stores).
    state: IndexedState | None = None
    #: Lists the jobs where the engine cannot search its promises (Postgres).
    lister: JobLister | None = None
    #: How many jobs of an owner (a key; None: all) run now (the in-process stores
    #: count them; elsewhere 0: never busy).
    running_jobs: Callable[[str | None], int] = _none_running
    #: The store's job-end observer (only the in-process stores report ends).
    job_changes: JobChanges = dataclasses.field(default_factory=JobChanges)
    #: What running jobs say of themselves (progress, a retry under way), for their status.
    notes: JobNotes = dataclasses.field(default_factory=JobNotes)
    #: The questions jobs wait to have answered (where the engine can tell).
    questions: QuestionFinder = no_questions
    #: Delivers job ends and questions to DURABLE_MCP_WEBHOOK_URL, if it is set.
    webhook: Webhook | None = None
    #: A job's steps, sleeps and questions, for the jobs page (``jobs/steps.py``).
    steps: StepReader = no_steps
    #: Jobs running and waiting for input now, by kind (``/metrics``).
    job_counts: JobCounter = _no_counts
    #: Raises unless the database answers (Postgres; ``/readyz``).
    ping: Callable[[], Awaitable[None]] | None = None

    @property
    def tells_changes(self) -> bool:
        """Whether the store tells of each job's end and question (the in-process ones)."""
        return self.state is not None

    #: How long a finished job is kept, where the store removes it then (embedded, Postgres).
    retention: timedelta | None = None
    #: Set by :func:`start_engine`: the engine runs, these durable functions
    #: registered and this archive its dependency, before any MCP app exists.
    started: bool = False
    functions: tuple[Callable[..., Any], ...] = ()
    archive: OpenMeteoArchive | None = None

    @property
    def forget(self) -> Callable[[str], Awaitable[None]] | None:
        """Removes a failed or cancelled job so that its name can start it again;
        None where the engine cannot (a Resonate Server, Postgres)."""
        if self.store is not None:
            return self.store.forget  # journaled
        state = self.state
        if state is None:
            return None

        async def forget_in_memory(job_id: str) -> None:
            state.forget_job(job_id)

        return forget_in_memory


def build_engine(
    settings: Settings,
    *,
    clock: Clock = now_ms,
    sleeper: Sleeper = sleep,
    writer: Executor | None = None,
) -> Engine:
    """Return an unstarted Resonate wired to the store ``settings`` selects.

    The embedded store is opened here (raises ``StoreError``), so that a data
    dir in use or damaged stops the start before the server listens.
    ``clock`` and ``sleeper`` are the SDK's time seams, given to Resonate and
    to an in-process store alike (deadlines, leases, heartbeats): one notion of
    now (tests pass fakes). ``writer`` runs the embedded store's disk writes
    (default: a thread of its own; tests on fake time write at once).
    """
    pid = uuid.uuid4().hex
    quiet_expected_ends()
    network: Network | None = None
    heartbeat: Heartbeat | None = None  # the SDK's own, for a Resonate Server
    lease, beat_every = DEFAULT_TTL, DEFAULT_TTL / HEARTBEAT_INTERVAL_DIVISOR  # the SDK's
    lister: JobLister | None = None  # the engine's own listing of its jobs (Postgres)
    job_changes = JobChanges()  # the in-process stores tell it of each job's end, and questions
    notes = JobNotes(clock)  # what running jobs say of themselves; the embedded store saves them
    webhook = None
    if settings.webhook_url and settings.webhook_secret:  # its events go with the store's commits
        webhook = Webhook(
            settings.webhook_url, settings.webhook_secret, clock=clock, sleeper=sleeper
        )
    outbox = webhook.outbox if webhook is not None else None
    # Re-registering listeners defends against a dropped push channel; in one
    # process nothing can drop a push, so the in-process stores turn it off.
    refresh_seconds = 0.0
    if settings.pg_dsn:
        # Imported here: psycopg takes ~0.3 s to import, and only Postgres needs it.
        from durable_mcp.postgres_jobs import PostgresJobsEngine

        postgres = PostgresJobsEngine(
            settings.pg_dsn, pid=pid, group=GROUP, retention=settings.retention
        )
        network, lister, refresh_seconds = postgres, postgres.list_jobs, 60.0
        postgres.keep_notes(notes)  # every replica shows every job's progress
        lease, beat_every = PG_LEASE, PG_HEARTBEAT  # replicas take over a dead one's jobs
    elif settings.resonate_url:
        refresh_seconds = 60.0  # Resonate builds its HTTP + SSE connections from the url
    elif settings.store == "embedded":
        store = EmbeddedStore(
            Path(settings.data_dir),
            pid=pid,
            group=GROUP,
            retention=settings.retention,
            clock=clock,
            sleeper=sleeper,
            writer=writer,
            on_job_change=job_changes,
            notes=notes,
            outbox=outbox,
        )
        store.open()  # takes the data dir now: a second server fails before it listens
        network = store
    else:
        network = MemoryStore(
            pid=pid,
            group=GROUP,
            clock=clock,
            sleeper=sleeper,
            tick_interval=LOCAL_TICK_SECONDS,
            on_job_change=job_changes,
            outbox=outbox,
        )
    if network is not None:
        # The in-process stores' leases lapse like any store's (the SDK would not
        # heartbeat the memory store at all), and a job's old and new runs may
        # overlap -- with retry, or on Postgres when a stalled replica's lease
        # lapsed and the job came back to it: heartbeat them as the SDK does,
        # counting runs per task, so the old run's end leaves the new one beating.
        heartbeat = RunCountingHeartbeat(
            AsyncHeartbeat(
                pid,
                int(beat_every.total_seconds() * 1000),
                Sender(Transport(network, (), observe), None, observer=observe),
                sleeper,
            )
        )
    resonate = Resonate(
        url=settings.resonate_url if network is None else None,
        network=network,
        group=GROUP,
        pid=pid,
        env={},
        observer=observe,
        clock=clock,
        sleeper=sleeper,
        ttl=lease,
        heartbeat=heartbeat,
        # A job started here holds its lease from the start, but is heartbeated
        # only once it holds one of these permits: a job waiting for a permit
        # lost its lease and was run twice. So every job that may run gets a
        # permit at once; what is scarce (the archive) is queued inside the step.
        max_concurrent_tasks=settings.max_running_jobs,
        autostart=False,
        subscription_refresh_secs=refresh_seconds,
        # A job's body is never run again (its tool's policy retries its steps:
        # jobs/failures.py), where the SDK would retry one that made no durable call.
        retry_policy=Never(),
    )
    # A job that cannot run (its function gone, a value it cannot store) fails
    # once, instead of being handed back to run, and fail, in a loop.
    replace_core(resonate, FailFastCore)
    resonate.with_dependency(notes)  # the jobs' functions note their progress and retries in it
    if isinstance(network, EmbeddedStore | MemoryStore):
        state = network.state
        return Engine(
            resonate,
            store=network if isinstance(network, EmbeddedStore) else None,
            state=state,
            running_jobs=lambda owner: (
                state.running_jobs if owner is None else state.promises.job_index().running(owner)
            ),
            job_changes=job_changes,
            notes=notes,
            questions=questions_in(state),
            retention=settings.retention if isinstance(network, EmbeddedStore) else None,
            webhook=webhook,
            steps=steps_in(state),
            job_counts=counts_in(state),
        )
    if settings.pg_dsn:
        return Engine(
            resonate,
            lister=lister,
            retention=settings.retention,
            notes=notes,
            questions=postgres.questions,  # any replica sees, and answers, any question
            steps=postgres.steps,
            job_counts=postgres.job_counts,
            ping=postgres.ping,
        )
    return Engine(resonate, notes=notes)


def start_engine(
    engine: Engine,
    archive: OpenMeteoArchive,
    *,
    functions: Sequence[Callable[..., Any]] = FUNCTIONS,
    label: str = "",
) -> Engine:
    """Register ``functions``, give them ``archive``, and start the engine: from
    here on the jobs a restart interrupted resume, with no MCP layer yet.

    Needs a running event loop. Returns the started engine, to build the app on
    (``create_server(settings, engine=...)``), which stops it with its lifespan.
    """
    for fn in functions:
        engine.resonate.register(fn)
    engine.resonate.with_dependency(archive)
    started = dataclasses.replace(engine, started=True, functions=tuple(functions), archive=archive)
    engine.resonate.start()
    logger.info("durable-mcp engine started (%s)", label or "engine")
    return started
