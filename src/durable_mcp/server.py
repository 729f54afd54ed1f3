"""Builds our FastMCP app: the built-in durable tools, served as any app serves them.

``create_server`` makes a ``FastMCP`` and adds ``durable_mcp.functions.BUILT_IN``
to it with ``DurableTools.add_to``, the public API a user's own server uses;
it adds only what is ours: the timer's status tool, the archive the weather
jobs call, bearer auth, rate limits. It takes its seams as arguments,
so a test builds a server on its own store and fake archive without touching
process state. The engine starts with the app's lifespan and stops with it --
unless it is given an engine already started (`durable-mcp serve`:
``engine.start_engine``, whose jobs resumed while this module was importing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor

from fastmcp import FastMCP
from resonate.timing import Clock, Sleeper, now_ms, sleep

from durable_mcp import __version__
from durable_mcp.config import Settings
from durable_mcp.engine import Engine, build_engine
from durable_mcp.functions import BUILT_IN
from durable_mcp.functions.weather import OpenMeteoArchive
from durable_mcp.jobs.registry import DurableTools
from durable_mcp.jobs.service import Jobs
from durable_mcp.security import PollingRateLimit, auth_of
from durable_mcp.tools import timer
from durable_mcp.tools.argument_errors import ReadableArgumentErrors

INSTRUCTIONS = """\
Long-running tools that never block: a start tool returns a job name at once,
and the job keeps running on the server, even across restarts. Check it with
probe_status (never waits) or collect it with await_result (waits a bounded time).
"""


#: The plain tools beside the durable ones, each ``register(mcp, jobs)``.
TOOLS = (timer.register,)


def create_server(
    settings: Settings,
    *,
    archive: OpenMeteoArchive | None = None,
    durable: DurableTools = BUILT_IN,
    tools: Sequence[Callable[[FastMCP, Jobs], None]] = TOOLS,
    progress_interval_seconds: float = 5.0,
    stopping: asyncio.Event | None = None,
    clock: Clock = now_ms,
    sleeper: Sleeper = sleep,
    writer: Executor | None = None,
    engine: Engine | None = None,
) -> FastMCP:
    """The durable-mcp app for ``settings``; the keywords override the defaults (tests).

    ``durable`` are the durable tools, ``tools`` the plain ones. ``stopping``
    is set when the HTTP server starts shutting down: waits for jobs then
    answer at once (``durable-mcp serve`` sets it). ``clock`` and ``sleeper``
    are the SDK's time seams, for the engine, its store and the job layer's
    waits alike; ``writer``, the embedded store's disk writes. ``engine``, when
    given, is the engine ``engine.start_engine`` started, with its archive
    (``archive`` is then ignored); every durable function must be among those
    it started with.
    """
    if engine is None:
        engine = build_engine(settings, clock=clock, sleeper=sleeper, writer=writer)
    open_meteo = (
        engine.archive
        or archive
        or OpenMeteoArchive(settings.open_meteo_url, max_fetches=settings.max_fetches)
    )
    mcp = FastMCP(
        "durable-mcp",
        version=__version__,
        instructions=INSTRUCTIONS,
        auth=auth_of(settings),
        middleware=[ReadableArgumentErrors(), PollingRateLimit(settings.rate_limit)],
    )
    jobs = durable.add_to(
        mcp,
        settings,
        engine=engine,
        dependencies=[open_meteo],
        # Drop the fetches still queued, or the engine's stop would wait for each to run.
        on_stop=[open_meteo.close],
        progress_interval_seconds=progress_interval_seconds,
        stopping=stopping,
        clock=clock,
        sleeper=sleeper,
    )
    for register in tools:
        register(mcp, jobs)
    return mcp
