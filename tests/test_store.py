"""The embedded store: same semantics as the SDK's ServerState, durable, bounded, robust."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from resonate.connections.local import OutgoingMessage, ServerState
from resonate.context import Context
from resonate.error import ResonateTimeoutError
from resonate.resonate import Resonate
from resonate.testing import FakeClock

from durable_mcp.store import EmbeddedStore, StoreError, StoreStopped
from durable_mcp.store.embedded import SWEEP_EVERY
from durable_mcp.store.journal import DB_NAME
from durable_mcp.store.state import IndexedState, is_job
from durable_mcp_testing.crashes import promise_of
from durable_mcp_testing.helpers import STORE_TICK, FakeTime
from durable_mcp_testing.store_protocol import (
    START,
    TARGET,
    crash,
    histories,
    open_store,
    reference_apply,
    send,
)


def state_of(state: ServerState) -> Any:
    """The whole state as builtins, with sets sorted, for comparing two states."""
    return msgspec.to_builtins(
        [state.promises, state.tasks, state.schedules, state.p_timeouts, state.t_timeouts],
        order="deterministic",
    )


# ── the property: a journaled store replays to the SDK's own state ───────────


def running_jobs(state: ServerState) -> int:
    """What the store's running-jobs count must be: pending jobs (not steps) with a task."""
    return sum(
        p.state == "pending" and is_job(p.id) and p.id in state.tasks
        for p in state.promises.values()
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), snapshot_every=st.sampled_from([3, 1_000]), clean_stop=st.booleans())
def test_the_persisted_store_replays_to_the_sdks_in_memory_state(
    history: list[tuple[int, dict[str, Any] | None]], snapshot_every: int, clean_stop: bool
) -> None:
    async def run(data_dir: Path) -> None:
        clock, reference = FakeClock(START), ServerState()
        # Every job kept in memory, as the SDK's state machine keeps them: the whole
        # state compares (the archive of ended jobs is compared in test_archive.py).
        store = open_store(data_dir, clock, snapshot_every=snapshot_every, archive=False)
        for now, req in history:
            clock.now = now
            if req is None:
                reference.tick(now)
                reference.outgoing.clear()
                await store.tick()
            else:
                assert await send(store, req) == reference_apply(reference, now, req)
            assert state_of(store.state) == state_of(reference)
            assert store.state.running_jobs == running_jobs(reference)
        if clean_stop:
            await store.stop()
        else:
            crash(store)
        reopened = open_store(data_dir, clock, archive=False)
        assert state_of(reopened.state) == state_of(reference)
        assert reopened.state.running_jobs == running_jobs(reference)
        crash(reopened)

    with tempfile.TemporaryDirectory() as data_dir:
        asyncio.run(run(Path(data_dir)))


async def test_a_read_that_times_out_a_promise_is_journaled(tmp_path: Path) -> None:
    # promise.get settles a promise past its deadline: a read that changes state.
    clock = FakeClock(START)
    store = open_store(tmp_path, clock)
    await send(store, {"kind": "promise.create", "id": "a", "timeoutAt": clock.now + 50})
    clock.now += 100
    got = await send(store, {"kind": "promise.get", "id": "a"})
    assert got["data"]["promise"]["state"] == "rejected_timedout"
    crash(store)
    assert promise_of(open_store(tmp_path, clock).state, "a").state == "rejected_timedout"


# ── retention ───────────────────────────────────────────────────────────────


async def test_settled_jobs_are_removed_after_the_retention_period(tmp_path: Path) -> None:
    clock = FakeClock(START)
    store = open_store(tmp_path, clock, retention=timedelta(hours=1))
    await send(store, {"kind": "promise.create", "id": "old", "timeoutAt": 10**12, "tags": TARGET})
    await send(store, {"kind": "promise.create", "id": "old:1", "timeoutAt": 10**12, "tags": {}})
    await send(store, {"kind": "promise.settle", "id": "old", "state": "resolved", "value": {}})
    await send(store, {"kind": "promise.create", "id": "running", "timeoutAt": 10**12, "tags": {}})

    clock.now += int(SWEEP_EVERY.total_seconds() * 1000)  # not yet an hour: kept
    await store.tick()
    # "old" has ended, but its step still waits: it is kept in memory, not archived.
    assert set(store.state.promises) == {"old", "old:1", "running"}

    clock.now += 3_600_000
    await store.tick()
    assert set(store.state.promises) == {"running"}
    assert "old" not in store.state.tasks
    missing = await send(store, {"kind": "promise.get", "id": "old"})
    assert missing["head"]["status"] == 404
    crash(store)

    reopened = open_store(tmp_path, clock)
    assert set(reopened.state.promises) == {"running"}
    created = await send(reopened, {"kind": "promise.create", "id": "old", "tags": {}})
    assert created["head"]["status"] == 201  # the id is free again
    crash(reopened)


