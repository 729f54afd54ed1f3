"""The SDK's ``ServerState`` with indexes, so that it scales past a few jobs.

The reference state machine answers three questions by scanning: which
promises share a branch (``preload``, on every task operation), which promises
a finishing task was waiting on (``enqueue_settle``), and where a promise's or
task's deadline is in the timeout lists (on every create, settle and lease).
With a week of retained jobs that turns each request into milliseconds of
work. This class keeps an index for each and changes nothing else; the
property test in ``tests/test_store.py`` checks it against the SDK's own
``ServerState``.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import itertools
from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

import msgspec
from resonate.ids import ORIGIN_SEP

from durable_mcp.owners import owner_key
from durable_mcp.sdk_compat import (
    DurablePromise,
    OutgoingMessage,
    PTimeout,
    ServerState,
    TTimeout,
    execute_task_id,
    extract_action_data,
)
from durable_mcp.store.archive import Archive, ArchivedJob


class PromiseTable(dict[str, DurablePromise]):
    """``id -> promise``, also indexed by branch (in insertion order, like the dict),
    its questions (:data:`QUESTION_TAG`) by job, and its jobs by status and kind
    once :meth:`job_index` is first asked for.

    When ``changed`` is a set, the id of every promise whose record (what
    ``promise.get`` answers) changes is added to it: created, settled or
    removed. The stores read it to tell of the jobs that ended
    (``job_changes.py``), and the embedded store to answer a read at once
    when the promise read has no change waiting for the disk.
    """

    def __init__(self, promises: Mapping[str, DurablePromise] | None = None) -> None:
        super().__init__()
        self.by_branch: dict[str, dict[str, None]] = {}
        #: job -> the ids of the questions it asked (any state), in order.
        self.questions: dict[str, dict[str, None]] = {}
        #: job -> the ids of its steps (``job:1``, ``job:1:2``, ...), in order.
        self.by_origin: dict[str, dict[str, None]] = {}
        self.jobs: JobIndex | None = None
        self.changed: set[str] | None = None
        for promise_id, promise in (promises or {}).items():
            self[promise_id] = promise

    def job_index(self) -> JobIndex:
        if self.jobs is None:
            self.jobs = JobIndex(self)
        return self.jobs

    def __setitem__(self, promise_id: str, promise: DurablePromise) -> None:
        jobs = self.jobs if is_job(promise_id) else None
        if self.changed is not None:
            self.changed.add(promise_id)
        if promise_id in self:
            if jobs is not None:
                jobs.discard(self[promise_id])
            self._unindex(promise_id)
        super().__setitem__(promise_id, promise)
        branch = promise.tags.get("resonate:branch")
        if branch is not None:
            self.by_branch.setdefault(branch, {})[promise_id] = None
        if QUESTION_TAG in promise.tags:
            job = promise.tags.get("resonate:origin", promise_id)
            self.questions.setdefault(job, {})[promise_id] = None
        origin, sep, _ = promise_id.partition(ORIGIN_SEP)  # a step's id begins with its job's
        if sep:
            self.by_origin.setdefault(origin, {})[promise_id] = None
        if jobs is not None:
            jobs.add(promise)

    def __delitem__(self, promise_id: str) -> None:
        if self.changed is not None:
            self.changed.add(promise_id)
        if self.jobs is not None and is_job(promise_id):
            self.jobs.discard(self[promise_id])
        self._unindex(promise_id)
        super().__delitem__(promise_id)

    def remove(self, gone: set[str]) -> None:
        """``del self[id]`` for each of ``gone``; many jobs leave the index in one pass."""
        jobs = self.jobs
        gone_jobs = {promise_id for promise_id in gone if is_job(promise_id)}
        if jobs is not None and len(gone_jobs) > BULK_REMOVAL:
            self.jobs = None  # not a bisect and a shift of the bucket per job
        for promise_id in gone:
            del self[promise_id]
        if jobs is not None and self.jobs is None:
            jobs.forget(gone_jobs)
            self.jobs = jobs

    def pending_question(self, job_id: str) -> DurablePromise | None:
        """The question ``job_id`` waits to have answered, if any."""
        for question_id in self.questions.get(job_id, ()):
            promise = self.get(question_id)
            if promise is not None and promise.state == "pending":
                return promise
        return None

    def _unindex(self, promise_id: str) -> None:
        tags = self[promise_id].tags
        branch = tags.get("resonate:branch")
        members = self.by_branch.get(branch) if branch is not None else None
        if members is not None:
            members.pop(promise_id, None)
            if not members:
                del self.by_branch[branch]  # type: ignore[arg-type]
        if QUESTION_TAG in tags:
            job = tags.get("resonate:origin", promise_id)
            asked = self.questions.get(job)
            if asked is not None:
                asked.pop(promise_id, None)
                if not asked:
                    del self.questions[job]
        origin, sep, _ = promise_id.partition(ORIGIN_SEP)
        steps = self.by_origin.get(origin) if sep else None
        if steps is not None:
            steps.pop(promise_id, None)
            if not steps:
                del self.by_origin[origin]


#: More jobs than this leave the job index by filtering it, not one at a time.
BULK_REMOVAL = 16

#: A job's status (as the tools name it) for each state of its promise.
JOB_STATUS = {
    "pending": "running",
    "resolved": "completed",
    "rejected": "failed",
    "rejected_timedout": "failed",
    "rejected_canceled": "cancelled",
}

#: Tags of a ``promise.search`` that no promise carries: filters answered from
#: the job index. ``durable-mcp:job`` (any value) asks for jobs only, not their
#: steps; ``durable-mcp:status`` for jobs of one status (``running``,
#: ``completed``, ``failed``, ``cancelled``); ``durable-mcp:kind`` for jobs of
#: one kind (the function the job runs); ``durable-mcp:name`` for jobs whose
#: names contain its value.
JOB_TAG, STATUS_TAG, KIND_TAG = "durable-mcp:job", "durable-mcp:status", "durable-mcp:kind"
NAME_TAG = "durable-mcp:name"
#: Searches only the jobs of one owner (its key, ``owners.py``).
OWNER_TAG = "durable-mcp:owner"

#: The tag of a promise that is a question a job asks (its param: the message
#: and the answer's schema); a person's answer settles it (``jobs/questions.py``).
QUESTION_TAG = "durable-mcp:question"


class _Invocation(msgspec.Struct):
    """What the SDK stores in a job's param: only the function is read."""

    func: Any = None


