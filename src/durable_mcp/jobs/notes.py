"""What a running job says of itself, for its status: its progress, the retry its
failing step waits for. Kept here, read by the job service.

A job's function writes a note (``progress.py``, ``failures.py``); the job
service adds what it finds to the job's status (``probe_status``,
``list_jobs``, ``tasks/get``'s ``statusMessage``). A note is advice, not a
record: it is kept in memory and saved with the store's next commit (the
embedded store, Postgres), coalesced, never with an fsync of its own, so that
after a crash and a restart the last progress of a job that is not running
again yet is still shown.

The store that saves the notes takes the changed ones (:meth:`take_changed`)
and is told when there are some to save (``on_change``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from resonate.context import Context
from resonate.timing import Clock, now_ms


class JobNotes:
    """The latest notes of each job, by job id and key (``progress``, ``retrying``)."""

    def __init__(self, clock: Clock = now_ms) -> None:
        """``clock``: the engine's (ms since the epoch), for the times a note names."""
        self.clock = clock
        self._notes: dict[str, dict[str, Any]] = {}
        self._changed: set[str] = set()
        #: Called when a note changes, once until the changes are taken (a store's flush).
        self.on_change: Callable[[], None] | None = None
        #: Reads the notes other processes saved (Postgres: every replica's), if any.
        self.elsewhere: Callable[[list[str]], Awaitable[dict[str, dict[str, Any]]]] | None = None

    def note(self, job_id: str, key: str, value: Any) -> None:
        self._notes.setdefault(job_id, {})[key] = value
        self._mark(job_id)

    def drop(self, job_id: str, key: str) -> None:
        notes = self._notes.get(job_id)
        if notes is not None and key in notes:
            del notes[key]
            if not notes:
                del self._notes[job_id]
            self._mark(job_id)

    def of(self, job_id: str) -> Mapping[str, Any]:
        return self._notes.get(job_id, {})

    async def read(self, job_ids: Iterable[str]) -> dict[str, Mapping[str, Any]]:
        """The notes of each of ``job_ids`` that has some: this process's own, else
        those saved elsewhere (by another replica)."""
        ids = list(job_ids)
        here = {job_id: notes for job_id in ids if (notes := self._notes.get(job_id))}
        others = [job_id for job_id in ids if job_id not in here]
        if self.elsewhere is None or not others:
            return dict(here)
        return {**await self.elsewhere(others), **here}

    def forget(self, job_id: str) -> None:
        """The job has ended: nothing it said while it ran applies any more."""
        if self._notes.pop(job_id, None) is not None:
            self._mark(job_id)

    def load(self, saved: Mapping[str, dict[str, Any]]) -> None:
        """The notes a store saved (at a start): they are not changes to save again."""
        self._notes.update(saved)

    def take_changed(self) -> dict[str, dict[str, Any] | None]:
        """The notes changed since last taken, by job (None: the job has none now)."""
        changed = {job_id: self._notes.get(job_id) for job_id in self._changed}
        self._changed.clear()
        return changed

    def changed_again(self, job_ids: Iterable[str]) -> None:
        """Notes taken by a save that failed: to be taken with the next."""
        for job_id in job_ids:
            self._mark(job_id)

    def _mark(self, job_id: str) -> None:
        first = not self._changed
        self._changed.add(job_id)
        if first and self.on_change is not None:
            self.on_change()


def notes_of(ctx: Context) -> JobNotes | None:
    """The notes of the engine running ``ctx``'s job; None where it keeps none (a
    test's own Resonate)."""
    try:
        return ctx.get_dependency(JobNotes)
    except KeyError:
        return None
