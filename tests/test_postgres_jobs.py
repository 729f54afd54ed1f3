"""Jobs on Postgres: list_jobs and `durable-mcp jobs`, and removal after the retention."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from resonate.types import PromiseRecord, Value

from durable_mcp.jobs.status import LISTED, status_from_record
from durable_mcp.postgres_jobs import (
    LOCK_SPACE,
    NOW,
    SWEEP_LOCK,
    PostgresJobsEngine,
    _listed,
    created_job,
)
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.helpers import eventually
from durable_mcp_testing.postgres_server import needs_schema, stored_sleep
from durable_mcp_testing.processes import DURABLE_MCP, free_port, running_server

pytestmark = needs_schema


async def call(url: str, tool: str, **arguments: object) -> Any:
    async with Client(url) as client:
        return (await client.call_tool(tool, arguments)).data


@contextmanager
def server(postgres: Any, archive: FakeOpenMeteo, tmp_path: Path, **env: str) -> Iterator[str]:
    """A durable-mcp server on Postgres; its url. Its log is tmp_path/server.log."""
    port = free_port()
    env |= {"RESONATE_PG_DSN": postgres.get_uri(), "OPEN_METEO_ARCHIVE_URL": archive.url}
    with running_server(port, tmp_path / "data", env, log=tmp_path / "server.log"):
        yield f"http://127.0.0.1:{port}/mcp"


def jobs_command(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RESONATE_PG_DSN": dsn}
    return subprocess.run(
        [DURABLE_MCP, "jobs", *args], env=env, capture_output=True, text=True, timeout=60
    )


def names_in(table: str) -> list[str]:
    """The JOB column of `durable-mcp jobs`'s table."""
    return [line.split()[0] for line in table.splitlines()[1:] if not line.startswith("...")]


