"""Serves a set of durable tools on any FastMCP app: what ``DurableTools.add_to`` does.

For each declared tool it registers the durable function with the engine and
adds its start tool; once per app it adds ``probe_status``, ``await_result``,
``cancel_job`` and ``list_jobs``, the MCP tasks extension (when
``DURABLE_MCP_TASKS`` is on), and a provider whose lifespan starts and stops
the engine with the app. The engine is the one ``settings`` select, as for
`durable-mcp serve`; our own server (``server.create_server``) is built with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import typing
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastmcp import FastMCP
from fastmcp.apps import AppConfig
from fastmcp.exceptions import ToolError
from fastmcp.server.providers import Provider
from mcp_types import SubscriptionsListenRequestParams
from pydantic import Field
from resonate.timing import Clock, Sleeper, now_ms, sleep

from durable_mcp.card import serve_card
from durable_mcp.config import Settings, StartError, load_settings
from durable_mcp.engine import Engine, build_engine
from durable_mcp.jobs.registry import DEFAULT_DEADLINE, DurableTool, DurableTools, call_with
from durable_mcp.jobs.service import InvalidArgument, Jobs, report_started
from durable_mcp.jobs.status import JobStatus
from durable_mcp.logs import quiet_the_sdk
from durable_mcp.pushes import TaskPushes
from durable_mcp.store import StoreError
from durable_mcp.tasks import DurableTasks
from durable_mcp.tools import status
from durable_mcp.web import serve_window

logger = logging.getLogger("durable_mcp")

#: The apps durable tools were added to: one engine (one job service) per app.
_attached: weakref.WeakSet[FastMCP] = weakref.WeakSet()

#: The argument every start tool gains.
RETRY_PARAMETER = inspect.Parameter(
    "retry",
    inspect.Parameter.KEYWORD_ONLY,
    default=False,
    annotation=Annotated[
        bool,
        Field(
            description="If the job with this name failed or was cancelled, start it again "
            "(with these arguments). A running or completed job is returned as it is."
        ),
    ],
)


def attach(
    mcp: FastMCP,
    tools: DurableTools,
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    dependencies: Sequence[object] = (),
    on_stop: Sequence[Callable[[], None]] = (),
    progress_interval_seconds: float = 5.0,
    stopping: asyncio.Event | None = None,
    clock: Clock = now_ms,
    sleeper: Sleeper = sleep,
    writer: Executor | None = None,
) -> Jobs:
    """Serve ``tools`` on ``mcp``; the job service they run on.

    ``settings`` default to the DURABLE_MCP_* environment. ``engine``, when
    given, is one ``engine.start_engine`` started (its durable functions, and
    dependencies, registered already: a tool whose function is not among them
    is refused); else one is built here and the app's lifespan starts it.
    ``dependencies`` are handed to the durable functions (``ctx.get_dependency``);
    ``on_stop`` runs as the app stops, before the engine does. ``stopping`` is
    set when the server starts shutting down: waits for jobs answer at once.
    ``clock``, ``sleeper`` and ``writer`` are the engine's seams (tests).
    A bad setting (``ConfigError``), or a data dir in use or damaged, raises
    :class:`StartError`: one line, not a traceback, if the app lets it end the process.
    """
    if mcp in _attached:
        # A second engine would find the data dir taken (by this very process).
        raise RuntimeError(
            "durable tools were already added to this app: declare them all on one "
            "DurableTools and add that once"
        )
    try:
        if settings is None:
            settings = load_settings()
        if engine is None:
            engine = build_engine(settings, clock=clock, sleeper=sleeper, writer=writer)
    except StoreError as exc:
        raise StartError(str(exc)) from exc
    quiet_the_sdk()
    jobs = Jobs(
        engine.resonate,
        await_max_seconds=settings.await_max_seconds,
        progress_interval_seconds=progress_interval_seconds,
        deadlines=settings.job_deadlines,
        running_jobs=engine.running_jobs,
        forget=engine.forget,
        lister=engine.lister,
        max_running_jobs=settings.max_running_jobs,
        max_running_jobs_per_owner=settings.running_jobs_per_owner,
        stopping=stopping,
        clock=clock,
        sleeper=sleeper,
        registered=engine.functions,
        notes=engine.notes,
        questions=engine.questions,
    )
    engine.job_changes.listen(jobs.log_end)  # one log line as each job ends
    if not engine.started:
        for dependency in dependencies:
            engine.resonate.with_dependency(dependency)
    _attached.add(mcp)  # from its first change on: a second try would add all again
    mcp.add_provider(EngineLifespan(engine, settings.engine, on_stop))
    if settings.tasks:
        tasks = DurableTasks(jobs, engine.retention, settings.rate_limit)
        mcp.add_extension(tasks)
        pushes = TaskPushes(tasks, None if engine.tells_changes else PUSH_POLL_SECONDS)
        engine.job_changes.listen(pushes.changed)
        serve_pushes(mcp, pushes)
    status.register(mcp, jobs)
    start_tools: set[str] = set()  # their names, for /metrics
    serve_window(mcp, jobs, engine, settings, start_tools)  # /jobs, /metrics, /healthz, /readyz
    card = serve_card(mcp)  # the job card, for hosts that render MCP Apps

    def add(tool: DurableTool) -> None:
        if engine.started and tool.job not in engine.functions:
            # Its jobs could not have resumed: list it in durable_mcp.functions.
            raise RuntimeError(f"durable function registered after the engine started: {tool.kind}")
        add_start_tool(mcp, jobs, tool, card.add(tool.kind, tool.name, tool.card))
        start_tools.add(tool.name)

    tools.listen(add)
    return jobs


#: Where the engine tells of no change (Postgres), how often a push stream looks.
PUSH_POLL_SECONDS = 1.0


def serve_pushes(mcp: FastMCP, pushes: TaskPushes) -> None:
    """Serve ``subscriptions/listen`` (task pushes) on ``mcp``, unless it serves it already."""
    low_level = mcp._mcp_server  # FastMCP registers no listen handler of its own
    if low_level.get_request_handler("subscriptions/listen") is None:
        low_level.add_request_handler(
            "subscriptions/listen", SubscriptionsListenRequestParams, pushes.listen
        )


def add_start_tool(
    mcp: FastMCP, jobs: Jobs, tool: DurableTool, app: AppConfig | None = None
) -> None:
    """Register ``tool``'s durable function and add its start tool to ``mcp``.

    The start tool takes the function's arguments after the ``Context`` (the
    schema the model reads comes from their type hints) plus ``retry``, and
    returns ``{"job_name", "status"}`` at once, or ``tool.result(status)``;
    a failed or cancelled job adds a ``hint``. ``app`` names its job card (MCP Apps).
    """
    fixed = tool.deadline if not callable(tool.deadline) else DEFAULT_DEADLINE
    jobs.register(tool.job, deadline=fixed, details=tool.details)
    hints = typing.get_type_hints(tool.fn, include_extras=True)
    signature = inspect.signature(tool.fn)
    parameters = [
        p.replace(annotation=hints.get(p.name, Any))
        for p in list(signature.parameters.values())[1:]  # not the Context
    ]
    arguments_of = signature.replace(parameters=parameters)

    async def start_tool(*args: Any, retry: bool = False, **kwargs: Any) -> dict[str, Any]:
        bound = arguments_of.bind(*args, **kwargs)
        bound.apply_defaults()
        try:
            given = dict(bound.arguments)
            arguments = dict(call_with(tool.arguments, given)) if tool.arguments else given
            job_name = tool.name_job(arguments)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from exc
        except TypeError as exc:  # the declaration's bug, not the caller's
            raise ToolError(str(exc)) from exc
        job = await jobs.start(
            job_name,
            tool.job,
            *(arguments[p.name] for p in parameters),
            deadline=tool.deadline_for(arguments),
            retry=retry,
        )
        report_started(job)
        out = tool.result(job) if tool.result else {k: job[k] for k in ("job_name", "status")}
        if job["status"] in (JobStatus.failed, JobStatus.cancelled):
            out["hint"] = f"this job is {job['status']}; pass retry=true to run it again"
        return out

    # FastMCP reads the schema off the signature: the function's own, resolved
    # (its module may use string annotations), plus retry, returning a dict.
    start_tool.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*parameters, RETRY_PARAMETER], return_annotation=dict[str, Any]
    )
    start_tool.__annotations__ = {p.name: p.annotation for p in parameters} | {
        "retry": RETRY_PARAMETER.annotation,
        "return": dict[str, Any],
    }
    start_tool.__name__ = tool.name
    start_tool.__doc__ = tool.description or tool.fn.__doc__
    mcp.tool(start_tool, name=tool.name, app=app)


class EngineLifespan(Provider):
    """Starts the engine with the app (unless it runs already) and stops it with the app.

    A provider of no components: FastMCP enters every provider's lifespan with
    the app's own, which is what lets any app, built by anyone, run the engine.
    """

    def __init__(self, engine: Engine, label: str, on_stop: Sequence[Callable[[], None]]) -> None:
        super().__init__()
        self.engine = engine
        self.label = label
        self.on_stop = tuple(on_stop)

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        if not self.engine.started:
            self.engine.resonate.start()
            logger.info("durable-mcp engine started (%s)", self.label)
        webhook = self.engine.webhook
        delivering = (
            asyncio.create_task(webhook.run(), name="durable-mcp webhook")
            if webhook is not None
            else None
        )
        try:
            yield
        finally:
            if delivering is not None:  # what it has not delivered goes at the next start
                delivering.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await delivering
            for stop in self.on_stop:
                stop()  # e.g. drop queued fetches, or the stop below would wait for them
            await self.engine.resonate.stop()
