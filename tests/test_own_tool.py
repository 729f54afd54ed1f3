"""The README's "Add your own durable tool" examples, run as written: a
countdown added to our server, and a report builder, a server of its own,
which also survives kill -9 without repeating a step it finished."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

import countdown
import report_builder
from durable_mcp.config import Settings
from durable_mcp.functions import BUILT_IN
from durable_mcp.functions.weather import OpenMeteoArchive
from durable_mcp.jobs.registry import DurableTools
from durable_mcp.server import create_server
from durable_mcp.store import EmbeddedStore
from durable_mcp.store.embedded import peek
from durable_mcp_testing.crashes import saved_notes
from durable_mcp_testing.held_report_builder import ReportBuilder
from durable_mcp_testing.helpers import STORE_TICK, FakeTime, call, core, eventually
from durable_mcp_testing.tasks_client import start_task, task_method, tasks_client

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("example", ["countdown.py", "report_builder.py"])
def test_the_readme_shows_the_example_as_it_is(example: str) -> None:
    assert (ROOT / "examples" / example).read_text() in (ROOT / "README.md").read_text()


@pytest.fixture
def server(settings: Settings, archive: OpenMeteoArchive, fake_time: FakeTime) -> FastMCP:
    return create_server(
        settings,
        archive=archive,
        durable=DurableTools(BUILT_IN, countdown.durable),
        **fake_time.seams,
    )


async def test_a_new_durable_tool_gets_start_probe_await_cancel_and_list(
    client: Client[Any], fake_time: FakeTime
) -> None:
    started = await call(client, "start_countdown", seconds=2)
    assert started == {"job_name": "countdown_2", "status": "running"}
    assert await call(client, "start_countdown", seconds=2) == started  # attaches
    (probe,) = await call(client, "probe_status", job_names=["countdown_2"])
    assert core(probe) == {"job_name": "countdown_2", "kind": "countdown", "status": "running"}
    # Two durable sleeps, one after the other: fake time passes both.
    counted_down = call(client, "await_result", job_names=["countdown_2"])
    assert await fake_time.run(counted_down, step=STORE_TICK, within=10) == {
        "countdown_2": "liftoff"
    }
    await call(client, "start_countdown", seconds=600)
    cancelled = await call(client, "cancel_job", job_name="countdown_600")
    assert cancelled["status"] == "cancelled"
    listed = await call(client, "list_jobs", kind="countdown")
    assert [(job["job_name"], job["status"]) for job in listed["jobs"]] == [
        ("countdown_600", "cancelled"),
        ("countdown_2", "completed"),
    ]


async def test_its_arguments_are_validated_from_the_signature(client: Client[Any]) -> None:
    with pytest.raises(ToolError, match="seconds: Input should be greater than or equal to 1"):
        await call(client, "start_countdown", seconds=0)
    tool = next(t for t in await client.list_tools() if t.name == "start_countdown")
    assert tool.description == (
        'Start a countdown; returns {"job_name"} at once. Then call await_result.'
    )


async def test_a_new_durable_tool_runs_as_a_task_for_a_client_that_asks(
    server: FastMCP, fake_time: FakeTime
) -> None:
    async with tasks_client(server) as client:
        created = await start_task(client, "start_countdown", seconds=2)
        assert (created["taskId"], created["status"]) == ("countdown_2", "working")
        await fake_time.advance(2 + 2 * STORE_TICK, step=STORE_TICK)
        done = await task_method(client, "tasks/get", "countdown_2")
        assert done["status"] == "completed"
        assert done["result"]["structuredContent"] == {"result": "liftoff"}


@pytest.fixture
async def reports() -> AsyncIterator[Client[Any]]:
    async with Client(report_builder.build(Settings(store="memory"))) as client:
        yield client


async def test_a_server_of_its_own_gets_its_durable_tool_and_the_job_tools(
    reports: Client[Any],
) -> None:
    assert {tool.name for tool in await reports.list_tools()} == {
        "build_report",
        "probe_status",
        "await_result",
        "answer_job",
        "cancel_job",
        "list_jobs",
    }
    started = await call(reports, "build_report", report_id="q3", topic="sales", sections=2)
    assert started == {"job_name": "report_q3", "status": "running"}
    asks = await call(reports, "await_result", job_names=["report_q3"])
    question = asks["report_q3"]["question"]
    assert (asks["report_q3"]["status"], question["message"]) == (
        "input_required",
        "Approve this outline:\nsales, part 1\nsales, part 2",
    )
    assert question["schema"] == report_builder.APPROVAL
    await call(reports, "answer_job", job_name="report_q3", answer={"approve": True})
    report = await call(reports, "await_result", job_names=["report_q3"])
    assert report == {
        "report_q3": {
            "report_id": "q3",
            "topic": "sales",
            "sections": ["sales, part 1: 3 words on it.", "sales, part 2: 3 words on it."],
        }
    }
    listed = await call(reports, "list_jobs", kind="build_report")
    assert [job["job_name"] for job in listed["jobs"]] == ["report_q3"]


async def test_a_job_name_rule_that_gives_a_colon_is_a_clear_tool_error(
    reports: Client[Any],
) -> None:
    with pytest.raises(
        ToolError, match=r"cannot name a job 'report_a:b': a job name must not contain ':'"
    ):
        await call(reports, "build_report", report_id="a:b", topic="sales")
    listed = await call(reports, "list_jobs")
    assert listed["jobs"] == []  # nothing was started


async def test_its_start_tool_takes_a_retry_and_its_schema_from_the_signature(
    reports: Client[Any],
) -> None:
    tool = next(t for t in await reports.list_tools() if t.name == "build_report")
    assert set(tool.input_schema["properties"]) == {"report_id", "topic", "sections", "retry"}
    assert tool.input_schema["required"] == ["report_id", "topic"]
    assert tool.input_schema["properties"]["sections"]["maximum"] == 20


def test_durable_tools_are_added_to_an_app_once() -> None:
    mcp = report_builder.build(Settings(store="memory"))
    before = mcp.providers[:]
    with pytest.raises(RuntimeError, match="already added to this app"):
        DurableTools(countdown.durable).add_to(mcp, Settings(store="memory"))
    assert mcp.providers == before  # nothing was added


@pytest.fixture
def builder(tmp_path: Path) -> Iterator[ReportBuilder]:
    """The example as a real process on the embedded store, its steps counted
    (durable_mcp_testing/held_report_builder.py); started by the test."""
    builder = ReportBuilder(tmp_path)
    yield builder
    builder.stop()


async def probed(url: str, job: str) -> dict[str, Any]:
    async with Client(url) as client:
        (status,) = await call(client, "probe_status", job_names=[job])
        return dict(status)


async def answered(url: str, job: str, answer: dict[str, Any]) -> dict[str, Any]:
    async with Client(url) as client:
        return dict(await call(client, "answer_job", job_name=job, answer=answer))


async def asking(url: str, job: str) -> dict[str, Any]:
    """The job's status once it waits for an answer."""

    async def asks() -> dict[str, Any] | None:
        status = await probed(url, job)
        return status if status["status"] == "input_required" else None

    return await eventually(asks)


