"""How long the embedded store takes to open after ~100k journaled operations,
and how long a list_jobs page takes with 100,000 jobs in it.

Runs timers through the SDK on the store until its journal has had ~100k
entries, drops the store as a crash would, and times opening it again: with
snapshots off (every entry replayed: the worst case) and with the default
snapshots. Then fills a store with 100,000 jobs (half running, half completed,
each with its step; one in a hundred a weather_data job) and times a
list_jobs page (``Jobs.list``, through the SDK's search, as the tool calls it):
limit 20 unfiltered, filtered by status and kind, and the next page from a
cursor, against the target of 5 ms a page. Part of `make bench`; writes
``bench/results-store.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from resonate.context import Context
from resonate.resonate import Resonate

from durable_mcp.engine import observe, quiet_expected_ends
from durable_mcp.jobs.service import Jobs
from durable_mcp.jobs.status import JobStatus
from durable_mcp.store import EmbeddedStore
from durable_mcp.store.embedded import SNAPSHOT_EVERY
from durable_mcp_testing.figures import percentiles

RESULTS = Path(__file__).parent / "results-store.json"

#: The longest a list_jobs page may take, whatever the number of jobs.
PAGE_TARGET_MS = 5.0


async def timer(ctx: Context, seconds: float) -> str:
    await ctx.sleep(timedelta(seconds=seconds))
    return "complete"


async def fill(data_dir: Path, crashed: Path, operations: int, snapshot_every: int) -> int:
    """Run timers through the SDK until the journal has had ``operations`` entries;
    ``crashed`` gets the data dir as a crash then would leave it (no final snapshot)."""
    store = EmbeddedStore(data_dir, pid="bench", group="g", snapshot_every=snapshot_every)
    store.open()
    quiet_expected_ends()  # the timers still sleeping when it stops, as the server does
    resonate = Resonate(
        network=store,
        group="g",
        pid="bench",
        env={},
        observer=observe,
        autostart=False,
        subscription_refresh_secs=0,
    )
    resonate.register(timer)
    resonate.start()
    n = 0
    while store._journal._seq < operations:
        # Half finish at once, half sleep on: a store with both kinds of job.
        await resonate.run(f"t{n}", timer, 0.2 if n % 2 else 3600).id()
        n += 1
    await asyncio.sleep(1)
    await store._written()  # between commits: the files are what a crash would leave
    entries = store._journal._seq
    shutil.copytree(data_dir, crashed)
    await resonate.stop()
    return entries


def time_open(data_dir: Path) -> tuple[float, int]:
    started = time.perf_counter()
    store = EmbeddedStore(data_dir, pid="bench", group="g")
    store.open()
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed, len(store.state.promises)


async def open_after(operations: int, snapshot_every: int, data_dir: Path) -> dict[str, Any]:
    crashed = data_dir.with_name(f"{data_dir.name}-crashed")
    entries = await fill(data_dir, crashed, operations, snapshot_every)
    seconds, promises = time_open(crashed)
    return {"journaled_operations": entries, "promises": promises, "open_s": round(seconds, 2)}


def invocation(func: str, args: list[Any]) -> dict[str, str]:
    data = {"args": args, "kwargs": {}, "func": func, "version": 1}
    return {"data": base64.b64encode(json.dumps(data).encode()).decode()}


def fill_jobs(store: EmbeddedStore, count: int, now: int) -> None:
    """``count`` jobs straight into the state (a read needs nothing journaled):
    each a promise and its step as the SDK makes them, half of them completed."""
    target = {"resonate:scope": "global", "resonate:target": "embedded://any@g"}
    for n in range(count):
        job_id, created = f"job{n}", now - count + n
        func = "weather_data" if n % 100 == 1 else "timer"
        store.state.apply(
            created,
            {
                "kind": "task.create",
                "pid": "bench",
                "ttl": 60_000,
                "action": {
                    "kind": "promise.create",
                    "data": {
                        "id": job_id,
                        "timeoutAt": now + 3_600_000,
                        "param": invocation(func, [60]),
                        "tags": {**target, "resonate:branch": job_id},
                    },
                },
            },
        )
        step = {"id": f"{job_id}:1", "timeoutAt": now + 3_600_000, "param": {}, "tags": target}
        store.state.apply(created, {"kind": "promise.create", **step})
        if n % 2:
            for promise_id in (f"{job_id}:1", job_id):
                settle = {"id": promise_id, "state": "resolved", "value": {}}
                store.state.apply(created, {"kind": "promise.settle", **settle})
        store.state.outgoing.clear()


async def list_pages(jobs_count: int, data_dir: Path) -> dict[str, Any]:
    now = int(time.time() * 1000)
    store = EmbeddedStore(data_dir, pid="bench", group="g", clock=lambda: now)
    store.open()
    fill_jobs(store, jobs_count, now)
    resonate = Resonate(
        network=store, group="g", pid="bench", env={}, observer=observe, autostart=False
    )
    jobs = Jobs(resonate, await_max_seconds=1, clock=lambda: now)
    pages: dict[str, Any] = {
        "unfiltered": {},
        "running_timer": {"status": JobStatus.running, "kind": "timer"},
        "completed_weather_data": {"status": JobStatus.completed, "kind": "weather_data"},
    }
    started = time.perf_counter()
    first = await jobs.list(limit=20)  # the first page may build what later ones use
    results: dict[str, Any] = {
        "jobs": jobs_count,
        "first_page_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    pages["next_from_cursor"] = {"cursor": first["next_cursor"]}
    rounds = 5 if jobs_count >= 50_000 else 50
    for name, filters in pages.items():
        seconds = []
        for _ in range(rounds):
            started = time.perf_counter()
            page = await jobs.list(limit=20, **filters)
            seconds.append(time.perf_counter() - started)
        assert len(page["jobs"]) == 20, (name, page)
        results[name] = percentiles(seconds)
    store.close()
    return results


def met(ms: float) -> str:
    return "met" if ms <= PAGE_TARGET_MS else "MISSED"


async def main(quick: bool) -> None:
    operations = 3_000 if quick else 100_000
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results["open_no_snapshots"] = await open_after(operations, 10**12, root / "o1")
        results["open_default_snapshots"] = await open_after(
            operations, SNAPSHOT_EVERY, root / "o2"
        )
        results["list_jobs_page"] = await list_pages(operations, root / "l")
    for name, figures in results.items():
        if name != "list_jobs_page":
            print(f"{name:<28} {figures}")
    listing = results["list_jobs_page"]
    print(
        f"list_jobs page at {listing['jobs']:,} jobs (limit 20; target {PAGE_TARGET_MS:g} ms); "
        f"first page {listing['first_page_ms']} ms"
    )
    for name in ("unfiltered", "running_timer", "completed_weather_data", "next_from_cursor"):
        figures = listing[name]
        print(
            f"  {name:<26} p50 {figures['p50_ms']:>8} ms  p99 {figures['p99_ms']:>8} ms  "
            f"{met(figures['p99_ms'])}"
        )
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check it runs")
    asyncio.run(main(parser.parse_args().quick))
