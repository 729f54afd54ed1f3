"""How long the embedded store takes to open after ~100k journaled operations.

Runs timers through the SDK on the store until its journal has had ~100k
entries, drops the store as a crash would, and times opening it again: with
snapshots off (every entry replayed: the worst case) and with the default
snapshots. Part of `make bench`; writes ``bench/results-store.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from resonate.context import Context
from resonate.resonate import Resonate

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from durable_mcp.engine import observe
from durable_mcp.store import EmbeddedStore
from durable_mcp.store.embedded import SNAPSHOT_EVERY

RESULTS = Path(__file__).parent / "results-store.json"


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "calls": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[max(int(len(ms) * 0.99) - 1, 0)], 2),
    }


async def timer(ctx: Context, seconds: float) -> str:
    await ctx.sleep(timedelta(seconds=seconds))
    return "complete"


async def fill(data_dir: Path, crashed: Path, operations: int, snapshot_every: int) -> int:
    """Run timers through the SDK until the journal has had ``operations`` entries;
    ``crashed`` gets the data dir as a crash then would leave it (no final snapshot)."""
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
    store._journal.close()
    return elapsed, len(store.state.promises)


async def open_after(operations: int, snapshot_every: int, data_dir: Path) -> dict[str, Any]:
    crashed = data_dir.with_name(f"{data_dir.name}-crashed")
    entries = await fill(data_dir, crashed, operations, snapshot_every)
    seconds, promises = time_open(crashed)
    return {"journaled_operations": entries, "promises": promises, "open_s": round(seconds, 2)}


async def main(quick: bool) -> None:
    operations = 3_000 if quick else 100_000
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
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
