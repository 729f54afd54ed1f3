"""Small input rules: no true/false for a number, no weather for an unfinished month,
a `durable-mcp jobs --limit` of 1 or more, and `durable-mcp jobs` on the default data dir."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from mcp_types import TextContent

from durable_mcp.cli import main
from durable_mcp.config import Settings
from durable_mcp.functions.weather import check_month
from durable_mcp.server import create_server
from durable_mcp_testing.helpers import call
from durable_mcp_testing.processes import DURABLE_MCP

PLACE = {"latitude": 53.5, "longitude": -113.5, "year": 2024, "month": 3}


@pytest.mark.parametrize(
    ("tool", "arguments", "wrong"),
    [
        ("set_timer", {"timer_name": "tea", "seconds": True}, "seconds"),
        ("start_gathering", {**PLACE, "latitude": True}, "latitude"),
        ("start_gathering", {**PLACE, "longitude": False}, "longitude"),
        ("start_gathering", {**PLACE, "year": True}, "year"),
        ("start_gathering", {**PLACE, "month": True}, "month"),
        ("await_result", {"job_names": ["tea"], "timeout_seconds": True}, "timeout_seconds"),
        ("list_jobs", {"limit": True}, "limit"),
    ],
)
async def test_true_or_false_for_a_number_is_an_argument_error_and_creates_nothing(
    client: Client[Any], tool: str, arguments: dict[str, object], wrong: str
) -> None:
    result = await client.call_tool(tool, arguments, raise_on_error=False)
    assert result.is_error
    sent = str(arguments[wrong]).lower()
    assert f"{wrong}: must be a number, not {sent}" in cast(TextContent, result.content[0]).text
    assert (await call(client, "list_jobs"))["jobs"] == []


@pytest.mark.parametrize(
    ("year", "month", "today", "message"),
    [
        (2024, 3, dt.date(2024, 3, 31), "2024-03 is not over yet; .* up to 2024-02"),
        (2025, 1, dt.date(2025, 1, 1), "2025-01 is not over yet; .* up to 2024-12"),
        (2024, 4, dt.date(2024, 3, 15), "2024-04 is in the future; .* up to 2024-02"),
        (2025, 3, dt.date(2024, 3, 15), "2025-03 is in the future; .* up to 2024-02"),
    ],
)
def test_a_month_that_has_not_ended_is_refused_naming_the_latest_whole_month(
    year: int, month: int, today: dt.date, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_month(year, month, today)


@pytest.mark.parametrize("today", [dt.date(2024, 3, 1), dt.date(2025, 1, 31)])
def test_the_month_before_today_is_the_latest_accepted(today: dt.date) -> None:
    last_month = today.replace(day=1) - dt.timedelta(days=1)
    # check_month returns nothing: what this checks is that it does not raise.
    assert check_month(last_month.year, last_month.month, today) is None  # type: ignore[func-returns-value]
    with pytest.raises(ValueError, match="is not over yet"):
        check_month(today.year, today.month, today)


async def store_with_a_timer(data_dir: Path) -> None:
    """An embedded store in ``data_dir`` that holds one running timer, "tea"."""
    server = create_server(Settings(store="embedded", data_dir=data_dir))
    async with Client(server) as client:
        await call(client, "set_timer", timer_name="tea", seconds=600)


@pytest.mark.parametrize("limit", ["0", "-1"])
async def test_jobs_limit_below_1_is_one_clear_line_and_exit_2(
    tmp_path: Path, limit: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await store_with_a_timer(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["jobs", "--data-dir", str(tmp_path), "--limit", limit])
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"durable-mcp: --limit must be 1 or more (got {limit})\n"


async def test_jobs_reads_the_default_relative_data_dir(tmp_path: Path) -> None:
    await store_with_a_timer(tmp_path / ".durable-mcp")
    env = {key: value for key, value in os.environ.items() if not key.startswith("DURABLE_MCP_")}
    listing = subprocess.run(
        [DURABLE_MCP, "jobs"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert listing.returncode == 0, listing.stderr
    rows = [line.split() for line in listing.stdout.strip().splitlines()]
    assert [row[:3] for row in rows] == [["JOB", "KIND", "STATUS"], ["tea", "timer", "running"]]


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("probe_status", {"job_names": ["x" * 100_000]}),
        ("await_result", {"job_names": "x" * 100_000}),
        ("cancel_job", {"job_name": "x" * 100_000}),
        ("set_timer", {"timer_name": "x" * 100_000, "seconds": 1}),
        ("get_timer_status", {"timer_name": "x" * 100_000}),
        ("list_jobs", {"cursor": "x" * 100_000}),
        ("list_jobs", {"cursor": "x" * 900}),  # short enough to look up: names no job
    ],
)
async def test_an_error_never_repeats_a_huge_argument_in_full(
    client: Client[Any], tool: str, arguments: dict[str, object]
) -> None:
    with pytest.raises(ToolError) as refused:
        await call(client, tool, **arguments)
    assert len(str(refused.value)) < 400
