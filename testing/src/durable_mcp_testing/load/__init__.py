"""The load bench (``bench/load.py``, ``tests/test_load.py``): :func:`run` puts the
harness, the chaos and the report together for one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from durable_mcp_testing.figures import percentile
from durable_mcp_testing.load.chaos import FULL_SECONDS, Chaos, FullDisk, kill_schedule
from durable_mcp_testing.load.harness import (
    FETCH_DELAY,
    Archive,
    Load,
    Options,
    Outages,
    Server,
    describe,
    final_check,
    loop_lag,
)
from durable_mcp_testing.load.report import (
    RULE,
    call_figures,
    fetch_report,
    list_with_cli,
    problems,
    scan_logs,
)


async def run(options: Options, root: Path) -> dict[str, Any]:
    """Run the load (and chaos) once with ``root`` as scratch; every figure, and the problems."""
    with quiet_client_logs():
        return await measure(options, root)


@contextlib.contextmanager
def quiet_client_logs() -> Iterator[None]:
    """Silence the MCP client's own logging of the outages, for the length of a run."""
    loggers = [logging.getLogger(name) for name in ("mcp", "fastmcp", "httpx2", "httpcore")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


async def measure(options: Options, root: Path) -> dict[str, Any]:
    rng = random.Random(options.seed)
    archive = Archive(FETCH_DELAY)
    full_disk = FullDisk(root)
    if options.disk_full:
        full_disk.mount()
    cycle = options.disk_full and full_disk.skipped is None
    with archive, contextlib.ExitStack() as unmount:
        if cycle:
            unmount.callback(full_disk.unmount)
        server = Server(root, archive.url, (full_disk.path if cycle else root) / "data")
        first_start = await asyncio.to_thread(server.start)
        outages = Outages()
        load = Load(server.url, archive, outages, full_disk, options)
        quiet = asyncio.Lock()
        chaos = Chaos(server, outages, kill_schedule(options.seconds, options.kills, rng), quiet)
        lag: list[float] = []
        load_over = asyncio.Event()
        harness_cpu = time.process_time()
        load_average = os.getloadavg()[0]
        try:
            began = time.monotonic()
            chaos_task = asyncio.create_task(chaos.run(began))
            lag_task = asyncio.create_task(loop_lag(lag, load_over))
            full_task = asyncio.create_task(
                full_disk.run(load, began, options.seconds / 2, quiet)
                if cycle
                else asyncio.sleep(0)
            )
            load_seconds = await load.run()
            load_over.set()
            await full_task
            harness_cpu = time.process_time() - harness_cpu
            await lag_task
            with contextlib.suppress(RuntimeError):  # the server did not come back: recorded
                await chaos_task
            try:
                check = await final_check(load)
            except Exception as exc:
                check = {"lost": list(load.jobs), "still_running": None, "refused": 0}
                check["error"] = describe(exc)
            cli = await asyncio.to_thread(list_with_cli, server)
        finally:
            returncode = await asyncio.to_thread(server.close)
        cuts = [back for _, back in full_disk.windows if back is not None]
        fetches = fetch_report(load.jobs.values(), archive.fetch_eras(cuts), outages.kill_times)
        fetches["archive_requests"] = archive.total_requests  # the fake's own count
        fetches["archive_requests_labelled"] = sum(len(r) for r in archive.fetch_runs().values())
    logs = scan_logs(server)
    calls = call_figures(load.calls, load_seconds, outages, began)
    jobs = list(load.jobs.values())
    results: dict[str, Any] = {
        "options": {
            "clients": options.clients,
            "seconds": options.seconds,
            "kills": options.kills,
            "seed": options.seed,
            "disk_full": options.disk_full,
        },
        "load_seconds": round(load_seconds, 1),
        "first_start_to_listening_s": round(first_start, 2),
        "calls": calls,
        "failed_calls": sum(c.outcome == "failed" for c in load.calls),
        "failures": [
            f"{c.tool} at {c.started - began:.1f} s: {c.error}"
            for c in load.calls
            if c.outcome == "failed"
        ][:20],
        "retried_during_outage": sum(c.outcome == "outage" for c in load.calls),
        "reconnect_attempts_during_outage": load.reconnects_during_outage,
        "rate_limited": sum(c.outcome == "rate_limited" for c in load.calls),
        "rate_limited_in_final_check": check["refused"],
        "busy": sum(c.outcome == "busy" for c in load.calls),
        "sessions_opened": load.sessions_opened,
        "disk_full": {
            "asked": options.disk_full,
            "skipped": full_disk.skipped,
            "cycles": len(full_disk.windows),
            "full_seconds": FULL_SECONDS,
            "starts_refused_while_full": sum(c.outcome == "disk_full" for c in load.calls),
            **full_disk.checks,
        },
        "jobs": {
            "acknowledged": len(jobs),
            "timers": sum(job.kind == "timer" for job in jobs),
            "weather": sum(job.kind == "weather" for job in jobs),
            "repeated_starts_attached": sum(job.attaches for job in jobs),
            "completed": len(jobs) - len(check["lost"]),
            "lost": len(check["lost"]),
            "lost_samples": check["lost"][:20],
            "final_check_error": check.get("error"),
            "contradictions_count": len(load.wrong),
            "contradictions": load.wrong[:20],
            "client_errors": load.client_errors[:20],
        },
        "exactly_once": {"rule": RULE, **fetches},
        "chaos": {
            "kills": len(chaos.kill_at),
            "kill_at_s": chaos.kill_at,
            "restarts_ok": len(chaos.restart_seconds),
            "restart_failures": chaos.restart_failures,
            "restart_to_listening_s": [round(s, 2) for s in chaos.restart_seconds],
            "restart_to_listening_max_s": round(max(chaos.restart_seconds), 2)
            if chaos.restart_seconds
            else None,
            "outage_s": [round(s, 2) for s in chaos.outage_seconds],
        },
        "machine": {
            "cores": os.cpu_count(),
            "load_average_1m_before": round(load_average, 2),
            "load_average_1m_after": round(os.getloadavg()[0], 2),
            "server_cpu_s": round(server.cpu_seconds, 1),
            "harness_cpu_s": round(harness_cpu, 1),
            "harness_loop_lag_p50_ms": round(statistics.median(lag), 1) if lag else None,
            "harness_loop_lag_p99_ms": percentile(lag, 0.99) if lag else None,
        },
        "store": {
            **logs,
            # uvicorn shuts down, then re-raises the SIGTERM it caught: exit -15 is clean too
            "final_shutdown_returncode": returncode,
            "final_shutdown_clean": returncode in (0, -signal.SIGTERM)
            and "Finished server process" in server.log_of(server.runs - 1).read_text(),
        },
        "jobs_cli": cli,
    }
    results["problems"] = problems(results)
    return results
