"""Load and chaos: many MCP clients against one real server, optionally killed with ``kill -9``.

One ``durable-mcp serve`` process (embedded store, a temporary data dir, a free
port on 127.0.0.1) and the fake Open-Meteo archive (``durable_mcp_testing``). ``--clients``
agents, each its own ``fastmcp.Client`` session over streamable HTTP, loop for
``--seconds``: start a job (a short timer, or a month of weather for a place
and month no other job asks for), sometimes start it again with the same
arguments (it must attach), probe it every 0.5-1 s a few times, then await its
result until it is done.

``--kills K`` kills the server's process group K times at random moments spread
over the run and restarts it each time on the same data dir and port. A call
that fails with a transport error while the server is down (its span overlaps
a window from the kill to the restarted server listening) is retried on a new
session and counted as "retried during outage"; any other failed call is a
failure.

At the end, with the load stopped and the server up, every acknowledged job
(its start call returned) must have completed with the right result, and with
one result only (the same result and settle time whenever it is read). The
fake archive counts the fetches; each server run gets its URL with ``?run=N``,
so each fetch is labelled with the process that made it. The rule, as in
``tests/test_durability.py``: without kills, every weather job fetches exactly
once; with kills, a fetch cut off before its result was journaled may run
again after the restart, but a job once seen completed is never fetched again,
and a repeated fetch always comes from a later server run (a kill between). The
server logs of every run are scanned (each must have opened the store; no
ERROR, no Traceback) and ``durable-mcp jobs`` lists the data dir once.

``--disk-full`` also puts the data dir on a small tmpfs and, halfway through,
fills it for a few seconds (never during a kill): a start made meanwhile must
fail with the store's one-line message and change nothing, reads must go on,
and once the space is back starts work again and no acknowledged job is lost.
Starts refused while the disk is full are retried, as an agent told "free disk
space, then try again" would. Mounting needs root; without it the cycle is
skipped, and the output says so.

Latencies are of successful calls; await_result's include the wait for its
job (timers run up to 3 s). Prints a table, writes the figures as JSON with
``--output`` and exits 1 when anything above does not hold. ``run()`` is the
same in-process (``tests/test_load.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import contextlib
import itertools
import json
import logging
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastmcp import Client

from durable_mcp.config import ENV_NAMES
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.figures import percentile
from durable_mcp_testing.processes import DURABLE_MCP, free_port, start_server, stop

#: The exactly-once rule the run checks (also written to the JSON).
RULE = (
    "no kills: every weather job fetches exactly once. With kills: a fetch cut off "
    "before its result was journaled may run again after the restart (at-least-once "
    "for the in-flight step), but a job once seen completed is never fetched again "
    "(its fetch count when first seen completed equals its final count, as in "
    "tests/test_durability.py), every repeated fetch has a kill between it and the "
    "previous fetch of the same job (they were made by different server processes) "
    "or the end of a disk-full cycle (a write the full disk refused cut the step off), "
    "and every acknowledged job completes with one result"
)

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
RECOVERY_SECONDS = 3.0  # after a restart: the clients reconnect (steady latency leaves it out)
FINAL_PACE = 0.15  # seconds before each of its calls: below the polling limit
MIN_UP_SECONDS = 2.0  # between a restart and the next kill: the clients get some work done
FETCH_DELAY = 0.2  # the fake archive's answer time: a fetch is in flight this long
BATCH = 100  # job names per probe_status / await_result (the tools' limit)
FULL_SECONDS = 3.0  # how long the disk stays full in the disk-full cycle
DISK_SIZE = "1g"  # the tmpfs the data dir is on in the disk-full cycle
#: What a change refused for want of disk space says (the store's one line).
FULL_MESSAGE = "database or disk is full; nothing was changed"

#: Server log lines that are reported as problems (and any Traceback).
ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b")
#: The store's one line when its disk is full: expected once per disk-full cycle.
DISK_FULL_LINE = re.compile(r"embedded store cannot write to .*database or disk is full; changes")
#: Lines that may match ERROR_LINE without meaning anything went wrong.
EXPECTED_ERRORS: tuple[re.Pattern[str], ...] = (DISK_FULL_LINE,)
STORE_OPENED = re.compile(r"embedded store opened: .*")


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


class FullDisk(Windows):
    """The disk-full cycle: the data dir on a tmpfs, filled for a while, then freed."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.path = root / "disk"
        self.filler = self.path / "filler"
        self.skipped: str | None = None
        self.checks: dict[str, Any] = {}

    def mount(self) -> None:
        self.path.mkdir(parents=True)
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
        )
        if mounted.returncode != 0:
            self.skipped = f"cannot mount a tmpfs here: {mounted.stderr.strip()}"

    def unmount(self) -> None:
        if self.skipped is None:
            subprocess.run(["umount", "-l", str(self.path)], check=True)

    def fill(self) -> None:
        with open(self.filler, "wb") as filler, contextlib.suppress(OSError):  # ENOSPC: full
            while True:
                filler.write(b"\0" * (1 << 20))
                filler.flush()

    def free(self) -> None:
        self.filler.unlink()

    async def run(self, load: Load, began: float, at: float, quiet: asyncio.Lock) -> None:
        """At ``at`` s into the load, fill the disk for FULL_SECONDS, checking as a user would."""
        await asyncio.sleep(max(began + at - time.monotonic(), 0))
        async with quiet, Client(load.url, timeout=CALL_TIMEOUT) as client:  # no kill meanwhile
            await asyncio.to_thread(self.fill)
            self.begin()
            start = {"timer_name": "disk_full_check", "seconds": 0.5}
            # SQLite reuses the room its files already have (a WAL rewound after a
            # checkpoint), so a write may still fit; it fails once it needs more.
            answer = await client.call_tool("set_timer", start, raise_on_error=False)
            text = " ".join(getattr(block, "text", "") for block in answer.content)
            self.checks["start_while_full"] = text[:300]
            if not answer.is_error:
                self.checks["outcome"] = "the store still had room: acknowledged"
                load.acknowledge("disk_full_check", "timer", None)  # so it must complete
            elif FULL_MESSAGE in text:
                self.checks["outcome"] = "refused in one line"
            else:
                self.checks["outcome"] = "WRONG: an error other than the store's"
            probe = await client.call_tool(
                "probe_status", {"job_names": ["disk_full_check"]}, raise_on_error=False
            )
            self.checks["probe_while_full"] = probe.data if not probe.is_error else "an error"
            created = not probe.is_error and probe.data[0]["status"] != "not_found"
            self.checks["as_answered"] = not probe.is_error and created == (not answer.is_error)
            await asyncio.sleep(FULL_SECONDS)
            self.free()
            self.end()
            again = await client.call_tool("set_timer", start, raise_on_error=False)
            self.checks["start_after_free"] = again.data if not again.is_error else "an error"
            if not again.is_error:
                load.acknowledge("disk_full_check", "timer", None)


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


