"""Direct vs proxied call latency: `make bench` (issue 5 grows this into the full harness).

Starts the real server (``durable-mcp serve``, memory store) on a free port and
times sequential ``get_timer_status`` calls, first directly over streamable
HTTP, then through ``proxy.py`` over stdio, after a warm-up. Prints p50/p99
and writes ``bench/results.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastmcp import Client
from fastmcp.client.transports import StdioTransport

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from processes import PROXY, free_port, running_server

RESULTS = Path(__file__).parent / "results.json"


async def time_calls(client: Client[Any], calls: int) -> list[float]:
    for _ in range(20):  # warm-up
        await client.call_tool("get_timer_status", {"timer_name": "bench"})
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        await client.call_tool("get_timer_status", {"timer_name": "bench"})
        seconds.append(time.perf_counter() - started)
    return seconds


def summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "calls": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 2),
    }


async def main(calls: int) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with tempfile.TemporaryDirectory() as data_dir, running_server(port, Path(data_dir)):
        async with Client(url) as direct:
            direct_stats = summary(await time_calls(direct, calls))
        transport = StdioTransport(
            command=sys.executable, args=[PROXY], env={"DURABLE_MCP_URL": url}, keep_alive=False
        )
        async with Client(transport) as proxied:
            proxy_stats = summary(await time_calls(proxied, calls))
    ratio = round(proxy_stats["p50_ms"] / direct_stats["p50_ms"], 2)
    results = {"direct": direct_stats, "proxy": proxy_stats, "proxy_over_direct_p50": ratio}
    print(f"{'path':<8}{'calls':>7}{'p50 ms':>9}{'p99 ms':>9}")
    for name, stats in (("direct", direct_stats), ("proxy", proxy_stats)):
        print(f"{name:<8}{stats['calls']:>7}{stats['p50_ms']:>9}{stats['p99_ms']:>9}")
    print(f"proxy / direct (p50): {ratio}x  (goal <= 1.5x)")
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="a few calls, to check it runs")
    options = parser.parse_args()
    asyncio.run(main(20 if options.quick else options.calls))
