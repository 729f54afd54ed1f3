"""The durable functions of the built-in tools, importable without the MCP layer.

These modules import only Resonate, pydantic, the standard library and
``durable_mcp``'s own MCP-free modules (config, the job registry): each declares
its durable tool with ``@durable.tool``. `durable-mcp serve` opens the store and
starts the engine with :data:`FUNCTIONS` registered before it imports FastMCP, so the
jobs a restart interrupted resume while the MCP layer is still importing
(``tests/test_fast_resume.py`` holds these modules to it).

A tool whose durable function `durable-mcp serve` runs must be declared in
:data:`BUILT_IN`: a job can resume only once its function is registered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from durable_mcp.functions import timer, weather
from durable_mcp.jobs.registry import DurableTools

#: The durable tools of our own server.
BUILT_IN = DurableTools(timer.durable, weather.durable)

#: Every durable function a built-in tool starts as a job.
FUNCTIONS: tuple[Callable[..., Any], ...] = BUILT_IN.functions
