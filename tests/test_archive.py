"""Ended jobs off the heap: the embedded store's archive answers as memory did.

The property: driven by any requests the SDK sends (hypothesis), the store
with its archive answers each exactly as the SDK's own in-memory state machine
does, and its memory plus its archive is that machine's state, also after a
crash and a reopen. Then the same through the tools: a job's status, result,
listing and steps are the same once it has left memory, after ``kill -9``, for
a retry, past the retention, and a damaged archived job says so in one line.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from resonate.testing import FakeClock

from durable_mcp.config import Settings
from durable_mcp.sdk_compat import ServerState
from durable_mcp.server import create_server
from durable_mcp.store.journal import DB_NAME
from durable_mcp.store.state import IndexedState
from durable_mcp_testing.crashes import promise_of, store_of
from durable_mcp_testing.helpers import STORE_TICK, FakeTime, call
from durable_mcp_testing.store_protocol import (
    START,
    crash,
    histories,
    open_store,
    reference_apply,
    send,
)

# ── the property: with its archive, the store is the SDK's state machine ─────


def everything(state: IndexedState) -> Any:
    """The promises and tasks in memory and in the archive, and the deadlines, as builtins."""
    promises, tasks = dict(state.promises), dict(state.tasks)
    if state.archive is not None:
        for root in state.archive.newest_first(None, None, None, None, None):
            job = state.archive.job(root.id)
            assert job is not None
            for promise in (job.root, *job.steps):
                assert promise.id not in promises, f"{promise.id} is in memory and archived"
                promises[promise.id] = promise
            tasks |= {task.id: task for task in job.tasks}
    return msgspec.to_builtins(
        [promises, tasks, state.schedules, state.p_timeouts, state.t_timeouts],
        order="deterministic",
    )


def whole(state: ServerState) -> Any:
    return msgspec.to_builtins(
        [state.promises, state.tasks, state.schedules, state.p_timeouts, state.t_timeouts],
        order="deterministic",
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), snapshot_every=st.sampled_from([3, 1_000]), clean_stop=st.booleans())
def test_with_its_archive_the_store_answers_as_the_sdks_state_machine(
    history: list[tuple[int, dict[str, Any] | None]], snapshot_every: int, clean_stop: bool
) -> None:
    async def run(data_dir: Path) -> None:
        clock, reference = FakeClock(START), ServerState()
        store = open_store(data_dir, clock, snapshot_every=snapshot_every)
        archived = 0
        for now, req in history:
            clock.now = now
            if req is None:
                reference.tick(now)
                reference.outgoing.clear()
                await store.tick()  # ended jobs leave memory here
            else:
                assert await send(store, req) == reference_apply(reference, now, req), req
            assert everything(store.state) == whole(reference)
            assert store._archive is not None
            archived = max(archived, store._archive.count())
        if clean_stop:
            await store.stop()
        else:
            crash(store)
        reopened = open_store(data_dir, clock)
        assert everything(reopened.state) == whole(reference)
        crash(reopened)

    with tempfile.TemporaryDirectory() as data_dir:
        asyncio.run(run(Path(data_dir)))


# ── through the tools ────────────────────────────────────────────────────────


def memory_ids(state: IndexedState) -> set[str]:
    """The jobs in memory (not their steps)."""
    return {pid for pid in state.promises if ":" not in pid}


async def answers(client: Client[Any], names: list[str]) -> Any:
    """What the tools say of ``names`` (statuses, results, the list, the timers' own
    tool), without the fields that move with the clock."""
    statuses = await call(client, "probe_status", job_names=names)
    results = await call(client, "await_result", job_names=names, timeout_seconds=0)
    listed = await call(client, "list_jobs", limit=100)
    timers = [await call(client, "get_timer_status", timer_name=name) for name in names]
    return timeless([statuses, results, listed, timers])


def timeless(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items() if k not in ("remaining_seconds",)}
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return value


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


async def test_ended_jobs_leave_memory_and_every_tool_answers_as_before(
    data_dir: Path, fake_time: FakeTime
) -> None:
    settings = Settings(data_dir=data_dir, await_max_seconds=1, rate_limit=1e6)
    mcp = create_server(settings, **fake_time.seams)
    names = ["tea", "coffee", "cake"]
    async with Client(mcp) as client:
        for name, seconds in zip(names, (0, 1, 3600), strict=True):
            await call(client, "set_timer", timer_name=name, seconds=seconds)
        await call(client, "cancel_job", job_name="coffee")
        await fake_time.run(
            call(client, "await_result", job_names=["tea"], timeout_seconds=1),
            step=STORE_TICK,
            within=30,
        )
        store = store_of(mcp)
        in_memory = await answers(client, names)
        await fake_time.advance(STORE_TICK * 3, step=STORE_TICK)  # ticks: the ended leave
        assert memory_ids(store.state) == {"cake", "coffee"}  # coffee's sleep is pending
        assert store._archive is not None and store._archive.count() == 1
        assert await answers(client, names) == in_memory
    # kill -9: the archive is what was committed, and answers alike after the restart.
    crash(store)
    mcp = create_server(settings, **fake_time.seams)
    async with Client(mcp) as client:
        assert await answers(client, names) == in_memory
        assert "tea" not in store_of(mcp).state.promises


async def test_a_failed_or_cancelled_job_in_the_archive_can_be_retried(
    data_dir: Path, fake_time: FakeTime
) -> None:
    settings = Settings(data_dir=data_dir, await_max_seconds=10, rate_limit=1e6)
    mcp = create_server(settings, **fake_time.seams)
    async with Client(mcp) as client:
        await call(client, "set_timer", timer_name="tea", seconds=1)
        await call(client, "cancel_job", job_name="tea")
        await fake_time.advance(3, step=STORE_TICK)  # its sleep fires: then it is archived
        store = store_of(mcp)
        assert "tea" not in store.state.promises
        again = await call(client, "set_timer", timer_name="tea", seconds=1, retry=True)
        assert again["status"] == "running"
        done = await fake_time.run(
            call(client, "await_result", job_names=["tea"], timeout_seconds=5),
            step=STORE_TICK,
            within=30,
        )
        assert done == {"tea": "complete"}


async def test_the_retention_removes_archived_jobs(data_dir: Path, fake_time: FakeTime) -> None:
    settings = Settings(
        data_dir=data_dir, await_max_seconds=1, rate_limit=1e6, retention=timedelta(hours=1)
    )
    mcp = create_server(settings, **fake_time.seams)
    async with Client(mcp) as client:
        await call(client, "set_timer", timer_name="tea", seconds=0)
        await fake_time.advance(1, step=STORE_TICK)
        store = store_of(mcp)
        assert store._archive is not None and store._archive.count() == 1
        await fake_time.advance(2 * 3600, step=60)
        assert store._archive.count() == 0
        (gone,) = await call(client, "probe_status", job_names=["tea"])
        assert gone["status"] == "not_found"


async def test_a_damaged_archived_job_says_so_in_one_line_and_the_others_answer(
    data_dir: Path, fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=data_dir, await_max_seconds=1, rate_limit=1e6)
    mcp = create_server(settings, **fake_time.seams)
    async with Client(mcp) as client:
        for name in ("tea", "cake", "bun"):
            await call(client, "set_timer", timer_name=name, seconds=0)
        await fake_time.advance(1, step=STORE_TICK)
        with sqlite3.connect(data_dir / DB_NAME) as db:  # a changed byte on disk
            db.execute("UPDATE archive SET root = root || x'00' WHERE id = 'tea'")
            db.execute("UPDATE archive SET rest = rest || x'00' WHERE id = 'cake'")
        with pytest.raises(
            ToolError, match=r"is damaged \(archived job 'tea' fails its checksum\)"
        ):
            await call(client, "probe_status", job_names=["tea"])
        with pytest.raises(ToolError, match="archived job 'cake' fails its checksum"):
            await call(client, "probe_status", job_names=["cake"])
        (bun,) = await call(client, "probe_status", job_names=["bun"])
        assert bun["status"] == "completed"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_ids_of_jobs_gone_from_memory_do_not_hold_up_the_archive(tmp_path: Path) -> None:
    """A job removed otherwise (swept, forgotten for a retry) leaves the ended jobs'
    queue: a thousand of them looked at first would otherwise stop every later move."""
    clock = FakeClock(START)
    store = open_store(tmp_path, clock)
    store.state.finished.update(f"gone{i}" for i in range(5_000))
    await send(store, {"kind": "promise.create", "id": "job", "timeoutAt": START + 10**6})
    await send(store, {"kind": "promise.settle", "id": "job", "state": "resolved", "value": {}})
    for _ in range(10):
        await store.tick()
    assert store.state.finished == set()
    assert "job" not in store.state.promises and promise_of(store.state, "job").state == "resolved"
    crash(store)
