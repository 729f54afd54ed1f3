"""``/metrics``: the server's jobs and store in Prometheus' text format, made with
``prometheus_client`` on a registry of this app's own.

- ``durable_mcp_jobs_started_total{kind}`` and ``durable_mcp_jobs_ended_total{kind,status}``
  (status: completed, failed, cancelled): the jobs this process started and saw
  end (the in-process stores tell each end; on Postgres, ends are not counted).
- ``durable_mcp_jobs{status,kind}``: jobs running and waiting for input now
  (``running``, ``input_required``), read from the store at each scrape.
- ``durable_mcp_start_seconds{tool}`` and ``durable_mcp_await_seconds``: how long a
  start tool and ``await_result`` took to answer (a FastMCP middleware).
- ``durable_mcp_store_commit_seconds`` and ``durable_mcp_store_commit_changes``: the
  embedded store's commits (each one write and fsync) and how many changes each
  carried; ``durable_mcp_store_bytes``: its files' size on disk.
- ``durable_mcp_postgres_up``: 1 when the database answered this scrape, else 0.

Served behind the token as the pages are (a scraper sends ``Authorization:
Bearer``); ``DURABLE_MCP_WEB=off`` turns it off. Signed in with JWTs, a scraper
with the admin scope gets all of it; anyone else, only ``durable_mcp_jobs`` of
their own jobs (``owners.py``): the rest counts everyone's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import mcp.types as mt
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools import ToolResult
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from durable_mcp.engine import Engine
from durable_mcp.jobs.service import Jobs
from durable_mcp.sdk_compat import DurablePromise
from durable_mcp.store.job_changes import is_job_end
from durable_mcp.store.state import JOB_STATUS, kind_of
from durable_mcp.web.auth import PageAuth
from durable_mcp.web.health import CHECK_SECONDS, Check, problem_of

#: Latency buckets (seconds): from a commit's milliseconds to a long await.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Changes per commit.
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class JobMetrics(Collector):
    """This app's metrics; a collector of the gauges read at each scrape."""

    def __init__(
        self, jobs: Jobs, engine: Engine, auth: PageAuth, database: Check | None = None
    ) -> None:
        """``database`` is ``/readyz``'s Postgres check, where there is one."""
        self.jobs = jobs
        self.engine = engine
        self.auth = auth
        self.database = database
        self.registry = CollectorRegistry()
        r = self.registry
        self.started = Counter(
            "durable_mcp_jobs_started", "Jobs this process started, by kind", ["kind"], registry=r
        )
        self.ended = Counter(
            "durable_mcp_jobs_ended",
            "Jobs that ended here, by kind and status (completed, failed, cancelled)",
            ["kind", "status"],
            registry=r,
        )
        self.start_seconds = Histogram(
            "durable_mcp_start_seconds",
            "How long a start tool took to answer, by tool",
            ["tool"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.await_seconds = Histogram(
            "durable_mcp_await_seconds",
            "How long await_result took to answer",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "durable_mcp_store_commit_seconds",
            "The embedded store's commits: one write and fsync each",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_changes = Histogram(
            "durable_mcp_store_commit_changes",
            "Changes each commit of the embedded store carried",
            buckets=GROUP_BUCKETS,
            registry=r,
        )
        self._gauges: list[GaugeMetricFamily] = []
        r.register(self)
        jobs.on_started.append(lambda job_id, kind: self.started.labels(kind).inc())
        engine.job_changes.listen(self._changed)
        if engine.store is not None:
            engine.store.on_commit = self._committed

    def _changed(self, promise: DurablePromise) -> None:
        if is_job_end(promise):
            self.ended.labels(kind_of(promise) or "", JOB_STATUS[promise.state]).inc()

    def _committed(self, seconds: float, changes: int) -> None:
        self.commit_seconds.observe(seconds)
        self.commit_changes.observe(changes)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self._gauges  # read by :meth:`endpoint` just before

    async def _read_gauges(self, owner: str | None) -> list[GaugeMetricFamily]:
        """The gauges of ``owner``'s jobs (a key; None: everyone's, and the store's)."""
        jobs = GaugeMetricFamily(
            "durable_mcp_jobs",
            "Jobs running or waiting for input now, by status and kind",
            labels=["status", "kind"],
        )
        gauges = []
        try:  # a database out of reach: no job gauges, and postgres_up says why
            async with asyncio.timeout(CHECK_SECONDS):
                counts = await self.engine.job_counts(owner)
        except Exception:
            counts = None
        if counts is not None:
            for status, by_kind in counts.items():
                for kind, count in sorted(by_kind.items()):
                    jobs.add_metric([status, kind], count)
            gauges.append(jobs)
        if owner is not None:
            return gauges
        if self.engine.store is not None:
            size = GaugeMetricFamily(
                "durable_mcp_store_bytes", "The embedded store's files' size on disk"
            )
            size.add_metric([], await asyncio.to_thread(self.engine.store.size_on_disk))
            gauges.append(size)
        if self.database is not None:
            up = GaugeMetricFamily(
                "durable_mcp_postgres_up", "1 when the database answered this scrape, else 0"
            )
            up.add_metric([], 1 if await problem_of(self.database) is None else 0)
            gauges.append(up)
        return gauges

    async def endpoint(self, request: Request) -> Response:
        owner = await self.auth.owner_of(request)
        if owner is None:
            return Response("log in, or send Authorization: Bearer <token>\n", status_code=401)
        if owner.subject is not None and not owner.admin:  # one person: their jobs only
            gauges = await self._read_gauges(owner.key)
            return Response(generate_latest(OwnGauges(gauges)), media_type=CONTENT_TYPE_LATEST)
        self._gauges = await self._read_gauges(None)
        try:
            body = generate_latest(self.registry)
        finally:
            self._gauges = []
        return Response(body, media_type=CONTENT_TYPE_LATEST)


class OwnGauges(Collector):
    """A registry's worth of gauges already read (one person's, at one scrape)."""

    def __init__(self, gauges: list[GaugeMetricFamily]) -> None:
        self.gauges = gauges

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self.gauges


class CallLatency(Middleware):
    """Times the start tools and ``await_result`` (FastMCP's middleware seam)."""

    def __init__(self, metrics: JobMetrics, start_tools: set[str]) -> None:
        self.metrics = metrics
        self.start_tools = start_tools  # grows as tools are declared

    async def on_call_tool(
        self,
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> Any:
        name = context.message.name
        if name != "await_result" and name not in self.start_tools:
            return await call_next(context)
        began = time.perf_counter()
        try:
            return await call_next(context)
        finally:
            seconds = time.perf_counter() - began
            if name == "await_result":
                self.metrics.await_seconds.observe(seconds)
            else:
                self.metrics.start_seconds.labels(name).observe(seconds)
