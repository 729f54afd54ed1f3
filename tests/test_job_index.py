"""The job index behind list_jobs stays right as jobs change, and across reopening."""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastmcp import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from resonate.connections.local import DurablePromise
from resonate.testing import FakeClock

from durable_mcp.store import EmbeddedStore
from durable_mcp.store.embedded import SWEEP_EVERY
from durable_mcp.store.state import (
    JOB_STATUS,
    JOB_TAG,
    KIND_TAG,
    STATUS_TAG,
    IndexedState,
    JobIndex,
    is_job,
    kind_of,
)
from durable_mcp_testing.helpers import FakeTime, call, start_timers
from durable_mcp_testing.store_protocol import START, crash, open_store, request, send

STATUSES = [None, "running", "completed", "failed", "cancelled"]
KINDS = [None, "timer", "fetch"]


def invocation(func: str) -> dict[str, str]:
    data = {"args": [], "kwargs": {}, "func": func, "version": 1}
    return {"data": base64.b64encode(json.dumps(data).encode()).decode()}


def expected(state: IndexedState, status: str | None, kind: str | None) -> list[str]:
    """What a listing must show, by brute force: every job (in memory, or ended and
    in the embedded store's archive), newest first, filtered."""
    archived = state.archive.every_promise() if state.archive is not None else ()
    jobs: list[DurablePromise] = sorted(
        (p for p in [*state.promises.values(), *archived] if is_job(p.id)),
        key=lambda p: (p.created_at, p.id),
        reverse=True,
    )
    return [
        p.id for p in jobs if status in (None, JOB_STATUS[p.state]) and kind in (None, kind_of(p))
    ]


def listed(state: IndexedState, status: str | None, kind: str | None, limit: int) -> list[str]:
    """The index's listing, page after page of ``limit`` through the cursor."""
    tags = {JOB_TAG: "true"}
    if status is not None:
        tags[STATUS_TAG] = status
    if kind is not None:
        tags[KIND_TAG] = kind
    ids: list[str] = []
    cursor = None
    while True:
        req = {"kind": "promise.search", "tags": tags, "limit": limit, "cursor": cursor}
        page = state.apply(0, req)
        assert page["status"] == 200, page
        ids += [p["id"] for p in page["promises"]]
        assert len(page["promises"]) <= limit
        cursor = page["cursor"]
        if cursor is None:
            return ids


def check(state: IndexedState) -> None:
    """The kept index is the one a rebuild makes, and every listing is the brute-force one."""
    kept = state.promises.job_index()
    rebuilt = JobIndex(state.promises)
    assert {b: ids for b, ids in kept.buckets.items() if ids} == rebuilt.buckets
    for status in STATUSES:
        for kind in KINDS:
            assert listed(state, status, kind, 2) == expected(state, status, kind)


@st.composite
def job_histories(draw: Callable[..., Any]) -> list[tuple[str, int, Any]]:
    """Requests of every kind, with job params of two kinds, forgets and sweeps."""
    now, steps = START, []
    for _ in range(draw(st.integers(1, 40))):
        now += draw(st.sampled_from([0, 1, 30, 600, 40_000]))
        op = draw(st.sampled_from(["request"] * 6 + ["forget", "sweep"]))
        if op == "request":
            req = draw(request(now))
            data = req.get("action", {}).get("data", req) if req is not None else {}
            if isinstance(data, dict) and "param" in data:
                data["param"] = invocation(draw(st.sampled_from(["timer", "fetch"])))
            steps.append(("request", now, req))
        elif op == "forget":
            steps.append(("forget", now, draw(st.sampled_from(["a", "b"]))))
        else:
            now += int(SWEEP_EVERY.total_seconds() * 1000)
            steps.append(("sweep", now, None))
    return steps


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=job_histories(), snapshot_every=st.sampled_from([3, 1_000]))
def test_the_index_follows_creates_settles_forgets_sweeps_and_reopening(
    history: list[tuple[str, int, Any]], snapshot_every: int
) -> None:
    async def run(data_dir: Path) -> None:
        def opened() -> EmbeddedStore:
            return open_store(
                data_dir, clock, snapshot_every=snapshot_every, retention=timedelta(seconds=1)
            )

        clock = FakeClock(START)
        store = opened()
        check(store.state)  # built now: kept from here on
        for n, (op, now, arg) in enumerate(history):
            clock.now = now
            if op == "request" and arg is not None:
                await send(store, arg)
            elif op == "forget":
                await store.forget(arg)
            else:
                await store.tick()  # a sweep when its time has come
            check(store.state)
            if n % 10 == 9:  # from the journal, or a snapshot and the journal
                crash(store)
                store = opened()
                check(store.state)
        crash(store)

    with tempfile.TemporaryDirectory() as data_dir:
        asyncio.run(run(Path(data_dir)))


