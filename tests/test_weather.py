"""start_gathering and the weather job, against a fake Open-Meteo on 127.0.0.1 (seed 001)."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from resonate.retry import Constant

from durable_mcp.config import Settings
from durable_mcp.functions.weather import OpenMeteoArchive, canonical, job_name, summarize
from durable_mcp.server import create_server
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo, archive_response
from durable_mcp_testing.helpers import STORE_TICK, FakeTime, call, core, eventually

EDMONTON = {"latitude": 53.5, "longitude": -113.5, "year": 2024, "month": 3}
EDMONTON_JOB = "weather_data_53.5_-113.5_2024_3"


async def test_start_gathering_returns_the_deterministic_job_name(client: Client[Any]) -> None:
    result = await call(client, "start_gathering", **EDMONTON)
    assert result["job_name"] == EDMONTON_JOB


async def test_the_result_has_the_daily_series_and_a_summary(
    client: Client[Any], fake_archive: FakeOpenMeteo
) -> None:
    await call(client, "start_gathering", **EDMONTON)
    result = (await call(client, "await_result", job_names=[EDMONTON_JOB]))[EDMONTON_JOB]

    (query,) = fake_archive.requests
    params = {key: values[0] for key, values in parse_qs(query).items()}
    assert params["start_date"] == "2024-03-01"
    assert params["end_date"] == "2024-03-31"
    assert params["daily"] == "temperature_2m_max,temperature_2m_min,precipitation_sum"
    expected = archive_response(params)["daily"]
    assert result["daily"] == expected
    assert len(result["daily"]["time"]) == 31
    assert result["summary"] == summarize(expected)
    assert result["summary"]["total_precipitation"] == round(sum(expected["precipitation_sum"]), 1)


def test_summary_means_totals_and_wettest_day_skip_missing_days() -> None:
    daily: dict[str, list[Any]] = {
        "time": ["2024-03-01", "2024-03-02", "2024-03-03"],
        "temperature_2m_max": [10.0, None, 14.0],
        "temperature_2m_min": [-1.0, 1.0, None],
        "precipitation_sum": [0.5, 7.25, None],
    }
    assert summarize(daily) == {
        "days": 3,
        "mean_daily_max": 12.0,
        "mean_daily_min": 0.0,
        "total_precipitation": 7.8,
        "wettest_day": {"date": "2024-03-02", "precipitation": 7.25},
    }


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (53.5, "53.5"),
        (53.50, "53.5"),
        (7.0, "7"),
        (-0.0, "0"),
        (-113.25, "-113.25"),
        (1e-7, "0"),  # kept to 6 decimal places
        (-1e-300, "0"),
        (53.1234567, "53.123457"),
        (179.999999, "179.999999"),
    ],
)
def test_canonical_numbers(number: float, text: str) -> None:
    assert canonical(number) == text


async def test_the_same_place_in_other_spellings_is_one_job_and_one_fetch(
    client: Client[Any], fake_archive: FakeOpenMeteo
) -> None:
    spellings: list[dict[str, Any]] = [
        {"latitude": "53.5", "longitude": -113.5},
        {"latitude": 53.5, "longitude": "-113.50"},
        {"latitude": 53.50, "longitude": -113.5},
    ]
    names = [
        (await call(client, "start_gathering", year=2024, month=3, **place))["job_name"]
        for place in spellings
    ]
    assert names == [EDMONTON_JOB] * 3
    results = await call(client, "await_result", job_names=[EDMONTON_JOB])
    assert results[EDMONTON_JOB]["summary"]["days"] == 31
    assert job_name(53.5, -113.5, 2024, 3) == EDMONTON_JOB
    assert fake_archive.total_requests == 1


async def test_concurrent_starts_of_one_job_fetch_once(
    client: Client[Any], fake_archive: FakeOpenMeteo
) -> None:
    starts = [call(client, "start_gathering", **EDMONTON) for _ in range(10)]
    results = await asyncio.gather(*starts)
    assert {result["job_name"] for result in results} == {EDMONTON_JOB}
    await call(client, "await_result", job_names=[EDMONTON_JOB])
    assert fake_archive.total_requests == 1


async def test_the_timezone_is_sent_to_the_archive(
    client: Client[Any], fake_archive: FakeOpenMeteo
) -> None:
    await call(client, "start_gathering", **EDMONTON, timezone="Europe/Berlin")
    result = (await call(client, "await_result", job_names=[EDMONTON_JOB]))[EDMONTON_JOB]
    (query,) = fake_archive.requests
    assert parse_qs(query)["timezone"] == ["Europe/Berlin"]
    assert result["timezone"] == "Europe/Berlin"


async def test_the_default_timezone_is_the_places_own(
    client: Client[Any], fake_archive: FakeOpenMeteo
) -> None:
    await call(client, "start_gathering", **EDMONTON)
    await call(client, "await_result", job_names=[EDMONTON_JOB])
    (query,) = fake_archive.requests
    assert parse_qs(query)["timezone"] == ["auto"]


async def test_same_place_with_another_timezone_is_a_conflict(client: Client[Any]) -> None:
    await call(client, "start_gathering", **EDMONTON)
    with pytest.raises(ToolError, match=r"already exists with other arguments .*\"auto\""):
        await call(client, "start_gathering", **EDMONTON, timezone="UTC")


@pytest.mark.parametrize("failures", [(503, 503), (429, 500)])
async def test_transient_failures_are_retried(
    client: Client[Any], fake_archive: FakeOpenMeteo, failures: tuple[int, ...]
) -> None:
    fake_archive.fail_with(*failures)
    await call(client, "start_gathering", **EDMONTON)
    result = (await call(client, "await_result", job_names=[EDMONTON_JOB]))[EDMONTON_JOB]
    assert result["summary"]["days"] == 31
    assert fake_archive.total_requests == 3


async def test_a_refused_request_fails_at_once_with_the_reason(
    client: Client[Any], fake_archive: FakeOpenMeteo
) -> None:
    fake_archive.fail_with(400)
    await call(client, "start_gathering", **EDMONTON)
    result = (await call(client, "await_result", job_names=[EDMONTON_JOB]))[EDMONTON_JOB]
    assert result["status"] == "failed"
    assert result["error"]["type"] == "ArchiveError"
    assert "HTTP 400" in result["error"]["message"]
    assert "fake error 400" in result["error"]["message"]
    assert fake_archive.total_requests == 1


async def test_retries_are_bounded_then_the_job_fails(
    client: Client[Any], fake_archive: FakeOpenMeteo
) -> None:
    fake_archive.fail_with(500, 500, 500, 500)
    await call(client, "start_gathering", **EDMONTON)
    probe = await call(client, "await_result", job_names=[EDMONTON_JOB])
    assert probe[EDMONTON_JOB]["status"] == "failed"
    assert probe[EDMONTON_JOB]["error"] == {
        "type": "ArchiveUnavailable",
        "message": "Open-Meteo archive answered HTTP 500",
        "step": "fetch_month",
        "attempts": 3,  # the archive's policy here: 2 retries
    }
    assert fake_archive.total_requests == 3  # the first try and two retries


async def test_an_unreachable_archive_fails_the_job_with_a_clear_error(
    client: Client[Any], fake_archive: FakeOpenMeteo
) -> None:
    fake_archive.__exit__()  # nothing listens there any more
    await call(client, "start_gathering", **EDMONTON)
    result = (await call(client, "await_result", job_names=[EDMONTON_JOB]))[EDMONTON_JOB]
    assert result["status"] == "failed"
    assert result["error"]["type"] == "ArchiveUnavailable"
    assert "unreachable" in result["error"]["message"]


NEXT_YEAR = dt.date.today().year + 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"latitude": 91}, "latitude: Input should be less than or equal to 90"),
        ({"latitude": -90.5}, "latitude: Input should be greater than or equal to -90"),
        ({"longitude": 180.1}, "longitude: Input should be less than or equal to 180"),
        ({"latitude": "nan"}, "latitude: Input should be a finite number"),
        ({"month": 13}, "month: Input should be less than or equal to 12"),
        ({"month": 0}, "month: Input should be greater than or equal to 1"),
        ({"year": 1939}, "year: Input should be greater than or equal to 1940"),
        ({"year": NEXT_YEAR}, f"{NEXT_YEAR}-03 is in the future"),
        ({"timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"year": "last year"}, "year: Input should be a valid integer"),
    ],
)
async def test_bad_input_is_a_clear_tool_error_and_fetches_nothing(
    client: Client[Any], fake_archive: FakeOpenMeteo, change: dict[str, object], message: str
) -> None:
    with pytest.raises(ToolError, match=message):
        await client.call_tool("start_gathering", {**EDMONTON, **change})
    assert (await call(client, "probe_status", job_names=[EDMONTON_JOB]))[0][
        "status"
    ] == "not_found"
    assert fake_archive.total_requests == 0


async def test_a_job_past_its_deadline_fails_with_a_timeout_error(
    settings: Settings,
    archive: OpenMeteoArchive,
    fake_archive: FakeOpenMeteo,
    fake_time: FakeTime,
) -> None:
    fake_archive.hold()  # the archive never answers in time
    deadlines = {"weather_data": timedelta(seconds=1)}
    server = create_server(
        replace(settings, job_deadlines=deadlines),
        archive=archive,
        **fake_time.seams,
    )
    async with Client(server) as client:
        await call(client, "start_gathering", **EDMONTON)
        await fake_archive.arrived()  # the fetch is in flight
        await fake_time.advance(1 + STORE_TICK)  # past the deadline
        result = (await call(client, "await_result", job_names=[EDMONTON_JOB]))[EDMONTON_JOB]
        fake_archive.release()
    assert core(result) == {
        "job_name": EDMONTON_JOB,
        "kind": "weather_data",
        "status": "failed",
        "error": {"type": "Timeout", "message": "the job ran past its deadline"},
    }


async def test_a_fetch_that_waits_to_be_retried_says_when_and_why(
    settings: Settings, fake_archive: FakeOpenMeteo, fake_time: FakeTime
) -> None:
    archive = OpenMeteoArchive(fake_archive.url, retry_policy=Constant(delay=30, max_retries=2))
    server = create_server(settings, archive=archive, **fake_time.seams)
    fake_archive.fail_with(503)
    async with Client(server) as client:
        await call(client, "start_gathering", **EDMONTON)
        await fake_archive.arrived(1)

        async def retrying() -> dict[str, Any] | None:
            (status,) = await call(client, "probe_status", job_names=[EDMONTON_JOB])
            return status if "retrying" in status else None

        status = await eventually(retrying)  # the failed fetch ends on its thread
        assert status["retrying"] == {
            "step": "fetch_month",
            "attempt": 2,
            "of": 3,
            "error": {
                "type": "ArchiveUnavailable",
                "message": "Open-Meteo archive answered HTTP 503",
            },
            "at": "2026-01-01T00:00:30.000+00:00",
        }
        assert status["progress"]["message"] == "fetching from the Open-Meteo archive"
        await fake_time.advance(30 + STORE_TICK, step=STORE_TICK)
        await fake_archive.arrived(2)  # the retry, 30 s later
        result = (await call(client, "await_result", job_names=[EDMONTON_JOB]))[EDMONTON_JOB]
    assert result["summary"]["days"] == 31
    assert fake_archive.total_requests == 2
