"""The servers `make bench` measures, each run as its own process (:func:`start`).

- ``ours PORT DATA_DIR STORE``: durable-mcp as `durable-mcp serve` runs it, plus
  a ``noop`` tool. Calling ``noop`` on this very server and transport is the
  floor: what any MCP call costs here.
- ``bare PORT``: a plain ``FastMCP("floor")`` with one no-op tool -- no
  middleware, no auth, no extensions -- served the same way (``serve()``, the
  same socket and HTTP stack). Its ``noop`` is the true floor: what FastMCP
  itself costs per call; ours minus it is what our middleware costs.
- ``talking PORT DATA_DIR STORE``: ``ours``, plus two durable tools that talk:
  ``chatty`` reports its progress many times a second, ``approve`` asks a
  question and, once answered, returns when it resumed (wall clock).
- ``baseline PORT``: the seed 002 design -- an in-process dict of jobs and a
  background asyncio task per job, no durability -- with the same ``set_timer``
  and ``get_timer_status`` tools.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastmcp import FastMCP
from resonate.context import Context

from durable_mcp import DurableTools, ask, report_progress, tracing
from durable_mcp.cli import bind
from durable_mcp.config import load_settings
from durable_mcp.functions import BUILT_IN
from durable_mcp.http import serve
from durable_mcp.jobs.service import Jobs
from durable_mcp.logs import configure_logging
from durable_mcp.server import TOOLS, create_server
from durable_mcp_testing.processes import free_port, start_listening, stop


def noop_tool(mcp: FastMCP, jobs: Jobs) -> None:
    @mcp.tool
    async def noop() -> dict[str, Any]:
        """Do nothing (benchmark floor)."""
        return {}


talking = DurableTools()


async def report_many(ctx: Context, reports: int, per_second: float) -> int:
    for n in range(reports):
        report_progress(ctx, n + 1, reports, f"report {n + 1}")
        await asyncio.sleep(1 / per_second)
    return reports


@talking.tool(job_name=lambda name: f"chatty_{name}")
async def chatty(ctx: Context, name: str, reports: int = 1000, per_second: float = 100) -> int:
    """Report progress ``reports`` times, ``per_second`` a second."""
    done: int = await ctx.run(report_many, reports, per_second)
    return done


def wall_clock(ctx: Context) -> float:
    return time.time()


@talking.tool(job_name=lambda name: f"approve_{name}")
async def approve(ctx: Context, name: str) -> float:
    """Ask; once answered, return the time the job resumed (s since the epoch)."""
    await ask(ctx, "Go on?", {"type": "object", "properties": {"go": {"type": "boolean"}}})
    resumed: float = await ctx.run(wall_clock)
    return resumed


def bare_server() -> FastMCP:
    mcp = FastMCP("floor")

    @mcp.tool
    async def noop() -> dict[str, Any]:
        return {}

    return mcp


def baseline_server() -> FastMCP:
    mcp = FastMCP("baseline")
    timers: dict[str, dict[str, Any]] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def run(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        timers[name]["status"] = "complete"
        timers[name]["settled_at"] = time.time()

    @mcp.tool
    async def set_timer(timer_name: str, seconds: float) -> dict[str, Any]:
        if timer_name not in timers:
            timers[timer_name] = {"status": "running", "created_at": time.time()}
            task = asyncio.create_task(run(timer_name, seconds))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return {"promise_id": timer_name, "status": timers[timer_name]["status"]}

    @mcp.tool
    async def get_timer_status(timer_name: str) -> dict[str, Any]:
        return {"status": timers.get(timer_name, {}).get("status", "not_found")}

    @mcp.tool
    async def noop() -> dict[str, Any]:
        return {}

    return mcp


BENCH = Path(__file__).parents[3] / "bench"


def quick_results(script: str, tmp_path: Path, timeout: float) -> dict[str, Any]:
    """Run ``bench/script --quick`` (for the tests: the harness works) and read the
    results it wrote."""
    output = tmp_path / "results.json"
    subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--output", str(output)],
        check=True,
        timeout=timeout,
        capture_output=True,
    )
    results: dict[str, Any] = json.loads(output.read_text())
    assert results["quick"] is True
    return results


@contextmanager
def server(
    kind: str, data_dir: Path, store: str = "embedded", env: Mapping[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    """A bench server process (``env`` added to its environment); yields its URL and pid."""
    port = free_port()
    process = start(kind, port, data_dir, store, env)
    try:
        yield f"http://127.0.0.1:{port}/mcp", process.pid
    finally:
        stop(process)


def start(
    kind: str, port: int, data_dir: Path, store: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """One of the servers above, as its own process on ``port``, listening."""
    module = "durable_mcp_testing.bench_servers"
    command = [sys.executable, "-m", module, kind, str(port), str(data_dir), store]
    return start_listening(command, port, env)


def main(kind: str, port: str, data_dir: str = "", store: str = "embedded") -> None:
    configure_logging()
    tracing.export_if_configured()  # as `durable-mcp serve` does: OTEL_EXPORTER_OTLP_ENDPOINT
    env = {
        "DURABLE_MCP_PORT": port,
        "DURABLE_MCP_DATA_DIR": data_dir,
        "DURABLE_MCP_STORE": store,
        # The bench measures the tools, not the limits: its 500 probes in a row
        # and 10,000 timers would be refused otherwise.
        "DURABLE_MCP_RATE_LIMIT": "1000000",
        "DURABLE_MCP_MAX_RUNNING_JOBS": "1000000",
    }
    settings = load_settings(env=env)
    sock: socket.socket = bind(settings)
    if kind == "bare":
        app = bare_server()
    elif kind == "baseline":
        app = baseline_server()
    elif kind == "talking":
        app = create_server(
            settings, tools=[*TOOLS, noop_tool], durable=DurableTools(BUILT_IN, talking)
        )
    else:
        app = create_server(settings, tools=[*TOOLS, noop_tool])
    asyncio.run(serve(app, settings, sock))


if __name__ == "__main__":
    main(*sys.argv[1:])
