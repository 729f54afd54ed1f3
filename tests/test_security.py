"""The HTTP edge of a real server: bearer token, Origin check, body limit, token hygiene."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport
from mcp.shared.exceptions import MCPError

from durable_mcp_testing import helpers
from durable_mcp_testing.helpers import SESSION_INITIALIZE, session_request
from durable_mcp_testing.processes import DURABLE_MCP, PROXY, free_port, running_server

TOKEN = "s3cret-token-for-tests-0123456789"
ALLOWED_ORIGIN = "https://app.example.com"

INITIALIZE = json.dumps(helpers.INITIALIZE).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One server with a token for the module; yields its URL and log file."""
    root = tmp_path_factory.mktemp("secured")
    port, log = free_port(), root / "server.log"
    env = {"DURABLE_MCP_TOKEN": TOKEN, "DURABLE_MCP_ALLOWED_ORIGINS": ALLOWED_ORIGIN}
    with running_server(port, root / "data", env, log):
        yield f"http://127.0.0.1:{port}/mcp", log


def post(url: str, body: bytes = INITIALIZE, **headers: str) -> int:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            **headers,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_requests_without_the_right_token_get_401(server: tuple[str, Path]) -> None:
    url, _ = server
    assert post(url) == 401
    assert post(url, Authorization=bearer("not-the-token-at-all")) == 401
    assert post(url, Authorization=bearer(TOKEN[:-1])) == 401
    assert post(url, Authorization=bearer(TOKEN)) == 200


async def test_a_client_with_the_token_uses_the_tools(server: tuple[str, Path]) -> None:
    url, _ = server
    async with Client(url, auth=TOKEN) as client:
        started = await client.call_tool("set_timer", {"timer_name": "tea", "seconds": 0})
        assert started.data["promise_id"] == "tea"
        result = await client.call_tool("await_result", {"job_names": ["tea"]})
        assert result.data == {"tea": "complete"}


def test_a_foreign_origin_gets_403_even_with_the_token(server: tuple[str, Path]) -> None:
    url, _ = server
    token = bearer(TOKEN)
    assert post(url, Authorization=token, Origin="http://evil.example") == 403
    assert post(url, Origin="http://evil.example") == 403
    assert post(url, Authorization=token, Origin="http://127.0.0.1.evil.example") == 403
    # This machine's own pages and the configured origins are let in.
    assert post(url, Authorization=token, Origin="http://localhost:6274") == 200
    assert post(url, Authorization=token, Origin=ALLOWED_ORIGIN) == 200


def announce_post(url: str, content_length: int, **headers: str) -> int:
    """Send a POST's headers only, announcing a body of ``content_length``; the status answered.

    The server answers 413 from the length alone and closes the connection:
    a client still sending the body then meets a broken pipe, more often the
    busier the machine, so the body is never sent.
    """
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    lines = [
        f"POST {parts.path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        "Accept: application/json, text/event-stream",
        f"Content-Length: {content_length}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status


def test_a_body_over_the_limit_gets_413(server: tuple[str, Path]) -> None:
    url, _ = server
    assert announce_post(url, 1024 * 1024 + 1, Authorization=bearer(TOKEN)) == 413
    assert post(url, b" " * 1024, Authorization=bearer(TOKEN)) != 413  # under it: let through


def proxy_client(url: str, token: str | None) -> Client[Any]:
    env = {"DURABLE_MCP_URL": url} | ({"DURABLE_MCP_TOKEN": token} if token else {})
    return Client(StdioTransport(command=sys.executable, args=[PROXY], env=env, keep_alive=False))


async def test_the_proxy_sends_the_token(server: tuple[str, Path]) -> None:
    url, _ = server
    async with proxy_client(url, TOKEN) as proxied:
        status = await proxied.call_tool("get_timer_status", {"timer_name": "nope"})
        assert status.structured_content == {"status": "not_found"}


@pytest.mark.parametrize("token", [None, "a-wrong-token-of-enough-length"])
async def test_the_proxy_says_when_the_server_refuses_its_token(
    server: tuple[str, Path], token: str | None
) -> None:
    url, _ = server
    # The handshake is the server's, so the client hears it as it connects.
    with pytest.raises(MCPError) as refused:
        async with proxy_client(url, token):
            pass
    assert f"the durable-mcp server at {url} refused" in str(refused.value)
    assert "set DURABLE_MCP_TOKEN" in str(refused.value)


def test_a_token_in_the_query_string_is_refused_and_not_written_down(
    server: tuple[str, Path],
) -> None:
    url, _ = server
    assert post(f"{url}?access_token={TOKEN}&other=1") == 401


def test_the_log_holds_no_token_and_no_header(server: tuple[str, Path]) -> None:
    # Runs last in this module: the requests above have all been logged.
    _, log = server
    text = log.read_text()
    assert '"POST /mcp HTTP/1.1" 401' in text  # the refusals were logged ...
    assert '"POST /mcp? HTTP/1.1" 401' in text  # (the query string's, without it)
    assert TOKEN not in text  # ... but never a token
    assert TOKEN[:8] not in text
    assert "Bearer" not in text and "authorization" not in text.lower()
    assert "session ID" not in text  # the SDK logs MCP session ids at INFO; quieted


def test_listening_beyond_localhost_needs_a_token(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [DURABLE_MCP, "serve", "--host", "0.0.0.0", "--port", str(port)],
        env={"PATH": "/usr/bin:/bin", "DURABLE_MCP_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("durable-mcp: DURABLE_MCP_TOKEN: required to listen on 0.0.0.0")
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())  # refused before the store was touched


def test_sessions_past_the_cap_are_refused_with_503_and_closing_one_makes_room(
    tmp_path: Path,
) -> None:
    port = free_port()
    with running_server(port, tmp_path / "data", {"DURABLE_MCP_MAX_SESSIONS": "2"}):
        opening = SESSION_INITIALIZE
        first, second, third = (session_request(port, "POST", opening) for _ in range(3))
        for answer in (first, second, third):
            answer.read()
        session = first.getheader("mcp-session-id")
        closed = session_request(port, "DELETE", session=session)
        closed.read()
        fourth = session_request(port, "POST", opening)
        fourth.read()

    assert [first.status, second.status, third.status] == [200, 200, 503]
    assert closed.status == 200 and fourth.status == 200
