"""The memory store (``DURABLE_MCP_STORE=memory``): the SDK's in-process
``LocalConnection``, nothing written, on our indexed state machine.

What it adds to the SDK's: job search and counts (``IndexedState``), and an
``on_job_end`` observer told of each job that ended (see ``job_ends.py``).
"""

from __future__ import annotations

from resonate.timing import Clock, Sleeper, now_ms, sleep

from durable_mcp.sdk_compat import DurablePromise, LocalConnection, OutgoingMessage
from durable_mcp.store.job_ends import (
    JobEndObserver,
    ignore_job_end,
    settled_jobs,
    tell_job_ends,
)
from durable_mcp.store.state import IndexedState


class MemoryStore(LocalConnection):
    """``LocalConnection`` on an :class:`IndexedState`, telling ``on_job_end`` of job ends."""

    def __init__(
        self,
        *,
        pid: str,
        group: str,
        clock: Clock = now_ms,
        sleeper: Sleeper = sleep,
        tick_interval: float = 1.0,
        on_job_end: JobEndObserver = ignore_job_end,
    ) -> None:
        super().__init__(
            pid=pid, group=group, clock=clock, sleeper=sleeper, tick_interval=tick_interval
        )
        self.state: IndexedState = IndexedState()
        self.state.promises.changed = set()
        self.on_job_end = on_job_end

    def _dispatch_messages(self, messages: list[OutgoingMessage]) -> None:
        # LocalConnection calls this after every request it answers and every
        # tick, with no await since the change: the jobs they ended are told
        # here (those of a refused request, with the next one).
        ended: list[DurablePromise] = []
        if changed := self.state.promises.changed:
            ended = settled_jobs(self.state.promises, changed)
            changed.clear()
        try:
            super()._dispatch_messages(messages)
        finally:
            tell_job_ends(self.on_job_end, ended)
