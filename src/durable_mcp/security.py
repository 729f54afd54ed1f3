"""Who may call the server, and how often: the bearer token and the polling limits.

All are FastMCP's own seams. ``BearerToken`` is a ``TokenVerifier``: with it
as the server's ``auth``, FastMCP's HTTP layer answers a request without the
right ``Authorization: Bearer`` header with 401 before any MCP handling.
``PollingRateLimit`` is FastMCP's token-bucket ``RateLimitingMiddleware``,
narrowed to the tools an agent polls with. ``TaskPollingLimit`` keeps one of
FastMCP's token buckets per client and task, for ``tasks/get`` (extension
methods do not pass through the middleware).
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from collections.abc import Collection
from typing import Any

import mcp.types as mt
from fastmcp.exceptions import ToolError
from fastmcp.server.auth import AccessToken, TokenVerifier
from fastmcp.server.dependencies import get_http_request
from fastmcp.server.middleware import CallNext, MiddlewareContext
from fastmcp.server.middleware.rate_limiting import (
    RateLimitError,
    RateLimitingMiddleware,
    TokenBucketRateLimiter,
)
from fastmcp.tools import ToolResult

#: The tools an agent calls again and again while it waits for a job.
POLLING_TOOLS = frozenset({"probe_status", "await_result", "get_timer_status"})


class BearerToken(TokenVerifier):
    """Accept exactly one token: ``DURABLE_MCP_TOKEN``, compared in constant time."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._token = token.encode()

    async def verify_token(self, token: str) -> AccessToken | None:
        if not hmac.compare_digest(token.encode(), self._token):
            return None
        return AccessToken(token=token, client_id="durable-mcp", scopes=[])


class PollingRateLimit(RateLimitingMiddleware):
    """At most ``per_second`` polling calls per client (bursts of twice that).

    A client is its MCP session when it has one, else its TCP connection: with
    the current MCP protocol a request carries no session, and an HTTP client
    sends its calls over one kept-alive connection. Other tools and requests
    are not limited; a refused call is a tool error that says when to retry.
    """

    def __init__(self, per_second: float, tools: Collection[str] = POLLING_TOOLS) -> None:
        super().__init__(
            max_requests_per_second=per_second,
            burst_capacity=max(1, int(per_second * 2)),
            get_client_id=client_of,
        )
        # FastMCP keeps a bucket per client and drops it once idle long enough to be full.
        self.tools = frozenset(tools)

    async def on_request(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        return await call_next(context)  # only the polling tools are limited (below)

    async def on_call_tool(
        self,
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        if context.message.name not in self.tools:
            return await call_next(context)
        try:
            result: ToolResult = await super().on_request(context, call_next)
        except RateLimitError as exc:
            raise ToolError(
                f"too many polling calls: at most {self.max_requests_per_second:g} per second "
                f"per client; retry after 1 s, or call await_result, which waits for you"
            ) from exc
        return result


def client_of(context: MiddlewareContext[Any] | None) -> str:
    """The caller's MCP session id, else its address and port; ``local`` in process."""
    try:
        request = get_http_request()
    except RuntimeError:
        return "local"  # an in-memory client, as in the tests
    session = request.headers.get("mcp-session-id")
    if session:
        return f"session {session}"
    peer = request.client
    return f"{peer.host}:{peer.port}" if peer is not None else "unknown"


class TaskPollingLimit:
    """At most ``per_second`` ``tasks/get`` calls per client and task (bursts of twice that).

    Per task, not per client: a client that polls 50 tasks, each at its
    ``pollIntervalMs``, is never refused; one that polls one task in a tight
    loop is. The buckets of the ``most`` clients and tasks seen last are kept.
    """

    def __init__(self, per_second: float, most: int = 10_000) -> None:
        self.per_second = per_second
        self.most = most
        self._buckets: OrderedDict[tuple[str, str], TokenBucketRateLimiter] = OrderedDict()

    async def allows(self, task_id: str) -> bool:
        key = (client_of(None), task_id)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucketRateLimiter(max(1, int(self.per_second * 2)), self.per_second)
            self._buckets[key] = bucket
            if len(self._buckets) > self.most:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(key)
        return await bucket.consume()
