"""A stand-in for the Open-Meteo archive, served over HTTP on 127.0.0.1.

It answers ``GET /v1/archive`` with a response shaped like the real one
(``daily`` series for the requested dates), derived from the request so each
place and month gets its own numbers, and counts the requests it receives:
the count is how the tests prove a fetch ran once. ``fail_with`` queues HTTP
statuses to answer with before answering normally; ``hold`` keeps requests
waiting until ``release``, and ``arrived`` tells when one is waiting.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from durable_mcp_testing.local_http import LocalHTTPServer


class FakeOpenMeteo(LocalHTTPServer):
    def __init__(self, delay_seconds: float = 0.0) -> None:
        self.requests: Counter[str] = Counter()  # query string -> times asked
        self.statuses: list[int] = []  # answered before normal responses, first first
        self.delay_seconds = delay_seconds
        super().__init__(self._handler())

    @property
    def url(self) -> str:
        return f"{self.address}/v1/archive"

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def fail_with(self, *statuses: int) -> None:
        self.statuses.extend(statuses)

    def _answer(self, query: str) -> tuple[int, dict[str, Any]]:
        self._arrive_and_wait()
        with self._lock:
            self.requests[query] += 1
            if self.statuses:
                status = self.statuses.pop(0)
                return status, {"error": True, "reason": f"fake error {status}"}
        params = {key: values[0] for key, values in parse_qs(query).items()}
        return 200, archive_response(params)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path != "/v1/archive":
                    status, body = 404, {"error": True, "reason": "not found"}
                else:
                    if fake.delay_seconds:
                        threading.Event().wait(fake.delay_seconds)
                    status, body = fake._answer(url.query)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def archive_response(params: dict[str, str]) -> dict[str, Any]:
    """What the archive answers for these query parameters (deterministic)."""
    start = dt.date.fromisoformat(params["start_date"])
    end = dt.date.fromisoformat(params["end_date"])
    days = [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]
    seed = float(params["latitude"]) + float(params["longitude"])
    timezone = params.get("timezone", "GMT")
    return {
        "latitude": float(params["latitude"]),
        "longitude": float(params["longitude"]),
        "timezone": "America/Edmonton" if timezone == "auto" else timezone,
        "daily_units": {
            "time": "iso8601",
            "temperature_2m_max": "°C",
            "temperature_2m_min": "°C",
            "precipitation_sum": "mm",
        },
        "daily": {
            "time": [day.isoformat() for day in days],
            "temperature_2m_max": [round(10 + (seed + n) % 7, 1) for n in range(len(days))],
            "temperature_2m_min": [round(-2 + (seed + n) % 5, 1) for n in range(len(days))],
            "precipitation_sum": [round(((seed * n) % 11) / 2, 1) for n in range(len(days))],
        },
    }