# SIGTERM too: FastMCP's `mcp.run(transport="http")` ends the process on it
# before its lifespans stop (FastMCP #4927), which is a crash for the store.
@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGTERM], ids=["kill_9", "sigterm"])
async def test_the_report_builder_survives_a_kill_and_repeats_no_finished_step(
    builder: ReportBuilder, kill: signal.Signals
) -> None:
    # The first process holds the second section, before it runs, until it is killed.
    builder.start(hold="sales, part 2")
    async with Client(builder.url) as client:
        started = await call(client, "build_report", report_id="q3", topic="sales")
    assert started == {"job_name": "report_q3", "status": "running"}
    await asking(builder.url, "report_q3")
    await answered(builder.url, "report_q3", {"approve": True})

    await builder.until_ran("holding sales, part 2")

    async def progress_on_disk() -> dict[str, Any] | None:
        progress: dict[str, Any] | None = (
            saved_notes(builder.data_dir).get("report_q3", {}).get("progress")
        )
        return progress

    # Part 1 is done, and the progress that says so is on disk before the kill.
    on_disk = await eventually(progress_on_disk)
    assert on_disk == {"done": 1, "total": 3, "message": "writing 'sales, part 2'"}
    builder.stop(kill)

    builder.start()
    async with Client(builder.url) as client:
        report = await call(client, "await_result", job_names=["report_q3"])
    assert report["report_q3"]["sections"] == [
        f"sales, part {n}: 3 words on it." for n in (1, 2, 3)
    ]
    # Each step ran once: the one held when the kill came had not run yet.
    assert builder.ran() == [
        "outline sales",
        "section sales, part 1",
        "holding sales, part 2",
        "section sales, part 2",
        "section sales, part 3",
    ]
    assert "Traceback" not in builder.log.read_text()


