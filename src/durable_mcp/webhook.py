"""The webhook: each job's end, and each question a job asks, POSTed to the one URL
the operator names (``DURABLE_MCP_WEBHOOK_URL``), for systems outside MCP.

An event is the job's status object, as ``probe_status`` gives it (with the
result, the error or the question), in a JSON body::

    {"event": "completed", "key": "completed:report_q3:1767225600000", "job": {...}}

``event`` is ``completed``, ``failed``, ``cancelled`` or ``input_required``;
``key``, also sent as the ``Idempotency-Key`` header, is made of the event,
the job's name (or its question's id) and when that was created: the same
event always has the same key, so a receiver drops a repeat. The body is signed,
``X-Durable-MCP-Signature: sha256=<hex>``, the HMAC-SHA256 of the raw body
keyed by ``DURABLE_MCP_WEBHOOK_SECRET``.

Delivery is at least once, across crashes: the event is written in the same
commit as the change it tells of (``store/outbox.py``), before anyone is told
of the change, and deleted once the receiver answered 2xx. Until then it is
sent again, 1 s after a failure, then 2, 4, ... up to 5 minutes apart, and
again at every start. Deliveries run beside everything else on the event
loop, a few at a time: a receiver that is down or slow delays no job and no
tool call. The log says once that the receiver fails, and once that it
answers again.

The URL is a setting, never an argument: no tool can make the server call
another address. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from resonate.timing import Clock, Sleeper, now_ms, sleep

from durable_mcp import __version__
from durable_mcp.jobs.status import status_from_promise
from durable_mcp.sdk_compat import DurablePromise
from durable_mcp.store.job_changes import is_job_end
from durable_mcp.store.outbox import Event, Outbox

if TYPE_CHECKING:
    import httpx2

logger = logging.getLogger(__name__)

#: Deliveries under way at once; the next wait their turn.
MOST_AT_ONCE = 8
#: How long a receiver has to answer, in seconds.
TIMEOUT_SECONDS = 10.0
#: The name of the task that waits for the next retry (a test watches for it).
RETRY_WAIT_TASK = "durable-mcp webhook: wait for the next retry"
#: Waits between tries of one event: the first, and the longest.
FIRST_RETRY_SECONDS, LONGEST_RETRY_SECONDS = 1.0, 300.0


def signature(secret: str, body: bytes) -> str:
    """The ``X-Durable-MCP-Signature`` of ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhook:
    """Makes the events of job changes and delivers them from :attr:`outbox`."""

    def __init__(
        self, url: str, secret: str, *, clock: Clock = now_ms, sleeper: Sleeper = sleep
    ) -> None:
        self.url = url
        self._secret = secret
        self.clock = clock
        self.sleeper = sleeper
        self.outbox = Outbox(self.events)
        self._tries: dict[str, int] = {}  # failed tries so far, by event key
        self._retry_at: dict[str, int] = {}  # when to try again (ms), by event key
        self._sending: dict[str, asyncio.Task[None]] = {}
        self._failing = False

    def events(
        self, promise: DurablePromise, promises: Mapping[str, DurablePromise]
    ) -> Iterable[Event]:
        """The event of a job's end, or of a question asked (an answer makes none)."""
        if is_job_end(promise):
            job = status_from_promise(promise, self.clock())
        elif promise.state == "pending":
            asker = promises.get(promise.tags.get("resonate:origin", ""))
            if asker is None or asker.state != "pending":
                return []
            job = status_from_promise(asker, self.clock(), question=promise)
        else:
            return []
        job.pop("hint", None)  # for a model calling tools, not for a program
        event = str(job["status"])
        key = f"{event}:{promise.id}:{promise.created_at}"
        body = {"event": event, "key": key, "job": job}
        return [(key, json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())]

    async def run(self) -> None:
        """Deliver what the outbox holds, now and as events come, until cancelled."""
        import httpx2  # only a server with a webhook pays for the import

        limits = httpx2.Limits(max_connections=MOST_AT_ONCE)
        async with httpx2.AsyncClient(
            timeout=TIMEOUT_SECONDS, follow_redirects=False, limits=limits
        ) as http:
            try:
                while True:
                    self.outbox.added.clear()
                    wake_in = self._send_due(http)
                    waits = [
                        asyncio.ensure_future(self.outbox.added.wait()),
                        *self._sending.values(),
                    ]
                    if wake_in is not None:
                        retry = asyncio.create_task(self._sleep(wake_in), name=RETRY_WAIT_TASK)
                        waits.append(retry)
                    try:
                        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for wait in waits:
                            if wait not in self._sending.values():
                                wait.cancel()
            finally:
                for sending in self._sending.values():
                    sending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(*self._sending.values())

    async def _sleep(self, seconds: float) -> None:
        await self.sleeper(seconds)

    def _send_due(self, http: httpx2.AsyncClient) -> float | None:
        """Start the deliveries that are due, as many as may run; the seconds until
        the next retry is due (None: none waits for one)."""
        now = self.clock()
        waiting = [key for key in self.outbox.waiting if key not in self._sending]
        later = []
        for key in waiting:
            at = self._retry_at.get(key, 0)
            if at > now:
                later.append(at)
            elif len(self._sending) < MOST_AT_ONCE:
                task = asyncio.create_task(self._deliver(http, key))
                self._sending[key] = task
                task.add_done_callback(functools.partial(self._sent, key))
        return (min(later) - now) / 1000 if later else None

    def _sent(self, key: str, task: asyncio.Task[None]) -> None:
        self._sending.pop(key, None)

    async def _deliver(self, http: httpx2.AsyncClient, key: str) -> None:
        body = self.outbox.waiting.get(key)
        if body is None:
            return
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"durable-mcp/{__version__}",
            "Idempotency-Key": key,
            "X-Durable-MCP-Signature": signature(self._secret, body),
        }
        try:
            response = await http.post(self.url, content=body, headers=headers)
            failure = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        except Exception as exc:  # unreachable, timed out, refused: tried again later
            failure = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if failure is None:
            self._tries.pop(key, None)
            self._retry_at.pop(key, None)
            self.outbox.delivered(key)
            if self._failing:
                self._failing = False
                logger.info("webhook %s answers again", self.url)
            return
        tries = self._tries[key] = self._tries.get(key, 0) + 1
        wait = min(FIRST_RETRY_SECONDS * 2 ** (tries - 1), LONGEST_RETRY_SECONDS)
        self._retry_at[key] = self.clock() + int(wait * 1000)
        if not self._failing:
            self._failing = True
            logger.warning(
                "webhook %s fails (%s): %d event(s) wait, tried again from %g s to 5 min apart",
                self.url,
                failure,
                len(self.outbox.waiting),
                wait,
            )
