"""What changed for jobs, as the in-process stores tell of it: a job that ended,
and a question a job asked or had answered.

A store is given one observer (``on_job_change``) and calls it with each
changed promise once the change holds (for the embedded store: once it is on
disk): a job's settled promise (completed, failed, cancelled or timed out), or
a question's promise (:data:`~durable_mcp.store.state.QUESTION_TAG`), as it is
created (pending: the job waits for an answer) and as it settles (answered).
The state machine knows nothing of it: after each change, the store reads
which promises changed (``PromiseTable.changed``) and picks these among them.

A change is told at most once, in the process where it happened: one killed
between its commit and the telling does not tell it after a restart. The
observers log and push; the store's state, not they, is what a status reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from durable_mcp.sdk_compat import DurablePromise
from durable_mcp.store.state import QUESTION_TAG, is_job

logger = logging.getLogger(__name__)

type JobChangeObserver = Callable[[DurablePromise], None]


def ignore_job_change(promise: DurablePromise) -> None:
    """The observer of a store nobody listens to."""


def job_changes(
    promises: Mapping[str, DurablePromise], changed: Iterable[str]
) -> list[DurablePromise]:
    """The jobs among ``changed`` whose promise is settled (the jobs that ended),
    and the questions among them (asked, or answered).

    A promise's record changes when it is created, settled or removed, and a
    settled promise never changes again (a forgotten job starts anew, pending),
    so a job is among these once, as it ends, and a question twice at most.
    """
    found = []
    for promise_id in changed:
        promise = promises.get(promise_id)
        if promise is None:
            continue
        if is_job(promise_id):
            if promise.state != "pending":
                found.append(promise)
        elif QUESTION_TAG in promise.tags:
            found.append(promise)
    return found


def is_job_end(promise: DurablePromise) -> bool:
    """Whether a change told is a job's end (else: a question asked or answered)."""
    return is_job(promise.id) and promise.state != "pending"


def tell_job_changes(observer: JobChangeObserver, changes: Iterable[DurablePromise]) -> None:
    """Tell ``observer`` of each of ``changes``; its failure never stops the store."""
    for promise in changes:
        try:
            observer(promise)
        except Exception:
            logger.exception("could not report a change of job %s", promise.id)
