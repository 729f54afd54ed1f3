"""Jobs on Postgres: listed from an index of our own, removed after the retention.

resonate-pg does not search its promises (``promise.search`` answers 501), and
nothing in its schema indexes a promise's creation time or its function: a
listing read straight from ``resonate.promises`` would scan, decode and sort
every promise (every step too) for every page. So durable-mcp keeps a small
index of its own in the same database, ``durable_mcp.jobs``: one row per job
(its name, kind and creation time), written in the same transaction that
creates the job's promise, and removed with the promise (a foreign key, ``ON
DELETE CASCADE``). A page is a range scan of that index joined on
``resonate.promises``'s primary key for the job's state, which is read there
and never copied. The schema is ours, created at start by the migrations
below (never by resonate-pg's files), idempotently and one replica at a time.

Finished jobs past ``DURABLE_MCP_RETENTION`` are removed with all their steps
(their tasks and what else resonate-pg keeps for them), so that their names
can start new jobs and the tables stop growing: every few minutes, by one
replica at a time, in small batches. A running job is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, cast

import psycopg
from resonate.types import PromiseRecord, PromiseState, Value
from resonate_base.error import ConnectorError

from durable_mcp.jobs.notes import JobNotes
from durable_mcp.jobs.questions import question_of
from durable_mcp.jobs.service import unknown_cursor
from durable_mcp.jobs.status import LISTED, JobStatus, decoded, status_from_record
from durable_mcp.jobs.steps import step_of
from durable_mcp.postgres import DatabaseUnreachable, PostgresEngine
from durable_mcp.sdk_compat import RPC_SQL, PgConn, PgSessions
from durable_mcp.store.embedded import NOTES_DELAY
from durable_mcp.store.state import QUESTION_TAG, is_job

logger = logging.getLogger(__name__)

#: How often finished jobs past the retention are looked for.
SWEEP_SECONDS = 300.0

#: Jobs removed per transaction (with their steps), so no sweep holds locks for long.
JOBS_PER_BATCH = 100

#: Our advisory locks: (LOCK_SPACE, what). Two-key locks never meet resonate-pg's
#: one-key ones (``pg_advisory_xact_lock(hashtextextended(id, 0))``).
LOCK_SPACE = 0x646D6370  # "dmcp"
MIGRATE_LOCK, SWEEP_LOCK = 1, 2

#: The database's now in ms, as resonate-pg reads it (it runs on database time).
NOW = "(extract(epoch from statement_timestamp()) * 1000)::bigint"

#: Our schema, one migration per version, applied in order; never edit one
#: that has shipped, add the next.
MIGRATIONS = (
    """
    CREATE TABLE durable_mcp.jobs (
      id         text PRIMARY KEY REFERENCES resonate.promises (id) ON DELETE CASCADE,
      kind       text,
      created_at bigint NOT NULL
    );
    CREATE INDEX jobs_newest ON durable_mcp.jobs (created_at, id);
    CREATE INDEX jobs_kind_newest ON durable_mcp.jobs (kind, created_at, id);

    -- A job's kind: the function in its promise's param, base64 JSON {func, args, ...}.
    CREATE FUNCTION durable_mcp.job_kind(param_data text) RETURNS text
      LANGUAGE plpgsql IMMUTABLE AS $$
    BEGIN
      RETURN convert_from(decode(param_data, 'base64'), 'UTF8')::jsonb ->> 'func';
    EXCEPTION WHEN OTHERS THEN
      RETURN NULL;
    END $$;

    -- The jobs started before this index was.
    INSERT INTO durable_mcp.jobs (id, kind, created_at)
      SELECT id, durable_mcp.job_kind(param_data), created_at
      FROM resonate.promises WHERE strpos(id, ':') = 0;
    """,
    """
    -- What running jobs say of themselves (their progress), each job's latest,
    -- saved by the replica that runs it and read by every replica.
    CREATE TABLE durable_mcp.notes (
      id   text PRIMARY KEY REFERENCES resonate.promises (id) ON DELETE CASCADE,
      data jsonb NOT NULL
    );
    """,
    """
    -- Whose a job is (owners.py): the owner's part of its id, '~alice/tea' -> 'alice';
    -- '' for the single owner's, which every job indexed before this is.
    CREATE FUNCTION durable_mcp.job_owner(id text) RETURNS text
      LANGUAGE sql IMMUTABLE AS $$
        SELECT CASE WHEN left(id, 1) = '~' AND strpos(id, '/') > 0
                    THEN substr(id, 2, strpos(id, '/') - 2) ELSE '' END
      $$;
    ALTER TABLE durable_mcp.jobs ADD COLUMN owner text NOT NULL DEFAULT '';
    UPDATE durable_mcp.jobs SET owner = durable_mcp.job_owner(id) WHERE left(id, 1) = '~';
    CREATE INDEX jobs_owner_newest ON durable_mcp.jobs (owner, created_at, id);
    """,
)

MIGRATE_SQL = f"""
SELECT pg_advisory_xact_lock({LOCK_SPACE}, {MIGRATE_LOCK});
CREATE SCHEMA IF NOT EXISTS durable_mcp;
CREATE TABLE IF NOT EXISTS durable_mcp.migrations (
  version    int PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT now()
);
"""

#: Index the job just created (in the same transaction as its promise).
INDEX_JOB_SQL = """
INSERT INTO durable_mcp.jobs (id, kind, created_at, owner)
SELECT id, durable_mcp.job_kind(param_data), created_at, durable_mcp.job_owner(id)
FROM resonate.promises WHERE id = %s
ON CONFLICT (id) DO NOTHING
"""

#: Save the notes of jobs that still exist (``%s``: a JSON object, notes by job).
SAVE_NOTES_SQL = """
INSERT INTO durable_mcp.notes (id, data)
SELECT n.id, n.data FROM jsonb_each(%s::jsonb) AS n (id, data)
JOIN resonate.promises p ON p.id = n.id
ON CONFLICT (id) DO UPDATE SET data = excluded.data
"""

#: The question a pending job waits on: a pending promise of its own, tagged so.
QUESTION_OF = f"""
SELECT q.id, q.param_data FROM resonate.promises q
WHERE q.origin_id = p.id AND p.state = 'pending' AND q.state = 'pending'
  AND q.timeout_at > {NOW} AND q.tags ? '{QUESTION_TAG}'
