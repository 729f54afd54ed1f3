"""Events to deliver outside (the webhook), kept by the store with the changes they
tell of: an event is written in the same commit as the job's end or question,
so that a crash between the two loses neither, and deleted once delivered.

The store asks :attr:`Outbox.events` which events a changed promise makes (the
webhook builds them: a key and a body), saves them with the change, and hands
them here once they are on disk. The dispatcher (``webhook.py``) reads
:attr:`Outbox.waiting`, wakes on :attr:`Outbox.added`, and calls
:meth:`Outbox.delivered`, which the embedded store turns into a deletion with
one of its next commits. The memory store keeps the events here only: they
are as durable as its jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping

from durable_mcp.sdk_compat import DurablePromise

#: An event: its key (the idempotency key a receiver deduplicates by) and its body.
type Event = tuple[str, bytes]

#: The events a changed promise makes (see ``job_changes.py`` for which promises),
#: given every promise of the store (a question's job, say).
type EventsOf = Callable[[DurablePromise, Mapping[str, DurablePromise]], Iterable[Event]]


class Outbox:
    """The events not yet delivered, by key, and a wake-up for whoever delivers them."""

    def __init__(self, events: EventsOf) -> None:
        self.events = events
        self.waiting: dict[str, bytes] = {}
        self.added = asyncio.Event()
        #: Told of each delivered key (the embedded store deletes its row).
        self.on_delivered: Callable[[str], None] | None = None

    def add(self, events: Iterable[Event]) -> None:
        """Events on disk (or, for the memory store, made): to be delivered."""
        before = len(self.waiting)
        self.waiting.update(events)
        if len(self.waiting) != before:
            self.added.set()

    def delivered(self, key: str) -> None:
        if self.waiting.pop(key, None) is not None and self.on_delivered is not None:
            self.on_delivered(key)


def events_of(
    outbox: Outbox | None, changes: Iterable[DurablePromise], promises: Mapping[str, DurablePromise]
) -> list[Event]:
    """The events ``changes`` make (none without an outbox)."""
    if outbox is None:
        return []
    return [event for promise in changes for event in outbox.events(promise, promises)]