# ── chaos ──────────────────────────────────────────────────────────────────


def kill_schedule(seconds: float, kills: int, rng: random.Random) -> list[float]:
    """``kills`` moments (seconds into the load), one in each of equal slots."""
    if kills <= 0:
        return []
    first, last = min(1.0, seconds / 4), max(seconds - 2.0, seconds * 3 / 4)
    slot = (last - first) / kills
    return [first + slot * (i + rng.uniform(0.1, 0.9)) for i in range(kills)]


@dataclass
class Chaos:
    server: Server
    outages: Outages
    schedule: list[float]
    quiet: asyncio.Lock  # held while the disk is full: no kill then
    restart_seconds: list[float] = field(default_factory=list)
    outage_seconds: list[float] = field(default_factory=list)
    kill_at: list[float] = field(default_factory=list)  # seconds into the load
    restart_failures: list[str] = field(default_factory=list)

    async def run(self, began: float) -> None:
        up_since = began
        for at in self.schedule:
            wait = max(began + at, up_since + MIN_UP_SECONDS) - time.monotonic()
            await asyncio.sleep(max(wait, 0))
            async with self.quiet:
                self.outages.begin()
                killed = time.monotonic()
                self.kill_at.append(round(killed - began, 2))
                await asyncio.to_thread(self.server.kill)
                await self.restart()
                self.outages.end()
            up_since = time.monotonic()
            self.outage_seconds.append(up_since - killed)

    async def restart(self) -> None:
        for _ in range(3):
            try:
                self.restart_seconds.append(await asyncio.to_thread(self.server.start))
                return
            except RuntimeError as exc:
                log = self.server.log_of(self.server.runs - 1)
                tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
                self.restart_failures.append(f"{exc}: {tail}")
        raise RuntimeError(f"the server did not come back: {self.restart_failures[-3:]}")