ORDER BY q.created_at DESC LIMIT 1
"""

QUESTIONS_SQL = f"""
SELECT p.id, q.id FROM resonate.promises p CROSS JOIN LATERAL ({QUESTION_OF}) q
WHERE p.id = ANY(%s)
"""

#: A job's steps and questions (what it started, less itself), for the jobs page's timeline.
STEPS_SQL = """
SELECT id, tags, state, created_at, settled_at FROM resonate.promises
WHERE origin_id = %s AND id <> %s ORDER BY created_at, id
"""

#: The effective state, as resonate-pg reports it (``_promise_json``): a
#: pending promise past its timeout is already settled to whoever reads it.
_TIMED_OUT = f"p.state = 'pending' AND p.timeout_at <= {NOW}"
_STATUS_WHERE = {
    JobStatus.running: f"p.state = 'pending' AND p.timeout_at > {NOW} AND q.id IS NULL",
    JobStatus.input_required: f"p.state = 'pending' AND p.timeout_at > {NOW} AND q.id IS NOT NULL",
    JobStatus.completed: f"(p.state = 'resolved' OR ({_TIMED_OUT} AND p.is_timer))",
    JobStatus.failed: (
        f"(p.state IN ('rejected', 'rejected_timedout') OR ({_TIMED_OUT} AND NOT p.is_timer))"
    ),
    JobStatus.cancelled: "p.state = 'rejected_canceled'",
}

#: Jobs running and waiting for input, by kind, of one owner (NULL: all owners).
COUNTS_SQL = f"""
SELECT j.kind, count(*) FILTER (WHERE q.id IS NULL), count(q.id)
FROM durable_mcp.jobs j JOIN resonate.promises p ON p.id = j.id
LEFT JOIN LATERAL ({QUESTION_OF}) q ON true
WHERE p.state = 'pending' AND p.timeout_at > {NOW} AND (%s::text IS NULL OR j.owner = %s)
GROUP BY j.kind
"""

LIST_SQL = f"""
SELECT j.id, j.kind, j.created_at, p.state, p.settled_at, p.timeout_at, p.is_timer, {NOW},
       q.id, q.param_data, n.data
