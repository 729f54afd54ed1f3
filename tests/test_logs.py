"""The server's log: ours, FastMCP's and uvicorn's lines all in one plain format."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from durable_mcp_testing.helpers import call
from durable_mcp_testing.processes import free_port, running_server

#: ``2026-11-24 21:40:01 INFO durable_mcp: message`` (logs.FORMAT).
LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: \S")


async def test_every_log_line_has_one_format_and_a_tool_error_is_one_line(
    tmp_path: Path,
) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    with running_server(port, tmp_path / "data", log=log):
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            assert (await call(client, "set_timer", timer_name="tea", seconds=60))[
                "status"
            ] == "running"
            with pytest.raises(ToolError, match="already exists with other arguments"):
                await call(client, "set_timer", timer_name="tea", seconds=30)
            assert await call(client, "get_timer_status", timer_name="tea") == {"status": "running"}
    lines = log.read_text().splitlines()

    assert [line for line in lines if not LINE.match(line)] == []
    loggers = {line.split(" ")[3].rstrip(":") for line in lines}
    assert {"durable_mcp", "durable_mcp.jobs", "uvicorn.error", "uvicorn.access"} <= loggers
    conflict = [line for line in lines if "set_timer" in line and "fastmcp" in line]
    assert len(conflict) == 1
    assert conflict[0].endswith("Error calling tool 'set_timer'")
    assert not any("Traceback" in line for line in lines)