# ── the checks at the end ──────────────────────────────────────────────────


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


def fetch_report(
    jobs: Iterable[Job],
    fetch_runs: dict[tuple[float, float, int, int], list[Era]],
    kill_times: Sequence[float],
) -> dict[str, Any]:
    """The weather jobs' fetches against the rule (see ``RULE``).

    ``fetch_runs``: for each place and month, the era of each fetch (server run,
    disk-full cycles before it), in the order they arrived; ``kill_times`` only
    tells which jobs were seen done before a later kill (the check was not vacuous).
    """
    weather = [job for job in jobs if job.kind == "weather"]
    fetched = {job.place for job in weather}
    report: dict[str, Any] = {
        "weather_jobs": len(weather),
        "fetches": sum(len(runs) for place, runs in fetch_runs.items() if place in fetched),
        "fetched_once": 0,
        "fetched_more_than_once": 0,
        "duplicate_fetches": 0,
        # Every place's fetches past its first, acknowledged job or not: 0 without kills.
        "repeated_fetches": sum(len(runs) - 1 for runs in fetch_runs.values() if runs),
        "never_fetched": [],
        "refetched_after_done": [],
        "unexplained_duplicates": [],
        "seen_done_before_a_later_kill": 0,
        "fetches_of_unacknowledged_jobs": sum(
            len(runs) for place, runs in fetch_runs.items() if place not in fetched
        ),
        "unlabelled_fetches": sum(run < 0 for runs in fetch_runs.values() for run, _ in runs),
    }
    for job in weather:
        assert job.place is not None
        runs = fetch_runs.get(job.place, [])
        if not runs:
            report["never_fetched"].append(job.name)
            continue
        if len(runs) == 1:
            report["fetched_once"] += 1
        else:
            report["fetched_more_than_once"] += 1
            report["duplicate_fetches"] += len(runs) - 1
        if job.fetches_when_done is not None and job.fetches_when_done != len(runs):
            report["refetched_after_done"].append(
                f"{job.name}: {job.fetches_when_done} fetches when seen done, "
                f"{len(runs)} at the end"
            )
        for before, after in itertools.pairwise(runs):
            if after <= before:
                report["unexplained_duplicates"].append(
                    f"{job.name}: fetched by server run {before[0]}, then again by run "
                    f"{after[0]}, with no full disk between"
                )
        if job.done_seen_at is not None and any(kill > job.done_seen_at for kill in kill_times):
            report["seen_done_before_a_later_kill"] += 1
    return report


def scan_logs(server: Server) -> dict[str, Any]:
    """Each run's log: did it open the store, and what went wrong."""
    opened: list[str] = []
    errors: list[str] = []
    warnings = 0
    disk_full_lines = 0
    missing: list[int] = []
    for run in range(server.runs):
        log = server.log_of(run)
        text = log.read_text(errors="replace") if log.exists() else ""
        match = STORE_OPENED.search(text)
        if match is None:
            missing.append(run)
        else:
            opened.append(f"run {run}: {match.group(0)}")
        for line in text.splitlines():
            if "WARNING" in line:
                warnings += 1
            disk_full_lines += bool(DISK_FULL_LINE.search(line))
            if (ERROR_LINE.search(line) or "Traceback" in line) and not any(
                expected.search(line) for expected in EXPECTED_ERRORS
            ):
                errors.append(f"run {run}: {line.strip()[:300]}")
    return {
        "server_runs": server.runs,
        "store_opened": len(opened),
        "runs_without_store_opened": missing,
        "opened": opened,
        "error_lines": errors,
        "warning_lines": warnings,
        "disk_full_lines": disk_full_lines,
    }


