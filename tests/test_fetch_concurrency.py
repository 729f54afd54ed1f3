"""Many weather jobs at once against a slow archive: each is fetched once (issue 10, case 2).

At most ``max_fetches`` requests are in flight; the other jobs wait their turn
for as long as it takes, and their tasks stay theirs meanwhile: the store never
hands a waiting job to a second execution, which used to fetch it again (and
again). Minutes of waiting are simulated: the engine runs on a clock and
sleeper the test moves on, so the lease (60 s) and heartbeat (30 s) are the
production ones and the test takes a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

import pytest
from fastmcp import Client
from resonate.resonate import DEFAULT_MAX_CONCURRENT_TASKS

from durable_mcp.config import Settings
from durable_mcp.server import create_server
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.helpers import FakeTime, call

SLOTS = 3
#: As many jobs as the SDK's default execution permits: before the fix, the second wave
#: waited for a permit holding a lease nobody heartbeated (now every job has a permit).
FIRST_WAVE = DEFAULT_MAX_CONCURRENT_TASKS
SECOND_WAVE = 36
#: A generous bound for anything the test waits on.
BOUND_SECONDS = 30


class GatedArchive(FakeOpenMeteo):
    """The fake archive, answering only the requests the test lets through.

    It counts the requests in flight (arrived, not answered) and their peak,
    and wakes the test's ``until`` from its own threads without using one of
    the server's: those may all be busy fetching.
    """

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.answered = 0
        self._allowed = 0
        self._gate = threading.Condition()
        self._watchers: list[tuple[Callable[[], bool], asyncio.AbstractEventLoop, asyncio.Event]]
        self._watchers = []

    def let_through(self, count: int) -> None:
        with self._gate:
            self._allowed += count
            self._gate.notify_all()

    def open(self) -> None:
        self.let_through(1_000_000)

    def _answer(self, query: str) -> tuple[int, dict[str, Any]]:
        with self._gate:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            self._notify()
            self._gate.wait_for(lambda: self._allowed > 0, BOUND_SECONDS)
            self._allowed -= 1
            self.in_flight -= 1
            self.answered += 1
            self._notify()
        return super()._answer(query)

    def _notify(self) -> None:
        for condition, loop, event in self._watchers:
            if condition():
                loop.call_soon_threadsafe(event.set)

    async def until(self, condition: Callable[[], bool]) -> None:
        event = asyncio.Event()
        with self._gate:
            self._watchers.append((condition, asyncio.get_running_loop(), event))
            if condition():
                event.set()
        async with asyncio.timeout(BOUND_SECONDS):
            await event.wait()

    def fetches_per_job(self) -> Counter[tuple[str, str]]:
        fetches: Counter[tuple[str, str]] = Counter()
        for query, times in self.requests.items():
            params = parse_qs(query)
            fetches[params["latitude"][0], params["start_date"][0]] += times
        return fetches


async def start_jobs(client: Client[Any], numbers: range) -> list[str]:
    """Weather jobs for distinct places, one after the other."""
    names = []
    for n in numbers:
        month = {"latitude": n / 100, "longitude": 20, "year": 2020, "month": 3}
        names.append((await call(client, "start_gathering", **month))["job_name"])
    return names


async def await_all(client: Client[Any], names: list[str]) -> dict[str, Any]:
    """Every job's await_result answer, once none is running (bounded)."""
    results: dict[str, Any] = {name: {"status": "running"} for name in names}

    def running() -> list[str]:
        return [name for name, value in results.items() if value.get("status") == "running"]

    async with asyncio.timeout(BOUND_SECONDS * 2):
        while batch := running()[:100]:  # the tool's limit per call
            results |= await call(client, "await_result", job_names=batch, timeout_seconds=5)
    return results


async def test_jobs_that_wait_minutes_for_a_fetch_slot_are_each_fetched_once(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # Two waves, so that jobs of the second start running late in their 60 s lease,
    # after a heartbeat (at 30 and 60 s; their leases end at 80 s). The SDK heartbeats
    # a job only once it runs: such a job used to lose its lease before its first
    # beat, and a second execution fetched it again.
    caplog.set_level(logging.WARNING)
    simulated = FakeTime()
    with GatedArchive() as fake:
        server = create_server(
            replace(settings, open_meteo_url=fake.url, max_fetches=SLOTS),
            clock=simulated.clock,
            sleeper=simulated.sleep,
        )
        async with Client(server) as client:
            names = await start_jobs(client, range(FIRST_WAVE))
            await fake.until(lambda: fake.in_flight >= SLOTS)
            await simulated.advance(20, step=1)
            names += await start_jobs(client, range(FIRST_WAVE, FIRST_WAVE + SECOND_WAVE))
            # Past a heartbeat: the second wave's leases end at 80 s.
            await simulated.advance(45, step=1)
            fake.let_through(SLOTS)  # three jobs end; three others can start
            await fake.until(lambda: fake.answered >= SLOTS)
            await simulated.advance(120, step=1)  # two more leases' worth of waiting
            fake.open()
            results = await await_all(client, names)

    assert [name for name in names if "summary" not in results[name]] == []
    fetches = fake.fetches_per_job()
    assert len(fetches) == len(names)
    assert [job for job, times in fetches.items() if times != 1] == []
    assert fake.peak_in_flight == SLOTS
    assert [record.getMessage() for record in caplog.records] == []


async def test_a_job_waiting_for_a_fetch_slot_says_how_many_are_ahead_of_it(
    settings: Settings,
) -> None:
    simulated = FakeTime()

    async def messages(client: Client[Any], names: list[str]) -> list[str]:
        statuses = await call(client, "probe_status", job_names=names)
        return sorted(s["progress"]["message"] for s in statuses if s["status"] == "running")

    with GatedArchive() as fake:
        server = create_server(
            replace(settings, open_meteo_url=fake.url, max_fetches=SLOTS), **simulated.seams
        )
        async with Client(server) as client:
            names = await start_jobs(client, range(SLOTS + 3))
            await fake.until(lambda: fake.in_flight >= SLOTS)
            await simulated.turns()
            fetching = ["fetching from the Open-Meteo archive"] * SLOTS
            assert await messages(client, names) == sorted(
                [
                    *fetching,
                    "waiting for a fetch slot (next in line)",
                    "waiting for a fetch slot (1 ahead)",
                    "waiting for a fetch slot (2 ahead)",
                ]
            )
            fake.let_through(1)  # one job ends: the line moves up
            await fake.until(lambda: fake.answered >= 1 and fake.in_flight >= SLOTS)
            await simulated.turns()
            assert await messages(client, names) == sorted(
                [
                    *fetching,
                    "waiting for a fetch slot (next in line)",
                    "waiting for a fetch slot (1 ahead)",
                ]
            )
            fake.open()
            results = await await_all(client, names)
    assert all("summary" in result for result in results.values())