# ── damage and ownership ────────────────────────────────────────────────────


async def make_store_with_entries(data_dir: Path, count: int) -> None:
    store = open_store(data_dir, FakeClock(START))
    for n in range(count):
        await send(store, {"kind": "promise.create", "id": f"p{n}", "timeoutAt": 10**12})
    crash(store)


def set_crc(data_dir: Path, seq_query: str) -> None:
    with contextlib.closing(sqlite3.connect(data_dir / DB_NAME)) as db, db:
        db.execute(f"UPDATE journal SET crc = crc + 1 WHERE seq = ({seq_query})")


async def test_a_damaged_last_entry_refuses_to_open_and_changes_nothing(
    tmp_path: Path,
) -> None:
    # A commit is atomic, so a bad last entry is damage, not a torn write: it
    # was committed (and maybe acknowledged), so skipping it would lose it.
    await make_store_with_entries(tmp_path, 3)
    set_crc(tmp_path, "SELECT max(seq) FROM journal")
    before = (tmp_path / DB_NAME).read_bytes()
    with pytest.raises(StoreError, match=r"is damaged .*journal entry 3 fails its checksum"):
        open_store(tmp_path, FakeClock(START))
    assert (tmp_path / DB_NAME).read_bytes() == before


async def test_a_damaged_entry_before_the_last_refuses_to_open_and_changes_nothing(
    tmp_path: Path,
) -> None:
    await make_store_with_entries(tmp_path, 3)
    set_crc(tmp_path, "SELECT min(seq) FROM journal")
    before = (tmp_path / DB_NAME).read_bytes()
    with pytest.raises(StoreError, match=f"the store in {tmp_path} is damaged"):
        open_store(tmp_path, FakeClock(START))
    assert (tmp_path / DB_NAME).read_bytes() == before
    await make_store_with_entries(tmp_path / "other", 1)  # the lock was released


def test_a_file_that_is_not_a_store_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"is damaged .*left untouched"):
        open_store(tmp_path, FakeClock(START))
    assert (tmp_path / DB_NAME).read_bytes() == b"this is not a database" * 100


async def test_a_store_of_a_newer_format_is_refused_and_left_alone(tmp_path: Path) -> None:
    await make_store_with_entries(tmp_path, 1)
    with contextlib.closing(sqlite3.connect(tmp_path / DB_NAME)) as db, db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'format_version'")
    before = (tmp_path / DB_NAME).read_bytes()
    with pytest.raises(StoreError, match="has format 99, newer than"):
        open_store(tmp_path, FakeClock(START))
    assert (tmp_path / DB_NAME).read_bytes() == before


def test_one_store_owns_a_data_dir(tmp_path: Path) -> None:
    first = open_store(tmp_path, FakeClock(START))
    # A second app in the same process is told so (another process: test_own_tool.py).
    with pytest.raises(StoreError, match=rf"data dir {tmp_path} is in use by another app in th"):
        open_store(tmp_path, FakeClock(START))
    crash(first)
    crash(open_store(tmp_path, FakeClock(START)))  # free again once the owner is gone


async def test_snapshots_keep_the_journal_short(tmp_path: Path) -> None:
    store = open_store(tmp_path, FakeClock(START), snapshot_every=10)
    for n in range(35):
        await send(store, {"kind": "promise.create", "id": f"p{n}", "timeoutAt": 10**12})
        await store.tick()
    await store.stop()
    with contextlib.closing(sqlite3.connect(tmp_path / DB_NAME)) as db:
        (entries,) = db.execute("SELECT count(*) FROM journal").fetchone()
    assert entries == 0  # a clean stop ends with a snapshot
    assert len(open_store(tmp_path, FakeClock(START)).state.promises) == 35


def journal_entries(data_dir: Path) -> int:
    with contextlib.closing(sqlite3.connect(data_dir / DB_NAME)) as db:
        (entries,) = db.execute("SELECT count(*) FROM journal").fetchone()
    return int(entries)


