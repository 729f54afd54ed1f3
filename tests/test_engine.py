"""Engine selection and quiet logs in normal operation."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from resonate.connections.http import HttpConnection
from resonate.connections.local import LocalConnection
from resonate.observability import BackgroundTaskFailed

from durable_mcp.config import Settings
from durable_mcp.engine import build_engine, observe
from durable_mcp.postgres import PostgresEngine
from durable_mcp.sdk_compat import RunCountingHeartbeat
from durable_mcp.store import EmbeddedStore
from durable_mcp_testing.helpers import STORE_TICK, FakeTime


def test_memory_store_runs_on_the_sdks_in_process_connection() -> None:
    resonate = build_engine(Settings(store="memory")).resonate
    assert isinstance(resonate._network, LocalConnection)


def test_resonate_url_selects_the_resonate_server_over_http() -> None:
    resonate = build_engine(Settings(resonate_url="http://127.0.0.1:8001")).resonate
    assert isinstance(resonate._network, HttpConnection)


def test_a_postgres_dsn_selects_resonate_pg_with_our_timer_driver() -> None:
    resonate = build_engine(Settings(pg_dsn="postgresql://user@127.0.0.1:9/db")).resonate
    assert isinstance(resonate._network, PostgresEngine)


def test_the_embedded_store_is_the_default(tmp_path: Path) -> None:
    resonate = build_engine(Settings(data_dir=tmp_path)).resonate
    assert isinstance(resonate._network, EmbeddedStore)
    assert resonate._network.data_dir == tmp_path


def test_a_stale_task_delivery_is_not_logged_as_an_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    observe(BackgroundTaskFailed(cause="server error (code=409): task not in pending state"))
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


def test_other_background_failures_are_still_errors(caplog: pytest.LogCaptureFixture) -> None:
    observe(BackgroundTaskFailed(cause="server error (code=500): boom"))
    assert [r.levelno for r in caplog.records] == [logging.ERROR]


async def test_many_short_timers_complete_without_error_logs(
    client: Client[Any], fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    # Short sleeps whose deadline passes before the worker picks their task up
    # are what made the SDK log "background task failed ... 409": the clock
    # moves a millisecond at a time while they start, so some deadlines do.
    caplog.set_level(logging.INFO)
    names = [f"t{i}" for i in range(100)]
    starts = asyncio.gather(
        *(
            client.call_tool("set_timer", {"timer_name": n, "seconds": (i % 6) / 1000})
            for i, n in enumerate(names)
        )
    )
    await fake_time.run(starts, step=0.001, within=60)
    await_all = client.call_tool("await_result", {"job_names": names})
    results = (await fake_time.run(await_all, step=STORE_TICK, within=60)).data
    assert results == dict.fromkeys(names, "complete")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_tasks_heartbeat_stops_only_when_its_last_run_ends() -> None:
    # A retried job's new run starts while the cancelled one may still finish its
    # step: the old run's end must not stop the new run's heartbeat.
    class Recorder:
        def __init__(self) -> None:
            self.beating: dict[str, int] = {}

        def start(self, task_id: str, task_version: int) -> None:
            self.beating[task_id] = task_version

        def stop(self, task_id: str) -> None:
            self.beating.pop(task_id, None)

        def shutdown(self) -> None:
            self.beating.clear()

    recorder = Recorder()
    heartbeat = RunCountingHeartbeat(recorder)  # type: ignore[arg-type]
    heartbeat.start("job", 0)  # the old run
    heartbeat.start("job", 2)  # the new run, after retry
    heartbeat.stop("job")  # the old run ends
    assert recorder.beating == {"job": 2}
    heartbeat.stop("job")  # the new run ends
    assert recorder.beating == {}
