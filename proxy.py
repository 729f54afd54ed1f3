"""stdio -> streamable HTTP proxy, so Claude Desktop (stdio only) can use durable-mcp.

Claude Desktop starts this script (``uv --directory ... run proxy.py``) and
talks MCP to it over stdin/stdout; every request is forwarded to the server at
``DURABLE_MCP_URL`` (default ``http://127.0.0.1:5001/mcp``), with
``DURABLE_MCP_TOKEN`` as its bearer token when set. It is FastMCP's own proxy,
with two things added:

* One upstream session for the whole process. ``create_proxy(url)`` opens a
  new session per request (a full MCP handshake, ~40 ms); reusing one makes a
  proxied call cost little more than a direct one.
* A clear error when the server is down: the URL it tried and ``make run``,
  and one log line on stderr rather than tracebacks.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Generator, Iterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import httpx2
import mcp_types
from fastmcp.client.transports import StreamableHttpTransport
from fastmcp.exceptions import ToolError
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.server.providers.proxy import (
    FastMCPProxy,
    StatefulProxyClient,
    default_proxy_progress_handler,
)
from mcp.shared.exceptions import MCPError

URL = os.environ.get("DURABLE_MCP_URL") or "http://127.0.0.1:5001/mcp"


class Bearer(httpx2.Auth):
    """Sends ``DURABLE_MCP_TOKEN`` when set, and notes whether the server refused us.

    The MCP SDK's client turns an HTTP 401 into a generic "Server returned an
    error response"; this flag is how the proxy can say what is wrong.
    """

    def __init__(self, token: str | None) -> None:
        self.token = token
        self.refused = False

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response]:
        if self.token:
            request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        self.refused = response.status_code == 401


auth = Bearer(os.environ.get("DURABLE_MCP_TOKEN") or None)


class UpstreamClient(StatefulProxyClient[StreamableHttpTransport]):
    """FastMCP's stateful proxy client, minus a stray traceback when the server dies.

    The client keeps its session in a background task. When the server goes
    away mid-call the task ends with the connection error, the call fails with
    its own error, and the client later replaces the dead task without reading
    its error: asyncio prints "Task exception was never retrieved" and a
    traceback. The caller has been told already (``ServerDownErrors``).
    """

    async def _session_runner(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(_mark_error_read)
        await super()._session_runner()  # type: ignore[no-untyped-call]


def _mark_error_read(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # read, so asyncio does not report it as lost


# The one upstream client, returned for every request (see ``client_factory``):
# - StatefulProxyClient's ``__aexit__`` leaves the session open, so each proxied
#   call's ``async with client:`` reuses it; once the session has died (server
#   down) the next ``async with`` opens a new one, so a server restart heals.
# - mode="auto" negotiates the current MCP protocol with our FastMCP 4 server;
#   it has no server-side session id that a server restart could leave stale.
# - The plain progress forwarder: the SDK already runs it in the context of the
#   request the progress belongs to. (ProxyClient's default wrapper restores one
#   context shared by all calls, which crosses progress between concurrent calls.)
# - init_timeout bounds the handshake with a server that accepts but never answers.
upstream = UpstreamClient(
    StreamableHttpTransport(URL, auth=auth),
    mode="auto",
    progress_handler=default_proxy_progress_handler,
    init_timeout=3.0,
)

# What, anywhere in an error's cause chain, means "could not talk to the server".
CONNECTION_ERRORS = (
    httpx2.TransportError,
    OSError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
)
# FastMCP's client raises these as bare RuntimeErrors when the session is lost
# (handshake timeout, or the session dying under concurrent calls).
LOST_SESSION_MESSAGES = (
    "Failed to initialize server session",
    "nesting counter should be 0",
    "Client is not connected",
)


def _causes(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def connection_problem(exc: BaseException) -> str | None:
    """Why the server could not be reached, or None if ``exc`` is something else."""
    for cause in _causes(exc):
        if isinstance(cause, RuntimeError) and any(
            text in str(cause) for text in LOST_SESSION_MESSAGES
        ):
            return "connection lost or handshake timed out"
        if isinstance(cause, CONNECTION_ERRORS) or (
            isinstance(cause, MCPError) and cause.error.code == mcp_types.CONNECTION_CLOSED
        ):
            return str(cause) or type(cause).__name__
    return None


class ServerDownErrors(Middleware):
    """Say what to do when the server is down or refuses us, not a transport error."""

    async def on_request(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        try:
            return await call_next(context)
        except Exception as exc:
            problem = connection_problem(exc)
            if auth.refused:
                message = (
                    f"the durable-mcp server at {URL} refused the proxy's "
                    f"{'token' if auth.token else 'request without a token'}: set "
                    "DURABLE_MCP_TOKEN in the proxy's environment to the server's token."
                )
            elif problem is not None:
                message = (
                    f"the durable-mcp server is not reachable at {URL} ({problem}). "
                    "Start it with `make run` in the durable-mcp directory, then retry."
                )
            else:
                raise
            if context.method == "tools/call":
                raise ToolError(message) from exc  # a tool error the model reads
            raise MCPError(code=mcp_types.INTERNAL_ERROR, message=message) from exc


class OneLineWhenServerDown(logging.Filter):
    """FastMCP logs a failed proxied call at ERROR with a traceback. When the cause
    is that the server is down or went away, one warning line says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        problem = connection_problem(error) if error is not None else None
        if problem is not None:
            record.msg = f"{record.getMessage()}: server not reachable at {URL} ({problem})"
            record.args = ()
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


# The logger of FastMCP's server core, which logs each failed tool call.
logging.getLogger("fastmcp.server.server").addFilter(OneLineWhenServerDown())


@asynccontextmanager
async def close_upstream(_server: Any) -> AsyncIterator[None]:
    try:
        yield
    finally:
        with suppress(Exception):
            await upstream.close()  # type: ignore[no-untyped-call]


proxy = FastMCPProxy(
    client_factory=lambda: upstream,
    name="durable-mcp-proxy",
    # Fail tools/list while the server is down, rather than list no tools.
    provider_error_strategy="raise",
    middleware=[ServerDownErrors()],
    lifespan=close_upstream,
)

if __name__ == "__main__":
    proxy.run(show_banner=False)