_decode_invocation = msgspec.json.Decoder(_Invocation).decode


def kind_of(promise: DurablePromise) -> str | None:
    """The function a job's promise runs, read from its param as the SDK stored it."""
    data = promise.param.get("data") if isinstance(promise.param, dict) else None
    if not isinstance(data, str):
        return None
    try:
        func = _decode_invocation(base64.b64decode(data)).func
    except (binascii.Error, ValueError, msgspec.DecodeError):
        return None
    return func if isinstance(func, str) else None


class JobIndex:
    """The jobs of a :class:`PromiseTable` by (status, kind, owner), each oldest first.

    Each bucket is a list of promise ids kept sorted by ``(created_at, id)``
    with ``bisect``: one pointer per job (the id string is the table's own),
    where a sorted list of keys would hold a tuple and an int per job. A new
    job is created now, so it goes at the end of its bucket; a job moves
    bucket once, from running as it settles; the retention sweep removes many
    at once and filters each bucket in one pass. A listing page merges the
    buckets its filters select, newest first from the cursor: O(limit) after
    a bisect, whatever the number of jobs.
    """

    def __init__(self, promises: Mapping[str, DurablePromise]) -> None:
        self.promises = promises
        keys: dict[Bucket, list[tuple[int, str]]] = {}
        for promise_id, promise in promises.items():
            if is_job(promise_id):
                keys.setdefault(bucket_of(promise), []).append((promise.created_at, promise_id))
        self.buckets = {bucket: [k[1] for k in sorted(ks)] for bucket, ks in keys.items()}

    def key(self, promise_id: str) -> tuple[int, str]:
        return self.promises[promise_id].created_at, promise_id

    def add(self, promise: DurablePromise) -> None:
        ids = self.buckets.setdefault(bucket_of(promise), [])
        if self._find(ids, promise.id) < 0:
            insort(ids, promise.id, key=self.key)

    def discard(self, promise: DurablePromise) -> None:
        """Take ``promise`` (still in the table) out of its bucket."""
        kind, owner = kind_of(promise), owner_key(promise.id)
        for status in dict.fromkeys((JOB_STATUS.get(promise.state), "running")):
            ids = self.buckets.get((status, kind, owner))  # type: ignore[arg-type]
            at = self._find(ids, promise.id) if ids is not None else -1
            if ids is not None and at >= 0:
                del ids[at]
                return

    def settled(self, promise: DurablePromise) -> None:
        """Move ``promise`` from running to its status, if it has settled meanwhile."""
        if promise.state == "pending":
            return
        running = self.buckets.get(("running", kind_of(promise), owner_key(promise.id)))
        at = self._find(running, promise.id) if running is not None else -1
        if running is not None and at >= 0:
            del running[at]
            self.add(promise)

    def forget(self, gone: set[str]) -> None:
        """Remove the ids ``gone`` (no longer in the table) from every bucket."""
        if gone:
            for bucket, ids in list(self.buckets.items()):
                ids[:] = [promise_id for promise_id in ids if promise_id not in gone]
                if not ids:
                    del self.buckets[bucket]

    def newest_first(
        self,
        status: str | None,
        kind: str | None,
        before: tuple[int, str] | None,
        name_contains: str | None = None,
        owner: str | None = None,
    ) -> Iterator[str]:
        """Ids of the jobs of ``status``, ``kind`` and ``owner`` (a key; None: any)
        older than ``before``, and whose names contain ``name_contains`` if given
        (an owner's names: their ids past the owner's part)."""
        runs: list[Iterator[str]] = []
        for (bucket_status, bucket_kind, bucket_owner), ids in self.buckets.items():
            if status not in (None, bucket_status) or kind not in (None, bucket_kind):
                continue
            if owner not in (None, bucket_owner):
                continue
            end = len(ids) if before is None else bisect_left(ids, before, key=self.key)
            if name_contains is not None:  # one pass over the names, then merge the few found
                skip = 0 if owner is None or not owner else len(owner) + 2  # "~key/"
                found = [job_id for job_id in ids[:end] if name_contains in job_id[skip:]]
                runs.append(reversed(found))
            else:
                runs.append(map(ids.__getitem__, range(end - 1, -1, -1)))
        return heapq.merge(*runs, key=self.key, reverse=True)

    def running(self, owner: str) -> int:
        """How many jobs of ``owner`` (a key) are running, waiting for input included."""
        return sum(
            len(ids)
            for (status, _, bucket_owner), ids in self.buckets.items()
            if status == "running" and bucket_owner == owner
        )

    def _find(self, ids: list[str], promise_id: str) -> int:
        at = bisect_left(ids, self.key(promise_id), key=self.key)
        return at if at < len(ids) and ids[at] == promise_id else -1


