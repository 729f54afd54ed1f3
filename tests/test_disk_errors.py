"""Disk trouble: a full disk loses nothing acknowledged; an unusable data dir is one clear line.

The data dir sits on a 2 MB tmpfs that the test fills with a file, as a user's
disk fills up; freeing the file is the space coming back. Mounting needs root,
as CI and the developers' machines have; elsewhere these tests are skipped.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR
from resonate.context import Context
from resonate.observability import BackgroundTaskFailed, Event
from resonate.resonate import Resonate
from resonate.testing import FakeClock

from durable_mcp.store import EmbeddedStore, StoreUnavailable
from durable_mcp.store.embedded import restore
from durable_mcp_testing.helpers import call
from durable_mcp_testing.processes import DURABLE_MCP, free_port, start_server, stop
from durable_mcp_testing.tasks_client import TasksOptIn, start_task, task_method

FULL = "cannot write to .*database or disk is full; nothing was changed"


class SmallDisk:
    """A 2 MB tmpfs at ``path`` that ``fill`` fills and ``free`` empties again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        with open(self.filler, "wb") as filler:
            try:
                while True:
                    filler.write(b"\0" * 4096)
                    filler.flush()
            except OSError:  # ENOSPC: the disk is full
                pass

    def free(self) -> None:
        self.filler.unlink()

    def make_read_only(self) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield SmallDisk(mount_point)
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def create(promise_id: str) -> str:
    return json.dumps({"kind": "promise.create", "id": promise_id, "timeoutAt": 10**13})


def get(promise_id: str) -> str:
    return json.dumps({"kind": "promise.get", "id": promise_id})


def on_disk(store: EmbeddedStore) -> Any:
    saved = store._journal.read()
    return restore(saved.snapshot, saved.entries)


async def test_a_change_that_cannot_be_written_is_undone_and_the_store_goes_on(
    small_disk: SmallDisk,
) -> None:
    store = EmbeddedStore(small_disk.path / "data", pid="p", group="g")
    store.open()
    await store.send(create("before"))
    small_disk.fill()

    with pytest.raises(StoreUnavailable, match=FULL):
        await store.send(create("lost"))
    # Undone in memory as well: what the store answers is what is on disk.
    assert set(store.state.promises) == set(on_disk(store).promises) == {"before"}
    assert json.loads(await store.send(get("before")))["head"]["status"] == 200  # reads go on
    with pytest.raises(StoreUnavailable, match=FULL):
        await store.send(create("lost"))  # still nothing half-created to attach to

    small_disk.free()
    await store.send(create("after"))  # no restart needed
    store.close()  # as kill -9 would: no clean stop

    reopened = EmbeddedStore(small_disk.path / "data", pid="p", group="g")
    reopened.open()  # no gap in the journal's numbers, nothing lost
    assert set(reopened.state.promises) == {"before", "after"}
    reopened.close()


async def call_at(url: str, tool: str, **arguments: object) -> Any:
    async with Client(url) as client:
        return await call(client, tool, **arguments)


async def test_jobs_refused_on_a_full_disk_start_for_real_once_there_is_room(
    small_disk: SmallDisk, tmp_path: Path
) -> None:
    port, data_dir, log = free_port(), small_disk.path / "data", tmp_path / "server.log"
    url = f"http://127.0.0.1:{port}/mcp"
    server = start_server(port, data_dir, log=log)
    try:
        await call_at(url, "set_timer", timer_name="X0", seconds=600)
        small_disk.fill()
        for name in ("Y1", "Y2", "Y3"):
            with pytest.raises(ToolError, match=FULL):
                await call_at(url, "set_timer", timer_name=name, seconds=600)
        (x0,) = await call_at(url, "probe_status", job_names=["X0"])
        assert x0["status"] == "running"  # reads answer while the disk is full

        small_disk.free()
        for name in ("Y1", "Y2", "Y3"):
            started = await call_at(url, "set_timer", timer_name=name, seconds=600)
            assert started == {"promise_id": name, "status": "running"}
        stop(server, signal.SIGKILL)
        server = start_server(port, data_dir, log=log)
        statuses = await call_at(url, "probe_status", job_names=["X0", "Y1", "Y2", "Y3"])
        assert [job["status"] for job in statuses] == ["running"] * 4
    finally:
        stop(server)
    text = log.read_text()
    assert text.count("database or disk is full; changes fail") == 1  # said once, in one line
    assert "Traceback" not in text


