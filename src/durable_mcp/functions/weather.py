"""The durable weather-history fetch (seed 001): ``weather_data``, started by
``start_gathering``, its step ``fetch_month`` and the ``OpenMeteoArchive`` they call.

A job fetches one month of daily weather for a place from the Open-Meteo
archive. Its id is derived from the place and month with the numbers in one
canonical form, so asking twice for the same data attaches to the job already
there and the archive is called once. The fetch is a checkpointed step
(``ctx.run``): once it has returned, a replay after a restart reuses its result
instead of calling the archive again. At most ``max_fetches`` requests are in
flight; the jobs beyond that wait their turn inside their step, still running
(see ``OpenMeteoArchive.fetch_in_turn``), and say how many wait ahead of them
(their progress); then that they are fetching.

Like every module of ``durable_mcp.functions`` it imports nothing of MCP
(``requests`` when the first fetch runs), so ``durable-mcp serve`` resumes
interrupted jobs while the MCP layer is still importing.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import datetime as dt
import statistics
import zoneinfo
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from functools import cached_property
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field
from resonate.context import Context
from resonate.retry import Exponential, RetryPolicy

from durable_mcp.config import DEFAULT_MAX_FETCHES
from durable_mcp.jobs.progress import report_progress
from durable_mcp.jobs.registry import DurableTools
from durable_mcp.tools.arguments import NotABoolean

if TYPE_CHECKING:
    import requests

DAILY_VARIABLES = ("temperature_2m_max", "temperature_2m_min", "precipitation_sum")

durable = DurableTools()

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
    raise ValueError(
        f"{year}-{month:02d} {when}; the archive has whole months up to "
        f"{latest.year}-{latest.month:02d}"
    )


def check_timezone(timezone: str) -> None:
    if timezone == "auto" or timezone in zoneinfo.available_timezones():
        return
    raise ValueError(
        f"unknown timezone {timezone!r}; use an IANA name such as 'Europe/Berlin', 'UTC' or 'auto'"
    )


def job_arguments(
    latitude: float, longitude: float, year: int, month: int, timezone: str
) -> dict[str, Any]:
    """A whole month in the past and a known timezone; the coordinates canonical."""
    check_month(year, month, dt.datetime.now(dt.UTC).date())
    check_timezone(timezone)
    return {
        "latitude": float(canonical(latitude)),
        "longitude": float(canonical(longitude)),
        "year": year,
        "month": month,
        "timezone": timezone,
    }


class ArchiveError(Exception):
    """The archive refused the request; retrying will not help."""


class ArchiveUnavailable(Exception):
    """The archive could not answer right now; the step is retried."""


@dataclass(frozen=True)
class OpenMeteoArchive:
    """Where and how the fetch step calls the archive.

    Handed to durable functions as a Resonate dependency, so the URL, request
    timeout, retry policy and number of requests in flight are configuration,
    not job arguments: changing them never changes a job's id.
    """

    url: str
    timeout_seconds: float = 30.0
    retry_policy: RetryPolicy = field(
        default_factory=lambda: Exponential(delay=1, factor=2, max_retries=3, max_delay=30)
    )
    max_fetches: int = DEFAULT_MAX_FETCHES

    @cached_property
    def _fetch_threads(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.max_fetches, thread_name_prefix="open-meteo")

    @cached_property
    def _line(self) -> FetchLine:
        return FetchLine(self.max_fetches)

    async def fetch_in_turn(
        self, params: dict[str, Any], waiting: Callable[[int | None], None] = lambda ahead: None
    ) -> dict[str, Any]:
        """:meth:`fetch` in one of ``max_fetches`` threads, once one is free.

        A job waiting its turn waits here, in its running step: its task stays
        leased to this process, kept alive by the SDK's heartbeat, so the store
        never gives it to a second execution; and the wait costs a place in
        line, not a thread. ``waiting`` is told how many wait ahead in line, each
        time that changes, and None when its turn comes.
        """
        async with self._line.turn(waiting):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._fetch_threads, self.fetch, params)

    def close(self) -> None:
        """Drop the fetches still waiting (the server is stopping: they resume at its next start).

        The threads of the fetches in flight end with them; a later fetch gets new ones.
        """
        self.__dict__.pop("_line", None)
        threads: ThreadPoolExecutor | None = self.__dict__.pop("_fetch_threads", None)
        if threads is not None:
            threads.shutdown(wait=False, cancel_futures=True)

    def fetch(self, params: dict[str, Any]) -> dict[str, Any]:
        """One GET against the archive (blocking; run it in a thread)."""
        import requests  # ~0.1 s to import: at the first fetch, in its thread

        try:
            response = requests.get(self.url, params=params, timeout=self.timeout_seconds)
        except requests.RequestException as exc:
            raise ArchiveUnavailable(f"Open-Meteo archive unreachable: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise ArchiveUnavailable(f"Open-Meteo archive answered HTTP {response.status_code}")
        if response.status_code >= 400:
            raise ArchiveError(_reason(response))
        body: dict[str, Any] = response.json()
        return body


class FetchLine:
    """At most ``slots`` fetches at once; the others wait in line, first come first
    served, each told how many wait ahead of it whenever that changes."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._line: deque[tuple[asyncio.Future[None], Callable[[int | None], None]]] = deque()

    @contextlib.asynccontextmanager
    async def turn(self, waiting: Callable[[int | None], None]) -> AsyncIterator[None]:
        """A slot, for the length of the block (once the ones ahead are done)."""
        if self._free and not self._line:
            self._free -= 1
        else:
            place = (asyncio.get_running_loop().create_future(), waiting)
            self._line.append(place)
            waiting(len(self._line) - 1)
            try:
                await place[0]
            except asyncio.CancelledError:
                if place in self._line:  # cancelled in line (the job, or the server stopping)
                    self._line.remove(place)
                    self._tell_places()
                elif not place[0].cancelled():  # given the slot as it was cancelled
                    self._give_back()
                raise
        waiting(None)
        try:
            yield
        finally:
            self._give_back()

    def _give_back(self) -> None:
        """A slot is free: to the first in line, else to the pool."""
        while self._line:
            turn, _ = self._line.popleft()
            if not turn.done():  # not cancelled meanwhile
                turn.set_result(None)
                self._tell_places()
                return
        self._free += 1

    def _tell_places(self) -> None:
        for ahead, (_, waiting) in enumerate(self._line):
            waiting(ahead)


