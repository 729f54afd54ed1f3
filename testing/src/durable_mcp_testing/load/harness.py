"""The load's harness: the clients (agents over MCP sessions), the server they call,
the fake archive that labels each fetch, and the final check of every job they started.

Each client loops for the length of the load: start a job (a short timer, or a
month of weather for a place and month no other job asks for), sometimes start
it again with the same arguments (it must attach), probe it a few times, then
await its result until it is done. What each was told is recorded, to be
checked against the jobs (``report``).
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastmcp import Client

from durable_mcp.config import ENV_NAMES
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.processes import free_port, start_server, stop

TIMER_SHARE = 0.6  # the rest start weather jobs
ATTACH_SHARE = 0.2  # starts repeated with the same arguments
TIMER_SECONDS = (0.2, 3.0)
PROBE_EVERY = (0.5, 1.0)  # seconds between probes, as an agent would
THINK = (0.1, 0.5)  # seconds between one job and the next
AWAIT_SECONDS = 10.0  # each await_result's own bound (the server caps it too)
CALL_TIMEOUT = 30.0  # client side: a call that takes longer has failed
RECONNECT_PAUSE = (0.2, 0.5)
GIVE_UP_AFTER = 60.0  # past the end of the load, a client stops retrying
FINAL_WAIT = 60.0  # how long the final check waits for jobs still running
FINAL_PACE = 0.15  # seconds before each of its calls: below the polling limit
FETCH_DELAY = 0.2  # the fake archive's answer time: a fetch is in flight this long
BATCH = 100  # job names per probe_status / await_result (the tools' limit)

#: What a change refused for want of disk space says (the store's one line).
FULL_MESSAGE = "database or disk is full; nothing was changed"


@dataclass(frozen=True)
class Options:
    clients: int = 50
    seconds: float = 60.0
    kills: int = 0
    seed: int = 0
    disk_full: bool = False


class CallFailed(Exception):
    """A call failed while the server was up (already recorded)."""


@dataclass
class Call:
    tool: str
    started: float
    seconds: float
    outcome: str  # ok | failed | outage | rate_limited | busy | disk_full
    error: str = ""


@dataclass
class Job:
    name: str
    kind: str  # timer | weather
    place: tuple[float, float, int, int] | None  # weather: latitude, longitude, year, month
    acknowledged_at: float
    attaches: int = 0
    done_seen_at: float | None = None
    fetches_when_done: int | None = None
    result: str | None = None  # the first result seen, as JSON
    settled_at: str | None = None  # the first settled_at seen


class Windows:
    """Spans of time (monotonic) in which something was wrong on purpose."""

    def __init__(self) -> None:
        self.windows: list[tuple[float, float | None]] = []

    def begin(self) -> None:
        self.windows.append((time.monotonic(), None))

    def end(self) -> None:
        began, _ = self.windows[-1]
        self.windows[-1] = (began, time.monotonic())

    def overlaps(self, started: float, ended: float) -> bool:
        return any(
            began <= ended and (back is None or started <= back) for began, back in self.windows
        )

    @property
    def kill_times(self) -> list[float]:
        return [began for began, _ in self.windows]


class Outages(Windows):
    """When the server was down: from each kill until it listened again."""


#: When a fetch was made: (server run, disk-full cycles ended before it).
Era = tuple[int, int]


class Archive(FakeOpenMeteo):
    """The fake archive, also noting which server run made each request.

    Each run of the server gets the archive's URL with ``?run=N`` (requests
    adds the fetch's own parameters after it), so a fetch is labelled with the
    process that made it, whatever the clocks: two fetches of one job by the
    same run had no kill between them. The time of each fetch tells whether a
    disk-full cycle came between two (see ``fetch_eras``).
    """

    def __init__(self, delay_seconds: float) -> None:
        super().__init__(delay_seconds)
        self.runs: dict[tuple[float, float, int, int], list[tuple[int, float]]] = defaultdict(list)
        self._runs_lock = threading.Lock()

    def _answer(self, query: str) -> tuple[int, dict[str, Any]]:
        params = {key: values[0] for key, values in parse_qs(query).items()}
        year, month, _ = params["start_date"].split("-")
        place = (float(params["latitude"]), float(params["longitude"]), int(year), int(month))
        with self._runs_lock:
            self.runs[place].append((int(params.get("run", -1)), time.monotonic()))
        return super()._answer(query)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        """The fake's handler, quiet when a killed server never reads its answer."""
        handler = super()._handler()

        def handle(request: BaseHTTPRequestHandler) -> None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                handler.handle(request)

        return type("QuietHandler", (handler,), {"handle": handle})

    def fetch_runs(self) -> dict[tuple[float, float, int, int], list[int]]:
        """For each place and month, the server runs that fetched it, in order."""
        with self._runs_lock:
            return {place: [run for run, _ in runs] for place, runs in self.runs.items()}

    def fetch_eras(self, cuts: Sequence[float]) -> dict[tuple[float, float, int, int], list[Era]]:
        """Like ``fetch_runs``, each fetch also with how many ``cuts`` (the ends of
        disk-full cycles) came before it: a step a full disk cut off runs again after."""
        with self._runs_lock:
            return {
                place: [(run, sum(cut < at for cut in cuts)) for run, at in runs]
                for place, runs in self.runs.items()
            }

    def fetches(self, place: tuple[float, float, int, int]) -> int:
        with self._runs_lock:
            return len(self.runs.get(place, ()))


