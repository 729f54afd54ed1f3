"""The durable weather-history fetch (seed 001): ``start_gathering``.

A job fetches one month of daily weather for a place from the Open-Meteo
archive. Its id is derived from the place and month with the numbers in one
canonical form, so asking twice for the same data attaches to the job already
there and the archive is called once. The fetch is a checkpointed step
(``ctx.run``): once it has returned, a replay after a restart reuses its result
instead of calling the archive again.

At most ``max_fetches`` requests are in flight; the jobs beyond that wait their
turn inside their step, still running (see ``OpenMeteoArchive.fetch_in_turn``).

The durable function, ``weather_data``, and the archive it calls live in
``durable_mcp.functions.weather``, which imports nothing of MCP: `durable-mcp
serve` resumes interrupted jobs while the MCP layer is still importing.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from datetime import timedelta
from decimal import Decimal
from typing import Annotated

from fastmcp import FastMCP
from pydantic import Field

from durable_mcp.functions.weather import (
    DAILY_VARIABLES,
    ArchiveError,
    ArchiveUnavailable,
    OpenMeteoArchive,
    fetch_month,
    summarize,
    weather_data,
)
from durable_mcp.jobs import InvalidArgument, Jobs, Start
from durable_mcp.tools.arguments import NotABoolean

__all__ = [
    "DAILY_VARIABLES",
    "ArchiveError",
    "ArchiveUnavailable",
    "OpenMeteoArchive",
    "fetch_month",
    "register",
    "summarize",
    "weather_data",
]

#: The archive's data starts in 1940.
FIRST_YEAR = 1940

#: A weather job that has not finished in this time has failed
#: (``DURABLE_MCP_JOB_DEADLINES=weather_data=...`` changes it).
JOB_DEADLINE = timedelta(minutes=30)

Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False), NotABoolean]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False), NotABoolean]
Year = Annotated[
    int, Field(ge=FIRST_YEAR, le=9999, description="Four-digit year, 1940 or later."), NotABoolean
]
Month = Annotated[int, Field(ge=1, le=12, description="Month number, 1 to 12."), NotABoolean]
Timezone = Annotated[
    str,
    Field(
        max_length=64,
        description='IANA timezone for the daily values, e.g. "Europe/Berlin"; '
        '"auto" (the default) uses the place\'s own timezone.',
    ),
]


def job_name(latitude: float, longitude: float, year: int, month: int) -> str:
    """The deterministic id: ``53.5``, ``53.50`` and ``"53.5"`` all name the same job."""
    return f"weather_data_{canonical(latitude)}_{canonical(longitude)}_{year}_{month}"


#: Coordinates are kept to 6 decimal places (~0.1 m; the archive's grid is ~9 km).
PRECISION = Decimal("0.000001")


def canonical(number: float) -> str:
    """Shortest plain decimal form: 53.50 -> "53.5", 7.0 -> "7", -0.0 -> "0", 1e-300 -> "0"."""
    text = format(Decimal(repr(float(number))).quantize(PRECISION).normalize(), "f")
    return "0" if text in ("-0", "0") else text


def check_month(year: int, month: int, today: dt.date) -> None:
    """Refuse a month that has not ended by ``today``: a job is kept, with its
    result, for days, so a part of a month would be the answer all that time."""
    if (year, month) < (today.year, today.month):
        return
    latest = today.replace(day=1) - timedelta(days=1)  # the last day of the month before
    when = "is in the future" if (year, month) > (today.year, today.month) else "is not over yet"
    raise InvalidArgument(
        f"{year}-{month:02d} {when}; the archive has whole months up to "
        f"{latest.year}-{latest.month:02d}"
    )


def check_timezone(timezone: str) -> None:
    if timezone == "auto" or timezone in zoneinfo.available_timezones():
        return
    raise InvalidArgument(
        f"unknown timezone {timezone!r}; use an IANA name such as 'Europe/Berlin', 'UTC' or 'auto'"
    )


def register(mcp: FastMCP, jobs: Jobs) -> None:
    """The weather job and its start tool (the server provides the OpenMeteoArchive)."""
    jobs.register(weather_data, deadline=JOB_DEADLINE)

    @jobs.starter(mcp)
    async def start_gathering(
        latitude: Latitude,
        longitude: Longitude,
        year: Year,
        month: Month,
        timezone: Timezone = "auto",
    ) -> Start:
        """Start fetching a month of historical daily weather for a place.

        Gets daily max/min temperature (°C) and precipitation (mm) from the
        Open-Meteo archive, plus a summary. Returns at once with {"job_name": ...};
        asking again for the same place and month returns the same job_name
        without fetching twice. Next: probe_status([job_name]) to check without
        waiting, or await_result([job_name]) to get the data.
        """
        check_month(year, month, dt.datetime.now(dt.UTC).date())
        check_timezone(timezone)
        name = job_name(latitude, longitude, year, month)
        lat, lon = float(canonical(latitude)), float(canonical(longitude))
        return Start(name, weather_data, lat, lon, year, month, timezone)