async def test_jobs_are_listed_newest_first_filtered_and_paged(
    postgres: Any, fake_archive: FakeOpenMeteo, tmp_path: Path
) -> None:
    dsn = postgres.get_uri()
    before = jobs_command(dsn)  # the server creates the job index as it starts
    assert before.returncode == 2
    assert "start `durable-mcp serve` with RESONATE_PG_DSN once" in before.stderr

    with server(postgres, fake_archive, tmp_path) as url:
        fake_archive.fail_with(404)
        place = {"longitude": 2, "year": 2020, "month": 1}
        failed = (await call(url, "start_gathering", latitude=1, **place))["job_name"]
        await call(url, "await_result", job_names=[failed])
        done = (await call(url, "start_gathering", latitude=3, **place))["job_name"]
        await call(url, "await_result", job_names=[done])
        await call(url, "set_timer", timer_name="a", seconds=600)
        await call(url, "set_timer", timer_name="b", seconds=600)
        await call(url, "cancel_job", job_name="b")
        await call(url, "set_timer", timer_name="c", seconds=0)
        await call(url, "await_result", job_names=["c"])

        async def names(**filters: object) -> list[str]:
            return [job["job_name"] for job in (await call(url, "list_jobs", **filters))["jobs"]]

        listing = await call(url, "list_jobs")
        assert [(job["job_name"], job["kind"], job["status"]) for job in listing["jobs"]] == [
            ("c", "timer", "completed"),
            ("b", "timer", "cancelled"),
            ("a", "timer", "running"),
            (done, "weather_data", "completed"),
            (failed, "weather_data", "failed"),
        ]
        assert listing["next_cursor"] is None
        assert set(listing["jobs"][2]) == {"job_name", "kind", "status", "created_at"}
        assert set(listing["jobs"][0]) == {"job_name", "kind", "status", "created_at", "settled_at"}
        assert await names(status="running") == ["a"]
        assert await names(status="completed") == ["c", done]
        assert await names(status="failed") == [failed]
        assert await names(status="cancelled") == ["b"]
        assert await names(kind="weather_data") == [done, failed]
        assert await names(kind="timer", status="completed") == ["c"]
        assert await names(kind="countdown") == []

        seen: list[str] = []
        cursor = None
        while True:
            page = await call(url, "list_jobs", limit=2, cursor=cursor)
            seen += [job["job_name"] for job in page["jobs"]]
            await call(url, "set_timer", timer_name=f"new{len(seen)}", seconds=600)  # meanwhile
            if (cursor := page["next_cursor"]) is None:
                break
        assert seen == ["c", "b", "a", done, failed]

        for arguments, message in [
            ({"cursor": "nope"}, "cursor 'nope' names no job"),
            # not a status list_jobs offers: its schema refuses it before any query
            ({"status": "not_found"}, r"status: Input should be 'running', .* \(got 'not_found'\)"),
        ]:
            with pytest.raises(ToolError, match=message):
                await call(url, "list_jobs", **arguments)

        # The jobs page's data: a search by name, and a job's steps, from Postgres.
        async with httpx.AsyncClient(base_url=url.removesuffix("/mcp")) as http:
            found = (await http.get("/jobs/api/jobs", params={"name": "new"})).json()
            assert [job["job_name"] for job in found["jobs"]] == ["new5", "new4", "new2"]
            page = (await http.get("/jobs/api/job/a")).json()
            assert page["arguments"] == {"timer_name": "a", "seconds": 600}
            assert [(s["kind"], s["state"]) for s in page["steps"]] == [("sleep", "pending")]
            counts = (await http.get("/metrics")).text
            assert 'durable_mcp_jobs{kind="timer",status="running"} 4.0' in counts

        printed = jobs_command(dsn)
        assert printed.returncode == 0, printed.stderr
        assert printed.stdout.splitlines()[0].split() == ["JOB", "KIND", "STATUS", "AGE"]
        assert names_in(printed.stdout) == ["new5", "new4", "new2", "c", "b", "a", done, failed]
        rows = [line.split()[:3] for line in printed.stdout.splitlines()]
        assert ["c", "timer", "completed"] in rows
        assert [failed, "weather_data", "failed"] in rows
        running = jobs_command(dsn, "--status", "running", "--kind", "timer", "--limit", "2")
        assert names_in(running.stdout) == ["new5", "new4"]
        assert running.stdout.splitlines()[-1] == "... and more (--limit)"
    assert "ERROR" not in (tmp_path / "server.log").read_text()