async def fetch_month(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """The checkpointed step: fetch the archive, or say why it refused.

    A refusal is returned rather than raised, so the retry policy -- which
    retries any raised error -- only ever repeats transient failures. While it
    waits for a fetch slot, the job's progress says how many wait ahead.
    """
    archive = ctx.get_dependency(OpenMeteoArchive)

    def waiting(ahead: int | None) -> None:
        if ahead is None:
            report_progress(ctx, 0, 1, "fetching from the Open-Meteo archive")
        else:
            place = f"{ahead} ahead" if ahead else "next in line"
            report_progress(ctx, 0, 1, f"waiting for a fetch slot ({place})")

    try:
        return await archive.fetch_in_turn(params, waiting)
    except ArchiveError as exc:
        return {"refused": str(exc)}


#: The weather job's result on its card (MCP Apps): the month as a chart.
CHART = resources.files("durable_mcp.functions").joinpath("weather_card.js").read_text()


@durable.tool(
    name="start_gathering",
    job_name=job_name,
    deadline=JOB_DEADLINE,
    arguments=job_arguments,
    card=CHART,
)
async def weather_data(
    ctx: Context,
    latitude: Latitude,
    longitude: Longitude,
    year: Year,
    month: Month,
    timezone: Timezone = "auto",
) -> dict[str, Any]:
    """Start fetching a month of historical daily weather for a place.

    Gets daily max/min temperature (°C) and precipitation (mm) from the
    Open-Meteo archive, plus a summary. Returns at once with {"job_name": ...};
    asking again for the same place and month returns the same job_name
    without fetching twice. Next: probe_status([job_name]) to check without
    waiting, or await_result([job_name]) to get the data.
    """
    last_day = calendar.monthrange(year, month)[1]
    params = {
        "latitude": latitude,
        "longitude": longitude,
        "start_date": f"{year}-{month:02d}-01",
        "end_date": f"{year}-{month:02d}-{last_day:02d}",
        "daily": ",".join(DAILY_VARIABLES),
        "timezone": timezone,
    }
    archive = ctx.get_dependency(OpenMeteoArchive)
    body = await ctx.options(retry_policy=archive.retry_policy).run(fetch_month, params)
    if "refused" in body:
        raise ArchiveError(body["refused"])
    daily = body.get("daily") or {}
    return {
        "latitude": latitude,
        "longitude": longitude,
        "year": year,
        "month": month,
        "timezone": body.get("timezone", timezone),
        "daily_units": body.get("daily_units", {}),
        "daily": daily,
        "summary": summarize(daily),
    }


def summarize(daily: dict[str, list[Any]]) -> dict[str, Any]:
    """Means of the daily extremes, total rain and the wettest day; days without data skipped."""
    highs = [v for v in daily.get("temperature_2m_max") or [] if v is not None]
    lows = [v for v in daily.get("temperature_2m_min") or [] if v is not None]
    rain = [
        (day, mm)
        for day, mm in zip(
            daily.get("time") or [], daily.get("precipitation_sum") or [], strict=False
        )
        if mm is not None
    ]
    wettest = max(rain, key=lambda pair: pair[1], default=None)
    return {
        "days": len(daily.get("time") or []),
        "mean_daily_max": round(statistics.fmean(highs), 1) if highs else None,
        "mean_daily_min": round(statistics.fmean(lows), 1) if lows else None,
        "total_precipitation": round(sum(mm for _, mm in rain), 1) if rain else None,
        "wettest_day": {"date": wettest[0], "precipitation": wettest[1]} if wettest else None,
    }


def _reason(response: requests.Response) -> str:
    try:
        reason = response.json().get("reason")
    except ValueError:
        reason = None
    detail = reason or response.text[:200]
    return f"Open-Meteo archive refused the request (HTTP {response.status_code}): {detail}"
