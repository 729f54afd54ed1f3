"""Replicas: two `durable-mcp serve` processes on one Postgres database.

Every job lives in the database, so any replica answers for any job; a
replica killed mid-step leaves its jobs to the other once their lease lapses
(a few seconds on Postgres, see ``engine.PG_LEASE``). These tests assert what
the jobs answered and what the fake archive counted, never how long anything
took (``make bench`` measures the takeover: bench/pg_takeover.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.client.client import CallToolResult

from durable_mcp.config import Settings
from durable_mcp.engine import PG_HEARTBEAT, PG_LEASE, build_engine
from durable_mcp.sdk_compat import RunCountingHeartbeat
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.helpers import eventually
from durable_mcp_testing.postgres_server import needs_schema, replicas_of
from durable_mcp_testing.processes import Server

pytestmark = needs_schema

PLACE = {"latitude": 53.5, "longitude": -113.5, "year": 2024}


def job_of(month: int) -> str:
    return f"weather_data_53.5_-113.5_2024_{month}"


@pytest.fixture
def replicas(
    postgres: Any, fake_archive: FakeOpenMeteo, tmp_path: Path
) -> Iterator[tuple[Server, Server]]:
    """Replicas A and B on one database; each logs to tmp_path/<a|b>/server.log."""
    with replicas_of(postgres, fake_archive.url, tmp_path) as both:
        yield both


async def call(server: Server, tool: str, **arguments: object) -> Any:
    async with Client(server.url) as client:
        return (await client.call_tool(tool, arguments)).data


async def await_done(server: Server, names: list[str]) -> dict[str, Any]:
    """Every job's result from ``server``, calling await_result until none is running."""
    results: dict[str, Any] = {}

    async def all_done() -> dict[str, Any] | None:
        running = [name for name in names if _running(results.get(name, {"status": "running"}))]
        results.update(await call(server, "await_result", job_names=running))
        return None if any(_running(results[name]) for name in names) else results

    return await eventually(all_done, within=90, every=0)


def _running(result: object) -> bool:
    return isinstance(result, dict) and result.get("status") == "running"


def fetches(fake: FakeOpenMeteo, month: int) -> int:
    """Requests the archive answered for PLACE's ``month`` (a held one counts once released)."""
    start = f"start_date={PLACE['year']}-{month:02d}-01"
    return sum(count for query, count in fake.requests.items() if start in query)


def log_of(server: Server) -> str:
    return (server.data_dir.parent / "server.log").read_text()


def test_a_replica_leases_its_jobs_briefly_and_renews_them_a_few_times_a_lease() -> None:
    resonate = build_engine(Settings(pg_dsn="postgresql://user@127.0.0.1:9/db")).resonate
    assert resonate._core.ttl == PG_LEASE // timedelta(milliseconds=1)  # at create and acquire
    heartbeat = resonate._heartbeat
    assert isinstance(heartbeat, RunCountingHeartbeat)
    assert heartbeat.inner.interval_ms == PG_HEARTBEAT // timedelta(milliseconds=1)
    # A dead replica's job is taken over within 5 s: its lease, then the next
    # firing of the timers (0.25 s) and the hand-over to a live replica.
    assert PG_LEASE + timedelta(seconds=0.5) <= timedelta(seconds=5)
    # A live replica keeps its jobs through two missed renewals in a row.
    assert PG_HEARTBEAT * 3 <= PG_LEASE


async def test_a_job_started_on_one_replica_is_awaited_on_the_other(
    replicas: tuple[Server, Server], fake_archive: FakeOpenMeteo
) -> None:
    a, b = replicas
    started = await call(a, "start_gathering", **PLACE, month=1)
    assert started["job_name"] == job_of(1)
    await call(a, "set_timer", timer_name="tea", seconds=1)

    results = await await_done(b, [job_of(1), "tea"])
    assert results["tea"] == "complete"
    assert results[job_of(1)]["summary"]["days"] == 31
    assert fetches(fake_archive, 1) == 1
    # Asked on B, the job is the one A started: attached, not started again.
    again = await call(b, "start_gathering", **PLACE, month=1)
    assert again == {"job_name": job_of(1), "status": "completed"}
    assert fake_archive.total_requests == 1
    for server in (a, b):
        assert "ERROR" not in log_of(server)


