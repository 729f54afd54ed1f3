"""The weather-history fetch as a durable function: ``weather_data``, its step
``fetch_month`` and the ``OpenMeteoArchive`` they call.

Like every module of ``durable_mcp.functions`` it imports only Resonate and the
standard library when imported (``requests`` when the first fetch runs), so
``durable-mcp serve`` resumes interrupted jobs while the MCP layer is still
importing. The start tool, ``start_gathering``, is in ``durable_mcp.tools.weather``.
"""

from __future__ import annotations

import asyncio
import calendar
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from resonate.context import Context
from resonate.retry import Exponential, RetryPolicy

from durable_mcp.config import DEFAULT_MAX_FETCHES

if TYPE_CHECKING:
    import requests

DAILY_VARIABLES = ("temperature_2m_max", "temperature_2m_min", "precipitation_sum")


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

    async def fetch_in_turn(self, params: dict[str, Any]) -> dict[str, Any]:
        """:meth:`fetch` in one of ``max_fetches`` threads, once one is free.

        A job waiting its turn waits here, in its running step: its task stays
        leased to this process, kept alive by the SDK's heartbeat, so the store
        never gives it to a second execution; and the wait costs a queue entry,
        not a thread.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._fetch_threads, self.fetch, params)

    def close(self) -> None:
        """Drop the fetches still waiting (the server is stopping: they resume at its next start).

        The threads of the fetches in flight end with them; a later fetch gets new ones.
        """
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


async def fetch_month(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """The checkpointed step: fetch the archive, or say why it refused.

    A refusal is returned rather than raised, so the retry policy -- which
    retries any raised error -- only ever repeats transient failures.
    """
    archive = ctx.get_dependency(OpenMeteoArchive)
    try:
        return await archive.fetch_in_turn(params)
    except ArchiveError as exc:
        return {"refused": str(exc)}


async def weather_data(
    ctx: Context, latitude: float, longitude: float, year: int, month: int, timezone: str
) -> dict[str, Any]:
    """Fetch a month of daily weather and add a short summary."""
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