def list_with_cli(server: Server) -> dict[str, Any]:
    """``durable-mcp jobs`` on the data dir, once (it reads without taking the store)."""
    started = time.monotonic()
    done = subprocess.run(
        [DURABLE_MCP, "jobs", "--data-dir", str(server.data_dir), "--limit", "5"],
        env={**os.environ, **server.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = done.stdout.strip().splitlines()
    more = re.search(r"and (\d+) more", lines[-1]) if lines else None
    shown = len([line for line in lines[1:] if not line.startswith("...")])
    return {
        "returncode": done.returncode,
        "seconds": round(time.monotonic() - started, 2),
        "jobs_in_store": shown + (int(more.group(1)) if more else 0),
        "output": lines,
        "stderr": done.stderr.strip()[-500:],
    }


# ── figures ────────────────────────────────────────────────────────────────


def batches(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def call_figures(
    calls: list[Call], seconds: float, outages: Outages, began: float
) -> dict[str, Any]:
    """Per tool and overall; ``steady``: the calls that do not wait (starts and probes),
    away from any outage and from the first ``RECOVERY_SECONDS`` of each server run (a
    cold server, clients reconnecting)."""

    def figures(group: list[Call]) -> dict[str, Any]:
        ok = [call.seconds * 1000 for call in group if call.outcome == "ok"]
        out: dict[str, Any] = {"calls": len(group), "ok": len(ok)}
        for outcome in ("failed", "outage", "rate_limited", "busy", "disk_full"):
            out[outcome] = sum(call.outcome == outcome for call in group)
        out["ok_per_s"] = round(len(ok) / seconds, 1) if seconds else 0.0
        out["p50_ms"] = round(statistics.median(ok), 2) if ok else None
        out["p99_ms"] = percentile(ok, 0.99) if ok else None
        return out

    tools = sorted({call.tool for call in calls})
    tool_calls = [call for call in calls if call.tool != "open_session"]
    result = {
        "overall": figures(tool_calls),
        "per_tool": {
            tool: figures([call for call in calls if call.tool == tool]) for tool in tools
        },
    }
    recovering = Outages()
    recovering.windows = [
        (down, (back if back is not None else math.inf) + RECOVERY_SECONDS)
        for down, back in [(began, began), *outages.windows]
    ]
    steady = [
        call
        for call in tool_calls
        if call.tool != "await_result"  # it waits for its job
        and not recovering.overlaps(call.started, call.started + call.seconds)
    ]
    result["steady"] = figures(steady)
    del result["steady"]["ok_per_s"]  # over part of the run only
    return result


async def run(options: Options, root: Path) -> dict[str, Any]:
    """Run the load (and chaos) once with ``root`` as scratch; every figure, and the problems."""
    with quiet_client_logs():
        return await measure(options, root)


@contextlib.contextmanager
def quiet_client_logs() -> Iterator[None]:
    """Silence the MCP client's own logging of the outages, for the length of a run."""
    loggers = [logging.getLogger(name) for name in ("mcp", "fastmcp", "httpx2", "httpcore")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


async def measure(options: Options, root: Path) -> dict[str, Any]:
    rng = random.Random(options.seed)
    archive = Archive(FETCH_DELAY)
    full_disk = FullDisk(root)
    if options.disk_full:
        full_disk.mount()
    cycle = options.disk_full and full_disk.skipped is None
    with archive, contextlib.ExitStack() as unmount:
        if cycle:
            unmount.callback(full_disk.unmount)
        server = Server(root, archive.url, (full_disk.path if cycle else root) / "data")
        first_start = await asyncio.to_thread(server.start)
        outages = Outages()
        load = Load(server.url, archive, outages, full_disk, options)
        quiet = asyncio.Lock()
        chaos = Chaos(server, outages, kill_schedule(options.seconds, options.kills, rng), quiet)
        lag: list[float] = []
        load_over = asyncio.Event()
        harness_cpu = time.process_time()
        load_average = os.getloadavg()[0]
        try:
            began = time.monotonic()
            chaos_task = asyncio.create_task(chaos.run(began))
            lag_task = asyncio.create_task(loop_lag(lag, load_over))
            full_task = asyncio.create_task(
                full_disk.run(load, began, options.seconds / 2, quiet)
                if cycle
                else asyncio.sleep(0)
            )
            load_seconds = await load.run()
            load_over.set()
            await full_task
            harness_cpu = time.process_time() - harness_cpu
            await lag_task
            with contextlib.suppress(RuntimeError):  # the server did not come back: recorded
                await chaos_task
            try:
                check = await final_check(load)
            except Exception as exc:
                check = {"lost": list(load.jobs), "still_running": None, "refused": 0}
                check["error"] = describe(exc)
            cli = await asyncio.to_thread(list_with_cli, server)
        finally:
            returncode = await asyncio.to_thread(server.close)
        cuts = [back for _, back in full_disk.windows if back is not None]
        fetches = fetch_report(load.jobs.values(), archive.fetch_eras(cuts), outages.kill_times)
        fetches["archive_requests"] = archive.total_requests  # the fake's own count
        fetches["archive_requests_labelled"] = sum(len(r) for r in archive.fetch_runs().values())
    logs = scan_logs(server)
    calls = call_figures(load.calls, load_seconds, outages, began)
    jobs = list(load.jobs.values())
    results: dict[str, Any] = {
        "options": {
            "clients": options.clients,
            "seconds": options.seconds,
            "kills": options.kills,
            "seed": options.seed,
            "disk_full": options.disk_full,
        },
        "load_seconds": round(load_seconds, 1),
        "first_start_to_listening_s": round(first_start, 2),
        "calls": calls,
        "failed_calls": sum(c.outcome == "failed" for c in load.calls),
        "failures": [
            f"{c.tool} at {c.started - began:.1f} s: {c.error}"
            for c in load.calls
            if c.outcome == "failed"
        ][:20],
        "retried_during_outage": sum(c.outcome == "outage" for c in load.calls),
        "reconnect_attempts_during_outage": load.reconnects_during_outage,
        "rate_limited": sum(c.outcome == "rate_limited" for c in load.calls),
        "rate_limited_in_final_check": check["refused"],
        "busy": sum(c.outcome == "busy" for c in load.calls),
        "sessions_opened": load.sessions_opened,
        "disk_full": {
            "asked": options.disk_full,
            "skipped": full_disk.skipped,
            "cycles": len(full_disk.windows),
            "full_seconds": FULL_SECONDS,
            "starts_refused_while_full": sum(c.outcome == "disk_full" for c in load.calls),
            **full_disk.checks,
        },
        "jobs": {
            "acknowledged": len(jobs),
            "timers": sum(job.kind == "timer" for job in jobs),
            "weather": sum(job.kind == "weather" for job in jobs),
            "repeated_starts_attached": sum(job.attaches for job in jobs),
            "completed": len(jobs) - len(check["lost"]),
            "lost": len(check["lost"]),
            "lost_samples": check["lost"][:20],
            "final_check_error": check.get("error"),
            "contradictions_count": len(load.wrong),
            "contradictions": load.wrong[:20],
            "client_errors": load.client_errors[:20],
        },
        "exactly_once": {"rule": RULE, **fetches},
        "chaos": {
            "kills": len(chaos.kill_at),
            "kill_at_s": chaos.kill_at,
            "restarts_ok": len(chaos.restart_seconds),
            "restart_failures": chaos.restart_failures,
            "restart_to_listening_s": [round(s, 2) for s in chaos.restart_seconds],
            "restart_to_listening_max_s": round(max(chaos.restart_seconds), 2)
            if chaos.restart_seconds
            else None,
            "outage_s": [round(s, 2) for s in chaos.outage_seconds],
        },
        "machine": {
            "cores": os.cpu_count(),
            "load_average_1m_before": round(load_average, 2),
            "load_average_1m_after": round(os.getloadavg()[0], 2),
            "server_cpu_s": round(server.cpu_seconds, 1),
            "harness_cpu_s": round(harness_cpu, 1),
            "harness_loop_lag_p50_ms": round(statistics.median(lag), 1) if lag else None,
            "harness_loop_lag_p99_ms": percentile(lag, 0.99) if lag else None,
        },
        "store": {
            **logs,
            # uvicorn shuts down, then re-raises the SIGTERM it caught: exit -15 is clean too
            "final_shutdown_returncode": returncode,
            "final_shutdown_clean": returncode in (0, -signal.SIGTERM)
            and "Finished server process" in server.log_of(server.runs - 1).read_text(),
        },
        "jobs_cli": cli,
    }
    results["problems"] = problems(results)
    return results


def problems(r: dict[str, Any]) -> list[str]:
    """Everything in the results that breaks a claim; empty when the run passed."""
    out: list[str] = []
    kills = r["options"]["kills"]
    once = r["exactly_once"]
    chaos = r["chaos"]
    store = r["store"]
    if r["failed_calls"]:
        out.append(f"{r['failed_calls']} calls failed while the server was up")
    if r["jobs"]["final_check_error"]:
        out.append(f"the final check failed: {r['jobs']['final_check_error']}")
    if r["jobs"]["lost"]:
        out.append(f"{r['jobs']['lost']} acknowledged jobs did not complete with their result")
    if r["jobs"]["client_errors"]:
        out.append(f"clients hit unexpected answers: {r['jobs']['client_errors'][:3]}")
    if r["jobs"]["contradictions"]:
        out.append(f"answers contradicted the jobs: {r['jobs']['contradictions'][:3]}")
    if kills == 0 and once["repeated_fetches"]:
        out.append(f"{once['repeated_fetches']} repeated fetches without any kill")
    if once["refetched_after_done"]:
        out.append(f"fetched again after seen done: {once['refetched_after_done'][:3]}")
    if once["unexplained_duplicates"]:
        out.append(f"repeated fetches with no kill between: {once['unexplained_duplicates'][:3]}")
    if once["archive_requests"] != once["archive_requests_labelled"]:
        out.append("the fake archive's count and its arrival times disagree")
    if once["unlabelled_fetches"]:
        out.append(f"{once['unlabelled_fetches']} fetches without the server run's label")
    if once["never_fetched"]:
        out.append(f"weather jobs never fetched: {once['never_fetched'][:3]}")
    if chaos["kills"] != kills or chaos["restarts_ok"] != kills:
        out.append(f"{chaos['kills']} kills and {chaos['restarts_ok']} restarts, {kills} asked")
    if chaos["restart_failures"]:
        out.append(f"the server failed to come back: {chaos['restart_failures'][:2]}")
    if store["runs_without_store_opened"]:
        out.append(f"runs that did not open the store: {store['runs_without_store_opened']}")
    if store["error_lines"]:
        out.append(f"{len(store['error_lines'])} ERROR/Traceback lines: {store['error_lines'][:3]}")
    if not store["final_shutdown_clean"]:
        out.append(
            f"the server did not shut down cleanly on SIGTERM "
            f"(exit {store['final_shutdown_returncode']})"
        )
    full = r["disk_full"]
    if full["asked"] and full["skipped"] is None:
        if full["cycles"] != 1:
            out.append(f"{full['cycles']} disk-full cycles, 1 asked")
        if full.get("outcome", "").startswith("WRONG"):
            out.append(f"a start on a full disk: {full.get('start_while_full')!r}")
        if not full.get("as_answered"):
            out.append(
                f"a start on a full disk answered one thing, the store holds another: "
                f"{full.get('probe_while_full')}"
            )
        if not isinstance(full.get("start_after_free"), dict):
            out.append(f"a start once the disk was freed: {full.get('start_after_free')}")
        refused = full.get("outcome") == "refused in one line" or full["starts_refused_while_full"]
        lines = store["disk_full_lines"]
        if lines > 1 or (refused and lines != 1):
            out.append(f"the store said {lines} times that its disk is full (once, if at all)")
    cli = r["jobs_cli"]
    if cli["returncode"] != 0 or cli["jobs_in_store"] < r["jobs"]["acknowledged"]:
        out.append(f"durable-mcp jobs: exit {cli['returncode']}, {cli['jobs_in_store']} jobs")
    return out


def summary(r: dict[str, Any]) -> str:
    calls = r["calls"]
    header = ("tool", "calls", "ok/s", "p50 ms", "p99 ms", "failed", "outage", "limited", "busy")
    rows = ["{:<16}{:>7}{:>7}{:>9}{:>9}{:>7}{:>7}{:>8}{:>5}".format(*header)]
    for tool, f in [*calls["per_tool"].items(), ("ALL", calls["overall"])]:
        cells = [f[key] for key in ("calls", "ok_per_s", "p50_ms", "p99_ms", "failed", "outage")]
        cells += [f["rate_limited"], f["busy"]]
        rows.append("{:<16}{:>7}{:>7}{:>9}{:>9}{:>7}{:>7}{:>8}{:>5}".format(tool, *cells))
    steady = calls["steady"]
    rows.append(
        f"starts and probes away from outages and > {RECOVERY_SECONDS:g} s after each "
        f"server start: "
        f"{steady['calls']} calls, p50 {steady['p50_ms']} ms, p99 {steady['p99_ms']} ms"
    )
    jobs, once, chaos, m = r["jobs"], r["exactly_once"], r["chaos"], r["machine"]
    restarts = chaos["restart_to_listening_s"]
    lines = [
        *rows,
        "",
        f"clients {r['options']['clients']}, load {r['load_seconds']} s, "
        f"seed {r['options']['seed']}",
        f"failed calls {r['failed_calls']}; retried during outage {r['retried_during_outage']} "
        f"(+{r['reconnect_attempts_during_outage']} reconnect attempts); "
        f"rate limited {r['rate_limited']} (+{r['rate_limited_in_final_check']} in the final "
        f"check); busy {r['busy']}; sessions opened {r['sessions_opened']}",
        f"jobs acknowledged {jobs['acknowledged']} ({jobs['timers']} timers, "
        f"{jobs['weather']} weather, {jobs['repeated_starts_attached']} repeated starts "
        f"attached); completed {jobs['completed']}; lost {jobs['lost']}",
        f"fetches {once['fetches']} for {once['weather_jobs']} weather jobs: "
        f"{once['fetched_once']} once, {once['fetched_more_than_once']} more than once "
        f"({once['duplicate_fetches']} repeats); refetched after done "
        f"{len(once['refetched_after_done'])}; repeats with no kill between "
        f"{len(once['unexplained_duplicates'])}; seen done before a later kill "
        f"{once['seen_done_before_a_later_kill']}",
        *(
            [f"repeated fetches without a kill: {once['repeated_fetches']} (must be 0)"]
            if r["options"]["kills"] == 0
            else []
        ),
        f"rule: {once['rule']}",
        f"kills {chaos['kills']} at {chaos['kill_at_s']} s; restarts ok {chaos['restarts_ok']}, "
        f"restart to listening {restarts} s"
        + (
            f" (median {statistics.median(restarts):.2f}, max {max(restarts):.2f})"
            if restarts
            else ""
        ),
        *([disk_full_summary(r["disk_full"])] if r["disk_full"]["asked"] else []),
        f"store opened in {r['store']['store_opened']} of {r['store']['server_runs']} runs; "
        f"ERROR/Traceback lines {len(r['store']['error_lines'])}; "
        f"WARNING lines {r['store']['warning_lines']}",
        f"machine: {m['cores']} cores, load average {m['load_average_1m_before']} before, "
        f"{m['load_average_1m_after']} after; CPU s server {m['server_cpu_s']}, "
        f"harness {m['harness_cpu_s']}; harness loop lag p50 {m['harness_loop_lag_p50_ms']} "
        f"ms, p99 {m['harness_loop_lag_p99_ms']} ms",
        f"durable-mcp jobs: exit {r['jobs_cli']['returncode']}, "
        f"{r['jobs_cli']['jobs_in_store']} jobs in the store",
        *(f"    {line}" for line in r["jobs_cli"]["output"]),
        "PASSED" if not r["problems"] else "FAILED:\n  " + "\n  ".join(r["problems"]),
    ]
    return "\n".join(lines)


def disk_full_summary(full: dict[str, Any]) -> str:
    if full["skipped"] is not None:
        return f"disk-full cycle skipped: {full['skipped']}"
    return (
        f"disk full for {full['full_seconds']:g} s: a start was {full.get('outcome')}; "
        f"a probe then answered {'as told' if full.get('as_answered') else 'WRONGLY'}; "
        f"agents' starts refused meanwhile {full['starts_refused_while_full']}; "
        f"a start after freeing: {full.get('start_after_free')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent MCP sessions (50)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load (60)")
    parser.add_argument("--kills", type=int, default=0, help="kill -9 and restarts (0: plain)")
    parser.add_argument("--output", type=Path, help="write the figures as JSON here")
    parser.add_argument("--seed", type=int, help="for the random choices (default: random)")
    parser.add_argument(
        "--disk-full", action="store_true", help="fill the data dir's disk halfway (needs root)"
    )
    parser.add_argument("--quick", action="store_true", help="10 clients, 10 s, at most 2 kills")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.seconds, args.kills = 10, 10.0, min(args.kills, 2)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    options = Options(
        clients=args.clients,
        seconds=args.seconds,
        kills=args.kills,
        seed=seed,
        disk_full=args.disk_full,
    )
    with tempfile.TemporaryDirectory(prefix="durable-mcp-load-") as tmp:
        results = asyncio.run(run(options, Path(tmp)))
    print(summary(results))
    if args.output is not None:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    sys.exit(1 if results["problems"] else 0)


if __name__ == "__main__":
    main()
