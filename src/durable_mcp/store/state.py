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

import logging
from collections.abc import Callable, Mapping
from typing import Any

from resonate.connections.local import (
    DurablePromise,
    PTimeout,
    ServerState,
    TTimeout,
    extract_action_data,
)

logger = logging.getLogger(__name__)


class PromiseTable(dict[str, DurablePromise]):
    """``id -> promise``, also indexed by branch (in insertion order, like the dict)."""

    def __init__(self, promises: Mapping[str, DurablePromise] | None = None) -> None:
        super().__init__()
        self.by_branch: dict[str, dict[str, None]] = {}
        for promise_id, promise in (promises or {}).items():
            self[promise_id] = promise

    def __setitem__(self, promise_id: str, promise: DurablePromise) -> None:
        if promise_id in self:
            self._unindex(promise_id)
        super().__setitem__(promise_id, promise)
        branch = promise.tags.get("resonate:branch")
        if branch is not None:
            self.by_branch.setdefault(branch, {})[promise_id] = None

    def __delitem__(self, promise_id: str) -> None:
        self._unindex(promise_id)
        super().__delitem__(promise_id)

    def _unindex(self, promise_id: str) -> None:
        branch = self[promise_id].tags.get("resonate:branch")
        members = self.by_branch.get(branch) if branch is not None else None
        if members is not None:
            members.pop(promise_id, None)
            if not members:
                del self.by_branch[branch]  # type: ignore[arg-type]


def is_job(promise_id: str) -> bool:
    """A job's promise, not one of its steps (``job:1``, ``job:2``, ...)."""
    return ":" not in promise_id


