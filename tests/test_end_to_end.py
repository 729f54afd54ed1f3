"""The real thing: `durable-mcp serve` as a process, called over HTTP and through proxy.py."""

from __future__ import annotations

import asyncio
import http.server
import json
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport
from mcp.shared.exceptions import MCPError

from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.helpers import INITIALIZE
from durable_mcp_testing.processes import DURABLE_MCP, PROXY, free_port, running_server, stop

TOOLS = {
    "set_timer",
    "get_timer_status",
    "start_gathering",
    "probe_status",
    "await_result",
    "answer_job",
    "cancel_job",
    "list_jobs",
}


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def server(port: int, fake_archive: FakeOpenMeteo, tmp_path: Path) -> Iterator[Path]:
    """The server on ``port``; yields its log file."""
    log = tmp_path / "server.log"
    with running_server(port, tmp_path, {"OPEN_METEO_ARCHIVE_URL": fake_archive.url}, log):
        yield log


def proxy_client(port: int) -> Client[Any]:
    transport = StdioTransport(
        command=sys.executable,
        args=[PROXY],
        env={"DURABLE_MCP_URL": f"http://127.0.0.1:{port}/mcp"},
        keep_alive=False,
    )
    return Client(transport)


@pytest.fixture
async def proxied(port: int) -> AsyncIterator[Client[Any]]:
    async with proxy_client(port) as client:
        yield client


async def test_the_proxy_serves_every_tool(server: Path, proxied: Client[Any]) -> None:
    assert {tool.name for tool in await proxied.list_tools()} == TOOLS


async def test_a_job_started_through_the_proxy_is_the_servers_job(
    server: Path, port: int, proxied: Client[Any], fake_archive: FakeOpenMeteo
) -> None:
    place = {"latitude": 53.5, "longitude": -113.5, "year": 2024, "month": 3}
    started = (await proxied.call_tool("start_gathering", place)).data
    async with Client(f"http://127.0.0.1:{port}/mcp") as direct:
        again = (await direct.call_tool("start_gathering", place)).data
        assert again["job_name"] == started["job_name"]
        result = (await direct.call_tool("await_result", {"job_names": [again["job_name"]]})).data
    assert result[started["job_name"]]["summary"]["days"] == 31
    assert fake_archive.total_requests == 1


async def test_timer_through_the_proxy_completes(server: Path, proxied: Client[Any]) -> None:
    set_result = await proxied.call_tool("set_timer", {"timer_name": "tea", "seconds": 0.5})
    assert set_result.structured_content == {"promise_id": "tea", "status": "running"}
    status = await proxied.call_tool("get_timer_status", {"timer_name": "tea"})
    assert status.structured_content == {"status": "running"}
    assert (await proxied.call_tool("await_result", {"job_names": ["tea"]})).data == {
        "tea": "complete"
    }
    status = await proxied.call_tool("get_timer_status", {"timer_name": "tea"})
    assert status.structured_content == {"status": "complete"}


async def test_progress_notifications_pass_through_the_proxy(
    server: Path, proxied: Client[Any]
) -> None:
    updates: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append(progress)

    await proxied.call_tool("set_timer", {"timer_name": "slow", "seconds": 600})
    # A real process reports every 5 s of real time (no seam reaches it): a 6 s
    # wait makes exactly one report, however slow the machine.
    result = await proxied.call_tool(
        "await_result", {"job_names": ["slow"], "timeout_seconds": 6}, progress_handler=on_progress
    )
    assert result.data["slow"]["status"] == "running"
    assert updates == [0]  # one report after 5 s of waiting: 0 of 1 finished


async def test_the_server_log_has_no_errors_in_normal_use(
    server: Path, proxied: Client[Any]
) -> None:
    names = [f"t{i}" for i in range(20)]
    for i, name in enumerate(names):
        await proxied.call_tool("set_timer", {"timer_name": name, "seconds": (i % 4) / 100})
    await proxied.call_tool(
        "start_gathering", {"latitude": 1, "longitude": 2, "year": 2020, "month": 2}
    )
    result = (await proxied.call_tool("await_result", {"job_names": names})).data
    assert result == dict.fromkeys(names, "complete")
    log = server.read_text()
    assert "durable-mcp engine started" in log
    assert [line for line in log.splitlines() if "ERROR" in line or "Traceback" in line] == []


async def test_the_proxy_says_clearly_when_the_server_is_down_and_recovers(
    port: int, fake_archive: FakeOpenMeteo, tmp_path: Path
) -> None:
    env = {"OPEN_METEO_ARCHIVE_URL": fake_archive.url}
    # Connecting while the server is down: the handshake is the server's, and it
    # fails with what to do. The bound fails a proxy that never answers (Claude
    # Desktop gives up after 60 s); it is no claim about speed.
    with pytest.raises(MCPError) as refused:
        async with asyncio.timeout(45), proxy_client(port) as proxied:
            pass
    assert f"not reachable at http://127.0.0.1:{port}/mcp" in str(refused.value)
    assert "make run" in str(refused.value)

    with running_server(port, tmp_path, env) as process:
        async with proxy_client(port) as proxied:
            status = await proxied.call_tool("get_timer_status", {"timer_name": "tea"})
            assert status.structured_content == {"status": "not_found"}
            await proxied.call_tool("set_timer", {"timer_name": "tea", "seconds": 60})
            stop(process)

            down = await proxied.call_tool(
                "probe_status", {"job_names": ["tea"]}, raise_on_error=False
            )
            assert down.is_error and "make run" in down.content[0].text

            with running_server(port, tmp_path, env):
                # The same proxy goes on, and the embedded store kept the timer.
                status = await proxied.call_tool("get_timer_status", {"timer_name": "tea"})
                assert status.structured_content == {"status": "running"}


