"""Disk trouble: a full disk loses nothing acknowledged; an unusable data dir is one clear line.

The data dir sits on a 2 MB tmpfs that the test fills with a file, as a user's
disk fills up; freeing the file is the space coming back. Mounting needs root,
as CI and the developers' machines have; elsewhere these tests are skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from durable_mcp.config import Settings
from durable_mcp.server import create_server
from durable_mcp.store import EmbeddedStore, StoreUnavailable
from durable_mcp.store.embedded import restore
from durable_mcp.tools.weather import OpenMeteoArchive

from fake_open_meteo import FakeOpenMeteo
from helpers import call
from processes import DURABLE_MCP, free_port, start_server, stop

PLACE = {"latitude": 53.5, "longitude": -113.5, "year": 2024, "month": 3}
JOB = "weather_data_53.5_-113.5_2024_3"

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
    store._journal.close()  # as kill -9 would: no clean stop

    reopened = EmbeddedStore(small_disk.path / "data", pid="p", group="g")
    reopened.open()  # no gap in the journal's numbers, nothing lost
    assert set(reopened.state.promises) == {"before", "after"}
    reopened._journal.close()


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
        store._journal.close()
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


class LogSeen(logging.Handler):
    """An event set when a log record containing ``text`` is emitted (from any thread)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.loop.call_soon_threadsafe(self.seen.set)


async def test_a_step_cut_off_by_the_full_disk_runs_again_once_there_is_room(
    small_disk: SmallDisk, archive: OpenMeteoArchive, fake_archive: FakeOpenMeteo
) -> None:
    settings = Settings(store="embedded", data_dir=small_disk.path / "data", await_max_seconds=20)
    # The engine says at debug level when an execution ended because the store
    # could not write: then nothing but the store can start the job again.
    engine_log, store_log = (
        logging.getLogger("durable_mcp.engine"),
        logging.getLogger("durable_mcp.store.embedded"),
    )
    ended, back = LogSeen("background task ended early"), LogSeen("can write again")
    engine_log.addHandler(ended)
    store_log.addHandler(back)
    level, engine_log.level = engine_log.level, logging.DEBUG
    try:
        async with Client(create_server(settings, archive=archive)) as client:
            fake_archive.hold()
            await call(client, "start_gathering", **PLACE)
            await fake_archive.arrived()  # the fetch is in flight
            small_disk.fill()
            fake_archive.release()  # its result cannot be written: the execution ends
            await asyncio.wait_for(ended.seen.wait(), timeout=60)
            small_disk.free()
            # Released once the store can write (it tries each second), not after the
            # task's 60 s lease: it runs again and completes within one await_result.
            result = (await call(client, "await_result", job_names=[JOB]))[JOB]
            assert back.seen.is_set()
    finally:
        engine_log.removeHandler(ended)
        store_log.removeHandler(back)
        engine_log.setLevel(level)
    assert result["summary"]["days"] == 31
    assert fake_archive.total_requests == 2  # the cut-off fetch, and the one that was written
