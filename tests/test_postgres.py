"""The Postgres engine (resonate-pg), on real Postgres (``durable_mcp_testing.postgres_server``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.helpers import eventually
from durable_mcp_testing.postgres_server import needs_schema, restart, stored_sleep
from durable_mcp_testing.processes import free_port, running_server

pytestmark = needs_schema


async def call(url: str, tool: str, **arguments: object) -> Any:
    async with Client(url) as client:
        return (await client.call_tool(tool, arguments)).data


@pytest.fixture
def url(postgres: Any, fake_archive: FakeOpenMeteo, tmp_path: Path) -> Iterator[str]:
    """A durable-mcp server on the Postgres engine; its log is tmp_path/server.log."""
    port = free_port()
    env = {"RESONATE_PG_DSN": postgres.get_uri(), "OPEN_METEO_ARCHIVE_URL": fake_archive.url}
    with running_server(port, tmp_path / "data", env, log=tmp_path / "server.log"):
        yield f"http://127.0.0.1:{port}/mcp"


async def test_jobs_run_on_postgres_and_deduplicate(
    url: str, fake_archive: FakeOpenMeteo, tmp_path: Path
) -> None:
    place = {"latitude": 10, "longitude": 20, "year": 2021, "month": 5}
    first = await call(url, "start_gathering", **place)
    second = await call(url, "start_gathering", **place)
    assert first["job_name"] == second["job_name"] == "weather_data_10_20_2021_5"
    result = await call(url, "await_result", job_names=[first["job_name"]])
    assert result[first["job_name"]]["summary"]["days"] == 31
    assert fake_archive.total_requests == 1

    await call(url, "set_timer", timer_name="tea", seconds=1)
    assert await call(url, "await_result", job_names=["tea"]) == {"tea": "complete"}
    assert "ERROR" not in (tmp_path / "server.log").read_text()


async def test_a_sleep_fires_after_postgres_restarts_mid_sleep(url: str, postgres: Any) -> None:
    await call(url, "set_timer", timer_name="tea", seconds=5)

    async def sleeping() -> tuple[str, int] | None:
        return stored_sleep(postgres, "tea")

    state, deadline = await eventually(sleeping)  # the outage comes mid-sleep
    assert state == "pending"
    restart(postgres, down_for=2)
    assert await call(url, "await_result", job_names=["tea"]) == {"tea": "complete"}
    # The same sleep fired, on its own deadline, not before it.
    assert stored_sleep(postgres, "tea") == ("resolved", deadline)
    (tea,) = await call(url, "probe_status", job_names=["tea"])
    assert dt.datetime.fromisoformat(tea["settled_at"]).timestamp() * 1000 >= deadline