FROM durable_mcp.jobs j JOIN resonate.promises p ON p.id = j.id
LEFT JOIN LATERAL ({QUESTION_OF}) q ON true
LEFT JOIN durable_mcp.notes n ON n.id = j.id
WHERE {{where}}
ORDER BY j.created_at DESC, j.id DESC
LIMIT %s
"""

#: Up to a batch of jobs that finished before the cutoff, with all their steps
#: (pending ones too: a cancelled timer's sleep) and what resonate-pg keeps for
#: them. Tasks, their resumes, callbacks and listeners on these promises go
#: with them (foreign keys, ON DELETE CASCADE), and so do our index rows; the
#: rest is what ``resonate.gc`` removes too, plus messages and callbacks of the
#: removed tasks. (``resonate.gc`` itself removes settled promises only: a
#: cancelled timer's pending sleep would stay, and a new job of the same name
#: would take it for its own and wake at the old deadline.)
SWEEP_SQL = f"""
WITH roots AS (
  SELECT id FROM resonate.promises
  WHERE state <> 'pending' AND settled_at <= {NOW} - %s AND strpos(id, ':') = 0
  ORDER BY settled_at
  LIMIT %s
  FOR UPDATE SKIP LOCKED
), doomed AS (
  SELECT id FROM roots
  UNION
  SELECT id FROM resonate.promises WHERE origin_id IN (SELECT id FROM roots)
), gone AS (
  DELETE FROM resonate.promises WHERE id IN (SELECT id FROM doomed) RETURNING id
), messages AS (
  DELETE FROM resonate.outbox
  WHERE task_id IN (SELECT id FROM gone)
     OR (kind = 'unblock' AND promise ->> 'id' IN (SELECT id FROM gone))
  RETURNING 1
), resumes AS (
  DELETE FROM resonate.task_resumes WHERE awaited_id IN (SELECT id FROM gone) RETURNING 1
), callbacks AS (
  DELETE FROM resonate.callbacks WHERE awaiter_id IN (SELECT id FROM gone) RETURNING 1
)
SELECT (SELECT count(*) FROM roots), count(*) FILTER (WHERE strpos(id, ':') = 0) FROM gone
"""


class JobListingError(Exception):
    """The jobs on Postgres cannot be listed; the message says why, in one line."""


async def migrate(conn: PgConn) -> None:
    """Create or update our schema, in one transaction, one replica at a time.

    ``conn`` must not be in autocommit mode: the lock is held to the commit.
    """
    await conn.execute(MIGRATE_SQL)
    cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM durable_mcp.migrations")
    row = await cursor.fetchone()
    for version, sql in enumerate(MIGRATIONS, start=1):
        if version > row[0]:
            await conn.execute(sql)
            await conn.execute("INSERT INTO durable_mcp.migrations VALUES (%s)", [version])
            logger.info("durable_mcp schema migrated to version %d", version)


def created_job(req: str) -> str | None:
    """The job a request creates, if it may create one (``task.create`` or
    ``promise.create`` of an id without ':'; steps are ``job:1``, ...)."""
    if '"task.create"' not in req and '"promise.create"' not in req:
        return None
    try:
        envelope = json.loads(req)
        data = envelope["data"]
        if envelope["kind"] == "task.create":
            data = data["action"]["data"]
        elif envelope["kind"] != "promise.create":
            return None
        job_id = data["id"]
    except (ValueError, KeyError, TypeError):
        return None
    return job_id if isinstance(job_id, str) and is_job(job_id) else None


async def list_jobs(
    conn: PgConn,
    status: JobStatus | None = None,
    kind: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
    name: str | None = None,
    owner: str | None = None,
) -> dict[str, Any]:
    """Jobs newest first, as ``Jobs.list`` answers: ``{"jobs", "next_cursor"}``, named
    by their ids; only ``owner``'s (a key, ``owners.py``), if given.

    ``next_cursor`` is the last job listed when more follow: the next page
    starts after it, whatever was started meanwhile.
    """
    where: list[str] = ["true"]
    params: list[Any] = []
    if owner is not None:
        where.append("j.owner = %s")
        params.append(owner)
    if status is not None:
        where.append(_STATUS_WHERE[status])
    if kind is not None:
        where.append("j.kind = %s")
        params.append(kind)
    if name:  # in the name, not in the owner's part of the id
        where.append("strpos(substr(j.id, length(j.owner) + 1 + 2 * (j.owner <> '')::int), %s) > 0")
        params.append(name)
    if cursor:
        last = await conn.execute("SELECT created_at FROM durable_mcp.jobs WHERE id = %s", [cursor])
        row = await last.fetchone()
        if row is None:
            raise unknown_cursor(cursor)
        where.append("(j.created_at, j.id) < (%s, %s)")
        params += [row[0], cursor]
    rows = await (
        await conn.execute(LIST_SQL.format(where=" AND ".join(where)), [*params, limit + 1])
    ).fetchall()
    jobs = [_listed(*row) for row in rows[:limit]]
    return {"jobs": jobs, "next_cursor": jobs[-1]["job_name"] if len(rows) > limit else None}


def _listed(
    job_id: str,
    kind: str | None,
    created_at: int,
    state: str,
    settled_at: int | None,
    timeout_at: int,
    is_timer: bool,
    now: int,
    question_id: str | None,
    question: str | None,
    notes: dict[str, Any] | None,
) -> dict[str, Any]:
    if state == "pending" and timeout_at <= now:
        state, settled_at = ("resolved" if is_timer else "rejected_timedout"), timeout_at
    record = PromiseRecord(
        id=job_id,
        state=cast(PromiseState, state),
        param=Value(data={"func": kind}),
        timeout_at=timeout_at,
        created_at=created_at,
        settled_at=settled_at,
    )
    asked = question_of(question_id, decoded(question)) if question_id else None
    # The status vocabulary, as everywhere.
    job = status_from_record(job_id, record, now, notes=notes, question=asked)
    return {key: job[key] for key in LISTED if key in job}


async def read_jobs(
    dsn: str, status: JobStatus | None, kind: str | None, limit: int
) -> dict[str, Any]:
    """The first ``limit`` jobs, for ``durable-mcp jobs``: read only, one connection."""
    try:
        async with await psycopg.AsyncConnection.connect(dsn, connect_timeout=10) as conn:
            return await list_jobs(cast(PgConn, conn), status, kind, limit)
    except psycopg.errors.UndefinedTable as exc:
        raise JobListingError(
            "this database has no job index yet: start `durable-mcp serve` with "
            f"RESONATE_PG_DSN once, it creates it ({exc})"
        ) from exc
    except psycopg.Error as exc:
        message = " ".join(str(exc).split())  # one line
        raise JobListingError(f"cannot list the jobs on Postgres: {message}") from exc


class JobSweeper:
    """Removes jobs that finished more than ``retention`` ago, with their steps."""

    def __init__(
        self,
        sessions: PgSessions,
        retention: timedelta,
        *,
        batch: int = JOBS_PER_BATCH,
    ) -> None:
        self.sessions = sessions
        self.retention_ms = int(retention.total_seconds() * 1000)
        self.batch = batch

    async def sweep(self) -> int:
        """One pass, batch after batch until none is full: the jobs removed.

        Each batch is a transaction that first takes our sweep lock: if another
        replica holds it, that replica is sweeping and this pass ends.
        """
        removed = 0
        while True:
            async with self.sessions.session() as conn:
                locked = await conn.execute(
                    "SELECT pg_try_advisory_xact_lock(%s, %s)", [LOCK_SPACE, SWEEP_LOCK]
                )
                if not (await locked.fetchone())[0]:
                    break
                done = await conn.execute(SWEEP_SQL, [self.retention_ms, self.batch])
                roots, jobs = await done.fetchone()
            removed += jobs
            if roots < self.batch:
                break
        if removed:
            logger.info("removed %d finished jobs past the retention", removed)
        return removed

    async def keep_sweeping(
        self, every: float, before: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Sweep every ``every`` seconds, forever, through database outages
        (``before`` is awaited before each pass)."""
        failing = False
        while True:
            try:
                if before is not None:
                    await before()
                await self.sweep()
                if failing:
                    logger.info("finished jobs past the retention are removed again")
                failing = False
            except Exception as exc:
                if not failing:
                    logger.warning("cannot remove finished jobs past the retention: %s", exc)
                failing = True
            await asyncio.sleep(every)


