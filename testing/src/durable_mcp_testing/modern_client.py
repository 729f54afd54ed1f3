"""A raw client of the 2026-07-28 wire, over HTTP: each request a POST of its own.

For what FastMCP's Client does not speak yet: the tasks extension's methods and
a ``subscriptions/listen`` stream of ``notifications/tasks``. It declares the
tasks extension on every request, as a task-aware client (Claude Code) does.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from fastmcp.utilities.tasks import TASKS_EXTENSION_ID

VERSION = "2026-07-28"


class ModernClient:
    """Requests to ``url`` on the 2026-07-28 protocol, with the tasks extension."""

    def __init__(self, url: str, *, tasks: bool = True) -> None:
        self.url = url
        self.tasks = tasks
        self._ids = itertools.count(1)
        self._http = httpx2.AsyncClient(timeout=60)

    async def __aenter__(self) -> ModernClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def request(self, method: str, params: dict[str, Any], name: str | None = None) -> Any:
        """The result of one request, without its ``_meta`` (the server's info); an
        error as ``{"error": ...}``."""
        response = await self._http.post(
            self.url, json=self._body(method, params), headers=self._headers(method, name)
        )
        message = _last_message(response.text, response.headers.get("content-type", ""))
        if "result" not in message:
            return message
        return {key: value for key, value in message["result"].items() if key != "_meta"}

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        return await self.request("tools/call", {"name": name, "arguments": arguments}, name)

    @asynccontextmanager
    async def listen(self, task_ids: list[str]) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """A ``subscriptions/listen`` stream for ``task_ids``: its messages, one by one
        (an error, if the server refuses it)."""
        body = self._body("subscriptions/listen", {"notifications": {"taskIds": task_ids}})
        headers = self._headers("subscriptions/listen", None)
        async with self._http.stream("POST", self.url, json=body, headers=headers) as response:

            async def messages() -> AsyncIterator[dict[str, Any]]:
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    yield json.loads(await response.aread())  # refused: one JSON answer
                    return
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        yield json.loads(line.removeprefix("data:"))

            yield messages()

    def _body(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        capabilities: dict[str, Any] = {}
        if self.tasks:
            capabilities["extensions"] = {TASKS_EXTENSION_ID: {}}
        meta = {
            "io.modelcontextprotocol/protocolVersion": VERSION,
            "io.modelcontextprotocol/clientInfo": {"name": "modern-test", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": capabilities,
        }
        return {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": method,
            "params": {**params, "_meta": meta},
        }

    @staticmethod
    def _headers(method: str, name: str | None) -> dict[str, str]:
        headers = {
            "MCP-Protocol-Version": VERSION,
            "Mcp-Method": method,
            "Accept": "application/json, text/event-stream",
        }
        if name is not None:
            headers["Mcp-Name"] = name
        return headers


def _last_message(text: str, content_type: str) -> dict[str, Any]:
    """The JSON-RPC response in a JSON body, or the last ``data:`` of an SSE one."""
    if content_type.startswith("text/event-stream"):
        datas = [
            line.removeprefix("data:") for line in text.splitlines() if line.startswith("data:")
        ]
        return dict(json.loads(datas[-1]))
    return dict(json.loads(text))