#: A job's bucket in the :class:`JobIndex`: its status, kind and owner (a key).
Bucket = tuple[str, str | None, str]


def bucket_of(promise: DurablePromise) -> Bucket:
    return JOB_STATUS.get(promise.state, promise.state), kind_of(promise), owner_key(promise.id)


def is_job(promise_id: str) -> bool:
    """A job's promise, not one of its steps (``job:1``, ``job:2``, ...)."""
    return ORIGIN_SEP not in promise_id


class Deadlines[T: (PTimeout, TTimeout)]:
    """Timeout entries by id, in insertion order like the reference's list, with a
    heap to find the due ones without reading them all (100,000 sleeping timers
    made each tick read 200,000 entries, ten times a second).

    Each entry has a rank, its place in the insertion order, and heap items of
    ``(timeout, rank, id)``. An item whose entry has gone or moved is stale and
    dropped when it comes up; the heap is rebuilt when stale items outnumber live.
    """

    def __init__(self, entries: list[T] | None = None) -> None:
        self.by_id: dict[str, T] = {}
        self._rank: dict[str, int] = {}
        self._heap: list[tuple[int, int, str]] = []
        self._next_rank = 0
        for entry in entries or []:
            self.add(entry)

    def add(self, entry: T) -> None:
        """A new id, at the end of the order."""
        self.by_id[entry.id] = entry
        self._rank[entry.id] = rank = self._next_rank
        self._next_rank += 1
        heapq.heappush(self._heap, (entry.timeout, rank, entry.id))

    def moved(self, entry: T) -> None:
        """``entry.timeout`` changed (its place in the order did not)."""
        heapq.heappush(self._heap, (entry.timeout, self._rank[entry.id], entry.id))
        self._compact()

    def remove(self, entry_id: str) -> T | None:
        self._rank.pop(entry_id, None)
        entry = self.by_id.pop(entry_id, None)
        self._compact()
        return entry

    def _compact(self) -> None:
        if len(self._heap) > 2 * len(self.by_id) + 1_000:
            self._heap = [(e.timeout, self._rank[i], i) for i, e in self.by_id.items()]
            heapq.heapify(self._heap)

    def due(self, now: int) -> list[T]:
        """The entries due at ``now``, in insertion order (they stay in)."""
        found: dict[str, tuple[int, T]] = {}
        while self._heap and self._heap[0][0] <= now:
            timeout, rank, entry_id = heapq.heappop(self._heap)
            entry = self.by_id.get(entry_id)
            if entry is not None and self._rank[entry_id] == rank and entry.timeout == timeout:
                found[entry_id] = (rank, entry)
        for rank, entry in found.values():  # still due until removed or moved
            heapq.heappush(self._heap, (entry.timeout, rank, entry.id))
        return [entry for _, entry in sorted(found.values(), key=lambda item: item[0])]


