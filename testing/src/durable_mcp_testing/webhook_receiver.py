"""A webhook receiver on 127.0.0.1, as an operator's would be: it checks each
POST's signature the way the README shows, and keeps what it received.

``fail_with`` queues HTTP statuses to answer with first (a receiver that is
down); ``hold`` keeps requests unanswered until ``release``; ``arrived`` tells
when a request has come.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


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


class WebhookReceiver:
    def __init__(self, secret: str, port: int = 0) -> None:
        self.secret = secret
        self.deliveries: list[Delivery] = []
        self.statuses: list[int] = []
        self._arrivals = 0  # requests received, answered or held
        self._lock = threading.Condition()
        self._release = threading.Event()
        self._release.set()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/durable-mcp"

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

    def hold(self) -> None:
        self._release.clear()

    def release(self) -> None:
        self._release.set()

    async def arrived(self, count: int = 1, within: float = 60) -> None:
        """Once ``count`` requests have come in all (answered or not); ``within``
        fails a test whose request never comes, no speed claim."""

        def wait() -> bool:
            with self._lock:
                return self._lock.wait_for(lambda: self._arrivals >= count, timeout=within)

        if not await asyncio.to_thread(wait):
            raise AssertionError(f"{count} webhook requests did not arrive within {within} s")

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def _receive(self, headers: dict[str, str], body: bytes) -> int:
        # As the README's receiver does: the HMAC of the raw body, compared in constant time.
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        signed = hmac.compare_digest(expected, headers.get("X-Durable-MCP-Signature", ""))
        with self._lock:
            self._arrivals += 1
            self._lock.notify_all()
        self._release.wait(timeout=60)
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
