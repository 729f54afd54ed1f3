"""`make claude-config`: the Claude Desktop entry for this checkout, which runs as printed,
and claude_desktop_config.example.json, the same entry with placeholder paths."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from durable_mcp_testing.helpers import call
from durable_mcp_testing.processes import free_port, running_server

ROOT = Path(__file__).parent.parent


#: Where the example file's paths have this checkout.
PLACEHOLDER_CHECKOUT = "/path/to/durable-mcp"


def printed_config(env: dict[str, str], args: str = "") -> dict[str, Any]:
    printed = subprocess.run(
        ["make", "--silent", "claude-config", f"ARGS={args}"],
        cwd=ROOT,
        # Not the DURABLE_MCP_* of whoever runs the tests: only those given here.
        env={k: v for k, v in os.environ.items() if not k.startswith("DURABLE_MCP_")} | env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    config: dict[str, Any] = json.loads(printed)  # nothing but the JSON on stdout
    return config


def printed_entry(env: dict[str, str], args: str = "") -> dict[str, object]:
    config = printed_config(env, args)
    assert list(config["mcpServers"]) == ["durable-mcp"]
    entry: dict[str, object] = config["mcpServers"]["durable-mcp"]
    return entry


async def test_the_printed_entry_speaks_mcp_over_stdio_without_uv_on_path(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    entry = printed_entry({"DURABLE_MCP_URL": url})
    command, args, env = entry["command"], entry["args"], entry["env"]
    assert isinstance(command, str) and isinstance(args, list) and isinstance(env, dict)

    assert Path(command).is_absolute() and os.access(command, os.X_OK)
    assert args == [str(ROOT.resolve() / "proxy.py")]
    assert env == {"DURABLE_MCP_URL": url}
    with running_server(port, tmp_path):
        # As Claude Desktop starts it: its own small environment, no uv on PATH.
        transport = StdioTransport(command, args, env={**env, "PATH": "/usr/bin:/bin"})
        async with Client(transport) as client:
            tools = {tool.name for tool in await client.list_tools()}
            assert {"set_timer", "probe_status", "await_result"} <= tools
            started = await call(client, "set_timer", timer_name="tea", seconds=60)
            assert started["status"] == "running"


def test_the_entry_carries_the_port_and_the_token_of_this_environment() -> None:
    token = "a-token-of-twenty-chars"
    entry = printed_entry({"DURABLE_MCP_PORT": "5002", "DURABLE_MCP_TOKEN": token})

    assert entry["env"] == {
        "DURABLE_MCP_URL": "http://127.0.0.1:5002/mcp",
        "DURABLE_MCP_TOKEN": token,
    }


def test_the_port_and_the_url_can_be_given_as_flags_and_win_over_the_environment() -> None:
    environment = {"DURABLE_MCP_PORT": "5002", "DURABLE_MCP_URL": "http://127.0.0.1:5002/mcp"}

    on_port = printed_entry(environment, args="--port 5090")
    at_url = printed_entry(environment, args="--url http://10.0.0.5:6000/mcp")

    assert on_port["env"] == {"DURABLE_MCP_URL": "http://127.0.0.1:5090/mcp"}
    assert at_url["env"] == {"DURABLE_MCP_URL": "http://10.0.0.5:6000/mcp"}


def test_a_bad_port_flag_is_one_line_that_names_the_flag() -> None:
    refused = subprocess.run(
        ["make", "--silent", "claude-config", "ARGS=--port 99999"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )

    assert refused.returncode != 0 and refused.stdout == ""
    assert "durable-mcp: --port: must be a whole number from 1 to 65535, got '99999'" in (
        refused.stderr
    )
    assert "Traceback" not in refused.stderr


def test_the_example_file_is_what_claude_config_prints_with_placeholder_paths() -> None:
    printed = printed_config({})
    text = json.dumps(printed, indent=2).replace(str(ROOT.resolve()), PLACEHOLDER_CHECKOUT)

    example = (ROOT / "claude_desktop_config.example.json").read_text()

    assert json.loads(text) == json.loads(example)
    assert text + "\n" == example  # the same layout, too
