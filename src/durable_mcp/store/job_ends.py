"""Jobs that end, as the in-process stores tell of them.

A store is given one observer (``on_job_end``) and calls it with each job's
settled promise (completed, failed, cancelled or timed out) once the end
holds: for the embedded store, once it is on disk. The state machine knows
nothing of it: after each change, the store reads which promises changed
(``PromiseTable.changed``) and picks the jobs among them that settled.

An end is told at most once, in the process where it happened: one killed
between its commit and the telling does not tell it after a restart. The
observer logs; the store's state, not the log, is what a status reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from durable_mcp.sdk_compat import DurablePromise
from durable_mcp.store.state import is_job

logger = logging.getLogger(__name__)

type JobEndObserver = Callable[[DurablePromise], None]


def ignore_job_end(promise: DurablePromise) -> None:
    """The observer of a store nobody listens to."""


def settled_jobs(
    promises: Mapping[str, DurablePromise], changed: Iterable[str]
) -> list[DurablePromise]:
    """The jobs among ``changed`` whose promise is settled: the jobs that ended.

    A promise's record changes when it is created, settled or removed, and a
    settled promise never changes again (a forgotten job starts anew, pending),
    so a job is among these once: as it ends.
    """
    ended = []
    for promise_id in changed:
        promise = promises.get(promise_id) if is_job(promise_id) else None
        if promise is not None and promise.state != "pending":
            ended.append(promise)
    return ended


def tell_job_ends(observer: JobEndObserver, ended: Iterable[DurablePromise]) -> None:
    """Tell ``observer`` of each job in ``ended``; its failure never stops the store."""
    for promise in ended:
        try:
            observer(promise)
        except Exception:
            logger.exception("could not report the end of job %s", promise.id)
