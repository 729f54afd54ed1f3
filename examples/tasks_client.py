# /// script
# requires-python = ">=3.12"
# dependencies = ["fastmcp==4.1.4", "fastmcp-tasks==4.1.4"]
# ///
"""Start a durable job as an MCP task, then wait for its result.

Run: uv run --script examples/tasks_client.py [http://127.0.0.1:5001/mcp]
"""

import asyncio
import sys

from fastmcp import Client
from fastmcp_tasks import call_tool_task  # importing it opts every Client in to tasks

URL = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:5001/mcp"
BERLIN_MARCH_2024 = {"latitude": 52.52, "longitude": 13.41, "year": 2024, "month": 3}


async def main() -> None:
    async with Client(URL) as client:
        task = await call_tool_task(client, "start_gathering", BERLIN_MARCH_2024)
        print("task", task.task_id, (await task.status()).status)
        result = await task.result()  # polls tasks/get until the job has ended
        print("summary", result.data["summary"])


asyncio.run(main())
