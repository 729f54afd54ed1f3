"""stdio -> streamable HTTP relay, so Claude Desktop (stdio only) can use durable-mcp.

Claude Desktop starts this script (the entry ``make claude-config`` prints) and
talks MCP to it over stdin/stdout. Each JSON-RPC message read from stdin is
POSTed to the server at ``DURABLE_MCP_URL`` (default
``http://127.0.0.1:5001/mcp``) as it is, with ``DURABLE_MCP_TOKEN`` as its
bearer token when set (the single token, or the person's JWT where the server
signs people in), or the token in the file ``DURABLE_MCP_TOKEN_FILE``, read
again for each request (so that whatever renews a JWT there need not restart
Claude Desktop), and whatever the server answers (a JSON body, or a
stream of progress and task notifications ending with the response) is
written to stdout as it is. Nothing here knows MCP's methods, so tasks,
progress, cancellation and any method added later pass through.

What it adds is what the streamable HTTP binding asks of a client:

* A handshake-era client's session id and protocol version go back on each
  request; when the server has restarted and no longer knows the session,
  the client's own handshake is replayed once and the request sent again.
* A 2026-era request carries the routing headers its body states
  (``MCP-Protocol-Version``, ``Mcp-Method``, ``Mcp-Name``, ``Mcp-Param-*``),
  computed as the MCP SDK's own client does; cancelling such a request closes
  its HTTP stream, the 2026 wire's cancel.
* When the server is down, refuses the token, or answers with something that
  is not MCP (``DURABLE_MCP_URL`` names another kind of server), the request
  gets an answer that says so and what to do, and stderr one line, not a
  traceback.
* A line longer than :data:`MAX_LINE` (64 MiB) is dropped with a JSON-RPC
  error; the lines after it are read as usual.

The MCP SDK's own transports parse each message into its models and back, and
end the whole connection on a transport error; a relay must do neither, so it
is written here on httpx2, the SDK's HTTP client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2
from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    NAME_BEARING_METHODS,
    encode_header_value,
    mcp_param_headers,
    x_mcp_header_map,
)
from mcp_types import INTERNAL_ERROR, INVALID_REQUEST, PARSE_ERROR, PROTOCOL_VERSION_META_KEY

URL = os.environ.get("DURABLE_MCP_URL") or "http://127.0.0.1:5001/mcp"
TOKEN = os.environ.get("DURABLE_MCP_TOKEN") or None
TOKEN_FILE = os.environ.get("DURABLE_MCP_TOKEN_FILE") or None


def bearer() -> dict[str, str]:
    """The ``Authorization`` header of the next request (none without a token)."""
    token = TOKEN
    if TOKEN_FILE is not None:
        try:
            token = Path(TOKEN_FILE).read_text().strip() or None
        except OSError as exc:
            logger.warning("cannot read DURABLE_MCP_TOKEN_FILE: %s", exc)
            token = None
    return {"authorization": f"Bearer {token}"} if token else {}


SESSION_HEADER = "mcp-session-id"

logger = logging.getLogger("durable_mcp.proxy")

#: No read timeout: await_result waits up to 45 s, and a notification stream stays open.
TIMEOUT = httpx2.Timeout(connect=3.0, read=None, write=10.0, pool=None)

Message = dict[str, Any]


class Relay:
    """Carries messages between one stdio client and the server at ``url``."""

    def __init__(self, http: httpx2.AsyncClient, url: str, write: Callable[[bytes], None]) -> None:
        self.http = http
        self.url = url
        self.write = write
        self.session_id: str | None = None
        self.protocol_version: str | None = None  # negotiated by a handshake-era client
        self.handshake: list[bytes] = []  # its initialize and initialized, to replay
        self.param_headers: dict[str, dict[tuple[str, ...], str]] = {}  # tool -> Mcp-Param-*
        self.in_flight: dict[Any, asyncio.Task[None]] = {}  # 2026-era requests, by id
        self.listening = False

    async def forward(self, raw: bytes) -> None:
        """Send one line from stdin to the server, and its answer back."""
        try:
            message = json.loads(raw)
        except ValueError:
            self.answer_error(
                None, PARSE_ERROR, "Parse error: the proxy read a line that is not JSON"
            )
            return
        if not isinstance(message, dict):
            await self._post(raw, message={}, headers={})  # a batch: the server answers it
            return
        method = message.get("method")
        if method == "initialize":
            self.session_id, self.protocol_version, self.handshake = None, None, [raw]
        elif method == "notifications/initialized":
            self.handshake = [*self.handshake[:1], raw]
        if method == "notifications/cancelled" and self._cancel_modern(message):
            return
        headers = self._headers(message)
        task = asyncio.current_task()
        request_id = message.get("id")
        if request_id is not None and MCP_METHOD_HEADER in headers and task is not None:
            self.in_flight[request_id] = task  # a 2026-era request, which a cancel closes
        try:
            await self._post(raw, message, headers)
        finally:
            if task is not None and self.in_flight.get(request_id) is task:
                del self.in_flight[request_id]
        if method == "notifications/initialized":
            self._start_listening()

    def _headers(self, message: Message) -> dict[str, str]:
        params = message.get("params")
        params = params if isinstance(params, dict) else {}
        meta = params.get("_meta")
        version = meta.get(PROTOCOL_VERSION_META_KEY) if isinstance(meta, dict) else None
        method = message.get("method")
        if not isinstance(version, str) or not isinstance(method, str):
            return self._session_headers()  # handshake era, or a response to the server
        # A 2026-era request states its version, method and name; HTTP wants them as headers.
        headers = {MCP_PROTOCOL_VERSION_HEADER: version, MCP_METHOD_HEADER: method}
        name = params.get(NAME_BEARING_METHODS.get(method, ""))
        if isinstance(name, str):
            headers[MCP_NAME_HEADER] = encode_header_value(name)
            arguments = params.get("arguments")
            if (
                method == "tools/call"
                and name in self.param_headers
                and isinstance(arguments, dict)
            ):
                headers |= mcp_param_headers(self.param_headers[name], arguments)
        return headers

    def _session_headers(self) -> dict[str, str]:
        headers = {}
        if self.session_id:
            headers[SESSION_HEADER] = self.session_id
        if self.protocol_version:
            headers[MCP_PROTOCOL_VERSION_HEADER] = self.protocol_version
        return headers

    def _cancel_modern(self, message: Message) -> bool:
        """Cancel a 2026-era request by closing its stream; False for any other."""
        params = message.get("params")
        request_id = params.get("requestId") if isinstance(params, dict) else None
        task = self.in_flight.pop(request_id, None)
        if task is None:
            return False
        task.cancel()
        return True

    async def _post(
        self, raw: bytes, message: Message, headers: dict[str, str], replayed: bool = False
    ) -> None:
        request_id = message.get("id")
        is_request = request_id is not None and "method" in message
        try:
            async with self.http.stream(
                "POST", self.url, content=raw, headers=headers | _ACCEPT | bearer()
            ) as response:
                if response.status_code == 404 and self.session_id and not replayed:
                    await response.aclose()
                    if await self._replay_handshake():  # the server restarted: a new session
                        await self._post(raw, message, self._headers(message), replayed=True)
                        return
                if response.status_code == 401:
                    refused = "token" if bearer() else "request without a token"
                    said = _challenge(response.headers.get("www-authenticate", ""))
                    self._answer_problem(
                        message,
                        f"the durable-mcp server at {self.url} refused the proxy's {refused}"
                        f"{said}: set DURABLE_MCP_TOKEN (or DURABLE_MCP_TOKEN_FILE) in the "
                        "proxy's environment to the server's token, or, where the server "
                        "signs people in, to a fresh access token of yours.",
                    )
                    return
                if message.get("method") == "initialize":
                    self.session_id = response.headers.get(SESSION_HEADER)
                await self._relay_answer(response, message if is_request else None)
        except httpx2.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            self._answer_problem(
                message,
                f"the durable-mcp server is not reachable at {self.url} ({reason}). "
                "Start it with `make run` in the durable-mcp directory, then retry.",
            )

    async def _relay_answer(self, response: httpx2.Response, request: Message | None) -> None:
        content_type = response.headers.get("content-type", "")
        if content_type.startswith("text/event-stream"):
            answered = False
            async for event in httpx2.EventSource(response):
                if event.data:
                    answered = self._relay(event.data.encode(), request) or answered
            if request is not None and not answered:
                self._answer_problem(request, "the server closed the call without an answer")
            return
        body = await response.aread()
        is_json = content_type.startswith("application/json") and body.strip()
        if is_json and self._relay(body, request):
            return  # the answer
        if request is None:
            return  # a notification's 202, or a response to the server: nobody waits
        if response.status_code >= 400:
            self.answer_error(
                request.get("id"),
                INTERNAL_ERROR,
                f"the server answered HTTP {response.status_code}",
            )
            return
        self._answer_problem(
            request,
            f"{self.url} answered HTTP {response.status_code} with "
            f"{content_type or 'no content type'}, not MCP: is DURABLE_MCP_URL the "
            "durable-mcp server's /mcp endpoint?",
        )

    def _relay(self, body: bytes, request: Message | None) -> bool:
        """Write one message from the server to stdout, as it came (on one line);
        whether it was the answer to ``request``. What is not JSON is not written."""
        try:
            answer = json.loads(body)
        except ValueError:
            logger.warning("the server at %s sent something that is not JSON; dropped", self.url)
            return False
        is_answer = False
        if request is not None and isinstance(answer, dict) and "method" not in answer:
            is_answer = True
            if answer.get("id") is None:
                answer["id"] = request["id"]  # refused before the server read the id
                body = json.dumps(answer).encode()
            self._note_answer(request, answer)
        if b"\n" in body.strip():
            body = json.dumps(answer).encode()
        self.write(body.strip())
        return is_answer

    def _note_answer(self, request: Message, answer: Message) -> None:
        """Learn what the binding needs from an answer: the version, the tools' headers."""
        result = answer.get("result")
        if not isinstance(result, dict):
            return
        if request.get("method") == "initialize":
            version = result.get("protocolVersion")
            self.protocol_version = version if isinstance(version, str) else None
        elif request.get("method") == "tools/list":
            for tool in result.get("tools") or []:
                header_map = x_mcp_header_map(tool.get("inputSchema"))
                if header_map:
                    self.param_headers[tool["name"]] = header_map

    async def _replay_handshake(self) -> bool:
        """Open a new session with the client's own handshake; whether it worked."""
        if not self.handshake:
            return False
        initialize, *initialized = self.handshake
        self.session_id = None
        async with self.http.stream(
            "POST", self.url, content=initialize, headers=_ACCEPT
        ) as response:
            if response.status_code != 200:
                return False
            self.session_id = response.headers.get(SESSION_HEADER)
            await response.aread()  # the client has its answer from the first handshake
        for notification in initialized:
            await self.http.post(
                self.url, content=notification, headers=self._session_headers() | _ACCEPT
            )
        logger.warning("the server had restarted: the proxy opened a new session")
        self._start_listening()
        return True

    def _start_listening(self) -> None:
        if self.session_id and not self.listening:
            self.listening = True
            asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        """Relay what a handshake-era server sends outside any request (its GET stream)."""
        try:
            async with self.http.stream(
                "GET", self.url, headers=self._session_headers() | _STREAM
            ) as response:
                if response.status_code == 200:  # else the server offers no such stream
                    async for event in httpx2.EventSource(response):
                        if event.data:
                            self._relay(event.data.encode(), None)
        except httpx2.TransportError:
            pass  # the server went away: the next session listens again
        finally:
            self.listening = False

    def _answer_problem(self, message: Message, problem: str) -> None:
        """Answer a request the server could not: a tool error the model reads, else an error."""
        logger.warning("%s", problem)
        request_id = message.get("id")
        if request_id is None or "method" not in message:
            return  # a notification, or a response to the server: nobody waits for it
        if message["method"] != "tools/call":
            self.answer_error(request_id, INTERNAL_ERROR, problem)
            return
        result: Message = {"content": [{"type": "text", "text": problem}], "isError": True}
        if MCP_METHOD_HEADER in self._headers(message):
            result["resultType"] = "complete"  # required on the 2026 wire
        self.write(json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}).encode())

    def answer_error(self, request_id: Any, code: int, text: str) -> None:
        error = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": text}}
        self.write(json.dumps(error).encode())