def serve_exit(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """``durable-mcp serve`` on ``data_dir``, expected to refuse to start."""
    return subprocess.run(
        [DURABLE_MCP, "serve", "--port", str(free_port()), "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("store_exists", [False, True])
def test_a_read_only_data_dir_is_one_line_and_exit_2(
    small_disk: SmallDisk, store_exists: bool
) -> None:
    data_dir = small_disk.path / "data"
    data_dir.mkdir()
    if store_exists:
        store = EmbeddedStore(data_dir, pid="p", group="g")
        store.open()
        store.close()
    small_disk.make_read_only()
    refused = serve_exit(data_dir)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"durable-mcp: cannot use data dir {data_dir}: Read-only file system "
        f"({data_dir / 'lock'}); it must be a writable directory"
    ]


def test_a_full_disk_at_start_is_one_line_and_exit_2(small_disk: SmallDisk) -> None:
    small_disk.fill()
    refused = serve_exit(small_disk.path / "data")
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"durable-mcp: cannot use data dir {small_disk.path / 'data'}: No space left on device; "
        "it must be a writable directory"
    ]


def test_a_lock_that_is_a_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "data" / "lock").mkdir(parents=True)
    refused = serve_exit(tmp_path / "data")
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"durable-mcp: cannot use data dir {tmp_path / 'data'}: Is a directory "
        f"({tmp_path / 'data' / 'lock'}); it must be a writable directory"
    ]


async def test_a_step_cut_off_by_the_full_disk_runs_again_once_there_is_room(
    small_disk: SmallDisk,
) -> None:
    store = EmbeddedStore(small_disk.path / "data", pid="p", group="g")
    store.open()
    ended = asyncio.Event()  # an execution ended on a failure (the SDK's observer says so)

    def observe(event: Event) -> None:
        if isinstance(event, BackgroundTaskFailed):
            ended.set()

    resonate = Resonate(
        network=store, group="g", pid="p", env={}, observer=observe, autostart=False
    )
    step_entered, step_may_return, runs_of_step = asyncio.Event(), asyncio.Event(), []

    async def step(ctx: Context) -> str:
        runs_of_step.append(1)
        step_entered.set()
        await step_may_return.wait()
        return "fetched"

    async def job(ctx: Context) -> str:
        return await ctx.run(step)

    resonate.register(job)
    resonate.start()
    try:
        handle = resonate.run("job", job)
        await asyncio.wait_for(step_entered.wait(), timeout=60)
        small_disk.fill()
        step_may_return.set()  # its result cannot be written: the execution ends
        await asyncio.wait_for(ended.wait(), timeout=60)
        small_disk.free()
        # Released once the store can write (it tries each second), not after the
        # task's 60 s lease: it runs again and completes well before that.
        assert await asyncio.wait_for(handle.result(), timeout=30) == "fetched"
    finally:
        await resonate.stop()
    assert len(runs_of_step) == 2  # the cut-off run, and the one that was written


async def test_work_still_running_keeps_its_lease_across_a_long_full_disk(
    small_disk: SmallDisk,
) -> None:
    # Heartbeats refused while the disk is full are undone; once it takes writes
    # again the store renews what this process is running, before any tick could
    # take a lease that merely looks old and hand the work to a second execution.
    clock = FakeClock(1_000_000)
    store = EmbeddedStore(small_disk.path / "data", pid="p", group="g", clock=clock)
    store.open()
    action = {"kind": "promise.create", "data": {"id": "job", "timeoutAt": 10**13}}
    created = await store.send(
        json.dumps({"kind": "task.create", "pid": "p", "ttl": 60_000, "action": action})
    )
    version = json.loads(created)["data"]["task"]["version"]
    small_disk.fill()
    beat = {"kind": "task.heartbeat", "pid": "p", "tasks": [{"id": "job", "version": version}]}
    with pytest.raises(StoreUnavailable):
        await store.send(json.dumps(beat))
    clock.advance(seconds=90)  # past the lease the refused heartbeat would have renewed
    small_disk.free()
    await store.tick()
    task = store.state.tasks["job"]
    assert (task.state, task.version) == ("acquired", version)
    store.close()


async def test_tasks_cancel_on_a_full_disk_is_the_stores_one_line(
    small_disk: SmallDisk, tmp_path: Path
) -> None:
    port, log = free_port(), tmp_path / "server.log"
    server = start_server(port, small_disk.path / "data", log=log)
    try:
        async with Client(f"http://127.0.0.1:{port}/mcp", extensions=[TasksOptIn()]) as client:
            await start_task(client, "set_timer", timer_name="tea", seconds=600)
            small_disk.fill()
            with pytest.raises(MCPError) as refused:
                await task_method(client, "tasks/cancel", "tea")
            small_disk.free()
            still = await task_method(client, "tasks/get", "tea")
    finally:
        stop(server)

    assert refused.value.error.code == INTERNAL_ERROR
    assert re.search(FULL, refused.value.error.message)
    assert still["status"] == "working"  # nothing was changed
    assert "Traceback" not in log.read_text()
