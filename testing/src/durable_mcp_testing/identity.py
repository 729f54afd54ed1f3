"""A team's identity provider, for the sign-in tests, on 127.0.0.1.

It signs JWTs with FastMCP's ``RSAKeyPair`` (one key pair per process), and
serves what an OAuth 2.1 authorization server serves a machine client: its
metadata (RFC 8414) and a token endpoint that gives a registered client a JWT
for the ``client_credentials`` grant, its subject the client's id. The server
under test is told its public key, its issuer (this server's URL) and the
audience; FastMCP's client finds this server from the server's
``/.well-known/oauth-protected-resource``, as Claude or VS Code would find the
team's.
"""

from __future__ import annotations

import base64
import functools
import json
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from fastmcp.server.auth.providers.jwt import RSAKeyPair

from durable_mcp_testing.local_http import LocalHTTPServer

#: The audience of every token: the server under test's resource identifier.
AUDIENCE = "durable-mcp-tests"

#: The scope that sees every owner's jobs.
ADMIN_SCOPE = "durable-mcp:admin"


@functools.cache
def keys() -> RSAKeyPair:
    """The key pair that signs every token of this process (generating one takes a while)."""
    return RSAKeyPair.generate()


def unsigned_token(subject: str, issuer: str) -> str:
    """A JWT with ``alg: none`` and no signature: what no server may accept."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"sub": subject, "iss": issuer, "aud": AUDIENCE, "exp": 4_102_444_800}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


class IdentityProvider(LocalHTTPServer):
    """The authorization server; ``clients`` are the registered ``{client_id: secret}``."""

    def __init__(self, clients: dict[str, str] | None = None) -> None:
        self.clients = dict(clients or {})
        self.issued: list[str] = []  # the subjects of the tokens given out
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/.well-known/oauth-authorization-server":
                    return self._send(404, {"error": "not_found"})
                self._send(200, provider.metadata())

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                status, body = provider.grant(form, self.headers.get("authorization", ""))
                self._send(status, body)

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the test's log is the server's

        super().__init__(Handler)

    @property
    def issuer(self) -> str:
        return self.address

    def token(
        self,
        subject: str,
        *,
        scopes: list[str] | None = None,
        expires_in: int = 3600,
        audience: str = AUDIENCE,
        issuer: str | None = None,
    ) -> str:
        """A JWT for ``subject``, signed by this provider (issuer and audience overridable)."""
        return keys().create_token(
            subject=subject,
            issuer=issuer or self.issuer,
            audience=audience,
            scopes=scopes,
            expires_in_seconds=expires_in,
        )

    def settings(self) -> dict[str, Any]:
        """The server's sign-in settings, as ``Settings`` keywords."""
        return {
            "jwt_public_key": keys().public_key,
            "jwt_issuer": self.issuer,
            "jwt_audience": AUDIENCE,
            "admin_scope": ADMIN_SCOPE,
        }

    def env(self) -> dict[str, str]:
        """The same, as `durable-mcp serve`'s environment."""
        return {f"DURABLE_MCP_{key.upper()}": value for key, value in self.settings().items()}

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "response_types_supported": ["code"],
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        }

    def grant(self, form: dict[str, list[str]], authorization: str) -> tuple[int, dict[str, Any]]:
        """The token endpoint: a JWT for a registered client's id, else an OAuth error."""
        if form.get("grant_type") != ["client_credentials"]:
            return 400, {"error": "unsupported_grant_type"}
        client_id, secret = (
            (form.get("client_id") or [""])[0],
            (form.get("client_secret") or [""])[0],
        )
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "basic":
            client_id, _, secret = base64.b64decode(credentials).decode().partition(":")
        if not client_id or self.clients.get(client_id) != secret:
            return 401, {"error": "invalid_client"}
        self.issued.append(client_id)
        return 200, {
            "access_token": self.token(client_id),
            "token_type": "Bearer",
            "expires_in": 3600,
        }
