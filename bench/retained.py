"""`make bench`: a week of a busy server in one process: 1,000,000 finished jobs retained.

The embedded store keeps ended jobs in its archive (``store/archive.py``), not
in memory. This fills a data dir with 1,000,000 finished timer jobs, each as
the store archives one (a real job's archived row, copied under new names,
written through the store's own journal in commits of 10,000), spread over
the retention's 7 days. Then a real server (``bench_servers`` ``ours``) on it
takes 10,000 sleeping timers from 16 clients, and:

- its RSS with 1,000,000 retained and 10,000 running (goal <= 1 GB);
- starts/s of those 10,000 against the same on an empty store (goal: within 10%);
- a ``list_jobs`` page, the first and one from a cursor deep in the archive,
  over HTTP and as the server's own time (the app in process, no HTTP: goal
  p50 <= 5 ms), and ``probe_status`` of a finished job over HTTP against the
  bare floor's no-op (goal <= 1.15x), beside that of a running one;
- ``kill -9``, then the time to open the store in this process and for a
  restarted server to listen (goal: open <= 3 s).

Prints the table, writes ``bench/results-retained.json``. ``--quick`` (5,000
finished, 256 running) checks that the harness works.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import msgspec
from fastmcp import Client

from durable_mcp.config import Settings
from durable_mcp.engine import GROUP
from durable_mcp.sdk_compat import DurablePromise
from durable_mcp.server import create_server
from durable_mcp.store import EmbeddedStore
from durable_mcp.store.archive import ArchivedJob, ArchiveWrite
from durable_mcp_testing.bench_servers import bare_server, server, start
from durable_mcp_testing.crashes import store_of
from durable_mcp_testing.figures import latency, peak_rss_mb, record_targets, rss_mb
from durable_mcp_testing.helpers import FakeTime
from durable_mcp_testing.processes import free_port, stop
from durable_mcp_testing.workloads import CLIENTS, concurrent, noop, paired

RESULTS = Path(__file__).parent / "results-retained.json"

#: Archived jobs per commit while filling.
PER_COMMIT = 10_000
WEEK_MS = 7 * 86_400_000


async def template(data_dir: Path) -> ArchivedJob:
    """A real finished timer job, as the store archives it."""
    time_ = FakeTime()
    mcp = create_server(Settings(data_dir=data_dir), **time_.seams)
    async with Client(mcp) as client:
        await client.call_tool("set_timer", {"timer_name": "model", "seconds": 0})
        await time_.advance(1, step=0.1)
        store = store_of(mcp)
        assert store._archive is not None
        job = store._archive.job("model")
    assert job is not None, "the model job was not archived"
    return job


def renamed(model: ArchivedJob, name: str, created_at: int) -> ArchivedJob:
    """``model`` as the job ``name``, created at ``created_at``."""

    def fix(text: str) -> str:
        return text.replace("model", name)

    shift = created_at - model.root.created_at

    def moved(p: DurablePromise) -> DurablePromise:
        return msgspec.structs.replace(
            p,
            id=fix(p.id),
            tags={key: fix(value) for key, value in p.tags.items()},
            timeout_at=p.timeout_at + shift,
            created_at=p.created_at + shift,
            settled_at=(p.settled_at or p.created_at) + shift,
            awaiters={fix(a) for a in p.awaiters},
        )

    tasks = [msgspec.structs.replace(t, id=fix(t.id)) for t in model.tasks]
    return ArchivedJob(moved(model.root), [moved(p) for p in model.steps], tasks)


def fill(data_dir: Path, model: ArchivedJob, count: int, now: int) -> float:
    """``count`` finished jobs in the store's archive, through its journal; seconds taken."""
    began = time.perf_counter()
    store = EmbeddedStore(data_dir, pid="bench", group=GROUP)
    store.open()
    try:
        for first in range(0, count, PER_COMMIT):
            batch = [
                renamed(model, f"done{i:07d}", now - WEEK_MS + i * (WEEK_MS // count))
                for i in range(first, min(first + PER_COMMIT, count))
            ]
            rows: list[tuple[ArchivedJob, str, str | None]] = [
                (job, "completed", "timer") for job in batch
            ]
            store._journal.queue(ArchiveWrite(seq=0, entry=b"", jobs=rows))
            store._journal.commit()
    finally:
        store.close()
    return time.perf_counter() - began


def sleeping(prefix: str) -> Any:
    def call(client: Client[Any], i: int) -> Awaitable[Any]:
        return client.call_tool("set_timer", {"timer_name": f"{prefix}{i}", "seconds": 86_400})

    return call


def probe(name: str) -> Any:
    def call(client: Client[Any], i: int) -> Awaitable[Any]:
        return client.call_tool("probe_status", {"job_names": [name]})

    return call


def list_page(cursor: str | None) -> Any:
    def call(client: Client[Any], i: int) -> Awaitable[Any]:
        arguments: dict[str, Any] = {"limit": 20}
        if cursor is not None:
            arguments["cursor"] = cursor
        return client.call_tool("list_jobs", arguments)

    return call


async def timed(url: str, call: Any, n: int) -> dict[str, float]:
    """p50 and p99 of ``n`` calls in a row on one client."""
    async with Client(url) as client:
        return await timed_on(client, call, n)


async def timed_on(client: Client[Any], call: Any, n: int) -> dict[str, float]:
    for i in range(5):
        await call(client, -1 - i)
    seconds = []
    for i in range(n):
        began = time.perf_counter()
        await call(client, i)
        seconds.append(time.perf_counter() - began)
    figures: dict[str, float] = latency(seconds)
    return figures


async def server_time(data_dir: Path, deep: str, n: int) -> dict[str, Any]:
    """The server's own time for a page and a probe: the app in this process, called
    through FastMCP's in-memory client (no HTTP), against the floor's no-op alike."""
    mcp = create_server(Settings(data_dir=data_dir, rate_limit=1e9, max_running_jobs=10**7))
    async with Client(mcp) as ours, Client(bare_server()) as bare:
        figures = {
            "floor_noop": await timed_on(bare, noop, n),
            "list_first_page": await timed_on(ours, list_page(None), n),
            "list_page_deep_in_archive": await timed_on(ours, list_page(deep), n),
            "probe_finished": await timed_on(ours, probe(deep), n),
        }
    return figures


async def measure(root: Path, finished: int, running: int, n: int) -> dict[str, Any]:
    model = await template(root / "model")
    data_dir = root / "retained"
    now = int(time.time() * 1000)
    fill_s = fill(data_dir, model, finished, now)
    per_client = running // CLIENTS
    # The same starts on an empty store first: the comparison's floor.
    with server("ours", root / "empty") as (empty_url, _):
        empty_rate = await concurrent(empty_url, sleeping("t"), per_client)
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    began = time.perf_counter()
    process = start("ours", port, data_dir, "embedded")
    first_listening = time.perf_counter() - began
    try:
        rate = await concurrent(url, sleeping("t"), per_client)
        rss = rss_mb(process.pid)
        deep = f"done{finished // 2:07d}"
        with server("bare", root / "bare") as (bare_url, _):
            floor, probed, probed_running = await paired(
                [bare_url, url, url], [noop, probe(deep), probe("t0")], n
            )
        first_page = await timed(url, list_page(None), n)
        deep_page = await timed(url, list_page(deep), n)
        peak = peak_rss_mb(process.pid)
    finally:
        stop(process, signal.SIGKILL)
    opened = time.perf_counter()
    store = EmbeddedStore(data_dir, pid="bench", group=GROUP)
    store.open()
    open_s = time.perf_counter() - opened
    in_memory = len(store.state.promises)
    store.close()
    own = await server_time(data_dir, deep, n)
    began = time.perf_counter()
    process = start("ours", port, data_dir, "embedded")
    listening = time.perf_counter() - began
    stop(process)
    return {
        "finished": finished,
        "running": per_client * CLIENTS,
        "fill_s": round(fill_s, 1),
        "first_start_to_listening_s": round(first_listening, 2),
        "rss_mb": rss,
        "peak_rss_mb": peak,
        "starts_per_s": rate,
        "starts_per_s_empty_store": empty_rate,
        "starts_vs_empty": round(rate / empty_rate, 2),
        "floor_noop": floor,
        "probe_finished": probed,
        "probe_vs_floor": round(probed["p50_ms"] / floor["p50_ms"], 2),
        "probe_running": probed_running,
        "probe_running_vs_floor": round(probed_running["p50_ms"] / floor["p50_ms"], 2),
        "server_time": own,
        "list_first_page": first_page,
        "list_page_deep_in_archive": deep_page,
        "after_kill_9": {
            "store_open_s": round(open_s, 2),
            "promises_in_memory": in_memory,
            "restart_to_listening_s": round(listening, 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: check it runs")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    options = parser.parse_args()
    finished, running, n = (5_000, 256, 10) if options.quick else (1_000_000, 10_000, 300)
    with tempfile.TemporaryDirectory() as tmp:
        results = asyncio.run(measure(Path(tmp), finished, running, n))
    results["quick"] = options.quick
    r = results
    print(f"{r['finished']:,} finished jobs retained, {r['running']:,} running")
    print(
        f"  filled in {r['fill_s']} s; first start to listening {r['first_start_to_listening_s']} s"
    )
    print(f"  RSS {r['rss_mb']} MB (peak {r['peak_rss_mb']} MB)")
    print(f"  starts/s {r['starts_per_s']} (empty store {r['starts_per_s_empty_store']})")
    print("  over HTTP, one client:")
    for name in (
        "floor_noop",
        "probe_finished",
        "probe_running",
        "list_first_page",
        "list_page_deep_in_archive",
    ):
        print(f"    {name:<28} p50 {r[name]['p50_ms']:>7} ms   p99 {r[name]['p99_ms']:>7} ms")
    print("  the server's own time (in process, no HTTP):")
    for name, figure in r["server_time"].items():
        print(f"    {name:<28} p50 {figure['p50_ms']:>7} ms   p99 {figure['p99_ms']:>7} ms")
    kill = r["after_kill_9"]
    print(
        f"  after kill -9: store open {kill['store_open_s']} s ({kill['promises_in_memory']} "
        f"promises in memory), restart to listening {kill['restart_to_listening_s']} s"
    )
    own = r["server_time"]
    page = max(own["list_first_page"]["p50_ms"], own["list_page_deep_in_archive"]["p50_ms"])
    record_targets(
        results,
        [
            ("RSS MB, 1M retained + 10k running", r["rss_mb"], "<= 1024", r["rss_mb"] <= 1024),
            ("store open after kill -9 s", kill["store_open_s"], "<= 3", kill["store_open_s"] <= 3),
            ("list_jobs page p50 ms (server time)", page, "<= 5", page <= 5),
            (
                "probe_status finished / floor",
                r["probe_vs_floor"],
                "<= 1.15",
                r["probe_vs_floor"] <= 1.15,
            ),
            (
                "starts/s vs an empty store",
                r["starts_vs_empty"],
                ">= 0.9",
                r["starts_vs_empty"] >= 0.9,
            ),
        ],
    )
    options.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