def test_become_takes_the_other_states_jobs() -> None:
    def state_with(*job_ids: str) -> IndexedState:
        state = IndexedState()
        state.promises.job_index()
        for n, job_id in enumerate(job_ids):
            create = {"id": job_id, "timeoutAt": 10**12, "param": invocation("timer")}
            state.apply(START + n, {"kind": "promise.create", **create})
        return state

    state, other = state_with("a", "b"), state_with("c")
    check(state)
    state.become(other)
    check(state)
    assert listed(state, None, None, 10) == ["c"]
    state.apply(START + 5, {"kind": "promise.create", "id": "d", "timeoutAt": 10**12})
    state.apply(START + 6, {"kind": "promise.settle", "id": "c", "state": "rejected_canceled"})
    check(state)
    assert listed(state, "cancelled", None, 10) == ["c"]


def test_many_jobs_removed_at_once_leave_the_index() -> None:
    state = IndexedState()
    state.promises.job_index()
    for n in range(60):
        create = {"id": f"j{n}", "timeoutAt": 10**12, "param": invocation("timer")}
        state.apply(START + n, {"kind": "promise.create", **create})
        if n % 3:
            settle = {"id": f"j{n}", "state": "rejected_canceled" if n % 3 == 1 else "resolved"}
            state.apply(START + n, {"kind": "promise.settle", **settle})
    check(state)
    state.remove_jobs({f"j{n}" for n in range(0, 60, 2)})  # the sweep's way: many at once
    check(state)
    assert len(expected(state, None, None)) == 30
    state.forget_job("j1")  # one: leaves the index on its own
    check(state)
    assert "j1" not in listed(state, None, None, 100)


def test_a_cursor_naming_no_promise_is_refused() -> None:
    state = IndexedState()
    page = state.apply(0, {"kind": "promise.search", "tags": {JOB_TAG: "true"}, "cursor": "x"})
    assert page["status"] == 400


async def test_listing_follows_cancel_and_retry(client: Client[Any], fake_time: FakeTime) -> None:
    await start_timers(client, fake_time, ["a", "b", "c"])
    await start_timers(client, fake_time, ["quick"], seconds=0)
    await call(client, "await_result", job_names=["quick"])
    await call(client, "cancel_job", job_name="b")

    async def names(**filters: object) -> list[str]:
        return [job["job_name"] for job in (await call(client, "list_jobs", **filters))["jobs"]]

    assert await names() == ["quick", "c", "b", "a"]
    assert await names(status="running") == ["c", "a"]
    assert await names(status="cancelled", kind="timer") == ["b"]
    assert await names(status="completed") == ["quick"]

    await fake_time.advance(0.001)
    await call(client, "set_timer", timer_name="b", seconds=60, retry=True)  # forget, start again
    assert await names() == ["b", "quick", "c", "a"]
    assert await names(status="running") == ["b", "c", "a"]
    assert await names(status="cancelled") == []
    page = await call(client, "list_jobs", status="running", kind="timer", limit=2)
    assert [job["job_name"] for job in page["jobs"]] == ["b", "c"]
    rest = await call(client, "list_jobs", status="running", limit=2, cursor=page["next_cursor"])
    assert [job["job_name"] for job in rest["jobs"]] == ["a"]
    assert await names(kind="weather_data") == []
