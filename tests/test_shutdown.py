"""Stopping the real server while an agent waits in await_result: a normal answer, no noise.

SIGTERM: the waiting call answers at once with its jobs still running, the server
exits 0 with nothing in its log at ERROR, and the jobs carry on at the next start.
kill -9 under the proxy: the agent hears the server is not reachable, the proxy's
stderr holds no traceback, and the proxy works again once the server is back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from durable_mcp_testing.helpers import (
    SESSION_INITIALIZE,
    SESSION_INITIALIZED,
    noise,
    session_request,
)
from durable_mcp_testing.processes import PROXY, free_port, running_server, start_server, stop


async def await_until_it_waits(client: Client[Any], job_name: str) -> asyncio.Task[Any]:
    """Call await_result for ``job_name`` in a task; return it once the server is waiting.

    The first progress notification (after the server's 5 s interval) comes from
    inside the wait, so the server is surely waiting by then.
    """
    waiting = asyncio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        waiting.set()

    call = asyncio.create_task(
        client.call_tool(
            "await_result",
            {"job_names": [job_name]},
            progress_handler=on_progress,
            raise_on_error=False,
        )
    )
    await asyncio.wait_for(waiting.wait(), timeout=60)
    return call


@pytest.mark.parametrize("mode", ["auto", "legacy"], ids=["2026-07-28", "session"])
async def test_sigterm_mid_await_answers_running_and_the_server_exits_cleanly(
    tmp_path: Path, mode: str
) -> None:
    # "session": a client of the 2025-11-25 protocol (Claude Desktop through the proxy).
    port, data_dir, log = free_port(), tmp_path / "data", tmp_path / "server.log"
    url = f"http://127.0.0.1:{port}/mcp"
    server = start_server(port, data_dir, log=log)
    try:
        async with Client(url, mode=mode) as client:
            await client.call_tool("set_timer", {"timer_name": "tea", "seconds": 600})
            call = await await_until_it_waits(client, "tea")
            os.killpg(server.pid, signal.SIGTERM)
            result = await asyncio.wait_for(call, timeout=60)
        returncode = await asyncio.to_thread(server.wait, 60)
    finally:
        stop(server)

    assert not result.is_error, result.content
    tea = result.structured_content["tea"]
    assert (tea["job_name"], tea["kind"], tea["status"]) == ("tea", "timer", "running")
    assert returncode == 0
    assert noise(log.read_text()) == []

    # The job was not touched by the stop: the next start carries it on.
    with running_server(port, data_dir):
        async with Client(url) as client:
            probe = (await client.call_tool("probe_status", {"job_names": ["tea"]})).data
    assert probe[0]["status"] == "running"


async def test_kill_9_mid_await_under_the_proxy_is_a_clear_error_and_no_traceback(
    tmp_path: Path,
) -> None:
    port, data_dir, proxy_log = free_port(), tmp_path / "data", tmp_path / "proxy.log"
    transport = StdioTransport(
        command=sys.executable,
        args=[PROXY],
        env={"DURABLE_MCP_URL": f"http://127.0.0.1:{port}/mcp"},
        keep_alive=False,
        log_file=proxy_log,
    )
    server = start_server(port, data_dir)
    try:
        async with Client(transport) as proxied:
            await proxied.call_tool("set_timer", {"timer_name": "tea", "seconds": 600})
            # One call the server is surely waiting in, and one just sent, whose
            # response has not begun: the case whose error FastMCP's client left
            # unread ("Task exception was never retrieved").
            waiting = await await_until_it_waits(proxied, "tea")
            just_sent = asyncio.create_task(
                proxied.call_tool("await_result", {"job_names": ["tea"]}, raise_on_error=False)
            )
            stop(server, signal.SIGKILL)
            results = await asyncio.wait_for(asyncio.gather(waiting, just_sent), timeout=60)

            for result in results:
                assert result.is_error
                text = result.content[0].text
                assert f"not reachable at http://127.0.0.1:{port}/mcp" in text
                assert "make run" in text

            # The proxy heals once the server is back, and the timer survived.
            server = start_server(port, data_dir)
            probe = (await proxied.call_tool("probe_status", {"job_names": ["tea"]})).data
            assert probe[0]["status"] == "running"
    finally:
        stop(server)

    assert noise(proxy_log.read_text()) == []


def test_sigterm_while_a_session_holds_its_get_stream_ends_the_stream_cleanly(
    tmp_path: Path,
) -> None:
    port, log = free_port(), tmp_path / "server.log"
    server = start_server(port, tmp_path / "data", log=log)
    try:
        opened = session_request(port, "POST", SESSION_INITIALIZE)
        session = opened.getheader("mcp-session-id")
        opened.read()
        session_request(port, "POST", SESSION_INITIALIZED, session).read()
        stream = session_request(port, "GET", session=session)  # the server's messages come here
        assert stream.status == 200

        os.killpg(server.pid, signal.SIGTERM)
        ended = stream.read()  # IncompleteRead if the server cut it
        returncode = server.wait(60)
    finally:
        stop(server)

    assert ended == b"" and returncode == 0
    assert noise(log.read_text()) == []
