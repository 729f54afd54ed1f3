"""Who may call the server, and how often: the bearer token, sign-in with JWTs,
and the polling limits.

All are FastMCP's own seams. ``BearerToken`` is a ``TokenVerifier``: with it
as the server's ``auth``, FastMCP's HTTP layer answers a request without the
right ``Authorization: Bearer`` header with 401 before any MCP handling.
``sign_in`` is FastMCP's ``RemoteAuthProvider`` on its ``JWTVerifier``
(:class:`SignedIn`): it serves ``/.well-known/oauth-protected-resource``, so
that a client signs in at the team's identity provider by itself, and answers
a bad or expired JWT with 401 and ``WWW-Authenticate``. Each token it accepts
carries its :class:`~durable_mcp.owners.Owner`, whose jobs are its own.
``PollingRateLimit`` is FastMCP's token-bucket ``RateLimitingMiddleware``,
narrowed to the tools an agent polls with. ``TaskPollingLimit`` keeps one of
FastMCP's token buckets per client and task, for ``tasks/get`` (extension
methods do not pass through the middleware).
"""

from __future__ import annotations

import hmac
import logging
from collections import OrderedDict
from collections.abc import Collection
from typing import Any

import mcp.types as mt
from fastmcp.exceptions import ToolError
from fastmcp.server.auth import AccessToken, RemoteAuthProvider, TokenVerifier
from fastmcp.server.auth.providers.jwt import JWTVerifier
from fastmcp.server.dependencies import get_http_request
from fastmcp.server.middleware import CallNext, MiddlewareContext
from fastmcp.server.middleware.rate_limiting import (
    RateLimitError,
    RateLimitingMiddleware,
    TokenBucketRateLimiter,
)
from fastmcp.tools import ToolResult
from mcp.server.auth.routes import cors_middleware
from mcp.shared.auth import ProtectedResourceMetadata
from pydantic import AnyHttpUrl
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from durable_mcp import owners
from durable_mcp.config import Settings
from durable_mcp.owners import Owner

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


class OwnerToken(AccessToken):
    """An access token of a signed-in caller, with the owner it acts as."""

    owner: Owner


class SignedIn(JWTVerifier):
    """FastMCP's JWT check (signature, expiry, issuer, audience, scopes), plus a subject.

    A token without ``sub`` names no owner, and is refused like a bad one. A
    refused token is not logged: FastMCP's verifier says why at WARNING (an
    issuer or an audience that does not match), which anyone could fill the
    log with; its logger here stays quiet below ERROR.
    """

    def __init__(self, *, admin_scope: str | None = None, **verifier: Any) -> None:
        super().__init__(**verifier)
        self.admin_scope = admin_scope
        self.logger.setLevel(logging.ERROR)

    async def verify_token(self, token: str) -> AccessToken | None:
        access = await super().verify_token(token)
        subject = access.claims.get("sub") if access is not None else None
        if access is None or not isinstance(subject, str) or not subject.strip():
            return None
        admin = self.admin_scope is not None and self.admin_scope in access.scopes
        return OwnerToken(**dict(access), owner=Owner(subject, admin=admin))


def auth_of(settings: Settings) -> TokenVerifier | RemoteAuthProvider | None:
    """What checks each request: the single token, sign-in with JWTs, or nothing."""
    if settings.token:
        return BearerToken(settings.token)
    if settings.signs_in:
        return sign_in(settings)
    return None


#: Where a client looks for what signs it in (RFC 9728).
WELL_KNOWN = "/.well-known/oauth-protected-resource"


class SignInMetadata(RemoteAuthProvider):
    """FastMCP's resource server, naming the authorization server exactly as given.

    FastMCP keeps it as a pydantic URL, which adds a ``/`` to a bare origin
    (``https://accounts.google.com/``); a client compares it with the issuer
    the authorization server publishes as a plain string (RFC 8414 3.3), and
    the MCP SDK's client then refuses to sign in. So the metadata route is
    FastMCP's, with the configured string in ``authorization_servers``.
    """

    def __init__(self, verifier: TokenVerifier, authorization_server: str, base_url: str) -> None:
        super().__init__(
            verifier,
            authorization_servers=[AnyHttpUrl(authorization_server)],
            base_url=base_url,
            resource_name="durable-mcp",
        )
        self.authorization_server = authorization_server

    def get_routes(self, mcp_path: str | None = None) -> list[Route]:
        routes = super().get_routes(mcp_path)
        if self._resource_url is None:
            return routes
        metadata = ProtectedResourceMetadata(
            resource=self._resource_url,
            authorization_servers=self.authorization_servers,
            scopes_supported=self.scopes_supported,
            resource_name=self.resource_name,
        ).model_dump(mode="json", by_alias=True, exclude_none=True)
        metadata["authorization_servers"] = [self.authorization_server]

        async def document(request: Request) -> Response:
            return JSONResponse(metadata, headers={"Cache-Control": "public, max-age=3600"})

        # At RFC 9728's path for /mcp (/.well-known/oauth-protected-resource/mcp), and at
        # the root one too, where some clients look first.
        paths = dict.fromkeys([*(route.path for route in routes), WELL_KNOWN])
        endpoint = cors_middleware(document, ["GET", "OPTIONS"])
        return [Route(path, endpoint, methods=["GET", "OPTIONS"]) for path in paths]


def sign_in(settings: Settings) -> RemoteAuthProvider:
    """FastMCP's resource server for JWTs of the team's identity provider."""
    verifier = SignedIn(
        jwks_uri=settings.jwks_uri,
        public_key=settings.jwt_public_key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        required_scopes=list(settings.jwt_scopes) or None,
        admin_scope=settings.admin_scope,
    )
    server = settings.auth_server or settings.jwt_issuer
    assert server is not None, "Settings checks that there is an authorization server"
    return SignInMetadata(
        verifier, server, settings.public_url or f"http://{settings.host}:{settings.port}"
    )


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
    """Who a limit counts: a signed-in owner; else the caller's MCP session id, else its
    address and port; ``local`` in process."""
    owner = owners.current()
    if owner.subject is not None:
        return f"owner {owner.key}"  # all of one person's sessions, and only theirs
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
