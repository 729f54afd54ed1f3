"""The memory store (``DURABLE_MCP_STORE=memory``): the SDK's in-process
``LocalConnection``, nothing written, on our indexed state machine.

What it adds to the SDK's: job search and counts (``IndexedState``), an
``on_job_change`` observer told of each job that ended and each question asked
or answered (see ``job_changes.py``), and the events those make for an
``outbox`` (kept in memory, as its jobs are).
"""

from __future__ import annotations

from resonate.timing import Clock, Sleeper, now_ms, sleep

from durable_mcp.sdk_compat import DurablePromise, LocalConnection, OutgoingMessage
from durable_mcp.store.job_changes import (
    JobChangeObserver,
    ignore_job_change,
    job_changes,
    tell_job_changes,
)
from durable_mcp.store.outbox import Outbox, events_of
from durable_mcp.store.state import IndexedState


class MemoryStore(LocalConnection):
    """``LocalConnection`` on an :class:`IndexedState`, telling ``on_job_change`` of changes."""

    def __init__(
        self,
        *,
        pid: str,
        group: str,
        clock: Clock = now_ms,
        sleeper: Sleeper = sleep,
        tick_interval: float = 1.0,
        on_job_change: JobChangeObserver = ignore_job_change,
        outbox: Outbox | None = None,
    ) -> None:
        super().__init__(
            pid=pid, group=group, clock=clock, sleeper=sleeper, tick_interval=tick_interval
        )
        self.state: IndexedState = IndexedState()
        self.state.promises.changed = set()
        self.on_job_change = on_job_change
        self.outbox = outbox

    def _dispatch_messages(self, messages: list[OutgoingMessage]) -> None:
        # LocalConnection calls this after every request it answers and every
        # tick, with no await since the change: the jobs they ended are told
        # here (those of a refused request, with the next one).
        changes: list[DurablePromise] = []
        if changed := self.state.promises.changed:
            changes = job_changes(self.state.promises, changed)
            changed.clear()
            if self.outbox is not None:
                self.outbox.add(events_of(self.outbox, changes, self.state.promises))
        try:
            super()._dispatch_messages(messages)
        finally:
            tell_job_changes(self.on_job_change, changes)
