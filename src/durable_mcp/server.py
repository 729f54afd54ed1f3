"""Builds the FastMCP app: the tools, on one Resonate engine the lifespan runs.

``create_server`` is pure wiring and takes its seams as arguments, so a test
builds a server on its own store and fake archive without touching process
state. The engine starts when the app's lifespan starts (the HTTP server, or
an in-memory ``fastmcp.Client``) and stops with it -- unless it is given an
engine already started (`durable-mcp serve`: ``engine.start_engine``, whose
jobs resumed while this module was importing); the lifespan then only stops it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

from fastmcp import FastMCP
from resonate.timing import Clock, Sleeper, now_ms, sleep

from durable_mcp.config import Settings
from durable_mcp.engine import Engine, build_engine
from durable_mcp.jobs import Jobs
from durable_mcp.security import BearerToken, PollingRateLimit
from durable_mcp.tasks import DurableTasks
from durable_mcp.tools import status, timer, weather
from durable_mcp.tools.arguments import ReadableArgumentErrors

logger = logging.getLogger("durable_mcp")

INSTRUCTIONS = """\
Long-running tools that never block: a start tool returns a job name at once,
and the job keeps running on the server, even across restarts. Check it with
probe_status (never waits) or collect it with await_result (waits a bounded time).
"""


#: Every tool module's ``register(mcp, jobs)``: add yours here.
TOOLS = (timer.register, weather.register, status.register)


def create_server(
    settings: Settings,
    *,
    archive: weather.OpenMeteoArchive | None = None,
    tools: Sequence[Callable[[FastMCP, Jobs], None]] = TOOLS,
    progress_interval_seconds: float = 5.0,
    stopping: asyncio.Event | None = None,
    clock: Clock = now_ms,
    sleeper: Sleeper = sleep,
    writer: Executor | None = None,
    engine: Engine | None = None,
) -> FastMCP:
    """The durable-mcp app for ``settings``; the keywords override the defaults (tests).

    ``stopping`` is set when the HTTP server starts shutting down: waits for
    jobs then answer at once (``durable-mcp serve`` sets it). ``clock`` and
    ``sleeper`` are the SDK's time seams, for the engine, its store and the job
    layer's waits alike; ``writer``, the embedded store's disk writes.
    ``engine``, when given, is the engine ``engine.start_engine`` started,
    with its archive (``archive`` is then ignored); every durable function
    ``tools`` register must be among those it started with.
    """
    if engine is None:
        engine = build_engine(settings, clock=clock, sleeper=sleeper, writer=writer)
    state = engine.state
    jobs = Jobs(
        engine.resonate,
        await_max_seconds=settings.await_max_seconds,
        progress_interval_seconds=progress_interval_seconds,
        deadlines=settings.job_deadlines,
        running_jobs=(lambda: state.running_jobs) if state is not None else None,
        forget=engine.forget,
        lister=engine.lister,
        max_running_jobs=settings.max_running_jobs,
        stopping=stopping,
        clock=clock,
        sleeper=sleeper,
        registered=engine.functions,
    )
    if state is not None:
        state.on_job_settled = jobs.settled  # one log line as each job ends
        for promise in engine.settled_early:  # ended before the job layer was here
            jobs.settled(promise)
        engine.settled_early.clear()

    open_meteo = (
        engine.archive
        or archive
        or weather.OpenMeteoArchive(settings.open_meteo_url, max_fetches=settings.max_fetches)
    )

    @asynccontextmanager
    async def lifespan(server: FastMCP) -> AsyncIterator[dict[str, Any]]:
        if not engine.started:
            engine.resonate.start()
            logger.info("durable-mcp engine started (%s)", settings.engine)
        try:
            yield {}
        finally:
            open_meteo.close()  # or the stop below would wait for every queued fetch to run
            await engine.resonate.stop()

    mcp = FastMCP(
        "durable-mcp",
        version=version("mcp-durable-jobs"),
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        auth=BearerToken(settings.token) if settings.token else None,
        middleware=[ReadableArgumentErrors(), PollingRateLimit(settings.rate_limit)],
    )
    if settings.tasks:
        # The embedded store and Postgres remove finished jobs after the retention.
        kept = settings.retention if engine.store is not None or settings.pg_dsn else None
        mcp.add_extension(DurableTasks(jobs, kept))
    if not engine.started:
        engine.resonate.with_dependency(open_meteo)
    for register in tools:
        register(mcp, jobs)
    late = set(jobs.kinds) - {fn.__name__ for fn in engine.functions}
    if engine.started and late:
        # Its jobs could not have resumed: list it in durable_mcp.functions.FUNCTIONS.
        raise RuntimeError(f"durable functions registered after the engine started: {late}")
    return mcp