class PostgresJobsEngine(PostgresEngine):
    """The Postgres engine, indexing the jobs it creates and removing old ones.

    ``sweep_every`` is how often finished jobs past ``retention`` are looked for.
    """

    def __init__(
        self,
        dsn: str,
        *,
        pid: str,
        group: str,
        retention: timedelta,
        sweep_every: float = SWEEP_SECONDS,
    ) -> None:
        super().__init__(dsn, pid=pid, group=group)
        self.sweeper = JobSweeper(self._sessions, retention)
        self.sweep_every = sweep_every
        self._migrated = False
        self._migrating = asyncio.Lock()
        self._sweep_loop: asyncio.Task[None] | None = None
        self._notes: JobNotes | None = None
        self._saving: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        if self._sweep_loop is None:
            self._sweep_loop = asyncio.create_task(
                self.sweeper.keep_sweeping(self.sweep_every, before=self.migrated)
            )

    async def stop(self) -> None:
        if self._saving is not None and not self._saving.done():
            self._saving.cancel()
        if self._notes is not None and not self._stopped:
            await self._save_notes(delay=0)  # the last ones, while the database is ours
        if self._sweep_loop is not None:
            self._sweep_loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweep_loop
        await super().stop()

    async def migrated(self) -> None:
        """Our schema is there (created or updated now, the first time)."""
        if self._migrated:
            return
        async with self._migrating:
            if not self._migrated:
                async with self._sessions.session() as conn:
                    await migrate(conn)
                self._migrated = True

    async def send(self, req: str, headers: dict[str, str] | None = None) -> str:
        """resonate-pg's request, and for a new job its index row, in one transaction."""
        job_id = created_job(req)
        if job_id is None:
            return await super().send(req, headers)
        if self._stopped:
            raise ConnectorError(RuntimeError("connection has been stopped"))
        try:
            await self.migrated()
            async with self._sessions.session() as conn:
                row = await (await conn.execute(RPC_SQL, (req,))).fetchone()
                await conn.execute(INDEX_JOB_SQL, (job_id,))
        except Exception as exc:
            raise ConnectorError(exc) from exc
        if row is None or row[0] is None:
            raise ConnectorError(RuntimeError("resonate.resonate_rpc returned no row"))
        return str(row[0])

    async def list_jobs(
        self,
        status: JobStatus | None,
        kind: str | None,
        limit: int,
        cursor: str | None,
        name: str | None = None,
        owner: str | None = None,
    ) -> dict[str, Any]:
        """:func:`list_jobs` on a pooled connection; the database's failures as the engine's."""
        try:
            await self.migrated()
            async with self._sessions.session() as conn:
                return await list_jobs(conn, status, kind, limit, cursor, name, owner)
        except (psycopg.Error, DatabaseUnreachable) as exc:
            raise ConnectorError(exc) from exc

    async def steps(self, job_id: str) -> list[dict[str, Any]]:
        """The job's steps, sleeps and questions (``jobs/steps.py``), oldest first."""
        rows = await self._read(STEPS_SQL, [job_id, job_id])
        return [step_of(*row) for row in rows]

    async def ping(self) -> None:
        """Raise unless the database answers a query (``/readyz``)."""
        await self._read("SELECT 1", [])

    async def job_counts(self, owner: str | None) -> dict[str, dict[str, int]]:
        """Jobs running and waiting for input now, by kind, of ``owner`` (a key; None:
        all) (``/metrics``)."""
        counts: dict[str, dict[str, int]] = {"running": {}, "input_required": {}}
        for kind, running, asked in await self._read(COUNTS_SQL, [owner, owner]):
            counts["running"][kind or ""] = running
            counts["input_required"][kind or ""] = asked
        return counts

    async def questions(self, job_ids: Sequence[str]) -> dict[str, str]:
        """The question each of ``job_ids`` waits on, by job (the ones that wait)."""
        rows = await self._read(QUESTIONS_SQL, [list(job_ids)])
        return {job_id: question_id for job_id, question_id in rows}

    async def read_notes(self, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The notes saved of ``job_ids``, by any replica."""
        rows = await self._read(
            "SELECT id, data FROM durable_mcp.notes WHERE id = ANY(%s)", [list(job_ids)]
        )
        return {job_id: data for job_id, data in rows}

    def keep_notes(self, notes: JobNotes) -> None:
        """Save what ``notes`` changes, at most NOTES_DELAY later, and read every
        replica's from here."""
        notes.on_change = self._save_soon
        notes.elsewhere = self.read_notes
        self._notes = notes

    def _save_soon(self) -> None:
        if self._saving is None or self._saving.done():
            self._saving = asyncio.create_task(self._save_notes())

    async def _save_notes(self, delay: float = NOTES_DELAY) -> None:
        """The changed notes, in one transaction; again with the next change if it fails."""
        await asyncio.sleep(delay)
        assert self._notes is not None
        changed = self._notes.take_changed()
        gone = [job_id for job_id, notes in changed.items() if notes is None]
        kept = {job_id: notes for job_id, notes in changed.items() if notes is not None}
        try:
            await self.migrated()
            async with self._sessions.session() as conn:
                if gone:
                    await conn.execute("DELETE FROM durable_mcp.notes WHERE id = ANY(%s)", [gone])
                if kept:
                    await conn.execute(SAVE_NOTES_SQL, [json.dumps(kept)])
        except Exception as exc:  # an outage: they go with the next change
            self._notes.changed_again(changed)
            logger.debug("cannot save the jobs' notes yet: %s", exc)

    async def _read(self, sql: str, params: list[Any]) -> list[Any]:
        try:
            await self.migrated()
            async with self._sessions.session() as conn:
                return list(await (await conn.execute(sql, params)).fetchall())
        except (psycopg.Error, DatabaseUnreachable) as exc:
            raise ConnectorError(exc) from exc