async def test_snapshots_come_less_often_as_the_state_grows(tmp_path: Path) -> None:
    # A snapshot costs time in proportion to the state: past SNAPSHOT_SHARE x
    # snapshot_every promises, one is taken every (promises / SNAPSHOT_SHARE) entries.
    store = open_store(tmp_path, FakeClock(START), snapshot_every=10)
    for n in range(200):  # 200 promises: a snapshot is due every 50 entries
        await send(store, {"kind": "promise.create", "id": f"p{n}", "timeoutAt": 10**12})
        await store.tick()
    after = journal_entries(tmp_path)
    assert 10 < after < 50  # not every 10 entries any more, and the journal stays bounded
    crash(store)
    assert len(open_store(tmp_path, FakeClock(START)).state.promises) == 200


def test_logging_is_quiet_when_opening_a_new_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    crash(open_store(tmp_path, FakeClock(START)))
    assert [r.levelname for r in caplog.records] == ["INFO"]


async def test_a_job_that_times_out_wakes_whoever_awaits_it(tmp_path: Path) -> None:
    # The SDK rejects an unblock whose promise has "value": null (a timed-out
    # promise has no value); the store must not send one.
    fake_time = FakeTime()
    store = EmbeddedStore(
        tmp_path,
        pid="p",
        group="g",
        **fake_time.seams,
    )
    store.open()
    resonate = Resonate(
        network=store,
        group="g",
        pid="p",
        env={},
        clock=fake_time.clock,
        sleeper=fake_time.sleep,
        autostart=False,
    )
    step_may_end = asyncio.Event()

    async def outlives_its_deadline(ctx: Context) -> None:
        await step_may_end.wait()

    async def stuck(ctx: Context) -> None:
        await ctx.run(outlives_its_deadline)

    resonate.register(stuck)
    resonate.start()
    try:
        handle = resonate.options(timeout=timedelta(seconds=0.5)).run("stuck", stuck)
        await handle.id()  # created, due at START + 0.5 s of fake time
        await fake_time.advance(0.5 + STORE_TICK)
        with pytest.raises(ResonateTimeoutError):
            await asyncio.wait_for(handle.result(), timeout=60)  # a bound on a hang only
    finally:
        step_may_end.set()
        await resonate.stop()


async def test_requests_after_stop_fail_fast_with_a_connector_error(tmp_path: Path) -> None:
    store = open_store(tmp_path, FakeClock(START))
    await store.start()
    await store.stop()
    with pytest.raises(StoreStopped):
        await store.send(json.dumps({"kind": "promise.get", "id": "x"}))


# ── execute messages: queued once per task, as the SDK queues them ──────────

OUTGOING_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("execute"), st.sampled_from("abcd"), st.integers(1, 3)),
        st.tuples(st.just("unblock"), st.sampled_from("abcd"), st.just(0)),
        st.tuples(st.just("clear"), st.just(""), st.just(0)),
        st.tuples(st.just("take"), st.just(""), st.just(0)),
    ),
    max_size=40,
)


@given(OUTGOING_OPS)
def test_execute_messages_are_upserted_as_the_sdk_does(ops: list[tuple[str, str, int]]) -> None:
    ours, reference = IndexedState(), ServerState()
    for op, task, version in ops:
        for state in (ours, reference):
            if op == "execute":
                state.send_execute_message(f"addr-{version}", task, version)
            elif op == "unblock":
                message = {"kind": "unblock", "data": {"promise": {"id": task}}}
                state.outgoing.append(OutgoingMessage(address="sub", message=message))
            elif op == "clear":
                state.outgoing.clear()  # as the SDK's LocalConnection does
            else:
                state.outgoing = []  # as the embedded store takes them
        assert msgspec.to_builtins(ours.outgoing) == msgspec.to_builtins(reference.outgoing)


async def test_the_stores_files_are_not_executable(tmp_path: Path) -> None:
    store = open_store(tmp_path, FakeClock(START))
    await send(store, {"kind": "promise.create", "id": "p", "timeoutAt": 10**12})
    await store.stop()

    files = {path.name: path.stat().st_mode & 0o777 for path in tmp_path.iterdir()}

    assert "committed" in files and "journal.sqlite3" in files
    assert {name: mode for name, mode in files.items() if mode & 0o111} == {}
