"""Helpers for the tests that `kill -9` a real server process: call its tools,
await its jobs, read its data dir while it runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from fastmcp import Client
from resonate.timing import now_ms

from durable_mcp.sdk_compat import DurablePromise
from durable_mcp.store.embedded import EmbeddedStore, peek
from durable_mcp.store.journal import DB_NAME
from durable_mcp.store.state import IndexedState
from durable_mcp_testing.helpers import eventually
from durable_mcp_testing.processes import Server


async def call_server(server: Server, tool: str, **arguments: object) -> Any:
    """Call ``tool`` on the server process, on a client of its own."""
    async with Client(server.url) as client:
        return (await client.call_tool(tool, arguments)).data


async def await_done(server: Server, names: list[str], within: float = 240) -> dict[str, Any]:
    """Every job's result, calling await_result (45 s at most a call) until none is running."""
    results: dict[str, Any] = {}

    async def all_done() -> dict[str, Any] | None:
        running = [name for name in names if _running(results.get(name, {"status": "running"}))]
        results.update(await call_server(server, "await_result", job_names=running))
        return None if any(_running(results[name]) for name in names) else results

    return await eventually(all_done, within=within, every=0)


def _running(result: object) -> bool:
    return isinstance(result, dict) and result.get("status") == "running"


def saved(server: Server) -> IndexedState:
    """What the server's store has on disk (readable while the server runs)."""
    return peek(server.data_dir)


async def sleep_on_disk(server: Server, timer_name: str) -> DurablePromise:
    """The timer's durable sleep, once its worker has made it and the store has journaled it."""

    async def on_disk() -> DurablePromise | None:
        return saved(server).find(f"{timer_name}:1")

    return await eventually(on_disk)


async def until_past(deadline_ms: int) -> None:
    """Wait for the wall clock to pass a deadline recorded by a real server process.

    The one place these tests sleep: the behaviour under test is a server that
    was down while its deadline passed, and a real process has no clock seam.
    """
    await asyncio.sleep(max(deadline_ms - now_ms(), 0) / 1000 + 0.2)


async def timer_due_while_down(server: Server, timer_name: str) -> DurablePromise:
    """Set a 1 s timer, ``kill -9`` the server once its sleep is on disk, and let
    the deadline pass while it is down; return the sleep."""
    server.start()
    await call_server(server, "set_timer", timer_name=timer_name, seconds=1)
    sleep = await sleep_on_disk(server, timer_name)
    server.kill()
    await until_past(sleep.timeout_at)
    return sleep


def saved_notes(data_dir: Path) -> dict[str, Any]:
    """The notes of running jobs (their progress) on disk, by job (readable while
    the server runs)."""
    uri = f"{(data_dir / DB_NAME).resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        return {job: json.loads(data) for job, data in db.execute("SELECT job, data FROM notes")}


def promise_of(state: IndexedState, promise_id: str) -> DurablePromise:
    """The promise ``promise_id`` of a store's state, in memory or archived (it must be)."""
    found = state.find(promise_id)
    assert found is not None, f"no promise {promise_id} in memory or in the archive"
    return found


def promise_ids_of(state: IndexedState, job_id: str) -> list[str]:
    """The ids of job ``job_id``'s promises (its own and its steps'), in memory or archived."""
    in_memory = [pid for pid in state.promises if pid.split(":", 1)[0] == job_id]
    if in_memory or state.archive is None:
        return sorted(in_memory)
    job = state.archive.job(job_id)
    return sorted(p.id for p in ([job.root, *job.steps] if job else []))


def store_of(mcp: Any) -> EmbeddedStore:
    """The embedded store under an app built by ``create_server``."""
    for provider in mcp.providers:
        engine = getattr(provider, "engine", None)
        if engine is not None and engine.store is not None:
            return engine.store  # type: ignore[no-any-return]
    raise AssertionError("no embedded store")
