"""What a running job says of itself, for its status: kept here, read by the job service.

A job's function (through ``failures``) notes the retry its failing step is
waiting for; the job service adds what it finds here to the job's status
(``probe_status``, ``list_jobs``, ``tasks/get``'s ``statusMessage``). A note
is in-process: it describes work this process is doing now (a retry runs in
the process that saw the failure), and it goes when the job ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resonate.timing import Clock, now_ms


class JobNotes:
    """The latest notes of each job, by job id and key (``retrying``)."""

    def __init__(self, clock: Clock = now_ms) -> None:
        """``clock``: the engine's (ms since the epoch), for the times a note names."""
        self.clock = clock
        self._notes: dict[str, dict[str, Any]] = {}

    def note(self, job_id: str, key: str, value: Any) -> None:
        self._notes.setdefault(job_id, {})[key] = value

    def drop(self, job_id: str, key: str) -> None:
        notes = self._notes.get(job_id)
        if notes is not None:
            notes.pop(key, None)
            if not notes:
                del self._notes[job_id]

    def of(self, job_id: str) -> Mapping[str, Any]:
        return self._notes.get(job_id, {})

    def forget(self, job_id: str) -> None:
        """The job has ended: nothing it said while it ran applies any more."""
        self._notes.pop(job_id, None)
