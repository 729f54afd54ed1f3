"""The embedded store's numbers: start latency, recovery after kill -9, and opening.

1. ``set_timer`` latency on the real server, embedded store vs memory store
   (sequential calls, p50/p99).
2. Recovery: 1,000 timers in flight, ``kill -9``, restart on the same data dir:
   time from the restart to listening, to the first and to the last timer done.
3. Opening a store whose journal holds ~100k entries (timers run through the SDK),
   with snapshots off (the worst case) and with the default snapshots.

Writes ``bench/results-store.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastmcp import Client
from resonate.context import Context
from resonate.resonate import Resonate

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from durable_mcp.engine import observe
from durable_mcp.store import EmbeddedStore
from durable_mcp.store.embedded import SNAPSHOT_EVERY

from processes import free_port, start_server, stop

RESULTS = Path(__file__).parent / "results-store.json"


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "calls": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[max(int(len(ms) * 0.99) - 1, 0)], 2),
    }


async def start_latency(store: str, calls: int, data_dir: Path) -> dict[str, float]:
    port = free_port()
    process = start_server(port, data_dir, {"DURABLE_MCP_STORE": store})
    try:
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            for n in range(20):
                await client.call_tool("set_timer", {"timer_name": f"warm{n}", "seconds": 3600})
            seconds = []
            for n in range(calls):
                started = time.perf_counter()
                await client.call_tool("set_timer", {"timer_name": f"t{n}", "seconds": 3600})
                seconds.append(time.perf_counter() - started)
        return percentiles(seconds)
    finally:
        stop(process)


async def recovery(jobs: int, data_dir: Path) -> dict[str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    names = [f"r{n}" for n in range(jobs)]
    process = start_server(port, data_dir)
    async with Client(url) as client:
        for name in names:
            await client.call_tool("set_timer", {"timer_name": name, "seconds": 2})
    stop(process, signal.SIGKILL)
    await asyncio.sleep(2)  # every deadline passes while the server is down
    restarted = time.perf_counter()
    process = start_server(port, data_dir)
    listening = time.perf_counter() - restarted
    first = last = 0.0
    try:
        async with Client(url) as client:
            remaining = set(names)
            while remaining:
                batch = sorted(remaining)[:100]
                statuses = (await client.call_tool("probe_status", {"job_names": batch})).data
                done = {s["job_name"] for s in statuses if s["status"] == "completed"}
                if done and not first:
                    first = time.perf_counter() - restarted
                remaining -= done
            last = time.perf_counter() - restarted
    finally:
        stop(process)
    return {
        "jobs": jobs,
        "restart_to_listening_s": round(listening, 2),
        "restart_to_first_done_s": round(first, 2),
        "restart_to_all_done_s": round(last, 2),
        "first_done_after_listening_s": round(first - listening, 2),
    }


async def timer(ctx: Context, seconds: float) -> str:
    await ctx.sleep(timedelta(seconds=seconds))
    return "complete"


async def fill(data_dir: Path, operations: int, snapshot_every: int) -> int:
    """Run timers through the SDK until the journal has had ``operations`` entries."""
    store = EmbeddedStore(data_dir, pid="bench", group="g", snapshot_every=snapshot_every)
    store.open()
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
    entries = store._journal._seq
    if store._tick_task is not None:
        store._tick_task.cancel()
    store._journal.close()  # as a crash would: no final snapshot
    return entries


def time_open(data_dir: Path) -> tuple[float, int]:
    started = time.perf_counter()
    store = EmbeddedStore(data_dir, pid="bench", group="g")
    store.open()
    elapsed = time.perf_counter() - started
    store._journal.close()
    return elapsed, len(store.state.promises)


async def open_after(operations: int, snapshot_every: int, data_dir: Path) -> dict[str, Any]:
    entries = await fill(data_dir, operations, snapshot_every)
    seconds, promises = time_open(data_dir)
    return {"journaled_operations": entries, "promises": promises, "open_s": round(seconds, 2)}


async def main(quick: bool) -> None:
    calls, jobs, operations = (30, 50, 3_000) if quick else (500, 1_000, 100_000)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for store in ("embedded", "memory"):
            results[f"set_timer_{store}"] = await start_latency(store, calls, root / store)
        results["recovery_after_kill_9"] = await recovery(jobs, root / "recovery")
        results["open_no_snapshots"] = await open_after(operations, 10**12, root / "o1")
        results["open_default_snapshots"] = await open_after(
            operations, SNAPSHOT_EVERY, root / "o2"
        )
    for name, figures in results.items():
        print(f"{name:<28} {figures}")
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check it runs")
    asyncio.run(main(parser.parse_args().quick))
