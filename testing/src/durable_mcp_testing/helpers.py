"""Small helpers the tests share: tool calls, fake time, bounded polling."""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import http.client
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict

from fastmcp import Client
from resonate.testing import FakeClock
from resonate.timing import Clock, Sleeper
from resonate.types import PromiseRecord

from durable_mcp.engine import LOCAL_TICK_SECONDS
from durable_mcp.jobs.service import Jobs
from durable_mcp.store.embedded import TICK_SECONDS

#: Status fields that depend on the clock.
TIMES = ("created_at", "settled_at", "poll_after_seconds", "deadline", "remaining_seconds")

#: How often the in-process stores look at deadlines: a deadline fires at the first look past it.
STORE_TICK = max(LOCAL_TICK_SECONDS, TICK_SECONDS)

#: Where fake time starts: 2026-01-01T00:00:00Z, in ms since the epoch.
FAKE_START_MS = 1_767_225_600_000


async def call(client: Client[Any], tool: str, **arguments: object) -> Any:
    """Call a tool and return its data (raises ToolError on a tool error)."""
    return (await client.call_tool(tool, arguments)).data


def core(status: dict[str, Any]) -> dict[str, Any]:
    """A status object without its clock-dependent fields."""
    return {key: value for key, value in status.items() if key not in TIMES}


class Seams(TypedDict):
    """The keywords that put a server or an embedded store on fake time."""

    clock: Clock
    sleeper: Sleeper
    writer: concurrent.futures.Executor


