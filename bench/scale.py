"""`make bench`: 100,000 sleeping timers in one server process on the embedded store.

One real server (``bench_servers`` ``ours``, as ``run.py`` starts it) takes 100,000
``set_timer`` calls from 16 concurrent clients, every timer due after the last
is set, spread over 100 s (1,000 a second, as ``run.py``'s 10,000 over 10 s):

- growth: starts/s between 1k, 10k and 100k jobs and the RSS at each;
- peak RSS, and lateness at their deadlines (goal p99 <= 0.5 s);
- then ``kill -9`` and a restart: the time until the server listens again, and
  the time to open the store alone (on a copy of the data dir, in this process).

The first deadline is set from a calibration (2,000 starts of 0 s timers on the
same server, 200 with ``--quick``) with a margin; a timer set after its deadline anyway is counted
(``set_after_deadline``) and late. Prints the table, writes
``bench/results-scale.json``. ``--quick`` does the same with 800 timers (marks
at 200, 400, 800) in about 20 seconds, to check that the harness works.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastmcp import Client

from durable_mcp.engine import GROUP
from durable_mcp.store import EmbeddedStore
from durable_mcp_testing.bench_servers import start
from durable_mcp_testing.figures import Target, peak_rss_mb, record_targets
from durable_mcp_testing.processes import free_port, stop
from durable_mcp_testing.workloads import CLIENTS, concurrent, many_timers

RESULTS = Path(__file__).parent / "results-scale.json"

FULL = (1_000, 10_000, 100_000)
QUICK = (200, 400, 800)
MARGIN = 1.5  # the set phase allowed: this many times the calibrated estimate


def zero_timer(client: Client[Any], i: int) -> Any:
    return client.call_tool("set_timer", {"timer_name": f"calibrate{i}", "seconds": 0})


def open_store(data_dir: Path) -> tuple[float, int, int]:
    """Seconds to open the embedded store in ``data_dir`` (a copy), its promises in
    memory, and its jobs in the archive (ended: ``store/archive.py``)."""
    copy = data_dir.with_name(f"{data_dir.name}-copy")
    shutil.copytree(data_dir, copy)
    started = time.perf_counter()
    store = EmbeddedStore(copy, pid="bench", group=GROUP)
    store.open()
    elapsed = time.perf_counter() - started
    archived = store._archive.count() if store._archive is not None else 0
    store.close()
    return elapsed, len(store.state.promises), archived


async def measure(marks: tuple[int, ...], root: Path, quick: bool) -> dict[str, Any]:
    count = marks[-1]
    data_dir = root / "scale"
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    process = start("ours", port, data_dir, "embedded")
    marks_reached: list[dict[str, float]] = []
    try:
        # 0 s timers, to estimate how long the starts will take.
        rate = await concurrent(url, zero_timer, (200 if quick else 2_000) // CLIENTS)
        timers = await many_timers(
            url,
            process.pid,
            count,
            set_phase=count / rate * MARGIN + (2 if quick else 5),
            spread=max(count / 1000, 1 if quick else 10),
            settle_within=10 if quick else 120,
            checkpoints=marks,
            growth=marks_reached,
        )
        timers["calibration_starts_per_s"] = rate
    except Exception as exc:  # a call failed: keep what was measured up to then
        peak = peak_rss_mb(process.pid)
        stop(process, signal.SIGKILL)
        return {"error": repr(exc), "growth_marks": marks_reached, "peak_rss_mb": peak}
    finally:
        stop(process, signal.SIGKILL)
    open_s, promises, archived = open_store(data_dir)
    restarted = time.perf_counter()
    process = start("ours", port, data_dir, "embedded")
    listening = time.perf_counter() - restarted
    stop(process)
    growth = []
    previous = {"jobs": 0, "seconds": 0.0}
    for mark in marks_reached:
        window = mark["seconds"] - previous["seconds"]
        growth.append(
            {
                "jobs": int(mark["jobs"]),
                "starts_per_s": round((mark["jobs"] - previous["jobs"]) / window, 1),
                "rss_mb": mark["rss_mb"],
            }
        )
        previous = mark
    return {
        "sleeping_timers": timers,
        "growth": growth,
        "restart_after_kill_9": {
            "promises": promises,
            "archived_jobs": archived,
            "store_open_s": round(open_s, 2),
            "restart_to_listening_s": round(listening, 2),
        },
    }


def targets(r: dict[str, Any]) -> list[Target]:
    timers = r["sleeping_timers"]
    p99 = timers["lateness_p99_s"]
    complete = timers["completed"] == timers["timers"]
    return [
        (f"timers completed of {timers['timers']}", timers["completed"], "all", complete),
        ("timer lateness p99 s", p99, "<= 0.5", p99 is not None and p99 <= 0.5),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: check it runs")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = asyncio.run(measure(QUICK if options.quick else FULL, Path(tmp), options.quick))
    if "error" in results:
        print(f"a call failed, figures so far: {results}")
        options.output.write_text(json.dumps(results, indent=2) + "\n")
        sys.exit(1)
    results["quick"] = options.quick
    timers = results["sleeping_timers"]
    timers.pop("growth", None)
    print(f"{timers['timers']} sleeping timers, one process, embedded store")
    print(f"{'jobs':>8} {'starts/s':>9} {'RSS MB':>8}")
    for row in results["growth"]:
        print(f"{row['jobs']:>8} {row['starts_per_s']:>9} {row['rss_mb']:>8}")
    print()
    for name in ("sleeping_timers", "restart_after_kill_9"):
        print(f"{name:<22} {results[name]}")
    print()
    record_targets(results, targets(results))
    options.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
