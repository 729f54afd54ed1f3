"""A damaged store is refused on open in one line naming the damage, never read with jobs missing.

Each test damages a crash image: the store's files copied while it is open,
as a kill -9 leaves them (the recent commits still in ``journal.sqlite3-wal``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from durable_mcp.store import EmbeddedStore, StoreError
from durable_mcp.store.journal import COMMITTED_NAME, DB_NAME
from durable_mcp_testing.processes import DURABLE_MCP, free_port

JOBS = 30
WAL = f"{DB_NAME}-wal"


async def crash_image(tmp_path: Path) -> Path:
    """A data dir holding JOBS jobs, as a server killed with kill -9 left it."""
    live = tmp_path / "live"
    store = EmbeddedStore(live, pid="p", group="g")
    store.open()
    for n in range(JOBS):
        request = {"kind": "promise.create", "id": f"job{n}", "timeoutAt": 10**13}
        await store.send(json.dumps(request))
    image = tmp_path / "image"
    image.mkdir()
    for name in (DB_NAME, WAL, COMMITTED_NAME):
        shutil.copyfile(live / name, image / name)
    store.close()
    return image


def jobs_in(data_dir: Path) -> int:
    store = EmbeddedStore(data_dir, pid="p", group="g")
    store.open()
    try:
        return len(store.state.promises)
    finally:
        store.close()


def files_of(data_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(data_dir.iterdir())}


def delete_a_middle_entry(data_dir: Path) -> None:
    with contextlib.closing(sqlite3.connect(data_dir / DB_NAME)) as db, db:
        db.execute("DELETE FROM journal WHERE seq = 10")


def cut_the_wal_in_half(data_dir: Path) -> None:
    wal = data_dir / WAL
    wal.write_bytes(wal.read_bytes()[: wal.stat().st_size // 2])


def delete_the_wal(data_dir: Path) -> None:
    (data_dir / WAL).unlink()


def garble_the_wal_header(data_dir: Path) -> None:
    wal = data_dir / WAL
    wal.write_bytes(b"\xff" * 32 + wal.read_bytes()[32:])


async def test_an_undamaged_crash_image_opens_with_every_job(tmp_path: Path) -> None:
    assert jobs_in(await crash_image(tmp_path)) == JOBS


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (delete_a_middle_entry, "is damaged \\(journal entries 10 to 10 are missing\\)"),
        (cut_the_wal_in_half, "has lost committed jobs: its journal ends at entry \\d+ but 30"),
        (delete_the_wal, "has lost committed jobs: its journal ends at entry 0 but 30"),
        (garble_the_wal_header, "has lost committed jobs: its journal ends at entry 0 but 30"),
    ],
)
async def test_a_damaged_store_is_refused_and_left_untouched(
    tmp_path: Path, damage: Callable[[Path], None], message: str
) -> None:
    image = await crash_image(tmp_path)
    damage(image)
    before = data_files(image)
    with pytest.raises(StoreError, match=message) as refused:
        jobs_in(image)
    assert str(image) in str(refused.value)
    assert "left untouched" in str(refused.value)
    assert data_files(image) == before


def data_files(data_dir: Path) -> dict[str, bytes]:
    """The store's files that hold data: not the lock, nor SQLite's rebuilt index
    (``-shm``), nor an empty WAL that merely opening the database creates."""
    files = files_of(data_dir)
    for derived in ("lock", f"{DB_NAME}-shm"):
        files.pop(derived, None)
    if files.get(WAL) == b"":
        del files[WAL]
    return files


async def test_a_store_stopped_cleanly_is_whole_in_its_main_file(tmp_path: Path) -> None:
    # What the README says of backups: once the server has stopped, the WAL is
    # folded into journal.sqlite3, so copying the directory copies every job.
    store = EmbeddedStore(tmp_path, pid="p", group="g")
    store.open()
    for n in range(JOBS):
        await store.send(json.dumps({"kind": "promise.create", "id": f"job{n}", "timeoutAt": 1}))
    await store.stop()
    assert not (tmp_path / WAL).exists()
    assert jobs_in(tmp_path) == JOBS


async def test_an_online_backup_restores_every_committed_job(tmp_path: Path) -> None:
    live = tmp_path / "live"
    store = EmbeddedStore(live, pid="p", group="g")
    store.open()
    for n in range(JOBS):
        await store.send(json.dumps({"kind": "promise.create", "id": f"job{n}", "timeoutAt": 1}))
    restored = tmp_path / "restored"
    restored.mkdir()
    # SQLite's online backup, as the README says to take one while the server runs.
    with (
        contextlib.closing(sqlite3.connect(live / DB_NAME)) as source,
        contextlib.closing(sqlite3.connect(restored / DB_NAME)) as target,
    ):
        source.backup(target)
    store.close()
    assert jobs_in(restored) == JOBS


@pytest.mark.parametrize("command", ["serve", "jobs"])
async def test_the_commands_refuse_a_damaged_store_in_one_line(
    tmp_path: Path, command: str
) -> None:
    image = await crash_image(tmp_path)
    delete_the_wal(image)
    args = [DURABLE_MCP, command, "--data-dir", str(image)]
    if command == "serve":
        args += ["--port", str(free_port())]
    refused = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith(f"durable-mcp: the store in {image} has lost committed jobs")
    assert f"{DB_NAME}-wal" in line


async def test_a_deleted_main_file_is_refused_when_jobs_were_committed(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, pid="p", group="g")
    store.open()
    await store.send(json.dumps({"kind": "promise.create", "id": "job", "timeoutAt": 1}))
    await store.stop()
    (tmp_path / DB_NAME).unlink()
    with pytest.raises(StoreError, match=f"has lost committed jobs: {DB_NAME} is missing"):
        jobs_in(tmp_path)
    assert not (tmp_path / DB_NAME).exists()  # nothing was created in its place


async def test_a_committed_file_zeroed_by_a_power_cut_is_only_a_lag(tmp_path: Path) -> None:
    image = await crash_image(tmp_path)
    (image / COMMITTED_NAME).write_bytes(b"\0" * 21)
    assert jobs_in(image) == JOBS
