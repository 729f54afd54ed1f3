"""An app served over real HTTP on 127.0.0.1, in the test's own event loop, and a
headless browser to look at it.

For the jobs page's tests: the browser needs a socket, and the test wants the
app's own seams (its tools, its store) at hand, so the app runs here, on
uvicorn, as `durable-mcp serve` runs it (``http.http_app_of``).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import uvicorn
from fastmcp import FastMCP

from durable_mcp.config import Settings
from durable_mcp.http import http_app_of
from durable_mcp_testing.local_http import LocalHTTPServer

#: Debian's chromium (``apt-get install chromium``); Playwright drives it, no download.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

#: Mark a test that needs the browser with ``needs_browser``.
needs_browser = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium to drive: `apt-get install chromium` (Debian's; Playwright uses it)",
)


@asynccontextmanager
async def serving(mcp: FastMCP, settings: Settings) -> AsyncIterator[str]:
    """Serve ``mcp`` on ``settings.port``; yields its base URL (``http://127.0.0.1:N``)."""
    config = uvicorn.Config(
        http_app_of(mcp, settings),
        host="127.0.0.1",
        port=settings.port,
        lifespan="on",
        ws="none",
        log_config=None,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    serve = asyncio.create_task(server.serve())
    async with asyncio.timeout(60):  # a hang guard: the app starts in well under a second
        while not server.started:
            if serve.done():
                serve.result()  # raises what stopped it
            await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        server.should_exit = True
        await serve


@contextmanager
def serving_html(page: str) -> Iterator[str]:
    """Serve ``page`` (HTML) at ``/`` on another port of 127.0.0.1: another origin."""
    body = page.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with LocalHTTPServer(Handler) as server:
        yield f"{server.address}/"


@asynccontextmanager
async def browser_page() -> AsyncIterator[Any]:
    """A page in headless chromium (Playwright's async API)."""
    from playwright.async_api import async_playwright

    assert CHROMIUM is not None
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            context = await browser.new_context(viewport={"width": 1200, "height": 800})
            page = await context.new_page()
            yield page
        finally:
            await browser.close()
