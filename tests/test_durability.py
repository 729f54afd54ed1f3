"""Crash tests: `kill -9` the real server mid-job, restart it on the same data dir.

A real process has no clock seam, so these tests assert what the store recorded
(read from its data dir, as `durable-mcp jobs` does) and what the fake archive
counted, never how long something took; they wait with `await_result` or with
bounded polling, whose bounds only fail a hung test.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from resonate.timing import now_ms

from durable_mcp_testing.crashes import (
    await_done,
    call_server,
    promise_ids_of,
    promise_of,
    saved,
    sleep_on_disk,
    timer_due_while_down,
    until_past,
)
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.helpers import eventually
from durable_mcp_testing.processes import DURABLE_MCP, Server, free_port

PLACE = {"latitude": 53.5, "longitude": -113.5, "year": 2024, "month": 3}
JOB = "weather_data_53.5_-113.5_2024_3"


@pytest.fixture
def server(tmp_path: Path, fake_archive: FakeOpenMeteo) -> Iterator[Server]:
    server = Server(tmp_path / "data", fake_archive.url)
    yield server
    server.close()


async def test_a_sleeping_timer_fires_on_its_original_deadline_after_kill_9(
    server: Server,
) -> None:
    server.start()
    await call_server(server, "set_timer", timer_name="tea", seconds=3)
    sleep = await sleep_on_disk(server, "tea")
    server.kill()
    server.start()
    # The restarted server keeps the one sleep and its deadline: it neither
    # starts the timer again nor loses it.
    after_restart = promise_of(saved(server), sleep.id)
    assert after_restart.timeout_at == sleep.timeout_at
    assert await await_done(server, ["tea"]) == {"tea": "complete"}
    state = saved(server)
    assert promise_ids_of(state, "tea") == ["tea", "tea:1"]
    fired = promise_of(state, "tea:1")
    assert (fired.state, fired.settled_at) == ("resolved", sleep.timeout_at)
    assert (promise_of(state, "tea").settled_at or 0) >= sleep.timeout_at


async def test_a_timer_whose_deadline_passed_while_down_fires_at_once(server: Server) -> None:
    await timer_due_while_down(server, "tea")
    restarted_at = now_ms()
    server.start()
    assert await await_done(server, ["tea"]) == {"tea": "complete"}
    # The dead process's lease on the job (60 s) was released at the restart, not waited out.
    assert (promise_of(saved(server), "tea").settled_at or 0) < restarted_at + 60_000


async def test_a_repeated_start_after_restart_attaches(server: Server) -> None:
    server.start()
    await call_server(server, "set_timer", timer_name="tea", seconds=60)
    server.kill()
    server.start()
    again = await call_server(server, "set_timer", timer_name="tea", seconds=60)
    assert again == {"promise_id": "tea", "status": "running"}


async def test_a_cancelled_timer_stays_cancelled_after_kill_9(server: Server) -> None:
    server.start()
    await call_server(server, "set_timer", timer_name="tea", seconds=1)
    sleep = await sleep_on_disk(server, "tea")
    await call_server(server, "cancel_job", job_name="tea")
    server.kill()
    await until_past(sleep.timeout_at)
    server.start()

    async def sleep_ended() -> bool | None:  # the restarted store acted on the deadline
        return True if promise_of(saved(server), sleep.id).state == "resolved" else None

    await eventually(sleep_ended)
    assert await call_server(server, "get_timer_status", timer_name="tea") == {
        "status": "cancelled"
    }
    assert promise_of(saved(server), "tea").state == "rejected_canceled"


async def test_a_finished_fetch_is_not_repeated_after_kill_9(
    server: Server, fake_archive: FakeOpenMeteo
) -> None:
    server.start()
    await call_server(server, "start_gathering", **PLACE)
    await await_done(server, [JOB])
    server.kill()
    server.start()
    again = await call_server(server, "start_gathering", **PLACE)
    assert again == {"job_name": JOB, "status": "completed"}
    result = (await call_server(server, "await_result", job_names=[JOB]))[JOB]
    assert result["summary"]["days"] == 31
    assert fake_archive.total_requests == 1


async def test_a_fetch_interrupted_by_kill_9_runs_again_after_restart(
    server: Server, fake_archive: FakeOpenMeteo
) -> None:
    fake_archive.hold()  # the fetch hangs until released: the crash lands mid-fetch
    server.start()
    await call_server(server, "start_gathering", **PLACE)
    await fake_archive.arrived()  # the fetch is in flight
    server.kill()
    fake_archive.release()
    server.start()
    result = (await call_server(server, "await_result", job_names=[JOB]))[JOB]
    assert result["summary"]["days"] == 31
    # One log line per state change, across the crash.
    log = (server.data_dir.parent / "server.log").read_text()
    events = [
        line.split("durable_mcp.jobs: ", 1)[1] for line in log.splitlines() if "event=job." in line
    ]
    assert events == [
        f"event=job.started job={JOB} kind=weather_data",
        f"event=job.resumed job={JOB}",
        f"event=job.completed job={JOB} kind=weather_data",
    ]


def test_a_second_server_on_the_same_data_dir_exits_with_the_holders_pid(
    server: Server,
) -> None:
    server.start()
    assert server.process is not None
    second = subprocess.run(
        [DURABLE_MCP, "serve", "--port", str(free_port()), "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 2
    (line,) = second.stderr.strip().splitlines()
    assert f"data dir {server.data_dir} is in use" in line
    assert f"(pid {server.process.pid})" in line


@pytest.mark.timeout(600)  # eight restarts: room for a machine several times slower
async def test_random_kills_lose_no_job_and_repeat_no_finished_fetch(
    server: Server, fake_archive: FakeOpenMeteo
) -> None:
    rng = random.Random(20261121)
    fake_archive.delay_seconds = 0.05
    acknowledged: dict[str, object] = {}  # job -> what its result must be
    fetches_when_done: dict[str, int] = {}  # weather job -> fetches when first seen done
    kills = 8
    server.start()
    for round_ in range(kills):
        for n in range(3):
            name = f"r{round_}_{n}"
            await call_server(server, "set_timer", timer_name=name, seconds=rng.uniform(0, 1.5))
            acknowledged[name] = "complete"
        place = {**PLACE, "month": round_ % 12 + 1, "year": 2000 + round_ // 12}
        job = (await call_server(server, "start_gathering", **place))["job_name"]
        acknowledged[job] = place
        await asyncio.sleep(rng.uniform(0, 0.6))  # a random moment to kill at, not a wait
        for status in await call_server(server, "probe_status", job_names=list(acknowledged)):
            name = status["job_name"]
            if name.startswith("weather") and status["status"] == "completed":
                fetches_when_done.setdefault(name, _fetches(fake_archive, acknowledged[name]))
        server.kill()
        server.start()

    results = await await_done(server, list(acknowledged))
    for name, expected in acknowledged.items():
        if expected == "complete":
            assert results[name] == "complete", name
        else:
            assert results[name]["summary"]["days"] > 27, name  # a whole month came back
    assert fetches_when_done  # some fetches were done before a later kill: the rule was tested
    for name, fetches in fetches_when_done.items():
        assert _fetches(fake_archive, acknowledged[name]) == fetches, f"{name} fetched again"
    assert len(acknowledged) == kills * 4


def _fetches(fake: FakeOpenMeteo, place: object) -> int:
    assert isinstance(place, dict)
    month = f"{place['year']}-{place['month']:02d}-01"
    return sum(count for query, count in fake.requests.items() if month in query)


async def test_a_start_says_it_resumes_only_the_jobs_still_running(server: Server) -> None:
    log = server.data_dir.parent / "server.log"
    server.start()
    await call_server(server, "set_timer", timer_name="tea", seconds=600)
    await call_server(server, "cancel_job", job_name="tea")
    server.close()  # a clean stop: the cancelled timer's sleep is still waiting for its deadline
    server.start()
    # The port is bound before the engine starts: a call is answered once it has.
    await call_server(server, "probe_status", job_names=["tea"])
    assert "resuming" not in log.read_text()

    await call_server(server, "set_timer", timer_name="coffee", seconds=600)
    server.close()
    server.start()
    await call_server(server, "probe_status", job_names=["coffee"])
    resuming = [line for line in log.read_text().splitlines() if "resuming" in line]
    assert [line.split(": ", 1)[1] for line in resuming] == ["resuming 1 interrupted job"]
