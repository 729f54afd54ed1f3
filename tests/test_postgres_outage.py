"""Postgres out of reach: calls fail in one clear line, the server comes back by itself,
and a database that cannot be used stops the start (see ``durable_mcp_testing.postgres_server``)."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastmcp import Client

from durable_mcp.cli import EXIT_BAD_START
from durable_mcp.postgres import DatabaseUnreachable, QuietOutages, where
from durable_mcp_testing.helpers import eventually
from durable_mcp_testing.postgres_server import (
    needs_schema,
    start_postgres,
    stop_postgres,
    stored_sleep,
)
from durable_mcp_testing.processes import DURABLE_MCP, free_port, running_server

pytestmark = needs_schema


@pytest.fixture
def url(postgres: Any, tmp_path: Path) -> Iterator[str]:
    """A durable-mcp server on the Postgres engine; its log is tmp_path/server.log."""
    port = free_port()
    env = {"RESONATE_PG_DSN": postgres.get_uri()}
    with running_server(port, tmp_path / "data", env, log=tmp_path / "server.log"):
        yield f"http://127.0.0.1:{port}/mcp"


async def call(url: str, tool: str, **arguments: object) -> Any:
    async with Client(url) as client:
        return await client.call_tool(tool, arguments, raise_on_error=False)


async def test_an_outage_fails_calls_in_one_line_and_a_timer_due_in_it_fires_after(
    url: str, postgres: Any, tmp_path: Path
) -> None:
    await call(url, "set_timer", timer_name="tea", seconds=1)

    async def sleeping() -> tuple[str, int] | None:
        return stored_sleep(postgres, "tea")

    state, deadline = await eventually(sleeping)
    assert state == "pending"
    stop_postgres(postgres)
    try:
        during = await call(url, "probe_status", job_names=["tea"])
        assert during.is_error
        message = during.content[0].text
        assert message == (
            f"the Postgres database at {where(postgres.get_uri())} is unreachable "
            "(No such file or directory); the server keeps trying, retry when it is back"
        )

        async def due() -> bool | None:
            return time.time() * 1000 > deadline or None

        await eventually(due)  # the timer falls due while Postgres is down
    finally:
        start_postgres(postgres)

    # The same server serves again, and the timer that fell due meanwhile fires,
    # on its own deadline.
    done = await call(url, "await_result", job_names=["tea"])
    assert not done.is_error and done.data == {"tea": "complete"}
    assert stored_sleep(postgres, "tea") == ("resolved", deadline)

    # Each loop logged the outage once, when it began and when it ended.
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log and " ERROR " not in log
    for began in ("cannot fire durable timers", "cannot take work from Postgres"):
        assert log.count(began) == 1, log
    assert log.count("cannot LISTEN on Postgres") <= 1, log

    async def timers_back() -> bool | None:
        return "durable timers are firing again" in (tmp_path / "server.log").read_text() or None

    await eventually(timers_back)


def serve(dsn: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DURABLE_MCP, "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "data")],
        env={**os.environ, "RESONATE_PG_DSN": dsn},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_database_without_the_schema_stops_the_start(postgres: Any, tmp_path: Path) -> None:
    postgres.psql("CREATE DATABASE bare;")
    # The embedded server trusts local users: the password is never asked for.
    dsn = postgres.get_uri(database="bare").replace("postgres:@", "postgres:s3cret@")
    started = serve(dsn, tmp_path)
    assert started.returncode == EXIT_BAD_START
    (line,) = started.stderr.splitlines()
    assert line == (
        f"durable-mcp: RESONATE_PG_DSN: the database 'bare' at {where(dsn)} has no "
        'resonate-pg schema; run `make pg-schema`, then `psql "$RESONATE_PG_DSN" -f resonate.sql`'
    )
    assert "s3cret" not in line


def test_an_unreachable_database_stops_the_start(tmp_path: Path) -> None:
    port = free_port()  # nothing listens on it
    started = serve(f"postgresql://durable:s3cret@127.0.0.1:{port}/jobs", tmp_path)
    assert started.returncode == EXIT_BAD_START
    (line,) = started.stderr.splitlines()
    assert line.startswith(
        f"durable-mcp: RESONATE_PG_DSN: cannot connect to the Postgres database at "
        f"127.0.0.1:{port} (Connection refused); "
    )
    assert "s3cret" not in line


def test_messages_name_host_and_port_never_the_password() -> None:
    assert where("postgresql://u:pw@db.example:6543/jobs") == "db.example:6543"
    assert where("host=db.example user=u password=pw dbname=jobs") == "db.example:5432"
    assert where("postgresql://u:pw@/jobs?host=/run/pg") == "/run/pg:5432"


def _record(name: str, level: int, msg: str, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord(name, level, __file__, 1, msg, (), exc_info)


def test_the_sdks_lines_about_an_outage_are_one_warning_or_none() -> None:
    quiet = QuietOutages()
    cause = DatabaseUnreachable("db:5432", "Connection refused")
    try:
        raise RuntimeError("connector error") from cause
    except RuntimeError as exc:
        failed = _record("resonate.core", logging.ERROR, "core: execution failed", exc)
    assert quiet.filter(failed)
    assert (failed.levelname, failed.exc_info) == ("WARNING", None)
    assert failed.getMessage() == (
        "core: execution failed: the Postgres database at db:5432 is unreachable "
        "(Connection refused)"
    )
    # Repeated every minute for each awaited job: said once by the engine instead.
    refresh = _record("resonate.resonate", logging.WARNING, f"refresh failed id=a: {cause}")
    assert not quiet.filter(refresh)
    other = _record("resonate.core", logging.ERROR, "core: something else")
    assert quiet.filter(other) and other.levelname == "ERROR"


async def test_readyz_fails_while_postgres_is_down_and_recovers(url: str, postgres: Any) -> None:
    async with httpx.AsyncClient(base_url=url.removesuffix("/mcp")) as http:
        ready = await http.get("/readyz", headers={"Accept": "application/json"})
        assert ready.json() == {
            "ready": True,
            "checks": {"store": "ok", "engine": "ok", "postgres": "ok"},
        }
        stop_postgres(postgres)
        try:
            down = await http.get("/readyz")
            assert down.status_code == 503
            assert down.text.startswith("not ready: postgres: ")
            assert down.text.count("\n") == 1  # one line
            metrics = (await http.get("/metrics")).text
            assert "durable_mcp_postgres_up 0.0" in metrics
        finally:
            start_postgres(postgres)

        async def ready_again() -> bool | None:
            return True if (await http.get("/readyz")).status_code == 200 else None

        await eventually(ready_again)
        assert "durable_mcp_postgres_up 1.0" in (await http.get("/metrics")).text
