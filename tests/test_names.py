"""Each kind of job keeps its own names: a timer cannot take the name a weather job needs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

import countdown
from durable_mcp.config import Settings
from durable_mcp.functions import BUILT_IN
from durable_mcp.functions.weather import OpenMeteoArchive
from durable_mcp.jobs.registry import DurableTools
from durable_mcp.server import create_server
from durable_mcp_testing.helpers import call


@pytest.fixture
async def client(settings: Settings, archive: OpenMeteoArchive) -> AsyncIterator[Client[Any]]:
    server = create_server(
        settings, archive=archive, durable=DurableTools(BUILT_IN, countdown.durable)
    )
    async with Client(server) as client:
        yield client


async def test_a_timer_cannot_take_a_weather_jobs_name(client: Client[Any]) -> None:
    with pytest.raises(ToolError, match="'weather_data_10_20_2024_3' is kept for weather_data"):
        await call(client, "set_timer", timer_name="weather_data_10_20_2024_3", seconds=600)
    place = {"latitude": 10, "longitude": 20, "year": 2024, "month": 3}
    started = await call(client, "start_gathering", **place)
    assert started == {"job_name": "weather_data_10_20_2024_3", "status": "running"}


async def test_a_timer_cannot_take_a_countdowns_name(client: Client[Any]) -> None:
    with pytest.raises(ToolError, match="'countdown_5' is kept for countdown jobs"):
        await call(client, "set_timer", timer_name="countdown_5", seconds=600)
    assert await call(client, "start_countdown", seconds=5) == {
        "job_name": "countdown_5",
        "status": "running",
    }


async def test_other_names_stay_free_for_timers(client: Client[Any]) -> None:
    for name in ("tea", "timer_tea", "weather", "countdown"):
        started = await call(client, "set_timer", timer_name=name, seconds=600)
        assert started == {"promise_id": name, "status": "running"}


async def test_get_timer_status_of_a_weather_job_says_it_is_not_a_timer(
    client: Client[Any],
) -> None:
    place = {"latitude": 10, "longitude": 20, "year": 2024, "month": 3}
    await call(client, "start_gathering", **place)
    with pytest.raises(ToolError, match="is a weather_data job, not a timer: use probe_status"):
        await call(client, "get_timer_status", timer_name="weather_data_10_20_2024_3")
