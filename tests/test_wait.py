"""Jobs.wait looks at the store about once a second while it waits, never in a tight loop.

A wait learns that a job ended from the SDK's push, and reads the store every
``RECHECK`` seconds in case a push was lost. Called without progress reports
(the job layer's own callers, a client without a progress token) it once read
the store as fast as the event loop turned: ~50,000 reads in 3 s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from resonate.context import Context
from resonate.types import PromiseRecord

from durable_mcp.config import Settings
from durable_mcp.engine import build_engine
from durable_mcp.jobs.service import RECHECK, Jobs
from durable_mcp_testing.helpers import FakeTime


async def sleep_an_hour(ctx: Context) -> None:
    await ctx.sleep(dt.timedelta(hours=1))


class CountedJobs:
    """A job layer on the memory store and fake time, counting its reads of promises."""

    def __init__(self, fake_time: FakeTime) -> None:
        engine = build_engine(
            Settings(store="memory"), clock=fake_time.clock, sleeper=fake_time.sleep
        )
        self.resonate = engine.resonate
        self.jobs = Jobs(
            self.resonate, await_max_seconds=45, clock=fake_time.clock, sleeper=fake_time.sleep
        )
        self.jobs.register(sleep_an_hour)
        self.reads = 0
        read = self.resonate.promises.get

        async def counted_read(promise_id: str) -> PromiseRecord:
            self.reads += 1
            return await read(promise_id)

        self.resonate.promises.get = counted_read  # type: ignore[method-assign, assignment]


@pytest.fixture
async def counted(fake_time: FakeTime) -> AsyncIterator[CountedJobs]:
    counted = CountedJobs(fake_time)
    counted.resonate.start()
    try:
        yield counted
    finally:
        await counted.resonate.stop()


async def test_a_wait_without_progress_reports_reads_the_store_once_a_recheck(
    counted: CountedJobs, fake_time: FakeTime
) -> None:
    await counted.jobs.start("job", sleep_an_hour)
    counted.reads = 0
    started = fake_time.now
    wait = counted.jobs.wait(["job"], timeout_seconds=10)  # no on_progress
    statuses = await fake_time.run(wait, step=0.1, within=60)
    assert statuses["job"]["status"] == "running"
    assert fake_time.now - started >= 10_000  # it waited its whole bound ...
    # ... reading the job once before, once per recheck, and once for its status.
    assert counted.reads <= 10 / RECHECK + 2


async def test_a_wait_that_wakes_late_reports_once_not_once_per_missed_interval(
    counted: CountedJobs, fake_time: FakeTime
) -> None:
    await counted.jobs.start("job", sleep_an_hour)
    counted.jobs.progress_interval_seconds = 1
    reports: list[tuple[float, float | None]] = []

    async def on_progress(finished: float, total: float | None, message: str) -> None:
        reports.append((finished, total))

    counted.reads = 0
    wait = counted.jobs.wait(["job"], timeout_seconds=20, on_progress=on_progress)
    # The clock jumps 5 s at a time, as it does for a loop that was held up.
    statuses = await fake_time.run(wait, step=5, within=60)
    assert statuses["job"]["status"] == "running"
    assert reports == [(0, 1)] * 4  # one a wake, at 5, 10, 15 and 20 s: none to catch up
    assert counted.reads == 1 + 4 + 1  # before, at each wake, and for its status