async def test_a_handshake_era_client_keeps_its_session_across_a_server_restart(
    port: int, fake_archive: FakeOpenMeteo, tmp_path: Path
) -> None:
    # Claude Desktop's kind of client: an initialize handshake and a session id,
    # which a restarted server no longer knows; the proxy opens a new one.
    env = {"OPEN_METEO_ARCHIVE_URL": fake_archive.url}
    with running_server(port, tmp_path, env) as process:
        async with Client(proxy_client(port).transport, mode="legacy") as proxied:
            await proxied.call_tool("set_timer", {"timer_name": "tea", "seconds": 60})
            stop(process, signal.SIGKILL)
            with running_server(port, tmp_path, env):
                status = await proxied.call_tool("get_timer_status", {"timer_name": "tea"})
                assert status.structured_content == {"status": "running"}


async def test_a_client_that_sends_its_handshake_and_a_call_at_once_gets_the_call_answered(
    server: Path, port: int
) -> None:
    # Lines written together, before any answer: the call needs the session the
    # initialize opens, so the proxy sends the handshake first, in order.
    lines = [
        INITIALIZE,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "set_timer", "arguments": {"timer_name": "tea", "seconds": 60}},
        },
    ]
    proxy = await asyncio.create_subprocess_exec(
        sys.executable,
        PROXY,
        env={"DURABLE_MCP_URL": f"http://127.0.0.1:{port}/mcp"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proxy.stdin is not None and proxy.stdout is not None
    proxy.stdin.write(b"".join(json.dumps(line).encode() + b"\n" for line in lines))
    await proxy.stdin.drain()
    try:
        answers: dict[Any, Any] = {}
        while len(answers) < 2:
            answer = json.loads(await proxy.stdout.readline())
            answers[answer["id"]] = answer
    finally:
        proxy.stdin.close()
        await proxy.wait()
    assert answers[1]["result"]["serverInfo"]["name"] == "durable-mcp"
    assert answers[2]["result"]["structuredContent"] == {"promise_id": "tea", "status": "running"}


async def test_the_jobs_command_lists_the_stores_jobs_while_the_server_runs(
    server: Path, port: int, tmp_path: Path
) -> None:
    async with Client(f"http://127.0.0.1:{port}/mcp") as client:
        await client.call_tool("set_timer", {"timer_name": "tea", "seconds": 600})
        await client.call_tool("set_timer", {"timer_name": "egg", "seconds": 0})
        await client.call_tool("await_result", {"job_names": ["egg"]})
    listing = subprocess.run(
        [DURABLE_MCP, "jobs", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [line.split() for line in listing.stdout.strip().splitlines()]
    assert rows[0] == ["JOB", "KIND", "STATUS", "AGE"]
    assert [row[:3] for row in rows[1:]] == [
        ["egg", "timer", "completed"],
        ["tea", "timer", "running"],
    ]


class NotMcp(http.server.BaseHTTPRequestHandler):
    """A web server of another kind, where DURABLE_MCP_URL should not point."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b"<html><body>Welcome to nginx!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def proxy_exchange(url: str, lines: list[bytes], answers: int) -> tuple[list[Any], str]:
    """Write ``lines`` to a proxy of ``url``; the first ``answers`` lines it writes back,
    and its stderr once its stdin is closed."""
    proxy = await asyncio.create_subprocess_exec(
        sys.executable,
        PROXY,
        env={"DURABLE_MCP_URL": url},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        limit=1024 * 1024,
    )
    assert proxy.stdin is not None and proxy.stdout is not None and proxy.stderr is not None
    for line in lines:
        proxy.stdin.write(line)
    await proxy.stdin.drain()
    try:
        got = [json.loads(await proxy.stdout.readline()) for _ in range(answers)]
    finally:
        proxy.stdin.close()
        await proxy.wait()
    return got, (await proxy.stderr.read()).decode()


async def test_the_proxy_answers_an_error_when_the_url_is_not_an_mcp_server() -> None:
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotMcp)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{web.server_address[1]}/"
        (answer,), stderr = await proxy_exchange(url, [json.dumps(INITIALIZE).encode() + b"\n"], 1)
    finally:
        web.shutdown()
    assert answer["id"] == INITIALIZE["id"]
    assert answer["error"]["message"] == (
        f"{url} answered HTTP 200 with text/html, not MCP: is DURABLE_MCP_URL the durable-mcp "
        "server's /mcp endpoint?"
    )
    assert "Traceback" not in stderr


async def test_a_line_over_64_mib_is_dropped_with_an_error_and_the_next_one_is_answered(
    server: Path, port: int
) -> None:
    padding = b"x" * (64 * 1024 * 1024)
    too_long = b'{"jsonrpc": "2.0", "id": 9, "method": "ping", "_": "' + padding + b'"}\n'
    lines = [
        INITIALIZE,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 10, "method": "ping"},
    ]
    encoded = [json.dumps(line).encode() + b"\n" for line in lines]

    answers, stderr = await proxy_exchange(
        f"http://127.0.0.1:{port}/mcp", [*encoded[:2], too_long, encoded[2]], 3
    )

    by_id = {answer["id"]: answer for answer in answers}
    assert by_id[None]["error"]["message"] == "the proxy reads lines of at most 67108864 bytes"
    assert by_id[10]["result"] == {}
    assert "Traceback" not in stderr
