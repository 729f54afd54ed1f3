"""A webhook receiver on 127.0.0.1, as an operator's would be: it checks each
POST's signature the way the README shows, and keeps what it received.

``fail_with`` queues HTTP statuses to answer with first (a receiver that is
down); ``hold`` keeps requests unanswered until ``release``; ``arrived`` tells
when a request has come.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from durable_mcp_testing.local_http import LocalHTTPServer


@dataclass(frozen=True)
class Delivery:
    """One POST received: its headers, raw body, and whether it was answered 2xx."""

    headers: dict[str, str]
    body: bytes
    status: int
    signed: bool  # the signature checked out with the receiver's secret

    @property
    def event(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.body)
        return decoded


class WebhookReceiver(LocalHTTPServer):
    def __init__(self, secret: str, port: int = 0) -> None:
        self.secret = secret
        self.deliveries: list[Delivery] = []
        self.statuses: list[int] = []
        super().__init__(self._handler(), port)

    @property
    def url(self) -> str:
        return f"{self.address}/hooks/durable-mcp"

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """The events answered 2xx, in the order they came."""
        return [d.event for d in self.deliveries if 200 <= d.status < 300]

    async def answered(self) -> list[dict[str, Any]] | None:
        """The events answered 2xx so far, or None if none was (for ``eventually``)."""
        with self._lock:
            return self.delivered or None

    def fail_with(self, *statuses: int) -> None:
        self.statuses.extend(statuses)

    def _receive(self, headers: dict[str, str], body: bytes) -> int:
        # As the README's receiver does: the HMAC of the raw body, compared in constant time.
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        signed = hmac.compare_digest(expected, headers.get("X-Durable-MCP-Signature", ""))
        self._arrive_and_wait()
        with self._lock:
            status = self.statuses.pop(0) if self.statuses else (204 if signed else 401)
            self.deliveries.append(Delivery(headers, body, status, signed))
        return status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver._receive(dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