class Server:
    """``durable-mcp serve`` on one port and data dir: started, killed, restarted."""

    def __init__(self, root: Path, archive_url: str, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.data_dir = data_dir
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        # Every setting at its default (empty counts as unset), whatever this shell has set.
        self.env = {name: "" for name in ENV_NAMES}
        self.archive_url = archive_url
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.cpu_seconds = 0.0  # of every run, read just before it was stopped

    def log_of(self, run: int) -> Path:
        return self.logs / f"server-{run}.log"

    def start(self) -> float:
        """Start the next run; the seconds until it listened (raises if it did not)."""
        log = self.log_of(self.runs)
        env = {**self.env, "OPEN_METEO_ARCHIVE_URL": f"{self.archive_url}?run={self.runs}"}
        self.runs += 1
        started = time.monotonic()
        self.process = start_server(self.port, self.data_dir, env, log)
        return time.monotonic() - started

    def kill(self) -> None:
        assert self.process is not None
        self.cpu_seconds += cpu_seconds(self.process.pid)
        stop(self.process, signal.SIGKILL)

    def close(self) -> int | None:
        if self.process is None:
            return None
        self.cpu_seconds += cpu_seconds(self.process.pid)
        stop(self.process)
        return self.process.returncode


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a running process has used (Linux ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def loop_lag(samples: list[float], stop_at: asyncio.Event) -> None:
    """How late the clients' event loop wakes from a 0.1 s sleep (ms): the harness's own load."""
    while not stop_at.is_set():
        asked = time.monotonic()
        await asyncio.sleep(0.1)
        samples.append((time.monotonic() - asked - 0.1) * 1000)


def place_of(k: int) -> tuple[float, float, int, int]:
    """The ``k``-th place and month: no two ``k`` share one."""
    latitude = round(-60 + (k % 12_000) / 100, 2)
    longitude = round(-170 + (k // 12_000) / 100, 2)
    return latitude, longitude, 1950 + k % 70, 1 + k % 12


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def running(value: Any) -> bool:
    return isinstance(value, dict) and value.get("status") == "running"


def completed(value: Any) -> bool:
    """Whether an await_result value is a result (not a ``{"status": ...}`` object)."""
    return not (isinstance(value, dict) and "status" in value and "summary" not in value)


class Load:
    """The clients, what they were told, and the server's outages."""

    def __init__(
        self, url: str, archive: Archive, outages: Outages, full_disk: Windows, options: Options
    ) -> None:
        self.url = url
        self.archive = archive
        self.outages = outages
        self.full_disk = full_disk
        self.options = options
        self.calls: list[Call] = []
        self.jobs: dict[str, Job] = {}
        self.places = itertools.count()
        self.reconnects_during_outage = 0
        self.sessions_opened = 0
        self.wrong: list[str] = []  # answers that contradict what the job must be
        self.client_errors: list[str] = []
        self.end = 0.0
        self.give_up = 0.0

    # ── recording ──────────────────────────────────────────────────────────

    def record(self, tool: str, started: float, outcome: str, error: str = "") -> None:
        self.calls.append(Call(tool, started, time.monotonic() - started, outcome, error))

    def classify(self, error: str, started: float, transport: bool) -> str:
        text = error.lower()
        if "rate limit" in text or "too many polling calls" in text:
            return "rate_limited"
        if text.startswith("busy") or "jobs are running, the most" in text:
            return "busy"
        if transport and self.outages.overlaps(started, time.monotonic()):
            return "outage"
        if FULL_MESSAGE in error and self.full_disk.overlaps(started, time.monotonic()):
            return "disk_full"
        return "failed"

    def fetches(self, job: Job) -> int:
        assert job.place is not None
        return self.archive.fetches(job.place)

    def acknowledge(self, name: str, kind: str, place: tuple[float, float, int, int] | None) -> Job:
        job = self.jobs.get(name)
        if job is None:
            job = self.jobs[name] = Job(name, kind, place, time.monotonic())
        elif (job.kind, job.place) != (kind, place):
            self.wrong.append(f"{name}: one name for two jobs ({job.place} and {place})")
        return job

    def observe_status(self, status: dict[str, Any]) -> None:
        job = self.jobs.get(status["job_name"])
        if job is None:
            return
        if status["status"] == "completed":
            self.seen_done(job)
            settled = status.get("settled_at")
            if job.settled_at is None:
                job.settled_at = settled
            elif settled != job.settled_at:
                self.wrong.append(f"{job.name}: settled at {job.settled_at}, later {settled}")
        elif status["status"] != "running":
            self.wrong.append(f"{job.name}: {status['status']} {status.get('error', '')}")

    def observe_result(self, job: Job, value: Any) -> None:
        if not completed(value):
            if value.get("status") != "running":
                self.wrong.append(f"{job.name}: {value}")
            return
        self.seen_done(job)
        text = json.dumps(value, sort_keys=True)
        if job.result is None:
            job.result = text
            if not right_result(job, value):
                self.wrong.append(f"{job.name}: wrong result {text[:200]}")
        elif text != job.result:
            self.wrong.append(f"{job.name}: a second, different result")

    def seen_done(self, job: Job) -> None:
        if job.done_seen_at is None:
            job.done_seen_at = time.monotonic()
            if job.kind == "weather":
                job.fetches_when_done = self.fetches(job)

    # ── the clients ────────────────────────────────────────────────────────

    async def run(self) -> float:
        """Run every client until the end of the load; the seconds it took."""
        started = time.monotonic()
        self.end = started + self.options.seconds
        self.give_up = self.end + GIVE_UP_AFTER
        await asyncio.gather(*(self.client(index) for index in range(self.options.clients)))
        return time.monotonic() - started

    async def client(self, index: int) -> None:
        rng = random.Random(f"{self.options.seed}-{index}")
        session = Session(self, rng)
        try:
            await asyncio.sleep(rng.uniform(0, 1))  # the agents do not all start at once
            for n in itertools.count():
                if time.monotonic() >= self.end:
                    break
                try:
                    await self.one_job(session, f"c{index}_{n}", rng)
                except CallFailed:
                    pass  # recorded; the agent goes on with its next job
                except Exception as exc:  # an answer of an unexpected shape
                    self.client_errors.append(f"c{index}_{n}: {describe(exc)}")
                await asyncio.sleep(rng.uniform(*THINK))
        finally:
            await session.close()

    async def one_job(self, session: Session, name: str, rng: random.Random) -> None:
        place: tuple[float, float, int, int] | None = None
        if rng.random() < TIMER_SHARE:
            tool, kind = "set_timer", "timer"
            arguments: dict[str, Any] = {
                "timer_name": name,
                "seconds": round(rng.uniform(*TIMER_SECONDS), 2),
            }
        else:
            tool, kind = "start_gathering", "weather"
            place = place_of(next(self.places))
            latitude, longitude, year, month = place
            arguments = {"latitude": latitude, "longitude": longitude, "year": year}
            arguments["month"] = month
        answer = await session.call(tool, arguments)
        job = self.acknowledge(self.job_name(answer, name, kind), kind, place)
        if rng.random() < ATTACH_SHARE:
            again = await session.call(tool, arguments)
            job.attaches += 1
            if self.job_name(again, name, kind) != job.name:
                self.wrong.append(f"{job.name}: a repeated start answered {again}")
            if again.get("status") == "completed":
                self.seen_done(job)
        for _ in range(rng.randint(1, 3)):
            await asyncio.sleep(rng.uniform(*PROBE_EVERY))
            if time.monotonic() >= self.end:
                break
            (status,) = await session.call("probe_status", {"job_names": [job.name]})
            self.observe_status(status)
            if status["status"] != "running":
                break
        while time.monotonic() < self.give_up:
            answers = await session.call(
                "await_result", {"job_names": [job.name], "timeout_seconds": AWAIT_SECONDS}
            )
            value = answers[job.name]
            self.observe_result(job, value)
            if completed(value) or value.get("status") != "running":
                break

    def job_name(self, answer: dict[str, Any], name: str, kind: str) -> str:
        if kind == "timer":
            if answer.get("promise_id") != name:
                self.wrong.append(f"{name}: set_timer answered {answer}")
            return name
        job_name: str = answer["job_name"]
        return job_name


class Session:
    """One agent's MCP session: a new one after the server went away."""

    def __init__(self, load: Load, rng: random.Random) -> None:
        self.load = load
        self.rng = rng
        self.client: Client[Any] | None = None
        self.stack = contextlib.AsyncExitStack()

    async def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        """The tool's data. Retried after an outage, a rate limit or "busy"; else CallFailed."""
        load = self.load
        while True:
            client = await self.connected()
            started = time.monotonic()
            try:
                result = await client.call_tool(
                    tool, arguments, timeout=CALL_TIMEOUT, raise_on_error=False
                )
            except Exception as exc:
                error = describe(exc)
                outcome = load.classify(error, started, transport=True)
                load.record(tool, started, outcome, error)
                if outcome not in ("rate_limited", "busy", "disk_full"):
                    await self.close()
                if outcome == "failed" or time.monotonic() > load.give_up:
                    raise CallFailed(error) from exc
                await asyncio.sleep(self.rng.uniform(*RECONNECT_PAUSE))
                continue
            if result.is_error:
                error = " ".join(getattr(block, "text", "") for block in result.content)
                outcome = load.classify(error, started, transport=False)
                load.record(tool, started, outcome, error[:300])
                if outcome == "failed" or time.monotonic() > load.give_up:
                    raise CallFailed(error)
                await asyncio.sleep(1.0)
                continue
            load.record(tool, started, "ok")
            return result.data

    async def connected(self) -> Client[Any]:
        load = self.load
        while self.client is None:
            client: Client[Any] = Client(load.url, timeout=CALL_TIMEOUT)
            started = time.monotonic()
            try:
                await self.stack.enter_async_context(client)
            except Exception as exc:
                error = describe(exc)
                if load.outages.overlaps(started, time.monotonic()):
                    load.reconnects_during_outage += 1
                    if time.monotonic() > load.give_up:
                        raise CallFailed(error) from exc
                    await asyncio.sleep(self.rng.uniform(*RECONNECT_PAUSE))
                    continue
                load.record("open_session", started, "failed", error)
                raise CallFailed(error) from exc
            load.sessions_opened += 1
            self.client = client
        return self.client

    async def close(self) -> None:
        self.client = None
        stack, self.stack = self.stack, contextlib.AsyncExitStack()
        with contextlib.suppress(Exception):  # a session the server dropped may not close cleanly
            async with asyncio.timeout(5):
                await stack.aclose()


def right_result(job: Job, value: Any) -> bool:
    if job.kind == "timer":
        return bool(value == "complete")
    assert job.place is not None
    latitude, longitude, year, month = job.place
    return (
        isinstance(value, dict)
        and isinstance(value.get("summary"), dict)
        and value["summary"].get("days") == calendar.monthrange(year, month)[1]
        and (value.get("latitude"), value.get("longitude")) == (latitude, longitude)
        and (value.get("year"), value.get("month")) == (year, month)
    )


async def final_check(load: Load) -> dict[str, Any]:
    """With the load stopped: every acknowledged job's result and settle time, on a new session.

    Paced below the server's polling limit (one session polls it all); a
    refused call is retried after the second the refusal asks for.
    """
    names = list(load.jobs)
    results: dict[str, Any] = {}
    statuses: dict[str, dict[str, Any]] = {}
    refused = 0

    async def call(client: Client[Any], tool: str, arguments: dict[str, Any]) -> Any:
        nonlocal refused
        while True:
            await asyncio.sleep(FINAL_PACE)
            result = await client.call_tool(tool, arguments, raise_on_error=False)
            if not result.is_error:
                return result.data
            error = " ".join(getattr(block, "text", "") for block in result.content)
            if load.classify(error, time.monotonic(), transport=False) == "failed":
                raise CallFailed(f"final check, {tool}: {error}")
            refused += 1
            await asyncio.sleep(1.0)

    async with Client(load.url, timeout=CALL_TIMEOUT) as client:
        pending = names
        deadline = time.monotonic() + FINAL_WAIT
        while pending and time.monotonic() < deadline:
            for batch in batches(pending, BATCH):
                arguments = {"job_names": batch, "timeout_seconds": 5}
                results.update(await call(client, "await_result", arguments))
            pending = [name for name in pending if running(results[name])]
        for batch in batches(names, BATCH):
            for status in await call(client, "probe_status", {"job_names": batch}):
                statuses[status["job_name"]] = status
    lost: list[str] = []
    for name, job in load.jobs.items():
        value = results.get(name)
        if value is None or not completed(value):
            lost.append(f"{name}: {value}")
            continue
        load.observe_result(job, value)
        load.observe_status(statuses[name])
        if not right_result(job, value):
            lost.append(f"{name}: wrong result")
    return {"lost": lost, "still_running": len(pending), "refused": refused}


def batches(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
