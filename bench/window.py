"""`make bench`: the operator's window on a busy server, and what tracing costs.

- The jobs page's list (``/jobs/api/jobs``, what the page draws), ``/metrics`` and
  ``/readyz`` with 100,000 jobs in the embedded store (90% sleeping timers, 10%
  finished): p50 and p99 of the server's own time, in process through the app's
  ASGI routes (no socket, no browser). Goal: the list's p50 <= 50 ms.
- ``set_timer`` against the bare floor (a no-op on ``FastMCP("floor")``), on a
  real server with tracing off and on (spans exported over OTLP/HTTP to a
  local sink, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` sets it): goal, the two ratios
  no more than 5% apart.

Prints a table, writes ``bench/results-window.json``. ``--quick`` (500 jobs,
fewer calls) checks that the harness works.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx2 as httpx
from fastmcp import Client

from durable_mcp.config import Settings
from durable_mcp.http import http_app_of
from durable_mcp.jobs.service import Jobs
from durable_mcp.server import TOOLS, create_server
from durable_mcp_testing.bench_servers import server
from durable_mcp_testing.figures import latency, record_targets
from durable_mcp_testing.local_http import LocalHTTPServer
from durable_mcp_testing.workloads import noop, paired, set_timer

RESULTS = Path(__file__).parent / "results-window.json"

#: Started this many at a time, in process.
BATCH = 500


async def fill(jobs: Jobs, count: int) -> float:
    """Start ``count`` timers through the job service; the starts per second."""
    timer = jobs.functions["timer"]
    began = time.perf_counter()
    for first in range(0, count, BATCH):
        await asyncio.gather(
            *(
                jobs.start(f"t{i:06d}", timer, f"t{i:06d}", 0 if i % 10 == 0 else 3600)
                for i in range(first, min(first + BATCH, count))
            )
        )
    return count / (time.perf_counter() - began)


async def timed(http: httpx.AsyncClient, path: str, n: int) -> dict[str, float]:
    for _ in range(5):  # warm-up
        assert (await http.get(path)).status_code == 200, path
    seconds = []
    for _ in range(n):
        started = time.perf_counter()
        response = await http.get(path)
        seconds.append(time.perf_counter() - started)
        assert response.status_code == 200, path
    return latency(seconds)


async def window(root: Path, count: int, n: int) -> dict[str, Any]:
    settings = Settings(
        data_dir=root / "window", max_running_jobs=10_000_000, rate_limit=1_000_000.0
    )
    layer: list[Jobs] = []
    mcp = create_server(settings, tools=[*TOOLS, lambda mcp, jobs: layer.append(jobs)])
    transport = httpx.ASGITransport(app=http_app_of(mcp, settings))
    async with (
        Client(mcp),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:5001") as http,
    ):
        (jobs,) = layer
        rate = await fill(jobs, count)
        await jobs.wait([f"t{(count - 1) // 10 * 10:06d}"], 30)  # the last 0 s timer is done
        figures = {
            "jobs": count,
            "starts_per_s_in_process": round(rate, 1),
            "list_first_page": await timed(http, "/jobs/api/jobs", n),
            "list_completed": await timed(http, "/jobs/api/jobs?status=completed", n),
            "list_kind_and_page_2": await timed(
                http, f"/jobs/api/jobs?kind=timer&cursor=t{count - 26:06d}", n
            ),
            "list_name_search_rare": await timed(http, "/jobs/api/jobs?name=t0000", n // 4),
            "job_page_data": await timed(http, "/jobs/api/job/t000010", n),
            "metrics": await timed(http, "/metrics", n),
            "readyz": await timed(http, "/readyz", n),
        }
    return figures


class Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that takes every export and keeps nothing."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def tracing_cost(root: Path, n: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with LocalHTTPServer(Sink) as sink:
        traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.address}  # the SDK's batching, as is
        with (
            server("bare", root / "bare") as (bare, _),
            server("ours", root / "off") as (off, _),
            server("ours", root / "on", env=traced) as (on, _),
        ):
            floor, untraced, traced_call = await paired(
                [bare, off, on], [noop, set_timer("off"), set_timer("on")], n
            )
    figures["floor_p50_ms"] = floor["p50_ms"]
    figures["set_timer_tracing_off"] = untraced
    figures["set_timer_tracing_on"] = traced_call
    figures["ratio_off"] = round(untraced["p50_ms"] / floor["p50_ms"], 2)
    figures["ratio_on"] = round(traced_call["p50_ms"] / floor["p50_ms"], 2)
    figures["on_vs_off"] = round(figures["ratio_on"] / figures["ratio_off"], 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: check it runs")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    options = parser.parse_args()
    count, n = (500, 10) if options.quick else (100_000, 300)
    with tempfile.TemporaryDirectory() as tmp:
        results: dict[str, Any] = {
            "quick": options.quick,
            "window": asyncio.run(window(Path(tmp), count, n)),
            "tracing": asyncio.run(tracing_cost(Path(tmp), 10 if options.quick else 500)),
        }
    page = results["window"]
    print(f"the operator's window, {page['jobs']:,} jobs in the embedded store (server time)")
    for name, figure in page.items():
        if isinstance(figure, dict):
            print(f"  {name:<24} p50 {figure['p50_ms']:>8} ms   p99 {figure['p99_ms']:>8} ms")
    cost = results["tracing"]
    print(
        f"set_timer / floor: tracing off {cost['ratio_off']}, on {cost['ratio_on']} "
        f"(on/off {cost['on_vs_off']})"
    )
    p50 = page["list_first_page"]["p50_ms"]
    apart = abs(cost["on_vs_off"] - 1)
    record_targets(
        results,
        [
            ("jobs list p50 ms at this many jobs", p50, "<= 50", p50 <= 50),
            ("set_timer with tracing on vs off", cost["on_vs_off"], "within 5%", apart <= 0.05),
        ],
    )
    options.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
