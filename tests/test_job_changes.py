"""The stores tell their ``on_job_change`` observer of each job that ends: once,
as it settles (by a request or by a deadline), and for the embedded store
only once the end is on disk. The state machine itself calls nobody.

The requests are the protocol's own, sent to the stores as the SDK sends them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from durable_mcp.sdk_compat import DurablePromise
from durable_mcp.store import EmbeddedStore, StoreUnavailable
from durable_mcp.store.job_changes import job_changes
from durable_mcp.store.journal import JournalWriteError
from durable_mcp.store.memory import MemoryStore
from durable_mcp_testing.crashes import promise_of
from durable_mcp_testing.helpers import FakeTime

FAR = 10**15


def create(promise_id: str, timeout_at: int = FAR, **tags: str) -> str:
    return json.dumps(
        {"kind": "promise.create", "id": promise_id, "timeoutAt": timeout_at, "tags": tags}
    )


def settle(promise_id: str, state: str = "resolved") -> str:
    return json.dumps({"kind": "promise.settle", "id": promise_id, "state": state})


class Ends(list[tuple[str, str]]):
    """The observer: (job, state) for each end it is told of."""

    def __call__(self, promise: DurablePromise) -> None:
        self.append((promise.id, promise.state))


def promise(promise_id: str, state: Any) -> DurablePromise:
    return DurablePromise(
        id=promise_id,
        state=state,
        param=None,
        value=None,
        tags={},
        timeout_at=FAR,
        created_at=0,
        settled_at=None if state == "pending" else 1,
        awaiters=set(),
        subscribers=set(),
    )


def test_the_changes_are_the_changed_jobs_that_are_no_longer_pending() -> None:
    promises = {
        "done": promise("done", "resolved"),
        "late": promise("late", "rejected_timedout"),
        "running": promise("running", "pending"),
        "done:1": promise("done:1", "resolved"),  # a step, not a job
        "untouched": promise("untouched", "rejected"),
    }
    changed = {"done", "late", "running", "done:1", "removed"}
    ended = job_changes(promises, changed)
    assert sorted(p.id for p in ended) == ["done", "late"]


# ── the memory store ────────────────────────────────────────────────────────


@pytest.fixture
async def fake_time() -> FakeTime:
    return FakeTime()


async def test_the_memory_store_tells_of_a_job_settled_by_a_request_once(
    fake_time: FakeTime,
) -> None:
    ends = Ends()
    store = MemoryStore(pid="p", group="g", clock=fake_time.clock, on_job_change=ends)
    await store.send(create("job"))
    await store.send(create("job:1"))
    await store.send(settle("job:1"))
    assert ends == []  # a step's end is not a job's
    await store.send(settle("job", "rejected_canceled"))
    await store.send(settle("job"))  # already settled: no second end
    await store.send(create("job"))  # nor does reading it again
    assert ends == [("job", "rejected_canceled")]


async def test_the_memory_store_tells_of_a_job_its_tick_timed_out(fake_time: FakeTime) -> None:
    ends = Ends()
    store = MemoryStore(
        pid="p",
        group="g",
        clock=fake_time.clock,
        sleeper=fake_time.sleep,
        tick_interval=0.1,
        on_job_change=ends,
    )
    await store.start()
    try:
        deadline = fake_time.now + 5_000
        await store.send(create("slow", deadline, **{"resonate:target": "local://any@g"}))
        await fake_time.advance(4.9, step=0.1)
        assert ends == []
        await fake_time.advance(0.2, step=0.1)
        assert ends == [("slow", "rejected_timedout")]
    finally:
        await store.stop()


# ── the embedded store ──────────────────────────────────────────────────────


class GateWriter(concurrent.futures.Executor):
    """Runs the journal's writes on the caller's thread, or holds them until
    ``release``; ``fail_next`` fails the next write as a full disk would."""

    def __init__(self) -> None:
        self.holding = False
        self.held: list[tuple[concurrent.futures.Future[Any], Callable[[], Any]]] = []
        self.fail_next = False

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.held.append((future, lambda: fn(*args, **kwargs)))
        if not self.holding:
            self.release()
        return future

    def release(self) -> None:
        held, self.held = self.held, []
        for future, write in held:
            if self.fail_next:
                self.fail_next = False
                future.set_exception(JournalWriteError("cannot write: database or disk is full"))
                continue
            try:
                future.set_result(write())
            except BaseException as exc:
                future.set_exception(exc)


@pytest.fixture
async def gate(tmp_path: Path, fake_time: FakeTime) -> Any:
    writer, ends = GateWriter(), Ends()
    store = EmbeddedStore(
        tmp_path / "data",
        pid="p",
        group="g",
        clock=fake_time.clock,
        writer=writer,
        on_job_change=ends,
    )
    store.open()
    yield store, writer, ends
    writer.release()
    await store.stop()


async def test_the_embedded_store_tells_of_an_end_only_once_it_is_on_disk(
    gate: tuple[EmbeddedStore, GateWriter, Ends], fake_time: FakeTime
) -> None:
    store, writer, ends = gate
    await store.send(create("job"))
    await store.send(create("job:1"))
    writer.holding = True
    settling = [
        asyncio.ensure_future(store.send(settle("job:1"))),
        asyncio.ensure_future(store.send(settle("job", "rejected"))),
    ]
    await fake_time.turns()
    assert promise_of(store.state, "job").state == "rejected"  # applied ...
    assert writer.held and not any(task.done() for task in settling)  # ... not on disk
    assert ends == []  # so nobody is told yet
    writer.holding = False
    writer.release()
    await asyncio.gather(*settling)
    assert ends == [("job", "rejected")]  # the job, once; not its step


async def test_the_embedded_store_tells_nothing_of_an_end_it_could_not_write(
    gate: tuple[EmbeddedStore, GateWriter, Ends],
) -> None:
    store, writer, ends = gate
    await store.send(create("job"))
    writer.fail_next = True
    with pytest.raises(StoreUnavailable):
        await store.send(settle("job"))
    assert ends == []  # undone: the job runs on
    assert json.loads(await store.send(create("job")))["data"]["promise"]["state"] == "pending"
    await store.send(settle("job"))  # the disk takes it now
    assert ends == [("job", "resolved")]


async def test_the_embedded_store_tells_of_a_job_its_tick_timed_out(
    gate: tuple[EmbeddedStore, GateWriter, Ends], fake_time: FakeTime
) -> None:
    store, _, ends = gate
    deadline = fake_time.now + 5_000
    await store.send(create("slow", deadline, **{"resonate:target": "embedded://any@g"}))
    fake_time.clock.advance(4_999)
    await store.tick()
    assert ends == []
    fake_time.clock.advance(1)
    await store.tick()
    assert ends == [("slow", "rejected_timedout")]


async def test_a_job_forgotten_and_started_again_before_its_end_is_written_ends_once(
    gate: tuple[EmbeddedStore, GateWriter, Ends], fake_time: FakeTime
) -> None:
    store, writer, ends = gate
    await store.send(create("job"))
    writer.holding = True
    changes = [
        asyncio.ensure_future(store.send(settle("job", "rejected"))),
        asyncio.ensure_future(store.forget("job")),
        asyncio.ensure_future(store.send(create("job"))),  # the retry's new run
    ]
    await fake_time.turns()
    assert (
        promise_of(store.state, "job").state == "pending"
    )  # the new run, before the end is written
    writer.holding = False
    writer.release()
    await asyncio.gather(*changes)
    assert ends == [("job", "rejected")]  # the old run's end, once; the new run goes on
    assert promise_of(store.state, "job").state == "pending"


async def test_an_observer_that_fails_leaves_the_store_going(
    tmp_path: Path, fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    told = Ends()

    def failing_once(promise: DurablePromise) -> None:
        told(promise)
        if len(told) == 1:
            raise RuntimeError("the observer broke")

    store = EmbeddedStore(
        tmp_path / "data",
        pid="p",
        group="g",
        clock=fake_time.clock,
        writer=fake_time.writer,
        on_job_change=failing_once,
    )
    store.open()
    try:
        for name in ("a", "b"):
            await store.send(create(name))
            await store.send(settle(name))
    finally:
        await store.stop()
    assert told == [("a", "resolved"), ("b", "resolved")]
    assert "could not report a change of job a" in caplog.text