#: The handshake's messages, sent before the lines after them are read (a line
#: that merely contains one of these strings waits too, which is harmless).
HANDSHAKE = (b'"initialize"', b'"notifications/initialized"')

_ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
_STREAM = {"accept": "text/event-stream"}


def write_line(body: bytes) -> None:
    sys.stdout.buffer.write(body + b"\n")
    sys.stdout.buffer.flush()


#: The longest line (one message) the proxy reads; a longer one is dropped.
MAX_LINE = 64 * 1024 * 1024


async def stdin_reader() -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=MAX_LINE)
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def lines(reader: asyncio.StreamReader) -> AsyncIterator[bytes | None]:
    """Each line of ``reader``, until it ends; None for one over :data:`MAX_LINE`."""
    while True:
        try:
            yield await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as end:
            if end.partial.strip():
                yield end.partial  # the last line, without its newline
            return
        except asyncio.LimitOverrunError as overrun:
            await reader.readexactly(overrun.consumed)  # drop what was read of it ...
            while True:
                try:
                    await reader.readuntil(b"\n")  # ... and the rest of it
                    break
                except asyncio.LimitOverrunError as more:
                    await reader.readexactly(more.consumed)
                except asyncio.IncompleteReadError:
                    break
            yield None


def _challenge(header: str) -> str:
    """What a 401's ``WWW-Authenticate`` says is wrong, as ``" (...)"``; empty if nothing."""
    found = re.search(r'error_description="([^"]*)"', header) or re.search(
        r'error="([^"]*)"', header
    )
    return f" ({found.group(1)})" if found else ""


async def main() -> None:
    async with httpx2.AsyncClient(timeout=TIMEOUT) as http:
        relay = Relay(http, URL, write_line)
        running: set[asyncio.Task[None]] = set()
        async for line in lines(await stdin_reader()):
            if line is None:
                logger.warning("dropped a line longer than %d bytes", MAX_LINE)
                relay.answer_error(
                    None, INVALID_REQUEST, f"the proxy reads lines of at most {MAX_LINE} bytes"
                )
                continue
            if line.strip():
                task = asyncio.create_task(relay.forward(line.strip()))
                running.add(task)
                task.add_done_callback(running.discard)
                if any(method in line for method in HANDSHAKE):
                    # What follows needs the session the handshake opens: it goes first.
                    await asyncio.wait([task])
        for task in running:
            task.cancel()  # the client has gone: nobody reads the answers


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="durable-mcp proxy: %(message)s")
    asyncio.run(main())