async def test_a_question_and_its_answer_outlive_kill_9_before_and_after_the_answer(
    builder: ReportBuilder,
) -> None:
    builder.start()
    async with Client(builder.url) as client:
        await call(client, "build_report", report_id="q4", topic="sales")
    asked = await asking(builder.url, "report_q4")

    async def suspended() -> bool | None:
        return True if peek(builder.data_dir).tasks["report_q4"].state == "suspended" else None

    await eventually(suspended)  # it holds no worker and no lease while it waits
    builder.stop(signal.SIGKILL)  # while the question waits

    builder.start(hold="Intro")
    after_restart = await probed(builder.url, "report_q4")
    assert after_restart["status"] == "input_required"
    assert after_restart["question"] == asked["question"]  # the same question, the same id
    # The person edits the outline; the answer is on disk once acknowledged, and
    # the kill comes before the next step has run.
    edited = await answered(builder.url, "report_q4", {"approve": False, "outline": "Intro\nEnd"})
    assert edited["status"] == "running"
    await builder.until_ran("holding Intro")
    builder.stop(signal.SIGKILL)

    builder.start()
    async with Client(builder.url) as client:
        report = await call(client, "await_result", job_names=["report_q4"])
        with pytest.raises(ToolError, match=r"is not waiting for an answer \(it is completed\)"):
            await call(client, "answer_job", job_name="report_q4", answer={"approve": True})
    assert report["report_q4"]["sections"] == ["Intro: 1 words on it.", "End: 1 words on it."]
    # The job ended once, with the answer, and each step ran once.
    assert builder.ran() == ["outline sales", "holding Intro", "section Intro", "section End"]
    assert "Traceback" not in builder.log.read_text()


async def logged_while_building_a_report(
    sdk_level: int, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> set[str]:
    """The loggers that logged at INFO while an app of its own built a report,
    the SDK's logger at ``sdk_level`` before the app was built."""
    monkeypatch.setattr(logging.getLogger("resonate"), "level", sdk_level)
    caplog.set_level(logging.INFO)
    async with Client(report_builder.build(Settings(store="memory"))) as client:
        await call(client, "build_report", report_id="q3", topic="sales")
        await call(client, "await_result", job_names=["report_q3"])
    return {record.name for record in caplog.records}


async def test_an_app_of_its_own_logs_its_jobs_but_not_every_sdk_request(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a fresh process has it: nobody set the SDK's level (the suite's other
    # tests may have).
    names = await logged_while_building_a_report(logging.NOTSET, caplog, monkeypatch)
    assert "durable_mcp.jobs" in names  # job.started, job.completed
    assert not any(name.startswith("resonate") for name in names)


async def test_an_app_that_sets_the_sdks_level_keeps_it(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = await logged_while_building_a_report(logging.INFO, caplog, monkeypatch)
    assert "resonate.validation" in names


def run_example(cwd: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``code`` run with the examples importable, in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "examples"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def running_servers_store(tmp_path: Path) -> Iterator[Path]:
    """./.durable-mcp in ``tmp_path``, held as `make run`'s server holds it."""
    store = EmbeddedStore(tmp_path / ".durable-mcp", pid="make-run", group="durable-mcp")
    store.open()
    try:
        yield store.data_dir
    finally:
        store.close()


def test_the_report_builder_runs_beside_make_run_on_a_data_dir_of_its_own(
    tmp_path: Path, running_servers_store: Path
) -> None:
    built = run_example(tmp_path, "import report_builder; report_builder.build(); print('built')")

    assert built.returncode == 0 and built.stdout == "built\n", built.stderr
    assert (tmp_path / ".report-builder" / "journal.sqlite3").is_file()


def test_a_data_dir_in_use_stops_an_app_of_ones_own_with_one_line(
    tmp_path: Path, running_servers_store: Path
) -> None:
    refused = run_example(
        tmp_path,
        "import report_builder; report_builder.build()",
        DURABLE_MCP_DATA_DIR=str(running_servers_store),
    )

    assert refused.returncode == 1
    assert refused.stderr.startswith(
        f"durable-mcp: data dir {running_servers_store} is in use by another durable-mcp process"
    )
    assert refused.stderr.count("\n") == 1  # one line, no traceback


def test_a_bad_setting_stops_an_app_of_ones_own_with_one_line(tmp_path: Path) -> None:
    refused = run_example(
        tmp_path, "import report_builder; report_builder.build()", DURABLE_MCP_STORE="embeded"
    )

    assert refused.returncode == 1
    assert refused.stderr == (
        "durable-mcp: DURABLE_MCP_STORE: must be one of memory, embedded, got 'embeded'\n"
    )