async def test_finished_jobs_past_the_retention_are_removed_and_their_names_start_new_jobs(
    postgres: Any, fake_archive: FakeOpenMeteo, tmp_path: Path
) -> None:
    dsn = postgres.get_uri()
    with server(postgres, fake_archive, tmp_path, DURABLE_MCP_RETENTION="1") as url:
        await call(url, "set_timer", timer_name="done", seconds=0)
        await call(url, "await_result", job_names=["done"])
        await call(url, "set_timer", timer_name="stopped", seconds=600)

        async def sleeping(timer: str) -> tuple[str, int] | None:
            return stored_sleep(postgres, timer)

        _, old_deadline = await eventually(lambda: sleeping("stopped"))
        await call(url, "cancel_job", job_name="stopped")  # its sleep stays pending
        await call(url, "set_timer", timer_name="running", seconds=600)
        await eventually(lambda: sleeping("running"))

        # Another replica (the test) removes jobs, with the same 1 s retention, and
        # takes turns with the others: while one holds the sweep lock it does not.
        sweeper = PostgresJobsEngine(
            dsn, pid="sweeper", group="sweeper", retention=timedelta(seconds=1), sweep_every=0.05
        )
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as other:

            async def past_the_retention() -> bool | None:
                row = await (
                    await other.execute(
                        f"SELECT settled_at <= {NOW} - 1000 FROM resonate.promises "
                        "WHERE id = 'stopped'"
                    )
                ).fetchone()
                return True if row is not None and row[0] else None

            await eventually(past_the_retention)
            await other.execute("SELECT pg_advisory_lock(%s, %s)", [LOCK_SPACE, SWEEP_LOCK])
            assert await sweeper.sweeper.sweep() == 0
            await other.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_SPACE, SWEEP_LOCK])

            async def kept() -> list[str] | None:
                rows = await (await other.execute("SELECT id FROM resonate.promises")).fetchall()
                ids = sorted(row[0] for row in rows)
                return ids if "done" not in ids and "stopped" not in ids else None

            await sweeper.start()
            try:
                # The steps go with their jobs (a cancelled timer's pending sleep too).
                assert await eventually(kept) == ["running", "running:1"]
            finally:
                await sweeper.stop()
            tasks = await (await other.execute("SELECT id FROM resonate.tasks")).fetchall()
            assert sorted(row[0] for row in tasks) == ["running", "running:1"]
            indexed = await (await other.execute("SELECT id FROM durable_mcp.jobs")).fetchall()
            assert indexed == [("running",)]

        statuses = await call(url, "probe_status", job_names=["done", "stopped", "running"])
        assert [job["status"] for job in statuses] == ["not_found", "not_found", "running"]
        assert [job["job_name"] for job in (await call(url, "list_jobs"))["jobs"]] == ["running"]

        # The names are free again: new jobs, with steps of their own.
        await call(url, "set_timer", timer_name="stopped", seconds=600)
        state, deadline = await eventually(lambda: sleeping("stopped"))
        assert state == "pending"
        assert deadline > old_deadline  # the new timer's own sleep, not the old one's
        await call(url, "set_timer", timer_name="done", seconds=0)
        assert await call(url, "await_result", job_names=["done"]) == {"done": "complete"}
        listing = await call(url, "list_jobs")
        assert [job["job_name"] for job in listing["jobs"]] == ["done", "stopped", "running"]
    assert "ERROR" not in (tmp_path / "server.log").read_text()


def test_the_requests_that_create_a_job_are_told_apart() -> None:
    def envelope(kind: str, data: dict[str, Any]) -> str:
        return json.dumps({"kind": kind, "head": {"corrId": "1"}, "data": data})

    def task_create(job_id: str) -> str:
        action = {"kind": "promise.create", "head": {}, "data": {"id": job_id}}
        return envelope("task.create", {"pid": "p", "ttl": 1, "action": action})

    assert created_job(task_create("tea")) == "tea"
    assert created_job(envelope("promise.create", {"id": "tea"})) == "tea"
    assert created_job(task_create("tea:1")) is None  # a step
    fence = {"id": "tea", "version": 1, "action": {"kind": "promise.create", "data": {"id": "x"}}}
    assert created_job(envelope("task.fence", fence)) is None
    assert created_job(envelope("promise.get", {"id": "tea"})) is None
    assert created_job('{"kind": "promise.create"') is None


@pytest.mark.parametrize(
    "state", ["pending", "resolved", "rejected", "rejected_timedout", "rejected_canceled"]
)
def test_a_listed_job_has_the_status_probe_status_gives(state: str) -> None:
    settled_at = None if state == "pending" else 2_000
    listed = _listed(
        "tea", "timer", 1_000, state, settled_at, 10_000, False, 3_000, None, None, None
    )
    record = PromiseRecord(
        id="tea",
        state=state,  # type: ignore[arg-type]
        param=Value(data={"func": "timer", "args": ["tea", 60]}),
        timeout_at=10_000,
        created_at=1_000,
        settled_at=settled_at,
    )
    probed = status_from_record("tea", record, 3_000)
    assert listed == {key: probed[key] for key in LISTED if key in probed}


def test_a_pending_job_past_its_deadline_is_listed_as_failed() -> None:
    # resonate-pg reports it so (rejected_timedout) before its timer settles it.
    listed = _listed("tea", "timer", 1_000, "pending", None, 2_000, False, 3_000, None, None, None)
    assert (listed["status"], listed["settled_at"]) == ("failed", "1970-01-01T00:00:02.000+00:00")
