"""Who may see the operator's pages and act on jobs from them, and as which owner.

With ``DURABLE_MCP_TOKEN`` set, a browser logs in once with the token (a JSON
POST to ``/jobs/login``) and gets an HttpOnly, SameSite=Strict cookie that
stands for it; a program (Prometheus) sends ``Authorization: Bearer <token>``
instead. The token itself is never in a URL, a page or a cookie: the cookie is
an HMAC of it. Without a token, anyone who reaches the port may look (the
server binds 127.0.0.1 unless told otherwise, and refuses a wider bind without
a token).

Signed in with JWTs (``DURABLE_MCP_JWKS_URI`` ...), a person logs in with
their own JWT, which FastMCP's verifier checks as it checks one on ``/mcp``;
the cookie then holds that JWT (it expires with it), and the pages show and act
on that person's jobs only (``owners.py``), every owner's for the admin scope.

An action (cancel, retry, answer) is a POST that a foreign page cannot forge:
it must carry the page's CSRF token in ``X-CSRF-Token`` (a header a
cross-origin page can only send after a CORS preflight, which is never
granted), and its ``Origin`` must be this server. FastMCP's Host/Origin guard
(``http.py``) still runs first, on every route.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from durable_mcp.owners import SINGLE, Owner

#: Checks a JWT: its access token (with its ``owner``), or None (FastMCP's verifier).
Verify = Callable[[str], Awaitable[Any]]

#: The cookie a login sets.
COOKIE = "durable_mcp_session"


def _mac(secret: bytes, purpose: str) -> str:
    return hmac.new(secret, purpose.encode(), hashlib.sha256).hexdigest()


class PageAuth:
    """The token check, the session cookie and the CSRF token of one server.

    ``verify``, when callers sign in with JWTs, checks one (and ``token`` is None);
    ``sign_in_at`` is where they get one.
    """

    def __init__(
        self,
        token: str | None,
        allowed_origins: tuple[str, ...] = (),
        verify: Verify | None = None,
        sign_in_at: str | None = None,
    ) -> None:
        self.token = token
        self.verify = verify
        #: Where people get their access tokens (the authorization server), for the login page.
        self.sign_in_at = sign_in_at
        self.allowed_origins = allowed_origins
        # With a token, cookies and CSRF tokens outlive a restart; without one,
        # the process's own secret (there is no login to lose).
        secret = token.encode() if token else secrets.token_bytes(32)
        self._session = _mac(secret, "durable-mcp page session")
        #: What every action must carry in ``X-CSRF-Token``; each page has it.
        self.csrf = _mac(secret, "durable-mcp csrf")

    async def owner_of(self, request: Request) -> Owner | None:
        """Whose jobs ``request`` may see on the pages and /metrics; None: nobody's
        (log in first)."""
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        bearer = bearer if scheme.lower() == "bearer" else ""
        cookie = request.cookies.get(COOKIE, "")
        if self.verify is not None:
            for given in filter(None, (cookie, bearer)):
                owner = await self._signed_in(given)
                if owner is not None:
                    return owner
            return None
        if self.token is None:
            return SINGLE
        if cookie and hmac.compare_digest(cookie, self._session):
            return SINGLE
        if bearer and hmac.compare_digest(bearer.encode(), self.token.encode()):
            return SINGLE
        return None

    async def log_in(self, given: object, response: Response, request: Request) -> bool:
        """Set the session cookie on ``response`` if ``given`` is the token, or a good JWT."""
        if not isinstance(given, str):
            return self.token is None and self.verify is None
        expires = None
        if self.verify is not None:
            access = await self.verify(given)
            if access is None or not isinstance(getattr(access, "owner", None), Owner):
                return False
            session = given  # the JWT itself: any replica checks it, and it expires
            if access.expires_at is not None:
                expires = max(int(access.expires_at - time.time()), 0)
        elif self.token is None:
            return True
        elif hmac.compare_digest(given.encode(), self.token.encode()):
            session = self._session
        else:
            return False
        response.set_cookie(
            COOKIE,
            session,
            max_age=expires,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return True

    def csrf_of(self, request: Request) -> str:
        """The CSRF token of the page ``request`` is for: signed in, one per login."""
        if self.verify is None:
            return self.csrf
        return _mac(request.cookies.get(COOKIE, "").encode(), "durable-mcp csrf")

    def refuses_post(self, request: Request, *, csrf: bool = True) -> str | None:
        """Why a POST is refused (a foreign origin, no CSRF token); None if it may go on."""
        origin = request.headers.get("origin")
        if origin is None or not self._own_origin(origin, request):
            return "refused: an action must come from this server's own page (Origin)"
        given = request.headers.get("x-csrf-token", "")
        if csrf and not hmac.compare_digest(given, self.csrf_of(request)):
            return "refused: the page's CSRF token is missing or wrong; reload the page"
        return None

    async def _signed_in(self, token: str) -> Owner | None:
        assert self.verify is not None
        owner = getattr(await self.verify(token), "owner", None)
        return owner if isinstance(owner, Owner) else None

    def _own_origin(self, origin: str, request: Request) -> bool:
        host = request.headers.get("host", "")
        return origin in (f"{request.url.scheme}://{host}", *self.allowed_origins)