class IndexedState(ServerState):
    """The reference state machine, with promises indexed by branch and awaiter.

    ``p_timeouts``/``t_timeouts`` read as the reference's lists but are kept as
    :class:`Deadlines`: dicts by id (a dict keeps insertion order and updates in
    place, exactly like the reference's scan-and-update of a list with at most
    one entry per id) with a heap, so that a tick reads only the due entries.

    It also counts the running jobs: pending promises that are jobs, not steps,
    and have a task (as every ``resonate.run`` does). Exactly those have a
    timeout entry while pending, so the count follows the timeout entries. And
    it reports each job's promise as it settles (completed, failed, cancelled
    or timed out) to ``job_ended``, an observer the engine gives it (no-op
    by default): the job layer logs the ends.
    """

    _p_timeouts: Deadlines[PTimeout]
    _t_timeouts: Deadlines[TTimeout]
    running_jobs: int
    #: While ticking, the due entries: all the reference's tick reads of the lists.
    _ticking: tuple[list[PTimeout], list[TTimeout]] | None = None

    def __init__(self) -> None:
        super().__init__()
        self.promises: PromiseTable = PromiseTable()
        self.promises.job_index()  # empty: kept from the first job on
        #: task id -> promises it may be an awaiter of (a superset: stale is harmless).
        self.awaiting: dict[str, set[str]] = {}
        #: forgotten job -> its task's last version, which a new task of that id exceeds.
        self.retired_versions: dict[str, int] = {}
        #: job started again after a forget -> its new task's first version: any request
        #: of its task with an older version is the old run's, and refused.
        self.renewed_versions: dict[str, int] = {}
        #: Where each task's execute message is in ``outgoing`` (send_execute_message).
        self._executes: dict[str, int] = {}
        self._executes_of: list[OutgoingMessage] | None = None
        #: Jobs in memory that have ended: the embedded store moves them to its archive.
        self.finished: set[str] = set()
        #: The embedded store's finished jobs, off the heap (``archive.py``); reads
        #: find them there. None: every job is in memory (the memory store).
        self.archive: Archive | None = None

    @property
    def p_timeouts(self) -> list[PTimeout]:
        if self._ticking is not None:
            return self._ticking[0]
        return list(self._p_timeouts.by_id.values())

    @p_timeouts.setter
    def p_timeouts(self, timeouts: list[PTimeout]) -> None:
        self._p_timeouts = Deadlines(timeouts)
        self.running_jobs = sum(map(is_job, self._p_timeouts.by_id))

    @property
    def t_timeouts(self) -> list[TTimeout]:
        if self._ticking is not None:
            return self._ticking[1]
        return list(self._t_timeouts.by_id.values())

    @t_timeouts.setter
    def t_timeouts(self, timeouts: list[TTimeout]) -> None:
        self._t_timeouts = Deadlines(timeouts)

    def tick(self, now: int) -> None:
        """The reference's tick, reading only the due entries: it skips the rest."""
        self._ticking = (self._p_timeouts.due(now), self._t_timeouts.due(now))
        try:
            super().tick(now)
        finally:
            self._ticking = None

    def set_p_timeout(self, promise_id: str, timeout: int) -> None:
        pt = self._p_timeouts.by_id.get(promise_id)
        if pt is None:
            self._p_timeouts.add(PTimeout(id=promise_id, timeout=timeout))
            self.running_jobs += is_job(promise_id)
        else:
            pt.timeout = timeout
            self._p_timeouts.moved(pt)

    def del_p_timeout(self, promise_id: str) -> None:
        if self._p_timeouts.remove(promise_id) is not None:
            self.running_jobs -= is_job(promise_id)
        # Every settle (by request, by the tick, on the way of a read) drops the
        # promise's timeout right after changing its state in place.
        if self.promises.changed is not None:
            self.promises.changed.add(promise_id)
        self._job_settled(promise_id)

    def _job_settled(self, promise_id: str) -> None:
        if not is_job(promise_id):
            return
        p = self.promises.get(promise_id)
        if p is not None and p.state != "pending":
            self.finished.add(promise_id)
        jobs = self.promises.jobs
        if jobs is not None and p is not None:
            jobs.settled(p)

    def set_t_timeout(self, task_id: str, typ: int, timeout: int) -> None:
        tt = self._t_timeouts.by_id.get(task_id)
        if tt is None:
            self._t_timeouts.add(TTimeout(id=task_id, typ=typ, timeout=timeout))
        else:
            tt.typ = typ
            tt.timeout = timeout
            self._t_timeouts.moved(tt)

    def del_t_timeout(self, task_id: str) -> None:
        self._t_timeouts.remove(task_id)

    def send_execute_message(self, address: str, task_id: str, version: int) -> None:
        """The SDK's upsert of a task's execute message, without its scan of every
        message queued: a tick that resumes 10,000 tasks queued 10,000 of them, and
        each upsert read them all (50 million comparisons in one tick)."""
        message = {"kind": "execute", "data": {"task": {"id": task_id, "version": version}}}
        queued = self._queued_execute(task_id)
        if queued is not None:
            queued.address, queued.message = address, message
        else:
            self._executes[task_id] = len(self.outgoing)
            self.outgoing.append(OutgoingMessage(address=address, message=message))

    def _queued_execute(self, task_id: str) -> OutgoingMessage | None:
        """The execute message of ``task_id`` in ``outgoing``, if one is queued.

        ``_executes`` keeps each one's place; the SDK and the store only append
        to the queue, empty it or replace it, so a place that no longer holds
        that task's execute means the queue changed: it is read again.
        """
        outgoing = self.outgoing
        if outgoing is self._executes_of:
            at = self._executes.get(task_id)
            if at is None:
                return None
            if at < len(outgoing) and execute_task_id(outgoing[at].message) == task_id:
                return outgoing[at]
        self._executes = {
            task: at
            for at, queued in enumerate(outgoing)
            if (task := execute_task_id(queued.message)) is not None
        }
        self._executes_of = outgoing
        at = self._executes.get(task_id)
        return outgoing[at] if at is not None else None

    def is_due(self, now: int) -> bool:
        """Whether ``tick(now)`` would change anything (the same tests it makes)."""
        for pt in self._p_timeouts.due(now):
            p = self.promises.get(pt.id)
            if p is not None and p.state == "pending":
                return True
        for tt in self._t_timeouts.due(now):
            t = self.tasks.get(tt.id)
            if t is not None and t.state == ("acquired" if tt.typ == 1 else "pending"):
                return True
        return False

    def load(self, promises: Mapping[str, DurablePromise]) -> None:
        """Take ``promises`` (from a snapshot) and rebuild both indexes; the job
        index is built when first asked for (after the journal is replayed)."""
        self.promises = PromiseTable(promises)
        self.awaiting = {}
        self.finished = set()
        for promise in self.promises.values():
            for task_id in promise.awaiters:
                self.awaiting.setdefault(task_id, set()).add(promise.id)
            if promise.state != "pending" and is_job(promise.id):
                self.finished.add(promise.id)

    def become(self, other: IndexedState) -> None:
        """Take ``other``'s state in place (undoing changes)."""
        if self.promises.jobs is not None:
            other.promises.job_index()  # built now, not by the next list_jobs page
        self.promises, self.awaiting = other.promises, other.awaiting
        self.tasks, self.schedules = other.tasks, other.schedules
        self._p_timeouts, self._t_timeouts = other._p_timeouts, other._t_timeouts
        self.running_jobs = other.running_jobs
        self.retired_versions = other.retired_versions
        self.renewed_versions = other.renewed_versions
        self.finished = other.finished
        self.outgoing = []

    def remove_jobs(self, roots: set[str]) -> None:
        """Remove the jobs ``roots``, with their steps, tasks and timeouts."""
        if not roots:
            return
        self.finished.difference_update(roots)
        gone = {pid for pid in self.promises if pid.split(":", 1)[0] in roots}
        self.promises.remove(gone)
        for pid in gone:
            self.tasks.pop(pid, None)
        for pid in gone & self.renewed_versions.keys():
            del self.renewed_versions[pid]
        self.p_timeouts = [pt for pt in self.p_timeouts if pt.id not in gone]
        self.t_timeouts = [tt for tt in self.t_timeouts if tt.id not in gone]
        for p in self.promises.values():
            p.awaiters -= gone

    def find(self, promise_id: str) -> DurablePromise | None:
        """The promise ``promise_id``, in memory or with its job in the archive."""
        promise = self.promises.get(promise_id)
        if promise is not None or self.archive is None:
            return promise
        if is_job(promise_id):
            return self.archive.root(promise_id)
        job = self.archive.job(promise_id.split(ORIGIN_SEP, 1)[0])
        found = [p for p in ([job.root, *job.steps] if job else []) if p.id == promise_id]
        return found[0] if found else None

    def can_archive(self, job_id: str) -> bool:
        """Whether nothing of the job can change any more: it and every step of it
        settled, and each of their tasks fulfilled (as a settle leaves it). A
        cancelled timer's sleep, still pending, keeps its job here until it fires."""
        for promise_id in (job_id, *self.promises.by_origin.get(job_id, ())):
            p = self.promises.get(promise_id)
            if p is None or p.state == "pending":
                return False
            task = self.tasks.get(promise_id)
            if task is not None and task.state != "fulfilled":
                return False
        return True

    def take_job(self, job_id: str) -> ArchivedJob:
        """Remove the job ``job_id`` with its steps, tasks and deadlines, and return
        them (to the archive). Reads only what is the job's: O(its steps)."""
        steps = list(self.promises.by_origin.get(job_id, ()))
        ids = [job_id, *steps]
        promises = [self.promises[pid] for pid in ids if pid in self.promises]
        tasks = [self.tasks.pop(pid) for pid in ids if pid in self.tasks]
        for pid in ids:
            if self._p_timeouts.remove(pid) is not None:
                self.running_jobs -= is_job(pid)
            self._t_timeouts.remove(pid)
            self.renewed_versions.pop(pid, None)
            for awaited in self.awaiting.pop(pid, ()):
                other = self.promises.get(awaited)
                if other is not None:
                    other.awaiters.discard(pid)
        self.promises.remove(set(ids) & self.promises.keys())
        self.finished.discard(job_id)
        return ArchivedJob(promises[0], promises[1:], tasks)

    def put_job(self, job: ArchivedJob) -> None:
        """Bring an archived job back into memory, as it was (its promises' records
        unchanged: no job's end is told again)."""
        changed, self.promises.changed = self.promises.changed, None
        try:
            for promise in (job.root, *job.steps):
                self.promises[promise.id] = promise
                for task_id in promise.awaiters:
                    self.awaiting.setdefault(task_id, set()).add(promise.id)
        finally:
            self.promises.changed = changed
        for task in job.tasks:
            self.tasks[task.id] = task
        if job.root.state != "pending":
            self.finished.add(job.root.id)

    def forget_job(self, job_id: str) -> None:
        """Remove a failed or cancelled job so that its name can start a new one.

        Anything else (a running or completed job, or none) is left as it is,
        which makes two concurrent retries one. The job's task version is kept:
        an execution of the old job still finishing its step holds that version,
        and the new job's task starts above it, so the old execution's writes
        are refused instead of landing in the new job.
        """
        p = self.promises.get(job_id)
        if p is None or p.state not in ("rejected", "rejected_timedout", "rejected_canceled"):
            return
        task = self.tasks.get(job_id)
        if task is not None:
            self.retired_versions[job_id] = task.version
        self.remove_jobs({job_id})

    def task_create(self, now: int, corr_id: Any, req: Any) -> dict[str, Any]:
        response = super().task_create(now, corr_id, req)
        task = response.get("task")
        last = self.retired_versions.pop(task["id"], None) if isinstance(task, dict) else None
        if task is not None and last is not None:
            self.tasks[task["id"]].version = task["version"] = last + 1
            self.renewed_versions[task["id"]] = last + 1
        return response

    def apply(self, now: int, req: Any) -> dict[str, Any]:
        kind = req.get("kind") if isinstance(req, dict) else None
        if kind == "promise.search":
            self.outgoing.clear()
            return self.promise_search(req.get("corrId"), req)
        wanted = req.get("id") if kind == "promise.get" else None
        if self.archive is not None and isinstance(wanted, str) and wanted not in self.promises:
            archived = self.find(wanted)
            if archived is not None:  # an ended job or one of its steps, from the archive
                self.outgoing.clear()
                return {
                    "kind": "promise.get",
                    "corrId": req.get("corrId"),
                    "status": 200,
                    "promise": archived.to_record(),
                }
        if kind in FENCED_BY_VERSION and self._of_an_old_run(req):
            # The reference ignores the version here; for a job started again with
            # retry, that would let the cancelled run release or settle the new one.
            self.outgoing.clear()
            return _error(req.get("corrId"), kind, 409, "a request of the job's earlier run")
        return super().apply(now, req)

    def _of_an_old_run(self, req: dict[str, Any]) -> bool:
        first = self.renewed_versions.get(req.get("id"))  # type: ignore[arg-type]
        version = req.get("version")
        return first is not None and isinstance(version, int) and version < first

    def promise_search(self, corr_id: Any, req: dict[str, Any]) -> dict[str, Any]:
        """Promises newest first, filtered by state and tags, a page at a time.

        The SDK's in-process state machine has no search; this is the Resonate
        server's request (``state``, ``tags``, ``limit``, ``cursor``). ``state``
        ``"rejected"`` matches every rejected state. The cursor is the id of
        the last promise of the previous page, so a page never shifts when
        newer promises arrive meanwhile. With the tag ``durable-mcp:job`` (see
        :data:`JOB_TAG`) only jobs are searched, from the job index: a page
        costs O(limit), not a sort of every promise.
        """
        state, tags, cursor = req.get("state"), dict(req.get("tags") or {}), req.get("cursor")
        limit = req.get("limit")
        limit = min(limit, 1000) if isinstance(limit, int) and limit > 0 else 100
        after = None
        if isinstance(cursor, str) and cursor:
            last = self.promises.get(cursor)
            if last is not None:
                after = (last.created_at, last.id)
            elif self.archive is not None and JOB_TAG in tags:
                after = self.archive.position(cursor)
            if after is None:
                return _error(corr_id, "promise.search", 400, f"cursor {cursor} has expired")

        def wanted(p: DurablePromise) -> bool:
            return (
                (state is None or p.state == state or p.state.startswith(f"{state}_"))
                and all(p.tags.get(key) == value for key, value in tags.items())
                and (after is None or (p.created_at, p.id) < after)
            )

        newest_first: Iterator[DurablePromise]
        if JOB_TAG in tags:
            # Jobs only: read from the index, newest first from the cursor on.
            del tags[JOB_TAG]
            status, kind = tags.pop(STATUS_TAG, None), tags.pop(KIND_TAG, None)
            part, owner = tags.pop(NAME_TAG, None), tags.pop(OWNER_TAG, None)
            ids = self.promises.job_index().newest_first(status, kind, after, part, owner)
            newest_first = filter(wanted, map(self.promises.__getitem__, ids))
            if self.archive is not None and status != "running":  # ended jobs: there too
                archived = self.archive.newest_first(status, kind, after, part, owner)
                newest_first = heapq.merge(
                    newest_first,
                    filter(wanted, archived),
                    key=lambda p: (p.created_at, p.id),
                    reverse=True,
                )
        else:  # every promise, the archived ones too: a full read (tests, tools of our own)
            everything: Iterable[DurablePromise] = self.promises.values()
            if self.archive is not None:
                everything = itertools.chain(everything, self.archive.every_promise())
            newest_first = iter(
                sorted(filter(wanted, everything), key=lambda p: (p.created_at, p.id), reverse=True)
            )
        page = list(islice(newest_first, limit + 1))
        return {
            "kind": "promise.search",
            "corrId": corr_id,
            "status": 200,
            "promises": [p.to_record() for p in page[:limit]],
            "cursor": page[limit - 1].id if len(page) > limit else None,
        }

    def preload(self, promise_id: str) -> list[dict[str, Any]]:
        p = self.promises.get(promise_id)
        branch = p.tags.get("resonate:branch") if p is not None else None
        if branch is None:
            return []
        return [
            self.promises[other].to_record()
            for other in self.promises.by_branch.get(branch, {})
            if other != promise_id
        ]

    def task_suspend(self, now: int, corr_id: Any, req: Any) -> dict[str, Any]:
        response = super().task_suspend(now, corr_id, req)
        task_id = req.get("id") if isinstance(req, dict) else None
        actions = req.get("actions") if isinstance(req, dict) else None
        if isinstance(task_id, str) and isinstance(actions, list):
            for action in actions:
                awaited = extract_action_data(action)
                awaited_id = awaited.get("awaited") if isinstance(awaited, dict) else None
                p = self.promises.get(awaited_id) if isinstance(awaited_id, str) else None
                if p is not None and task_id in p.awaiters:
                    self.awaiting.setdefault(task_id, set()).add(p.id)
        return response

    def enqueue_settle(self, promise_id: str) -> None:
        t = self.tasks.get(promise_id)
        if t is None or t.state == "fulfilled":
            super().enqueue_settle(promise_id)  # neither path scans the promises
            return
        # The reference body, with its scan of every promise replaced by the index.
        t.state = "fulfilled"
        t.pid = None
        t.ttl = None
        t.resumes.clear()
        self.del_t_timeout(promise_id)
        for awaited_id in self.awaiting.pop(promise_id, ()):
            p = self.promises.get(awaited_id)
            if p is not None:
                p.awaiters.discard(promise_id)


#: Task requests that carry the run's version, which the reference checks only on fence.
FENCED_BY_VERSION = frozenset({"task.acquire", "task.release", "task.fulfill", "task.suspend"})


def _error(corr_id: Any, kind: str, status: int, message: str) -> dict[str, Any]:
    return {"kind": kind, "corrId": corr_id, "status": status, "error": message}
