"""Crash tests: `kill -9` the real server mid-job, restart it on the same data dir."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastmcp import Client

from fake_open_meteo import FakeOpenMeteo
from processes import DURABLE_MCP, free_port, start_server, stop

PLACE = {"latitude": 53.5, "longitude": -113.5, "year": 2024, "month": 3}
JOB = "weather_data_53.5_-113.5_2024_3"


class Server:
    """Starts, kills and restarts `durable-mcp serve` on one port and data dir."""

    def __init__(self, data_dir: Path, archive_url: str) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.env = {"OPEN_METEO_ARCHIVE_URL": archive_url}
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.data_dir.parent / "server.log"
        self.process = start_server(self.port, self.data_dir, self.env, log)

    def kill(self) -> None:
        assert self.process is not None
        stop(self.process, signal.SIGKILL)

    def close(self) -> None:
        if self.process is not None:
            stop(self.process)


@pytest.fixture
def server(tmp_path: Path, fake_archive: FakeOpenMeteo) -> Iterator[Server]:
    server = Server(tmp_path / "data", fake_archive.url)
    yield server
    server.close()


async def call(server: Server, tool: str, **arguments: object) -> object:
    async with Client(server.url) as client:
        return (await client.call_tool(tool, arguments)).data


async def wait_until(server: Server, name: str, status: str, within: float) -> float:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        (job,) = await call(server, "probe_status", job_names=[name])
        if job["status"] == status:
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} did not become {status} within {within} s")


async def test_a_sleeping_timer_fires_on_its_original_deadline_after_kill_9(
    server: Server,
) -> None:
    server.start()
    await call(server, "set_timer", timer_name="tea", seconds=6)
    set_at = time.monotonic()
    server.kill()
    server.start()
    assert await call(server, "get_timer_status", timer_name="tea") == {"status": "running"}
    done_at = await wait_until(server, "tea", "completed", within=20)
    assert 6 <= done_at - set_at < 8  # its own deadline, not a restarted six seconds


async def test_a_timer_whose_deadline_passed_while_down_fires_at_once(server: Server) -> None:
    server.start()
    await call(server, "set_timer", timer_name="tea", seconds=1)
    server.kill()
    await asyncio.sleep(1.5)
    server.start()
    restarted_at = time.monotonic()
    done_at = await wait_until(server, "tea", "completed", within=30)
    assert done_at - restarted_at < 10  # well before the dead process's 60 s lease lapses


async def test_a_repeated_start_after_restart_attaches(server: Server) -> None:
    server.start()
    await call(server, "set_timer", timer_name="tea", seconds=60)
    server.kill()
    server.start()
    again = await call(server, "set_timer", timer_name="tea", seconds=60)
    assert again == {"promise_id": "tea", "status": "running"}


async def test_a_cancelled_timer_stays_cancelled_after_kill_9(server: Server) -> None:
    server.start()
    await call(server, "set_timer", timer_name="tea", seconds=1)
    await call(server, "cancel_job", job_name="tea")
    server.kill()
    await asyncio.sleep(1.5)  # past the timer's deadline while down
    server.start()
    await asyncio.sleep(1)
    assert await call(server, "get_timer_status", timer_name="tea") == {"status": "cancelled"}


async def test_a_finished_fetch_is_not_repeated_after_kill_9(
    server: Server, fake_archive: FakeOpenMeteo
) -> None:
    server.start()
    await call(server, "start_gathering", **PLACE)
    await wait_until(server, JOB, "completed", within=20)
    server.kill()
    server.start()
    again = await call(server, "start_gathering", **PLACE)
    assert again == {"job_name": JOB, "status": "completed"}
    result = (await call(server, "await_result", job_names=[JOB]))[JOB]
    assert result["summary"]["days"] == 31
    assert fake_archive.total_requests == 1


async def test_a_fetch_interrupted_by_kill_9_runs_again_after_restart(
    server: Server, fake_archive: FakeOpenMeteo
) -> None:
    fake_archive.hold()  # the fetch hangs until released: the crash lands mid-fetch
    server.start()
    await call(server, "start_gathering", **PLACE)
    await asyncio.sleep(0.5)
    server.kill()
    fake_archive.release()
    server.start()
    result = (await call(server, "await_result", job_names=[JOB]))[JOB]
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


async def test_random_kills_lose_no_job_and_repeat_no_finished_fetch(
    server: Server, fake_archive: FakeOpenMeteo
) -> None:
    rng = random.Random(20261121)
    fake_archive.delay_seconds = 0.05
    acknowledged: dict[str, object] = {}  # job -> what its result must be
    fetches_when_done: dict[str, int] = {}  # weather job -> fetches when first seen done
    kills = 20
    server.start()
    for round_ in range(kills):
        for n in range(3):
            name = f"r{round_}_{n}"
            await call(server, "set_timer", timer_name=name, seconds=rng.uniform(0, 1.5))
            acknowledged[name] = "complete"
        place = {**PLACE, "month": round_ % 12 + 1, "year": 2000 + round_ // 12}
        job = (await call(server, "start_gathering", **place))["job_name"]
        acknowledged[job] = place
        await asyncio.sleep(rng.uniform(0, 0.6))
        for status in await call(server, "probe_status", job_names=list(acknowledged)):
            name = status["job_name"]
            if name.startswith("weather") and status["status"] == "completed":
                fetches_when_done.setdefault(name, _fetches(fake_archive, acknowledged[name]))
        server.kill()
        server.start()

    results = await call(server, "await_result", job_names=list(acknowledged))
    for name, expected in acknowledged.items():
        if expected == "complete":
            assert results[name] == "complete", name
        else:
            assert results[name]["summary"]["days"] > 27, name  # a whole month came back
    for name, fetches in fetches_when_done.items():
        assert _fetches(fake_archive, acknowledged[name]) == fetches, f"{name} fetched again"
    assert len(acknowledged) == kills * 4


def _fetches(fake: FakeOpenMeteo, place: object) -> int:
    assert isinstance(place, dict)
    month = f"{place['year']}-{place['month']:02d}-01"
    return sum(count for query, count in fake.requests.items() if month in query)
