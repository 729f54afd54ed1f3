"""Who may see the operator's pages and act on jobs from them.

With ``DURABLE_MCP_TOKEN`` set, a browser logs in once with the token (a JSON
POST to ``/jobs/login``) and gets an HttpOnly, SameSite=Strict cookie that
stands for it; a program (Prometheus) sends ``Authorization: Bearer <token>``
instead. The token itself is never in a URL, a page or a cookie: the cookie is
an HMAC of it. Without a token, anyone who reaches the port may look (the
server binds 127.0.0.1 unless told otherwise, and refuses a wider bind without
a token).

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

from starlette.requests import Request
from starlette.responses import Response

#: The cookie a login sets.
COOKIE = "durable_mcp_session"


def _mac(secret: bytes, purpose: str) -> str:
    return hmac.new(secret, purpose.encode(), hashlib.sha256).hexdigest()


class PageAuth:
    """The token check, the session cookie and the CSRF token of one server."""

    def __init__(self, token: str | None, allowed_origins: tuple[str, ...] = ()) -> None:
        self.token = token
        self.allowed_origins = allowed_origins
        # With a token, cookies and CSRF tokens outlive a restart; without one,
        # the process's own secret (there is no login to lose).
        secret = token.encode() if token else secrets.token_bytes(32)
        self._session = _mac(secret, "durable-mcp page session")
        #: What every action must carry in ``X-CSRF-Token``; each page has it.
        self.csrf = _mac(secret, "durable-mcp csrf")

    def allows(self, request: Request) -> bool:
        """Whether ``request`` may see the pages, their data and /metrics."""
        if self.token is None:
            return True
        cookie = request.cookies.get(COOKIE, "")
        if cookie and hmac.compare_digest(cookie, self._session):
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.encode(), self.token.encode()
        )

    def log_in(self, given: object, response: Response, request: Request) -> bool:
        """Set the session cookie on ``response`` if ``given`` is the token."""
        if self.token is None or not isinstance(given, str):
            return self.token is None
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return False
        response.set_cookie(
            COOKIE,
            self._session,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return True

    def refuses_post(self, request: Request, *, csrf: bool = True) -> str | None:
        """Why a POST is refused (a foreign origin, no CSRF token); None if it may go on."""
        origin = request.headers.get("origin")
        if origin is None or not self._own_origin(origin, request):
            return "refused: an action must come from this server's own page (Origin)"
        if csrf and not hmac.compare_digest(request.headers.get("x-csrf-token", ""), self.csrf):
            return "refused: the page's CSRF token is missing or wrong; reload the page"
        return None

    def _own_origin(self, origin: str, request: Request) -> bool:
        host = request.headers.get("host", "")
        return origin in (f"{request.url.scheme}://{host}", *self.allowed_origins)
