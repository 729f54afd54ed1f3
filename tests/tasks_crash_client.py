# /// script
# requires-python = ">=3.12"
# dependencies = ["fastmcp==4.1.4", "fastmcp-tasks==4.1.4"]
# ///
"""Driver for test_tasks_client.py: one task, one client, across a server restart.

Usage: tasks_crash_client.py URL direct|proxy ARGUMENTS_JSON. Starts
``start_gathering`` as a task (through the stdio proxy with ``proxy``), prints
{"task_id", "status"} as a JSON line, then waits for a line on stdin (the
test restarts the server meanwhile) and prints the same task's result data.
"""

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from fastmcp import Client
from fastmcp.client.transports import StdioTransport
from fastmcp_tasks import call_tool_task


def connect(url: str, via: str) -> Client[Any]:
    if via == "direct":
        return Client(url)
    keep = {name: os.environ[name] for name in ("PATH", "UV_PYTHON") if name in os.environ}
    proxy = StdioTransport(
        command="make",
        args=["--no-print-directory", "-s", "proxy"],
        env={**keep, "DURABLE_MCP_URL": url},
        cwd=str(Path(__file__).parent.parent),
    )
    return Client(proxy)


async def main(url: str, via: str, arguments: str) -> None:
    async with connect(url, via) as client:
        task = await call_tool_task(client, "start_gathering", json.loads(arguments))
        status = (await task.status()).status
        print(json.dumps({"task_id": task.task_id, "status": status}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        print(json.dumps((await task.result()).data), flush=True)


asyncio.run(main(*sys.argv[1:4]))