class IndexedState(ServerState):
    """The reference state machine, with promises indexed by branch and awaiter.

    ``p_timeouts``/``t_timeouts`` read as the reference's lists but are kept as
    dicts by id: a dict keeps insertion order and updates in place, exactly like
    the reference's scan-and-update of a list with at most one entry per id.

    It also counts the running jobs: pending promises that are jobs, not steps,
    and have a task (as every ``resonate.run`` does). Exactly those have a
    timeout entry while pending, so the count follows the timeout entries. And
    it calls ``on_job_settled`` with each job's promise as it settles:
    completed, failed, cancelled or timed out.
    """

    _p_timeouts: dict[str, PTimeout]
    _t_timeouts: dict[str, TTimeout]
    running_jobs: int

    def __init__(self) -> None:
        super().__init__()
        self.promises: PromiseTable = PromiseTable()
        #: task id -> promises it may be an awaiter of (a superset: stale is harmless).
        self.awaiting: dict[str, set[str]] = {}
        #: forgotten job -> its task's last version, which a new task of that id exceeds.
        self.retired_versions: dict[str, int] = {}
        #: job started again after a forget -> its new task's first version: any request
        #: of its task with an older version is the old run's, and refused.
        self.renewed_versions: dict[str, int] = {}
        self.on_job_settled: Callable[[DurablePromise], None] | None = None

    @property
    def p_timeouts(self) -> list[PTimeout]:
        return list(self._p_timeouts.values())

    @p_timeouts.setter
    def p_timeouts(self, timeouts: list[PTimeout]) -> None:
        self._p_timeouts = {pt.id: pt for pt in timeouts}
        self.running_jobs = sum(map(is_job, self._p_timeouts))

    @property
    def t_timeouts(self) -> list[TTimeout]:
        return list(self._t_timeouts.values())

    @t_timeouts.setter
    def t_timeouts(self, timeouts: list[TTimeout]) -> None:
        self._t_timeouts = {tt.id: tt for tt in timeouts}

    def set_p_timeout(self, promise_id: str, timeout: int) -> None:
        pt = self._p_timeouts.get(promise_id)
        if pt is None:
            self._p_timeouts[promise_id] = PTimeout(id=promise_id, timeout=timeout)
            self.running_jobs += is_job(promise_id)
        else:
            pt.timeout = timeout

    def del_p_timeout(self, promise_id: str) -> None:
        if self._p_timeouts.pop(promise_id, None) is not None:
            self.running_jobs -= is_job(promise_id)

    def set_t_timeout(self, task_id: str, typ: int, timeout: int) -> None:
        tt = self._t_timeouts.get(task_id)
        if tt is None:
            self._t_timeouts[task_id] = TTimeout(id=task_id, typ=typ, timeout=timeout)
        else:
            tt.typ = typ
            tt.timeout = timeout

    def del_t_timeout(self, task_id: str) -> None:
        self._t_timeouts.pop(task_id, None)

    def is_due(self, now: int) -> bool:
        """Whether ``tick(now)`` would change anything (the same tests it makes)."""
        for pt in self._p_timeouts.values():
            if now >= pt.timeout:
                p = self.promises.get(pt.id)
                if p is not None and p.state == "pending":
                    return True
        for tt in self._t_timeouts.values():
            if now >= tt.timeout:
                t = self.tasks.get(tt.id)
                if t is not None and t.state == ("acquired" if tt.typ == 1 else "pending"):
                    return True
        return False

    def load(self, promises: Mapping[str, DurablePromise]) -> None:
        """Take ``promises`` (from a snapshot) and rebuild both indexes."""
        self.promises = PromiseTable(promises)
        self.awaiting = {}
        for promise in self.promises.values():
            for task_id in promise.awaiters:
                self.awaiting.setdefault(task_id, set()).add(promise.id)

    def become(self, other: IndexedState) -> None:
        """Take ``other``'s state in place (undoing changes), keeping ``on_job_settled``."""
        self.promises, self.awaiting = other.promises, other.awaiting
        self.tasks, self.schedules = other.tasks, other.schedules
        self._p_timeouts, self._t_timeouts = other._p_timeouts, other._t_timeouts
        self.running_jobs = other.running_jobs
        self.retired_versions = other.retired_versions
        self.renewed_versions = other.renewed_versions
        self.outgoing = []

    def remove_jobs(self, roots: set[str]) -> None:
        """Remove the jobs ``roots``, with their steps, tasks and timeouts."""
        if not roots:
            return
        gone = {pid for pid in self.promises if pid.split(":", 1)[0] in roots}
        for pid in gone:
            del self.promises[pid]
            self.tasks.pop(pid, None)
        for pid in gone & self.renewed_versions.keys():
            del self.renewed_versions[pid]
        self.p_timeouts = [pt for pt in self.p_timeouts if pt.id not in gone]
        self.t_timeouts = [tt for tt in self.t_timeouts if tt.id not in gone]
        for p in self.promises.values():
            p.awaiters -= gone

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
        newer promises arrive meanwhile.
        """
        state, tags, cursor = req.get("state"), req.get("tags") or {}, req.get("cursor")
        limit = req.get("limit")
        limit = min(limit, 1000) if isinstance(limit, int) and limit > 0 else 100
        after = None
        if isinstance(cursor, str) and cursor:
            last = self.promises.get(cursor)
            if last is None:
                return _error(corr_id, "promise.search", 400, f"cursor {cursor} has expired")
            after = (last.created_at, last.id)

        def wanted(p: DurablePromise) -> bool:
            return (
                (state is None or p.state == state or p.state.startswith(f"{state}_"))
                and all(p.tags.get(key) == value for key, value in tags.items())
                and (after is None or (p.created_at, p.id) < after)
            )

        newest_first = sorted(
            filter(wanted, self.promises.values()),
            key=lambda p: (p.created_at, p.id),
            reverse=True,
        )
        page = newest_first[:limit]
        return {
            "kind": "promise.search",
            "corrId": corr_id,
            "status": 200,
            "promises": [p.to_record() for p in page],
            "cursor": page[-1].id if len(newest_first) > limit else None,
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
        # A job's task is fulfilled exactly once, when its promise settles.
        settled = self.promises.get(promise_id)
        if self.on_job_settled is not None and settled is not None and is_job(promise_id):
            try:
                self.on_job_settled(settled)
            except Exception:  # a log line must never break the state machine
                logger.exception("could not report the end of job %s", promise_id)


#: Task requests that carry the run's version, which the reference checks only on fence.
FENCED_BY_VERSION = frozenset({"task.acquire", "task.release", "task.fulfill", "task.suspend"})


def _error(corr_id: Any, kind: str, status: int, message: str) -> dict[str, Any]:
    return {"kind": kind, "corrId": corr_id, "status": status, "error": message}
