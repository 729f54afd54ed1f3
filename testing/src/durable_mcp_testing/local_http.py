"""What the tests' HTTP servers on 127.0.0.1 share (the fake Open-Meteo, the webhook
receiver): a thread of their own, requests counted as they arrive, and a hold
that keeps them unanswered until released."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LocalHTTPServer:
    """Serves ``handler`` on 127.0.0.1 (a free port, or ``port``) while entered."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        self._lock = threading.Lock()
        self._arrivals = 0  # requests received, answered or held
        self._arrival = threading.Condition(self._lock)
        self._release = threading.Event()
        self._release.set()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def count(self) -> int:
        """Requests arrived so far (answered or held)."""
        with self._lock:
            return self._arrivals

    def hold(self) -> None:
        """Make requests wait, unanswered, until :meth:`release`."""
        self._release.clear()

    def release(self) -> None:
        self._release.set()

    async def arrived(self, count: int = 1, within: float = 60) -> None:
        """Return once ``count`` requests have arrived in all (held ones count).

        ``within`` fails a test whose request never comes; it is no speed claim.
        """

        def wait() -> bool:
            with self._arrival:
                return self._arrival.wait_for(lambda: self._arrivals >= count, timeout=within)

        if not await asyncio.to_thread(wait):
            raise AssertionError(f"{count} requests did not arrive within {within} s")

    def _arrive_and_wait(self) -> None:
        """In a handler: count the request, then wait while requests are held."""
        with self._arrival:
            self._arrivals += 1
            self._arrival.notify_all()
        self._release.wait(timeout=60)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