class FakeTime:
    """The SDK's :class:`FakeClock`, and a sleeper that sleeps on it: time moves when a test says.

    Pass ``**fake_time.seams`` to ``create_server`` or ``EmbeddedStore`` (``clock``
    and ``sleep`` alone to the SDK). The SDK's own
    sleepers do not fit a whole server: ``RecordingSleeper`` returns at once (the
    store's tick loop would spin) and ``ManualSleeper`` wakes sleepers in call
    order, not by time. Here each sleeper waits until the clock reaches its
    wake-up time, so the store's deadlines, the job layer's wait bounds and
    progress reports all follow :meth:`advance`.

    ``seams`` holds ``writer`` too: the embedded store's disk writes then happen
    at once instead of on a thread, so that loop turns are all that work under
    way waits for.
    """

    #: Event-loop turns given to woken sleepers (and whatever they set off) per step.
    TURNS = 20

    def __init__(self, start_ms: int = FAKE_START_MS) -> None:
        self.clock = FakeClock(start_ms)
        #: A heap, by wake time: (wake, order, woken, the sleeping task).
        self._sleepers: list[tuple[int, int, asyncio.Future[None], asyncio.Task[Any] | None]] = []
        self._order = itertools.count()
        self._slept = asyncio.Event()  # a task went to sleep
        self.writer = WriteAtOnce()

    @property
    def seams(self) -> Seams:
        return Seams(clock=self.clock, sleeper=self.sleep, writer=self.writer)

    @property
    def now(self) -> int:
        return self.clock.now

    async def sleep(self, seconds: float) -> None:
        """The sleeper: returns once the clock has moved ``seconds`` on (at once if <= 0)."""
        wake = self.now + max(round(seconds * 1000), 0)
        if wake <= self.now:
            await asyncio.sleep(0)  # a sleeper always yields, as asyncio.sleep(0) does
            return
        woken = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (wake, next(self._order), woken, asyncio.current_task()))
        self._slept.set()
        await woken

    async def advance(self, seconds: float, *, step: float | None = None) -> None:
        """Move the clock on, wake every sleeper due by then, and let them run.

        With ``step``, the clock moves ``step`` s at a time, and each time the
        woken tasks run until they sleep again or end, as real time would have
        had them do before the next moment (a heartbeat every 30 s, say).
        """
        await self.turns()  # work already under way happens before the move
        end = self.now + round(seconds * 1000)
        while self.now < end:
            self.clock.advance(min(round((step or seconds) * 1000), end - self.now))
            woken_tasks = []
            while self._sleepers and self._sleepers[0][0] <= self.now:
                _, _, woken, task = heapq.heappop(self._sleepers)
                if not woken.done():  # a cancelled sleeper is just dropped
                    woken.set_result(None)
                    woken_tasks.append(task)
            await self.turns()
            if step is not None:
                await self._until_asleep_or_done(woken_tasks)

    async def _until_asleep_or_done(self, tasks: list[asyncio.Task[Any] | None]) -> None:
        def settled() -> bool:
            asleep = {entry[3] for entry in self._sleepers}
            return all(task is None or task.done() or task in asleep for task in tasks)

        async with asyncio.timeout(60):  # a hang guard, not a claim about speed
            while not settled():
                self._slept.clear()
                waiting = asyncio.ensure_future(self._slept.wait())
                done = [task for task in tasks if task is not None and not task.done()]
                await asyncio.wait([waiting, *done], return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()

    def wake_of(self, task_name: str) -> int | None:
        """When a task of that name, asleep on this clock now, wakes (ms); None if none sleeps."""
        wakes = [
            wake
            for wake, _, woken, task in self._sleepers
            if task is not None and task.get_name() == task_name and not woken.done()
        ]
        return min(wakes, default=None)

    async def turns(self) -> None:
        for _ in range(self.TURNS):
            await asyncio.sleep(0)

    async def run[T](self, work: Awaitable[T], *, step: float, within: float) -> T:
        """Await ``work`` while the clock moves ``step`` s at a time, at most ``within`` s.

        For what only ends when time passes (a bounded wait): every step wakes
        what is due, as the wall clock would. ``within`` fails a test whose
        work never ends, however far the clock went.
        """
        task = asyncio.ensure_future(work)
        started = self.now
        while not task.done():
            if self.now - started > within * 1000:
                task.cancel()
                raise AssertionError(f"still not done after {within} s of fake time")
            await self.advance(step)
        return task.result()


class WriteAtOnce(concurrent.futures.Executor):
    """An executor that runs what it is given at once, on the caller's thread."""

    def submit[T](
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


async def eventually[T](
    check: Callable[[], Awaitable[T | None]], *, within: float = 60, every: float = 0.05
) -> T:
    """Poll ``check`` until it returns something other than None; return that.

    For outcomes that come from another process or thread, where no event
    tells us: ``within`` is a bound that fails a hung test, not a claim about
    speed, so keep it generous.
    """
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(every)


async def steps_of(jobs: Jobs, job_name: str) -> list[PromiseRecord]:
    """The durable steps a job has made so far (a timer's sleep is one), from the store."""
    page = await jobs.resonate.promises.search(None, None, 1000, None)
    return [record for record in page.promises if record.id.startswith(f"{job_name}:")]


async def the_sleep_of(jobs: Jobs, timer_name: str) -> PromiseRecord:
    """The timer's one durable sleep, once its worker has made it (it does so at once)."""

    async def made() -> PromiseRecord | None:
        sleeps = await steps_of(jobs, timer_name)
        assert len(sleeps) <= 1, sleeps
        return sleeps[0] if sleeps else None

    return await eventually(made, within=30, every=0.01)


async def start_timers(
    client: Client[Any], fake_time: FakeTime, names: list[str], seconds: float = 60
) -> None:
    for name in names:
        await call(client, "set_timer", timer_name=name, seconds=seconds)
        await fake_time.advance(0.001)  # distinct creation times


def noise(log: str) -> list[str]:
    """The log's lines that should never appear when nothing went wrong."""
    markers = ("ERROR", "Traceback", "Task exception was never retrieved")
    return [line for line in log.splitlines() if any(marker in line for marker in markers)]


#: A handshake-era client's first message, as it writes it.
INITIALIZE: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}


#: A 2025-11-25 client's handshake: initialize, then the notification that it is done.
SESSION_INITIALIZE = {
    **INITIALIZE,
    "params": {**INITIALIZE["params"], "protocolVersion": "2025-11-25"},
}
SESSION_INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def session_request(
    port: int, method: str, body: dict[str, Any] | None = None, session: str | None = None
) -> http.client.HTTPResponse:
    """One request of a 2025-11-25 client, as it writes it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    if session is not None:
        headers["Mcp-Session-Id"] = session
    connection.request(method, "/mcp", json.dumps(body) if body else None, headers)
    return connection.getresponse()
