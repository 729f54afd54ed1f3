"""What a client without MCP Apps sees of our server: ``tools/list``,
``resources/list``, ``resources/templates/list`` and the answers to a fixed
sequence of tool calls, on fake time (so every time and id is the same).

``python -m durable_mcp_testing.record_answers`` wrote ``tests/data/before_apps.json``
before the job card (issue 24) was added; ``tests/test_apps.py`` checks that
a client without Apps still gets exactly that.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from fastmcp import Client

from durable_mcp.config import Settings
from durable_mcp.functions.weather import OpenMeteoArchive
from durable_mcp.server import create_server
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.helpers import FakeTime

#: The calls, in order: every tool, a result and an error among them.
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("set_timer", {"timer_name": "tea", "seconds": 60}),
    ("set_timer", {"timer_name": "tea", "seconds": 60}),
    ("probe_status", {"job_names": ["tea", "nope"]}),
    ("get_timer_status", {"timer_name": "tea"}),
    ("list_jobs", {}),
    ("cancel_job", {"job_name": "tea"}),
    ("set_timer", {"timer_name": "tea", "seconds": 0, "retry": True}),
    ("await_result", {"job_names": ["tea"]}),
    ("start_gathering", {"latitude": 52.5, "longitude": 13.4, "year": 2024, "month": 2}),
    ("answer_job", {"job_name": "tea", "answer": {}}),
]


def _json(model: Any) -> Any:
    return json.loads(model.model_dump_json(by_alias=True, exclude_none=True))


async def answers() -> dict[str, Any]:
    """The lists and the calls' answers, as a client that declares no extension gets them."""
    fake_time = FakeTime()
    with tempfile.TemporaryDirectory() as tmp, FakeOpenMeteo() as fake:
        mcp = create_server(
            Settings(data_dir=Path(tmp) / "data"),
            archive=OpenMeteoArchive(fake.url),
            **fake_time.seams,
        )
        async with Client(mcp) as client:
            seen: dict[str, Any] = {
                "tools/list": _json(await client.list_tools_mcp()),
                "resources/list": _json(await client.list_resources_mcp()),
                "resources/templates/list": _json(await client.list_resource_templates_mcp()),
                "calls": [],
            }
            for name, arguments in CALLS:
                result = _json(await client.call_tool_mcp(name, arguments))
                seen["calls"].append({"tool": name, "arguments": arguments, "result": result})
    return seen


def main(path: str) -> None:
    seen = asyncio.run(answers())
    Path(path).write_text(json.dumps(seen, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
