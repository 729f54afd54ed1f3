"""The HTTP side of `durable-mcp serve`: uvicorn serving the FastMCP app.

Its own module so that ``durable_mcp.cli`` imports no web framework: the
command opens the store and resumes jobs first, and imports this (uvicorn,
Starlette, FastMCP) only then.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from types import FrameType
from typing import Any

import uvicorn
from fastmcp import FastMCP
from fastmcp.server.http import StarletteWithLifespan
from mcp.server.transport_security import RequestBodyLimitMiddleware
from sse_starlette.sse import AppStatus
from starlette.middleware import Middleware

from durable_mcp.config import Settings

logger = logging.getLogger("durable_mcp")

#: The largest request body accepted (413 beyond); a tool call needs a few KB.
MAX_BODY_BYTES = 1024 * 1024

#: A session (of a client on the 2025-11-25 protocol) with no request for this
#: long is closed; its client opens a new one when it comes back (the MCP SDK's
#: default is 30 minutes, ~40 KB a session). An open stream is not idle.
SESSION_IDLE_SECONDS = 10 * 60


def http_app_of(app: FastMCP, settings: Settings) -> StarletteWithLifespan:
    """``app`` as the ASGI app `durable-mcp serve` serves: the Host/Origin guard,
    the body limit, and sessions closed once idle."""
    return app.http_app(
        # FastMCP's Host/Origin guard (DNS-rebinding protection): a browser page
        # from a foreign origin gets 403. On localhost, localhost origins pass.
        host_origin_protection="auto",
        allowed_origins=list(settings.allowed_origins),
        middleware=[Middleware(RequestBodyLimitMiddleware, max_body_size=MAX_BODY_BYTES)],
        session_idle_timeout=SESSION_IDLE_SECONDS,
    )


class Sessions:
    """The MCP SDK's session manager behind a FastMCP app, which FastMCP makes
    anew each time the app starts: the cap FastMCP does not set, and a clean
    end of the sessions' open streams when the server stops.

    FastMCP keeps it on the ``/mcp`` route's endpoint (``StreamableHTTPASGIApp``,
    behind the auth middleware when there is a token).
    """

    def __init__(self, http_app: StarletteWithLifespan, most: int) -> None:
        self.most = most
        self._holder: Any = None
        for route in http_app.routes:
            endpoint = getattr(route, "app", None)
            while endpoint is not None and not hasattr(endpoint, "session_manager"):
                endpoint = getattr(endpoint, "app", None)
            if endpoint is not None:
                self._holder = endpoint

    def cap(self) -> None:
        """Once the app has started: at most ``most`` sessions open at once
        (``DURABLE_MCP_MAX_SESSIONS``; FastMCP leaves the MCP SDK's 10,000)."""
        if self._holder is not None and self._holder.session_manager is not None:
            self._holder.session_manager.max_sessions = self.most

    def close_streams(self) -> None:
        """End each session's standalone GET stream, as a complete response.

        Otherwise uvicorn, which waits for every open connection before the
        app stops, cuts those streams after its grace period and logs an
        error for each; a client opens its stream again at its next session.
        """
        manager = None if self._holder is None else self._holder.session_manager
        if manager is None:
            return
        for transport in list(manager._server_instances.values()):
            transport.close_standalone_sse_stream()

    async def keep_closing_streams(self, every: float = 0.05) -> None:
        """:meth:`close_streams` now and every ``every`` seconds, until cancelled."""
        while True:
            self.close_streams()
            await asyncio.sleep(every)


class StoppingServer(uvicorn.Server):
    """uvicorn's server, which sets ``stopping`` as soon as it is asked to stop.

    uvicorn gives requests still open ``timeout_graceful_shutdown`` to finish,
    then cancels them (an error response, a traceback in the log); the app's
    lifespan ends only after that. A waiting await_result told at once answers
    with its jobs' current statuses instead, and the sessions' open streams
    end (:meth:`Sessions.close_streams`).
    """

    def __init__(self, config: uvicorn.Config, stopping: asyncio.Event, sessions: Sessions) -> None:
        super().__init__(config)
        self.stopping = stopping
        self.sessions = sessions

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.sessions.cap()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.stopping.set()
        # Again and again until uvicorn is done waiting: a stream whose request
        # came just before the stop registers itself a moment after its headers.
        closing = asyncio.create_task(self.sessions.keep_closing_streams())
        try:
            await super().shutdown(sockets)
        finally:
            closing.cancel()


async def serve(
    app: FastMCP,
    settings: Settings,
    sock: socket.socket,
    stopping: asyncio.Event | None = None,
    stop_asked: list[int] | None = None,
) -> None:
    """Serve ``app`` on ``sock`` until SIGINT or SIGTERM, then stop cleanly (exit 0).

    ``stop_asked`` is where the caller's own signal handler has recorded the
    stop signals it caught: one that came after the caller last looked stops
    the server as soon as it has started. What FastMCP's ``run_http_async``
    does, but on :class:`StoppingServer`.
    """
    http_app = http_app_of(app, settings)
    # log_config=None: uvicorn adds no handlers, its records go to ours (``logs.py``).
    config = uvicorn.Config(
        http_app,
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=2,
        log_config=None,
        log_level="info",
    )
    server = StoppingServer(
        config, stopping or asyncio.Event(), Sessions(http_app, settings.max_sessions)
    )
    # sse-starlette (the MCP SDK's SSE responses) patches uvicorn to cancel every
    # open stream at the stop signal, mid-response (uvicorn logs an error for
    # each): the server ends them itself instead, as complete responses.
    AppStatus.disable_automatic_graceful_drain()  # type: ignore[no-untyped-call]
    asked = [] if stop_asked is None else stop_asked

    def ask_to_stop(signum: int, frame: FrameType | None) -> None:
        asked.append(signum)
        server.should_exit = True

    # Until uvicorn installs its own handlers, a stop signal sets should_exit: a
    # server not started yet starts and stops at once. When stopped, uvicorn
    # re-raises the signal to this handler: the default ones would kill the
    # process that had just stopped cleanly (SIGTERM: exit -15) or raise
    # KeyboardInterrupt in it (SIGINT: a traceback).
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, ask_to_stop)
    # Installed first, looked at second: a signal is either recorded here or
    # caught by ask_to_stop, never lost in between.
    if asked:
        server.should_exit = True
    logger.info("durable-mcp listening on http://%s:%d/mcp", settings.host, settings.port)
    if settings.web:
        logger.info("jobs page: http://%s:%d/jobs", settings.host, settings.port)
    await server.serve(sockets=[sock])
