"""Small helpers the tool tests share."""

from __future__ import annotations

from typing import Any

from fastmcp import Client

#: Status fields that depend on the clock.
TIMES = ("created_at", "settled_at", "poll_after_seconds", "deadline", "remaining_seconds")


async def call(client: Client[Any], tool: str, **arguments: object) -> Any:
    """Call a tool and return its data (raises ToolError on a tool error)."""
    return (await client.call_tool(tool, arguments)).data


def core(status: dict[str, Any]) -> dict[str, Any]:
    """A status object without its clock-dependent fields."""
    return {key: value for key, value in status.items() if key not in TIMES}
