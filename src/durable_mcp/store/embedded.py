"""The embedded durable store: the SDK's reference state machine, made durable.

``EmbeddedStore`` is a Resonate ``Network`` and ``Source`` in one, like the
SDK's in-process ``LocalConnection``, and it runs the same ``ServerState``: the
protocol semantics are the SDK's own, not a re-implementation. What it adds:

* every state change is journaled (see ``journal.py``), in order, and
  committed on a writer thread of its own, so the event loop never waits on
  the disk. Changes group-commit: those made while a commit is under way
  share the next one, however many sessions made them. Nothing is told before
  it is on disk: a change is answered, and its messages (wake-ups, work to
  execute) are sent, once its commit is done; a read waits for the commits
  under way unless it reads a promise with no change waiting for the disk, so
  it never answers what a crash could undo;
* a commit that fails (a full disk) is undone in memory too: the state goes
  back to what is on disk and every change of that commit fails with
  :class:`StoreUnavailable`, as do the changes made while it was under way.
  Reads go on, each new change tries the disk
  again (the clock's own, once a second), so the store carries on by itself
  once there is room;
* on start, it rebuilds the state and releases the leases of the process that
  died, so interrupted jobs resume at once instead of after their 60 s lease;
* a job that has ended leaves memory for the store's archive, a table of its
  own database (``archive.py``), where reads find it: memory grows with the
  running jobs, not with the retention;
* settled jobs older than the retention period are removed, keeping the
  state and the files bounded;
* it tells its ``on_job_change`` observer of each job that ended, and each
  question asked or answered, once that is on disk (see ``job_changes.py``);
* it saves the notes running jobs write (their progress, ``SavedNotes``) with
  its commits, at most :data:`NOTES_DELAY` after they change, and gives them
  back at the next start.

It refuses to be anything more: no scheduling of its own, no second index.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import msgspec
from resonate.error import DecodingError, ServerError
from resonate.timing import Clock, Sleeper, now_ms, sleep
from resonate_base.error import ConnectorError

from durable_mcp.events import job_event
from durable_mcp.sdk_compat import (
    DurablePromise,
    PTimeout,
    ScheduleStub,
    ServerState,
    Task,
    TTimeout,
    unwrap_request_envelope,
    without_null_values,
    wrap_response_envelope,
)
from durable_mcp.store.archive import SCHEMA as ARCHIVE_SCHEMA
from durable_mcp.store.archive import Archive, ArchivedJob, ArchiveWrite
from durable_mcp.store.job_changes import (
    JobChangeObserver,
    ignore_job_change,
    job_changes,
    tell_job_changes,
)
from durable_mcp.store.journal import (
    DB_NAME,
    MOVE_ASIDE,
    Journal,
    JournalWriteError,
    RowsWrite,
    StoreError,
    Write,
)
from durable_mcp.store.outbox import Event, Outbox, events_of
from durable_mcp.store.state import JOB_STATUS, IndexedState, is_job, kind_of

logger = logging.getLogger(__name__)

SCHEME = "embedded"

#: How often deadlines (sleeps, leases, retries) are checked.
TICK_SECONDS = 0.1
#: A snapshot replaces the journal once it holds this many entries, or a
#: quarter as many as the state has promises if that is more: a snapshot costs
#: time in proportion to the state (0.4 s on the event loop at 100,000 jobs),
#: so it is taken less often as the state grows, which keeps its share of the
#: work small; a restart replays at most that many entries.
SNAPSHOT_EVERY = 5_000
SNAPSHOT_SHARE = 4
#: How often settled jobs past the retention period are removed.
SWEEP_EVERY = timedelta(minutes=10)
DEFAULT_RETENTION = timedelta(days=7)

#: Ended jobs moved to the archive per tick, and archived jobs swept per commit.
#: Ticks come slower than 10 a second when the loop is busy: at 500 a tick, 100,000
#: timers firing outran the moves (47,000 ended jobs still in memory, 2 GB peak),
#: where 2,000 a tick kept up (1.55 GB peak) (``bench/scale.py``).
ARCHIVED_AT_ONCE, SWEPT_AT_ONCE = 2_000, 10_000

#: Requests that only read: journaled only when they time out a promise (below).
READ_ONLY = frozenset({"promise.get", "promise.search", "schedule.get", "schedule.search"})


#: Why a request to a stopped store fails; the job resumes at the next start.
STOPPED = "the embedded store has stopped (the server is shutting down)"


class StoreStopped(ConnectorError):
    """A request reached the store after it stopped: the server is shutting down."""


class StoreUnavailable(ConnectorError):
    """A change could not be written to disk (a full disk, say), so it was undone."""


#: After a failed commit, how long the clock's changes wait before the disk is tried again.
RETRY_WRITE_MS = 1_000
#: A task's requests that end its execution when they fail (a heartbeat's do not).
CUT_OFF_BY_A_FAILED_WRITE = frozenset(
    {"task.fence", "task.fulfill", "task.suspend", "task.release"}
)
#: Ends every StoreUnavailable message (and tells it apart in the SDK's events).
UNWRITABLE_HINT = "Free disk space (or fix the disk), then try again."

#: Jobs' notes changed are saved at most this long after (with the next commit,
#: or one of their own): a job that reports its progress 100 times a second
#: costs at most two commits a second, for all jobs together.
NOTES_DELAY = 0.5


class SavedNotes(Protocol):
    """What the store saves of the notes jobs write (``jobs/notes.py``'s ``JobNotes``)."""

    on_change: Callable[[], None] | None

    def take_changed(self) -> dict[str, dict[str, Any] | None]: ...

    def changed_again(self, job_ids: Iterable[str]) -> None: ...

    def load(self, saved: Mapping[str, dict[str, Any]]) -> None: ...


# ── journal entries ────────────────────────────────────────────────────────


class Apply(msgspec.Struct, tag="apply", array_like=True):
    """A request applied at ``now``."""

    now: int
    req: Any


class Tick(msgspec.Struct, tag="tick", array_like=True):
    """The clock passed deadlines at ``now``."""

    now: int


class Sweep(msgspec.Struct, tag="sweep", array_like=True):
    """Jobs settled before ``cutoff`` were removed."""

    cutoff: int


class Forget(msgspec.Struct, tag="forget", array_like=True):
    """The failed or cancelled job ``job_id`` was removed, to be started again."""

    job_id: str


class Archived(msgspec.Struct, tag="archive", array_like=True):
    """The ended jobs ``job_ids`` left memory for the archive (written in the same commit)."""

    job_ids: list[str]


class Unarchived(msgspec.Struct, tag="unarchive", array_like=True):
    """An archived job came back into memory (a request would change it): the job itself,
    so that replay reads nothing."""

    root: bytes
    rest: bytes


Entry = Apply | Tick | Sweep | Forget | Archived | Unarchived


class Snapshot(msgspec.Struct):
    promises: dict[str, DurablePromise]
    tasks: dict[str, Task]
    schedules: dict[str, ScheduleStub]
    p_timeouts: list[PTimeout]
    t_timeouts: list[TTimeout]
    retired_versions: dict[str, int] = {}
    renewed_versions: dict[str, int] = {}


_entry_decoder = msgspec.msgpack.Decoder(Entry)
_snapshot_decoder = msgspec.msgpack.Decoder(Snapshot)
_encoder = msgspec.msgpack.Encoder()


def replay(state: IndexedState, entry: Entry) -> None:
    """Apply one journal entry to ``state``; deterministic, so replay rebuilds it."""
    match entry:
        case Apply(now=now, req=req):
            with contextlib.suppress(ServerError):  # it failed the same way the first time
                state.apply(now, req)
        case Tick(now=now):
            state.tick(now)
        case Sweep(cutoff=cutoff):
            sweep(state, cutoff)
        case Forget(job_id=job_id):
            state.forget_job(job_id)
        case Archived(job_ids=job_ids):
            for job_id in job_ids:
                if job_id in state.promises:
                    state.take_job(job_id)
        case Unarchived(root=root, rest=rest):
            state.put_job(ArchivedJob.decode(root, rest))
    state.outgoing.clear()


def snapshot_of(state: IndexedState) -> bytes:
    return _encoder.encode(
        Snapshot(
            promises=state.promises,
            tasks=state.tasks,
            schedules=state.schedules,
            p_timeouts=state.p_timeouts,
            t_timeouts=state.t_timeouts,
            retired_versions=state.retired_versions,
            renewed_versions=state.renewed_versions,
        )
    )


def restore(snapshot: bytes | None, entries: list[bytes]) -> IndexedState:
    state = IndexedState()
    state.promises.jobs = None  # built once at the end (``open``), not kept through replay
    if snapshot is not None:
        saved = _snapshot_decoder.decode(snapshot)
        state.load(saved.promises)
        state.tasks = saved.tasks
        state.schedules = saved.schedules
        state.p_timeouts = saved.p_timeouts
        state.t_timeouts = saved.t_timeouts
        state.retired_versions = saved.retired_versions
        state.renewed_versions = saved.renewed_versions
    for raw in entries:
        replay(state, _entry_decoder.decode(raw))
    return state


def peek(data_dir: Path) -> IndexedState:
    """The state saved in ``data_dir``, read-only, while its server may be running
    (its archive read from the file as ``durable-mcp jobs`` lists)."""
    saved = Journal.peek(data_dir)
    state = restore(saved.snapshot, saved.entries)
    with contextlib.suppress(sqlite3.Error):  # a store from before the archive has none
        archive = Archive(data_dir / DB_NAME)
        archive.count()
        state.archive = archive
    return state


def expired_roots(state: ServerState, cutoff: int) -> list[str]:
    """Top-level jobs that settled before ``cutoff``."""
    return [
        p.id
        for p in state.promises.values()
        if is_job(p.id) and p.state != "pending" and (p.settled_at or 0) < cutoff
    ]


def sweep(state: IndexedState, cutoff: int) -> None:
    """Remove jobs settled before ``cutoff``, with their steps, tasks and timeouts."""
    state.remove_jobs(set(expired_roots(state, cutoff)))


def changes_state(state: ServerState, now: int, req: Any) -> bool:
    """Whether applying ``req`` can change the state (and so must be journaled).

    A read changes nothing, except a ``promise.get`` of a pending promise past
    its deadline: the state machine times it out on the way.
    """
    kind = req.get("kind") if isinstance(req, dict) else None
    if kind not in READ_ONLY:
        return True
    if kind == "promise.get":
        p = state.promises.get(req.get("id", ""))
        return p is not None and p.state == "pending" and now >= p.timeout_at
    return False


#: The keys under which a request names a promise or a task (at any depth: a
#: ``task.create`` names its promise in ``action.data.id``).
NAMING_KEYS = frozenset({"id", "awaited", "awaiter", "promiseId"})


def named_ids(req: Any) -> Iterator[str]:
    """Every promise or task id ``req`` names."""
    if isinstance(req, dict):
        for key, value in req.items():
            if key in NAMING_KEYS and isinstance(value, str):
                yield value
            elif isinstance(value, dict | list):
                yield from named_ids(value)
    elif isinstance(req, list):
        for item in req:
            yield from named_ids(item)


class EmbeddedStore:
    """A durable Resonate store in ``data_dir``, for one process at a time.

    Every change (apply, journal, take the outgoing messages) runs without an
    ``await`` in between, so on one event loop it needs no lock. Only the
    journal's writes run on the writer thread, one at a time.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        pid: str,
        group: str,
        retention: timedelta = DEFAULT_RETENTION,
        clock: Clock = now_ms,
        sleeper: Sleeper = sleep,
        tick_seconds: float = TICK_SECONDS,
        snapshot_every: int = SNAPSHOT_EVERY,
        writer: Executor | None = None,
        on_job_change: JobChangeObserver = ignore_job_change,
        notes: SavedNotes | None = None,
        outbox: Outbox | None = None,
        archive: bool = True,
    ) -> None:
        """``writer`` runs the journal's writes, one at a time (default: a thread
        of the store's own); tests on fake time pass one that writes at once.
        ``on_job_change`` is told of each job's settled promise once its end is
        on disk (completed, failed, cancelled or timed out), and of each
        question asked or answered: see ``job_changes.py``. ``notes`` are
        saved with the commits and loaded back on open; so are the events of
        the ``outbox``, each in the commit of the change it tells of, until
        delivered. ``archive``: move ended jobs out of memory (``archive.py``);
        off, every job stays in memory until the retention removes it, as the
        SDK's own state machine keeps them (a test compares the two)."""
        self.on_job_change = on_job_change
        #: Told ``(seconds, entries)`` of each commit: how long its write took, and
        #: how many changes it carried (``/metrics``).
        self.on_commit: Callable[[float, int], None] | None = None
        self.notes = notes
        self.outbox = outbox
        self._delivered: set[str] = set()  # outbox events delivered, to delete
        self._save_due: asyncio.Task[None] | None = None
        self.data_dir = data_dir
        self.retention_ms = int(retention.total_seconds() * 1000)
        self._clock = clock
        self._sleeper = sleeper
        self._tick_seconds = tick_seconds
        self._snapshot_every = snapshot_every
        self._pid = pid
        self._unicast = f"{SCHEME}://uni@{group}/{pid}"
        self._journal = Journal(data_dir)
        self.state = IndexedState()
        self._receivers: list[Callable[[str], None]] = []
        self._tick_task: asyncio.Task[None] | None = None
        self._batch: _Batch | None = None  # changes not yet handed to the writer
        self._writing: _Batch | None = None  # the changes the writer is saving now
        self._given_writer = writer
        self._writer: Executor | None = None  # one write at a time, in order
        self._write_error: str | None = None  # why the last commit failed, until one succeeds
        self._retry_write_at = 0  # when ticks try the disk again after a failed commit
        self._cut_off: dict[str, int] = {}  # task -> version whose execution a failed write ended
        self._last_sweep = 0
        self._archive: Archive | None = None  # the ended jobs' reader, once open
        self._archives = archive
        self._stopped = False
        self._broken = False  # memory and disk may differ: it answers nothing more

    # ── lifecycle ──────────────────────────────────────────────────────────

    def open(self) -> None:
        """Take the data dir and rebuild the saved state (raises StoreError)."""
        saved = self._journal.open()
        self._writer = self._given_writer or ThreadPoolExecutor(
            1, thread_name_prefix="durable-mcp-journal"
        )
        try:
            self._journal.ensure(ARCHIVE_SCHEMA)
            self.state = restore(saved.snapshot, saved.entries)
            self.state.promises.job_index()  # now, not by the first list_jobs page
            self.state.promises.changed = set()
            self.state.archive = self._archive = Archive(self._journal.path)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.close()
            raise StoreError(
                f"the store in {self.data_dir} cannot be read ({exc}); {MOVE_ASIDE}"
            ) from exc
        if self.notes is not None:
            self._load_notes()
        if self.outbox is not None:
            self.outbox.add(self._journal.read_rows("outbox").items())
        logger.info(
            "embedded store opened: %s (%d jobs in memory, %d archived, %d journal "
            "entries replayed)",
            self.data_dir,
            sum(map(is_job, self.state.promises)),
            self._archive.count(),
            len(saved.entries),
        )

    def _load_notes(self) -> None:
        """The notes saved of the jobs still running; the others' are to be deleted."""
        assert self.notes is not None
        saved, ended = {}, []
        for job_id, data in self._journal.read_rows("notes").items():
            promise = self.state.promises.get(job_id)
            if promise is not None and promise.state == "pending":
                with contextlib.suppress(msgspec.DecodeError):
                    saved[job_id] = msgspec.json.decode(data)
            else:
                ended.append(job_id)
        self.notes.load(saved)
        self.notes.changed_again(ended)

    async def start(self) -> None:
        """Resume what the last process left running, then keep time."""
        if self.notes is not None:
            self.notes.on_change = self._save_soon
        if self.outbox is not None:
            self.outbox.on_delivered = self._outbox_delivered
        now = self._clock()
        # The data dir is ours alone, so every lease is a dead process's.
        for task in list(self.state.tasks.values()):
            if task.state == "acquired":
                self._apply(now, {"kind": "task.release", "id": task.id})
        resumed = self._send_executes_again(log_resumed=True)
        if resumed:
            logger.info("resuming %d interrupted job%s", resumed, "" if resumed == 1 else "s")
        self._sweep(now)
        await self._written()
        self._tick_task = asyncio.create_task(self._tick_loop())

    async def stop(self) -> None:
        self._stopped = True
        if self._save_due is not None:
            self._save_due.cancel()
        if self.notes is not None:
            self.notes.on_change = None
        if self.outbox is not None:
            self.outbox.on_delivered = None
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
            self._tick_task = None
        await self._written()
        self._receivers.clear()
        if self._write_error is None:
            self._save_rows()
            if self._journal.entries_since_snapshot:
                self._journal.snapshot(snapshot_of(self.state))
            with contextlib.suppress(JournalWriteError):  # the journal has it all anyway
                self._journal.commit()  # nothing queued: nothing written
        self.close()

    def close(self) -> None:
        """Release the data dir at once, as a crash would (``stop`` is the clean way)."""
        if self._writer is not None and self._writer is not self._given_writer:
            self._writer.shutdown()  # a write under way finishes first
        self._writer = None
        if self._archive is not None:
            self.state.archive = None
            self._archive.close()
            self._archive = None
        self._journal.close()

    # ── Network ────────────────────────────────────────────────────────────

    async def send(self, req: str, headers: dict[str, str] | None = None) -> str:
        self._refuse_if_closed()
        try:
            flat = unwrap_request_envelope(msgspec.json.decode(req))
        except msgspec.DecodeError as exc:
            raise DecodingError(f"invalid JSON request: {exc}") from exc

        now = self._clock()
        while not changes_state(self.state, now, flat):
            if self._answer_is_on_disk(flat):
                try:
                    response = self.state.apply(now, flat)
                except StoreError as exc:  # an archived job damaged on disk: its one line
                    raise StoreUnavailable(RuntimeError(str(exc))) from exc
                return msgspec.json.encode(wrap_response_envelope(response)).decode()
            await self._written()
            self._refuse_if_closed()
            now = self._clock()

        # The jobs it names that are not in memory (archived, or not made yet).
        elsewhere = self._jobs_not_in_memory(flat)
        while self._being_archived(elsewhere):
            await self._written()  # their rows are then in the archive, to bring back
            self._refuse_if_closed()
            now = self._clock()
            elsewhere = self._jobs_not_in_memory(flat)
        for job_id in elsewhere:  # none in normal use: an ended job is only read
            self._unarchive(job_id)
        error: ServerError | None = None
        try:
            response = self._apply(now, flat)
        except ServerError as exc:
            error = exc
        try:
            await self._batch_of_this_turn().written()
        except StoreUnavailable:
            self._note_cut_off(flat)
            raise
        if error is not None:
            raise error
        return msgspec.json.encode(wrap_response_envelope(response)).decode()

    # ── Source ─────────────────────────────────────────────────────────────

    def unicast(self) -> str:
        return self._unicast

    def resolve_target(self, target: str) -> str:
        return f"{SCHEME}://any@{target}"

    def recv(self, callback: Callable[[str], None]) -> None:
        self._receivers.append(callback)

    # ── writing ────────────────────────────────────────────────────────────

    def _answer_is_on_disk(self, read: Any) -> bool:
        """Whether what ``read`` would answer holds no change still waiting for
        the disk: then it is answered at once, not after the commits under way."""
        unwritten = [batch for batch in (self._batch, self._writing) if batch is not None]
        if not unwritten:
            return True
        if read.get("kind") == "promise.get":  # most reads: a job's status
            return not any(read.get("id") in batch.changed for batch in unwritten)
        return False

    def _apply(self, now: int, req: Any) -> dict[str, Any]:
        """Apply and journal a request (journaled even if it fails: replay fails alike)."""
        try:
            return self.state.apply(now, req)
        finally:
            self._write(Apply(now=now, req=req))

    def _write(self, entry: Entry) -> None:
        """Journal ``entry``; it and the messages it made go with this turn's commit."""
        self._journal.append(_encoder.encode(entry))
        batch = self._batch_of_this_turn()
        batch.outgoing += self._take_outgoing()
        changed = self.state.promises.changed
        if changed:
            ended = job_changes(self.state.promises, changed)
            if events := events_of(self.outbox, ended, self.state.promises):
                # In this change's commit: a crash after it still delivers them.
                self._journal.save_rows("outbox", dict(events))
                batch.events += events
            batch.ended += ended
            batch.changed |= changed
            changed.clear()

    def _batch_of_this_turn(self) -> _Batch:
        if self._batch is None:
            loop = asyncio.get_running_loop()
            self._batch = _Batch(done=loop.create_future())
            if self._writing is None:
                loop.call_soon(self._commit)  # else once the writer is done
        return self._batch

    async def _written(self) -> None:
        """Wait until no change is waiting for its commit (it was written or undone)."""
        while (batch := self._batch or self._writing) is not None:
            with contextlib.suppress(StoreUnavailable):
                await batch.written()

    def _commit(self) -> None:
        """Hand the changes made so far to the writer thread (one write at a time)."""
        if self._batch is None or self._writing is not None:
            return  # nothing to write, or it goes once the writer is done
        batch, self._batch = self._batch, None
        self._writing = batch
        self._save_rows()
        pending = self._journal.take()
        batch.began = time.perf_counter()
        batch.entries = len(pending)
        try:
            assert self._writer is not None, "the embedded store is closed"
            written = asyncio.get_running_loop().run_in_executor(
                self._writer, self._journal.write, pending
            )
        except Exception as exc:  # a bug, or a store closed under us: say so, hang nobody
            self._settle(batch, pending, exc)
            return
        written.add_done_callback(
            lambda done: self._settle(
                batch, pending, RuntimeError("cancelled") if done.cancelled() else done.exception()
            )
        )

    def _settle(self, batch: _Batch, pending: list[Write], error: BaseException | None) -> None:
        """The writer is done with ``batch``: send its messages, or undo it.

        Whatever happens, the batch is settled: nobody waits on it forever.
        Changes made meanwhile go to the writer next.
        """
        self._writing = None
        if error is None:
            self._journal.written(pending)
            self._committed(batch)
        else:
            self._journal.unwritten()  # the changes made meanwhile go too
            for write in pending:
                if isinstance(write, RowsWrite):  # to save with the next commit
                    if write.table == "notes" and self.notes is not None:
                        self.notes.changed_again(write.rows)
                    elif write.table == "outbox":
                        self._delivered.update(k for k, v in write.rows.items() if v is None)
            later, self._batch = self._batch, None
            if isinstance(error, JournalWriteError):
                self._undo(error)
                failure = StoreUnavailable(RuntimeError(self._unavailable()))
            else:
                logger.error("the embedded store could not commit: %r", error)
                failure = StoreUnavailable(
                    error if isinstance(error, Exception) else RuntimeError(repr(error))
                )
            for failed in (batch, later):
                if failed is not None:
                    failed.done.set_exception(failure)
                    failed.done.exception()  # logged once above; whoever awaits it gets it too
        if self._batch is not None:
            self._commit()

    def _committed(self, batch: _Batch) -> None:
        if self.on_commit is not None:
            self.on_commit(time.perf_counter() - batch.began, batch.entries)
        if self._write_error is not None:
            self._write_error = None
            logger.warning("the embedded store in %s can write again", self.data_dir)
            if not batch.renewed_leases:  # the tick's try did so already
                self._renew_leases_and_release_cut_off()
            self._send_executes_again()  # what waited to run meanwhile
        batch.done.set_result(None)
        if self.outbox is not None and batch.events:
            self.outbox.add(batch.events)
        try:
            self._dispatch(batch.outgoing)
        finally:
            tell_job_changes(self.on_job_change, batch.ended)

    def _undo(self, exc: JournalWriteError) -> None:
        """Put the state back to what is on disk; ticks wait a second before trying again."""
        try:
            saved = self._journal.read()
            restored = restore(saved.snapshot, saved.entries)
        except Exception as read_error:
            # Memory and disk may now differ: answering anything more could lie.
            logger.error(
                "the embedded store %s, nor read back (%s): restart the server", exc, read_error
            )
            self._write_error = f"{exc}, nor read back: restart the server"
            self._retry_write_at = 2**63  # nothing more is written, ticked or answered
            self._broken = True
            if self._tick_task is not None:
                self._tick_task.cancel()
            return
        self.state.become(restored)
        self.state.promises.changed = set()
        self._retry_write_at = self._clock() + RETRY_WRITE_MS
        if self._write_error is None:
            logger.error(
                "the embedded store %s; changes fail (and are undone) until it can write; "
                "reads go on, and nothing written is lost",
                exc,
            )
        self._write_error = str(exc)

    def _note_cut_off(self, req: Any) -> None:
        """An execution whose step could not be written has ended: note its task."""
        if isinstance(req, dict) and req.get("kind") in CUT_OFF_BY_A_FAILED_WRITE:
            task_id, version = req.get("id"), req.get("version")
            if isinstance(task_id, str) and isinstance(version, int):
                self._cut_off[task_id] = version

    def _renew_leases_and_release_cut_off(self) -> None:
        """After failed writes: keep this process's running work, restart what was cut off.

        Heartbeats that could not be written were undone, so the leases of work
        still running here look older than they are: renew them (the data dir is
        ours alone) before a tick would hand that work to a second execution.
        Tasks whose execution a refused write ended are released to run again.
        """
        now = self._clock()
        running = [
            {"id": task.id, "version": task.version}
            for task in self.state.tasks.values()
            if task.state == "acquired" and task.id not in self._cut_off
        ]
        if running:
            self._apply(now, {"kind": "task.heartbeat", "pid": self._pid, "tasks": running})
        self._release_cut_off()
        if self._batch is not None:
            self._batch.renewed_leases = True

    def _release_cut_off(self) -> None:
        """Release the tasks whose execution a failed write ended, so that they run
        again at once rather than after their 60 s lease. Kept until it is written."""
        now = self._clock()
        for task_id, version in list(self._cut_off.items()):
            task = self.state.tasks.get(task_id)
            if task is not None and task.state == "acquired" and task.version == version:
                self._apply(now, {"kind": "task.release", "id": task_id, "version": version})
            else:
                del self._cut_off[task_id]  # released, or moved on: nothing left to do

    @property
    def problem(self) -> str | None:
        """Why the store cannot take changes now (stopped, broken, a disk that
        refuses writes), in one line; None when it can (``/readyz``)."""
        if self._stopped or self._writer is None:
            return "the embedded store is not open"
        if self._write_error is not None:
            return f"the embedded store {self._write_error}"
        return None

    def size_on_disk(self) -> int:
        """The bytes of the store's files in its data dir (``/metrics``)."""
        total = 0
        for path in self.data_dir.iterdir():
            with contextlib.suppress(OSError):  # a file replaced meanwhile
                if path.is_file():
                    total += path.stat().st_size
        return total

    def _refuse_if_closed(self) -> None:
        if self._broken:
            raise StoreUnavailable(RuntimeError(self._unavailable()))
        if self._stopped:
            raise StoreStopped(RuntimeError(STOPPED))

    def _unavailable(self) -> str:
        return f"the embedded store {self._write_error}; nothing was changed. {UNWRITABLE_HINT}"

    # ── notes and delivered events ─────────────────────────────────────────

    def _outbox_delivered(self, key: str) -> None:
        self._delivered.add(key)
        self._save_soon()

    def _save_soon(self) -> None:
        """A job wrote a note, or an event was delivered: it goes with the next commit,
        at most NOTES_DELAY from now (on the store's sleeper, so that a test's fake
        time moves it)."""
        if self._save_due is None:
            self._save_due = asyncio.create_task(self._save_later())

    async def _save_later(self) -> None:
        await self._sleeper(NOTES_DELAY)
        self._save_due = None
        # Not while the disk refuses writes: they go with the commit that finds it
        # writable again (a few rows may fit where the journal does not: that is
        # no sign that it can write again).
        if not self._stopped and not self._broken and self._write_error is None:
            self._batch_of_this_turn()  # a commit, which takes the rows with it

    def _save_rows(self) -> None:
        """Queue the notes changed and the events delivered since the last commit, for this one."""
        changed = self.notes.take_changed() if self.notes is not None else {}
        if changed:
            self._journal.save_rows(
                "notes",
                {
                    job: None if notes is None else msgspec.json.encode(notes)
                    for job, notes in changed.items()
                },
            )
        if self._delivered:
            self._journal.save_rows("outbox", dict.fromkeys(self._delivered))
            self._delivered = set()

    # ── internals ──────────────────────────────────────────────────────────

    def _send_executes_again(self, *, log_resumed: bool = False) -> int:
        """Tell the workers again of every task waiting to run (a message may be lost);
        the number of jobs still running that they belong to.

        A cancelled job's durable sleep keeps its task until the sleep's own
        deadline: it is sent, but its job is not counted as resumed.
        """
        jobs: set[str] = set()
        for task in self.state.tasks.values():
            promise = self.state.promises.get(task.id)
            target = promise.tags.get("resonate:target") if promise else None
            if task.state == "pending" and promise is not None and target is not None:
                self.state.send_execute_message(target, task.id, task.version)
                job = self.state.promises.get(promise.tags.get("resonate:origin", task.id))
                if job is not None and job.state == "pending":
                    jobs.add(job.id)
                if log_resumed and is_job(task.id):
                    job_event("resumed", task.id)
        outgoing = self._take_outgoing()
        if (batch := self._batch or self._writing) is not None:
            batch.outgoing += outgoing  # sent after the changes they follow are on disk
        else:
            self._dispatch(outgoing)
        return len(jobs)

    def _take_outgoing(self) -> list[Any]:
        outgoing = self.state.outgoing
        self.state.outgoing = []
        return outgoing

    def _dispatch(self, outgoing: list[Any]) -> None:
        for message in outgoing:
            if self._is_stale(message.message):
                continue
            text = msgspec.json.encode(without_null_values(message.message)).decode()
            for receiver in list(self._receivers):
                receiver(text)

    def _is_stale(self, message: Any) -> bool:
        """An execute for a task that has moved on since (a short sleep already over)."""
        if message.get("kind") != "execute":
            return False
        ref = message["data"]["task"]
        task = self.state.tasks.get(ref["id"])
        return task is None or task.state != "pending" or task.version != ref["version"]

    def _sweep(self, now: int) -> None:
        cutoff = now - self.retention_ms
        self._last_sweep = now
        if expired_roots(self.state, cutoff):
            sweep(self.state, cutoff)
            self._write(Sweep(cutoff=cutoff))
        if self._archive is not None:
            gone = self._archive.settled_before(cutoff, SWEPT_AT_ONCE)
            if gone:
                self._journal.queue(ArchiveWrite(seq=0, entry=b"", gone=gone))
                self._batch_of_this_turn()
                if len(gone) == SWEPT_AT_ONCE:
                    self._last_sweep = 0  # more to go: again at the next tick

    def _archive_ended(self) -> None:
        """Move the jobs that have ended out of memory, into the archive, in one commit
        (``archive.py``); reads of them wait for it, then find them there."""
        if self._archive is None or not self._archives or not self.state.finished:
            return
        # A few more looked at than moved: one whose task a worker still holds waits.
        looked_at = list(itertools.islice(self.state.finished, 2 * ARCHIVED_AT_ONCE))
        self.state.finished.difference_update(  # gone meanwhile, or started again: not ended
            [job_id for job_id in looked_at if self._not_ended(job_id)]
        )
        done = [job_id for job_id in looked_at if self.state.can_archive(job_id)]
        if not done:
            return
        done = done[:ARCHIVED_AT_ONCE]
        jobs = [self.state.take_job(job_id) for job_id in done]
        self._write(Archived(job_ids=done))
        self._batch_of_this_turn().archived.update(done)
        rows = [(job, JOB_STATUS[job.root.state], kind_of(job.root)) for job in jobs]
        self._journal.queue(ArchiveWrite(seq=0, entry=b"", jobs=rows))

    def _not_ended(self, job_id: str) -> bool:
        promise = self.state.promises.get(job_id)
        return promise is None or promise.state == "pending"

    def _unarchive(self, job_id: str) -> None:
        """Bring the archived job ``job_id`` back into memory, if it is archived."""
        if self._archive is None or job_id in self.state.promises:
            return
        job = self._archive.job(job_id)
        if job is None:
            return
        self.state.put_job(job)
        root, rest = job.encode()
        self._write(Unarchived(root=root, rest=rest))
        self._journal.queue(ArchiveWrite(seq=0, entry=b"", gone=[job_id]))

    def _jobs_not_in_memory(self, req: Any) -> set[str]:
        """The jobs of the promises and tasks ``req`` names that memory lacks: a change
        to one that is archived must find it in memory first, as it was."""
        if self._archive is None:
            return set()
        return {
            promise_id.split(":", 1)[0]
            for promise_id in named_ids(req)
            if promise_id not in self.state.promises
        }

    def _being_archived(self, job_ids: set[str]) -> bool:
        """Whether any of ``job_ids`` left memory in a commit still under way."""
        return any(
            not job_ids.isdisjoint(batch.archived)
            for batch in (self._batch, self._writing)
            if batch is not None
        )

    async def forget(self, job_id: str) -> None:
        """Remove the failed or cancelled job ``job_id`` (see ``IndexedState.forget_job``)."""
        self._refuse_if_closed()
        self._unarchive(job_id)  # its task's version is kept: it must be in memory
        self.state.forget_job(job_id)
        self._write(Forget(job_id=job_id))
        await self._batch_of_this_turn().written()

    async def tick(self) -> None:
        """Act on the deadlines that have passed; now and then sweep and snapshot."""
        now = self._clock()
        if self._write_error is not None:
            if now < self._retry_write_at:
                return
            self._renew_leases_and_release_cut_off()  # also tries whether the disk takes writes
        if self.state.is_due(now):
            self.state.tick(now)
            self._write(Tick(now=now))
        if now - self._last_sweep >= SWEEP_EVERY.total_seconds() * 1000:
            self._sweep(now)
        self._archive_ended()
        due = max(self._snapshot_every, len(self.state.promises) // SNAPSHOT_SHARE)
        if self._journal.entries_since_snapshot >= due:
            self._journal.snapshot(snapshot_of(self.state))
            self._batch_of_this_turn()
        await self._written()

    async def _tick_loop(self) -> None:
        while True:
            await self._sleeper(self._tick_seconds)
            await self.tick()


@dataclass
class _Batch:
    """Changes committed together (one write), then their messages sent."""

    done: asyncio.Future[None]
    outgoing: list[Any] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)  # the promises whose records changed
    archived: set[str] = field(default_factory=set)  # the jobs that left memory for the archive
    ended: list[DurablePromise] = field(default_factory=list)  # jobs settled, questions
    events: list[Event] = field(default_factory=list)  # the outbox's, saved in this commit
    renewed_leases: bool = False  # holds the renewals after an outage
    began: float = 0.0  # when its write began (perf_counter), and how many changes it holds
    entries: int = 0

    async def written(self) -> None:
        """Wait until the batch is on disk (raises StoreUnavailable if it was undone).

        Shielded: a waiter that is cancelled (its client went away) must not
        cancel the batch under every other change waiting on it.
        """
        await asyncio.shield(self.done)
