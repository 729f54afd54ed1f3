"""``@durable.tool`` refuses, where it is declared and in one line, what would fail
every call; and what JSON can carry (datetime, bytes, sets) works as an argument."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError
from resonate.context import Context

from durable_mcp.config import Settings
from durable_mcp.jobs.declaration import DeclarationError
from durable_mcp.jobs.registry import DurableTools
from durable_mcp_testing.helpers import FakeTime, call

durable = DurableTools()

#: What each typed job was given, as its function received it.
RECEIVED: list[tuple[Any, ...]] = []


@durable.tool(job_name=lambda name: f"typed_{name}")
async def typed(
    ctx: Context, name: str, when: dt.datetime, blob: bytes, tags: set[str]
) -> dict[str, Any]:
    """Takes what JSON carries with a little help."""
    RECEIVED.append((when, blob, tags))
    return {"when": when.isoformat(), "size": len(blob), "tags": sorted(tags)}


@durable.tool(job_name=lambda name: 42)  # type: ignore[arg-type, return-value]
async def badly_named(ctx: Context, name: str) -> str:
    """Its job_name rule returns a number."""
    return name


@pytest.fixture
def server(settings: Settings, fake_time: FakeTime) -> FastMCP:
    mcp = FastMCP("declared")
    durable.add_to(mcp, settings, **fake_time.seams)
    return mcp


async def test_datetime_bytes_and_set_arguments_reach_the_job_as_they_were_given(
    client: Client[Any], fake_time: FakeTime
) -> None:
    RECEIVED.clear()
    arguments = {
        "name": "a",
        "when": "2024-03-01T12:00:00Z",
        "blob": "aGVsbG8=",
        "tags": ["y", "x", "y"],
    }
    started = await call(client, "typed", **arguments)
    again = await call(client, "typed", **{**arguments, "tags": ["x", "y"]})  # the same set
    await fake_time.advance(0)

    done = await call(client, "await_result", job_names=["typed_a"])

    assert started["job_name"] == again["job_name"] == "typed_a"
    assert [  # one job: the second call attached to it
        (dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC), b"aGVsbG8=", {"x", "y"}),
    ] == RECEIVED
    assert done["typed_a"] == {"when": "2024-03-01T12:00:00+00:00", "size": 8, "tags": ["x", "y"]}


async def test_a_job_name_rule_that_returns_no_str_is_a_clear_tool_error(
    client: Client[Any],
) -> None:
    with pytest.raises(ToolError, match=r"the job_name rule of badly_named returned 42, not a str"):
        await call(client, "badly_named", name="x")


def declare(**tool_options: Any) -> Any:
    """Declare a tool on a fresh DurableTools; the decorator, to apply to a function."""
    return DurableTools().tool(**tool_options)


def test_a_job_name_rule_naming_an_argument_the_function_lacks_is_refused_where_declared() -> None:
    async def build(ctx: Context, report_id: str) -> str:
        return report_id

    with pytest.raises(DeclarationError) as refused:
        declare(job_name=lambda reprot_id: f"r_{reprot_id}")(build)

    assert str(refused.value).endswith(
        "the job_name rule of build takes reprot_id, which build does not (its arguments: "
        "report_id)"
    )
    assert str(refused.value).startswith(f"{__file__}:")


def test_a_function_without_a_context_first_is_refused() -> None:
    async def weather(city: str) -> str:
        return city

    with pytest.raises(DeclarationError, match=r"weather must take a Context first \(its first"):
        declare(job_name=lambda: "w")(weather)


class Socketish:
    """Not data: a live thing."""


def test_an_argument_json_cannot_carry_is_refused() -> None:
    async def connect(ctx: Context, to: Socketish) -> str:
        return "connected"

    with pytest.raises(DeclarationError) as refused:
        declare(job_name=lambda: "c")(connect)

    assert "argument `to: test_declarations.Socketish` of durable function connect cannot be " in (
        str(refused.value)
    )


def test_a_rule_that_returns_no_str_by_its_annotation_is_refused() -> None:
    def number(name: str) -> int:
        return 1

    async def job(ctx: Context, name: str) -> str:
        return name

    with pytest.raises(DeclarationError, match="the job_name rule of job must return a str"):
        declare(job_name=number)(job)


def test_a_refused_declaration_ends_a_program_that_does_not_catch_it_in_one_line(
    tmp_path: Path,
) -> None:
    program = tmp_path / "app.py"
    program.write_text(
        "from resonate.context import Context\n"
        "from durable_mcp import DurableTools\n"
        "durable = DurableTools()\n"
        "@durable.tool(job_name=lambda missing: missing)\n"
        "async def job(ctx: Context, present: str) -> str:\n"
        "    return present\n"
    )

    ended = subprocess.run([sys.executable, str(program)], capture_output=True, text=True)

    assert ended.returncode == 1
    assert ended.stderr == (
        f"durable-mcp: {program}:4: the job_name rule of job takes missing, which job does not "
        "(its arguments: present)\n"
    )
