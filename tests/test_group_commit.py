"""The embedded store writes on a thread of its own, group-commits, and still
answers nothing before it is on disk.

A gate holds the writer thread inside a write, so each test decides exactly
what is on disk and what is waiting: no sleeps, no timing.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from resonate.testing import FakeClock

from durable_mcp.store import EmbeddedStore, StoreUnavailable
from durable_mcp.store.embedded import peek
from durable_mcp.store.journal import Journal, JournalWriteError, Write


class Writer:
    """Watches the journal's writes: on which thread, how many entries, and can
    hold the next one inside the write (``hold``) or fail it (``fail``)."""

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.sizes: list[int] = []
        self.held = threading.Event()  # set while a write is held
        self.release = threading.Event()
        self.release.set()
        self.fail_next = False

    def hold(self) -> None:
        self.release.clear()

    async def until_held(self) -> None:
        await asyncio.to_thread(self.held.wait)


@pytest.fixture
def writer(monkeypatch: pytest.MonkeyPatch) -> Iterator[Writer]:
    watched = Writer()
    write = Journal.write

    def watched_write(journal: Journal, pending: list[Write]) -> None:
        watched.threads.append(threading.get_ident())
        watched.sizes.append(len(pending))
        if not watched.release.is_set():
            watched.held.set()
            watched.release.wait(timeout=60)  # a write on the loop thread would hang it
            watched.held.clear()
        if watched.fail_next:
            watched.fail_next = False
            raise JournalWriteError(f"cannot write to {journal.data_dir}: disk I/O error")
        write(journal, pending)

    monkeypatch.setattr(Journal, "write", watched_write)
    yield watched
    watched.release.set()  # never leave the writer thread hanging


def create(promise_id: str) -> str:
    return json.dumps({"kind": "promise.create", "id": promise_id, "timeoutAt": 10**13})


def get(promise_id: str) -> str:
    return json.dumps({"kind": "promise.get", "id": promise_id})


async def status_of(store: EmbeddedStore, promise_id: str) -> Any:
    return json.loads(await store.send(get(promise_id)))["head"]["status"]


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    opened = EmbeddedStore(tmp_path / "data", pid="p", group="g", clock=FakeClock(1_000_000))
    opened.open()
    yield opened
    await opened.stop()


async def test_writes_run_off_the_event_loop_thread(store: EmbeddedStore, writer: Writer) -> None:
    for name in ("a", "b", "c"):
        await store.send(create(name))
    assert len(writer.threads) == 3
    assert threading.get_ident() not in writer.threads  # the loop's thread never writes
    assert set(peek_promises(store)) == {"a", "b", "c"}


def peek_promises(store: EmbeddedStore) -> set[str]:
    return set(peek(store.data_dir).promises)


async def test_changes_made_during_a_write_share_the_next_one(
    store: EmbeddedStore, writer: Writer
) -> None:
    writer.hold()
    first = asyncio.create_task(store.send(create("first")))
    await writer.until_held()
    many = [asyncio.create_task(store.send(create(f"job{i}"))) for i in range(20)]
    await asyncio.sleep(0)  # every create has been applied and queued
    assert not first.done() and not any(task.done() for task in many)  # none answered yet
    assert peek_promises(store) == set()  # and none is on disk

    writer.release.set()
    await asyncio.gather(first, *many)
    assert writer.sizes == [1, 20]  # two writes: the first, then the 20 that waited for it
    assert peek_promises(store) == {"first"} | {f"job{i}" for i in range(20)}


async def test_a_change_is_answered_only_once_it_is_on_disk(
    store: EmbeddedStore, writer: Writer
) -> None:
    writer.hold()
    created = asyncio.create_task(store.send(create("a")))
    await writer.until_held()
    read = asyncio.create_task(store.send(get("a")))  # the change it would see is not on disk
    await asyncio.sleep(0)
    assert not created.done() and not read.done()

    writer.release.set()
    await created
    assert json.loads(await read)["head"]["status"] == 200
    assert peek_promises(store) == {"a"}


async def test_reads_of_promises_already_on_disk_do_not_wait_for_a_write(
    store: EmbeddedStore, writer: Writer
) -> None:
    await store.send(create("old"))
    writer.hold()
    created = asyncio.create_task(store.send(create("new")))
    await writer.until_held()
    assert await status_of(store, "old") == 200  # answered while the write is held
    assert not created.done()
    writer.release.set()
    await created


async def test_a_failed_write_undoes_the_changes_made_while_it_ran(
    writer: Writer, tmp_path: Path
) -> None:
    store = EmbeddedStore(tmp_path / "data", pid="p", group="g")
    store.open()
    await store.send(create("before"))
    writer.hold()
    writer.fail_next = True
    failing = asyncio.create_task(store.send(create("lost")))
    await writer.until_held()
    waiting = asyncio.create_task(store.send(create("also-lost")))  # the next write's
    await asyncio.sleep(0)
    writer.release.set()
    for task in (failing, waiting):
        with pytest.raises(StoreUnavailable, match="disk I/O error; nothing was changed"):
            await task
    assert set(store.state.promises) == {"before"}  # memory went back to what is on disk

    await store.send(create("after"))  # the disk works again: so does the store
    store.close()  # as kill -9 would
    reopened = EmbeddedStore(tmp_path / "data", pid="p", group="g")
    reopened.open()  # no gap in the journal's numbers, nothing acknowledged lost
    assert set(reopened.state.promises) == {"before", "after"}
    reopened.close()


async def test_a_waiter_that_goes_away_leaves_the_others_their_answers(
    store: EmbeddedStore, writer: Writer, caplog: pytest.LogCaptureFixture
) -> None:
    writer.hold()
    first = asyncio.create_task(store.send(create("first")))
    await writer.until_held()
    gone, staying = (asyncio.create_task(store.send(create(name))) for name in ("gone", "stay"))
    await asyncio.sleep(0)  # both are applied and wait for the same write
    gone.cancel()  # its client went away
    writer.release.set()
    await first
    assert json.loads(await staying)["head"]["status"] == 201
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert peek_promises(store) == {"first", "gone", "stay"}  # made, so written all the same
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
