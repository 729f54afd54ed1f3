"""Writes a data dir the way a released durable-mcp wrote it, for the upgrade tests.

``python -m durable_mcp_testing.old_store <dir> <archive-url>`` runs the
built-in tools on the embedded store, on fake time from ``FAKE_START_MS``,
and leaves the store as the process had it: jobs running, waiting, completed
(with results), failed and cancelled. ``tests/data/store_<commit>/`` was
written by it at that commit, and is kept as it was: the tests open it with
today's code.

The archive at ``<archive-url>`` is ``FakeOpenMeteo`` (the test suite's own),
failing the one request of ``weather_data_...`` that is meant to fail.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from fastmcp import Client
from fastmcp.exceptions import ToolError
from resonate.retry import Constant

from durable_mcp.config import Settings
from durable_mcp.functions.weather import OpenMeteoArchive
from durable_mcp.server import create_server
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.helpers import FakeTime

#: What the store holds once written: each job's status and, if completed, result.
EXPECTED = "expected.json"


async def write(data_dir: Path, archive_url: str) -> dict[str, Any]:
    time = FakeTime()
    settings = Settings(store="embedded", data_dir=data_dir, await_max_seconds=5, rate_limit=10_000)
    archive = OpenMeteoArchive(
        archive_url, timeout_seconds=5, retry_policy=Constant(delay=0, max_retries=0)
    )
    mcp = create_server(settings, archive=archive, **time.seams)
    async with Client(mcp) as client:

        async def call(tool: str, **arguments: Any) -> Any:
            return (await client.call_tool(tool, arguments)).data

        await call("set_timer", timer_name="tea", seconds=60)
        await call("set_timer", timer_name="long bake", seconds=30 * 24 * 3600)
        await call("set_timer", timer_name="forgotten", seconds=3600)
        await call("cancel_job", job_name="forgotten")
        month = {"latitude": 52.52, "longitude": 13.41, "year": 2024, "month": 1}
        await call("start_gathering", **month)
        await call("start_gathering", **{**month, "month": 2})
        names = ["tea", "long bake", "forgotten"]
        names += [job["job_name"] for job in (await call("list_jobs", kind="weather_data"))["jobs"]]
        for _ in range(600):  # the fetches are real requests (to the fake): real time
            await time.advance(1)
            await asyncio.sleep(0.01)
            statuses = await call("probe_status", job_names=names)
            if sum(job["status"] == "running" for job in statuses) == 1:
                break  # all but the long bake
        expected: dict[str, Any] = {}
        for name in names:
            (status,) = await call("probe_status", job_names=[name])
            entry = {"status": status["status"], "kind": status["kind"]}
            if status["status"] == "completed":
                entry["result"] = (await call("await_result", job_names=[name]))[name]
            if "error" in status:
                entry["error"] = status["error"]["type"]
            expected[name] = entry
    return expected


def main(data_dir: str) -> None:
    with FakeOpenMeteo() as fake:
        fake.fail_with(400)  # the first fetch fails for good: one failed job
        try:
            expected = asyncio.run(write(Path(data_dir), fake.url))
        except ToolError as exc:
            sys.exit(f"could not write the store: {exc}")
    (Path(data_dir) / EXPECTED).write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    print(json.dumps(expected, indent=2, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