async def test_a_replica_killed_mid_fetch_leaves_every_job_to_the_other(
    replicas: tuple[Server, Server], fake_archive: FakeOpenMeteo
) -> None:
    a, b = replicas
    # Done before the kill: never fetched again.
    await call(a, "start_gathering", **PLACE, month=1)
    await await_done(a, [job_of(1)])

    fake_archive.hold()  # every fetch from here hangs until released: the kill lands mid-fetch
    cut_off = [2, 3, 4]  # fetching on A when it dies
    for month in cut_off:
        await call(a, "start_gathering", **PLACE, month=month)
    await call(b, "start_gathering", **PLACE, month=5)  # fetching on B, which lives
    await call(a, "set_timer", timer_name="tea", seconds=2)  # sleeping, or done, at the kill
    await fake_archive.arrived(1 + len(cut_off) + 1)  # every fetch is in flight
    a.kill()
    fake_archive.release()

    months = [1, *cut_off, 5]
    results = await await_done(b, [job_of(month) for month in months] + ["tea"])
    assert results["tea"] == "complete"
    for month in months:
        assert results[job_of(month)]["month"] == month
        assert results[job_of(month)]["summary"]["days"] > 27
    # A's cut-off fetches ran once more, on B; nothing else ran twice.
    assert {month: fetches(fake_archive, month) for month in months} == {
        1: 1,
        2: 2,
        3: 2,
        4: 2,
        5: 1,
    }
    assert "ERROR" not in log_of(b)


async def test_the_same_name_raced_on_both_replicas_makes_one_job(
    replicas: tuple[Server, Server], fake_archive: FakeOpenMeteo, postgres: Any
) -> None:
    a, b = replicas
    rounds = 5
    async with Client(a.url) as on_a, Client(b.url) as on_b:

        async def race(tool: str, first: dict[str, Any], second: dict[str, Any]) -> list[Any]:
            answers = await asyncio.gather(
                on_a.call_tool(tool, first, raise_on_error=False),
                on_b.call_tool(tool, second, raise_on_error=False),
            )
            return [_answer(answer) for answer in answers]

        for n in range(rounds):
            # The same arguments on both: both attach to one job.
            same = await race(
                "set_timer",
                {"timer_name": f"same_{n}", "seconds": 1},
                {"timer_name": f"same_{n}", "seconds": 1},
            )
            assert [answer["promise_id"] for answer in same] == [f"same_{n}"] * 2
            assert all(answer["status"] in ("running", "completed") for answer in same)
            place = {**PLACE, "month": n + 1}
            same = await race("start_gathering", place, place)
            assert [answer["job_name"] for answer in same] == [job_of(n + 1)] * 2

            # Other arguments on each: one job, the other answer is the conflict error.
            other = await race(
                "set_timer",
                {"timer_name": f"other_{n}", "seconds": 1},
                {"timer_name": f"other_{n}", "seconds": 2},
            )
            (won,) = [i for i, answer in enumerate(other) if not isinstance(answer, str)]
            assert other[won]["promise_id"] == f"other_{n}"
            assert "already exists with other arguments" in other[1 - won]
            assert f'timer("other_{n}", {won + 1}' in other[1 - won]  # names the winner's

            place = {**PLACE, "month": n + 7}
            zoned = await race(
                "start_gathering", {**place, "timezone": "UTC"}, {**place, "timezone": "GMT"}
            )
            (won,) = [i for i, answer in enumerate(zoned) if not isinstance(answer, str)]
            assert zoned[won]["job_name"] == job_of(n + 7)
            assert "already exists with other arguments" in zoned[1 - won]

    timers = [f"{kind}_{n}" for kind in ("same", "other") for n in range(rounds)]
    weather = [job_of(month) for month in [*range(1, rounds + 1), *range(7, rounds + 7)]]
    results = await await_done(a, timers + weather)
    assert all(results[name] == "complete" for name in timers)
    for month in [*range(1, rounds + 1), *range(7, rounds + 7)]:
        assert results[job_of(month)]["month"] == month
        assert fetches(fake_archive, month) == 1  # one job, one fetch
    # One job per timer name: one durable sleep each, never a second.
    sleeps = postgres.psql(
        "SELECT count(*) || ' sleeps' FROM resonate.promises WHERE id ~ '^(same|other)_[0-9]+:';"
    )
    assert f"{len(timers)} sleeps" in sleeps
    for server in (a, b):
        assert "ERROR" not in log_of(server)


def _answer(result: CallToolResult) -> Any:
    """A tool's data, or the text of its error."""
    if result.is_error:
        text = result.content[0]
        assert hasattr(text, "text")
        return str(text.text)
    return result.data
