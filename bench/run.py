"""`make bench`: speed, memory and recovery of the real server, as ratios in one run.

Every figure comes from real processes on 127.0.0.1 (see ``servers.py``):

- floor: a no-op tool on a bare ``FastMCP("floor")`` (no middleware, no auth, no
  extensions) served the same way -- what any MCP call costs -- and beside it the
  same no-op on our server: the difference is what our middleware costs;
- baseline: the seed 002 design (dict + asyncio task, no durability);
- ours: ``set_timer`` on the embedded and memory stores, ``probe_status``,
  the proxy against a direct call, 16 concurrent clients, 10,000 sleeping
  timers (peak RSS, lateness against their deadlines), and recovery after
  ``kill -9`` with 1,000 jobs in flight.

Prints a table (each figure against the bare floor, with our no-op's ratio beside
it), writes ``bench/results.json``. ``--quick`` runs every part small
(about a minute), to check that the harness works; its figures mean little.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastmcp import Client
from fastmcp.client.transports import StdioTransport

BENCH = Path(__file__).parent
sys.path.insert(0, str(BENCH.parent / "tests"))
from processes import PROXY, free_port, start_server, stop, wait_for_port  # noqa: E402

RESULTS = BENCH / "results.json"


@dataclass(frozen=True)
class Sizes:
    calls: int  # sequential calls per latency figure
    concurrent_calls: int  # calls per client, 16 clients
    timers: int  # concurrently sleeping timers
    in_flight: int  # jobs in flight at kill -9


FULL = Sizes(calls=500, concurrent_calls=60, timers=10_000, in_flight=1_000)
QUICK = Sizes(calls=30, concurrent_calls=5, timers=200, in_flight=50)
CLIENTS = 16


@contextmanager
def server(kind: str, data_dir: Path, store: str = "embedded") -> Iterator[tuple[str, int]]:
    """A bench server process; yields its URL and pid."""
    port = free_port()
    process = start(kind, port, data_dir, store)
    try:
        yield f"http://127.0.0.1:{port}/mcp", process.pid
    finally:
        stop(process)


def start(kind: str, port: int, data_dir: Path, store: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, str(BENCH / "servers.py"), kind, str(port), str(data_dir), store],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for_port(port, process)
    return process


def latency(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[max(int(len(ms) * 0.99) - 1, 0)], 2),
    }


Call = Callable[[Client[Any], int], Awaitable[Any]]


async def sequential(url_or_client: str | Client[Any], call: Call, n: int) -> dict[str, float]:
    client = Client(url_or_client) if isinstance(url_or_client, str) else url_or_client
    async with client:
        for i in range(10):  # warm-up
            await call(client, -1 - i)
        seconds = []
        for i in range(n):
            started = time.perf_counter()
            await call(client, i)
            seconds.append(time.perf_counter() - started)
    return latency(seconds)


async def paired(urls: list[str], call: Call | list[Call], n: int) -> list[dict[str, float]]:
    """``n`` sequential calls to each server (``call``, or each its own), interleaved
    call by call (the order alternating), so a drift of the machine's speed falls
    on all of them alike."""
    calls = call if isinstance(call, list) else [call] * len(urls)
    seconds: list[list[float]] = [[] for _ in urls]
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(url)) for url in urls]
        for i in range(10):  # warm-up
            for client, one in zip(clients, calls, strict=True):
                await one(client, -1 - i)
        for i in range(n):
            order = list(enumerate(zip(clients, calls, strict=True)))
            for k, (client, one) in order if i % 2 else reversed(order):
                started = time.perf_counter()
                await one(client, i)
                seconds[k].append(time.perf_counter() - started)
    return [latency(s) for s in seconds]


@contextmanager
def cpu_hog(processes: int = 4) -> Iterator[None]:
    """``processes`` busy loops beside the bench, as on a shared machine."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
        for _ in range(processes)
    ]
    try:
        yield
    finally:
        for hog in hogs:
            stop(hog)


async def under_cpu_hog(root: Path, n: int) -> dict[str, float]:
    """The floor and an embedded ``set_timer``, called in turn, on a quiet machine
    and then beside four busy processes: how much slower each gets."""
    figures: dict[str, float] = {}
    with server("bare", root / "bare") as (bare, _), server("ours", root / "ours") as (url, _):
        for label, prefix in (("quiet", "quiet"), ("hog", "hog")):
            with cpu_hog() if label == "hog" else contextlib.nullcontext():
                floor, start = await paired([bare, url], [noop, set_timer(prefix)], n)
            figures[f"floor_{label}_p50_ms"] = floor["p50_ms"]
            figures[f"set_timer_{label}_p50_ms"] = start["p50_ms"]
    for figure in ("floor", "set_timer"):
        figures[f"{figure}_slowdown"] = round(
            figures[f"{figure}_hog_p50_ms"] / figures[f"{figure}_quiet_p50_ms"], 2
        )
    return figures


async def concurrent(url: str, call: Call, per_client: int) -> float:
    """Calls per second with CLIENTS clients, each calling ``per_client`` times."""

    async def one(c: int) -> None:
        async with Client(url) as client:
            for i in range(per_client):
                await call(client, c * per_client + i)

    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in range(CLIENTS)))
    return round(CLIENTS * per_client / (time.perf_counter() - started), 1)


def noop(client: Client[Any], i: int) -> Awaitable[Any]:
    return client.call_tool("noop", {})


def set_timer(prefix: str) -> Call:
    def call(client: Client[Any], i: int) -> Awaitable[Any]:
        return client.call_tool("set_timer", {"timer_name": f"{prefix}{i}", "seconds": 3600})

    return call


def probe(client: Client[Any], i: int) -> Awaitable[Any]:
    return client.call_tool("probe_status", {"job_names": [f"seq{max(i, 0)}"]})


def get_status(client: Client[Any], i: int) -> Awaitable[Any]:
    return client.call_tool("get_timer_status", {"timer_name": "seq0"})


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory now (``VmRSS``) or at its peak (``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def peak_rss_mb(pid: int) -> float:
    return rss_mb(pid, "VmHWM")


async def many_timers(
    url: str,
    pid: int,
    count: int,
    *,
    set_phase: float | None = None,
    spread: float = 10,
    settle_within: float = 0,
    checkpoints: Collection[int] = (),
    growth: list[dict[str, float]] | None = None,
) -> dict[str, Any]:
    """``count`` timers sleeping at once, due over ``spread`` s after they are all set.

    ``set_phase`` is the seconds from now to the first deadline (by default 5 s
    more than 100 starts a second would take); ``settle_within`` how long to go
    on probing for timers not completed yet once the last is due (2 s after it).
    At each of ``checkpoints`` timers set, ``growth`` (the caller's list, kept if
    a call fails) gets the seconds since the first start and the server's RSS.
    """
    if set_phase is None:
        set_phase = max(count / 100, 5) + 5
    due = time.time() + set_phase
    names = [f"many{n}" for n in range(count)]

    def deadline_of(name: str) -> float:
        return due + spread * int(name.removeprefix("many")) / count

    set_late = [0]
    done = [0]
    growth = [] if growth is None else growth
    marks = set(checkpoints)

    async def start_some(chunk: list[str]) -> None:
        async with Client(url) as client:
            for name in chunk:
                # Past the set phase a timer is due at once (and counted late).
                seconds = max(round(deadline_of(name) - time.time(), 3), 0)
                set_late[0] += seconds == 0
                await client.call_tool("set_timer", {"timer_name": name, "seconds": seconds})
                done[0] += 1
                if done[0] in marks:
                    elapsed = round(time.perf_counter() - started, 2)
                    growth.append({"jobs": done[0], "seconds": elapsed, "rss_mb": rss_mb(pid)})

    started = time.perf_counter()
    await asyncio.gather(*(start_some(names[c::CLIENTS]) for c in range(CLIENTS)))
    set_seconds = time.perf_counter() - started
    rss_all_set = rss_mb(pid)
    await asyncio.sleep(max(due + spread - time.time(), 0) + 2)
    give_up = time.time() + settle_within
    late = []  # seconds after its deadline that each timer completed
    pending = names
    async with Client(url) as client:
        while True:
            waiting = []
            for first in range(0, len(pending), 100):
                batch = pending[first : first + 100]
                for status in (await client.call_tool("probe_status", {"job_names": batch})).data:
                    if status["status"] == "completed":
                        settled = dt.datetime.fromisoformat(status["settled_at"]).timestamp()
                        late.append(settled - deadline_of(status["job_name"]))
                    else:
                        waiting.append(status["job_name"])
            pending = waiting
            if not pending or time.time() >= give_up:
                break
            await asyncio.sleep(1)
    return {
        "timers": count,
        "completed": len(late),
        "set_seconds": round(set_seconds, 1),
        "set_after_deadline": set_late[0],
        **({"growth": growth} if checkpoints else {}),
        "rss_mb_all_set": rss_all_set,
        "peak_rss_mb": peak_rss_mb(pid),
        "lateness_p50_s": round(statistics.median(late), 3) if late else None,
        "lateness_p99_s": round(sorted(late)[int(len(late) * 0.99) - 1], 3) if late else None,
    }


#: The bench's `durable-mcp serve`: the limits off, as in ``servers.py``.
SERVE_ENV = {"DURABLE_MCP_RATE_LIMIT": "1000000", "DURABLE_MCP_MAX_RUNNING_JOBS": "1000000"}


async def recovery(data_dir: Path, jobs: int) -> dict[str, Any]:
    """``jobs`` timers in flight, kill -9, restart: how soon the port accepts,
    the first MCP call is answered, and the first and last resumed job is done.

    The server is `durable-mcp serve` itself, so the figures include its start.
    Every timer is due at one instant after the kill, passed while the server
    is down: each is resumed by the restart. When a job was done is its
    promise's ``settled_at``, as the server's store recorded it -- not when a
    poll noticed -- counted from the moment the restart was launched.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    names = [f"r{n}" for n in range(jobs)]
    process = start_server(port, data_dir, SERVE_ENV)
    due = time.time() + max(jobs / 100, 2) + 2  # room to set them all (16 clients)

    async def set_some(chunk: list[str]) -> None:
        async with Client(url) as client:
            for name in chunk:
                seconds = max(round(due - time.time(), 3), 0)
                await client.call_tool("set_timer", {"timer_name": name, "seconds": seconds})

    await asyncio.gather(*(set_some(names[c::CLIENTS]) for c in range(CLIENTS)))
    killed = time.time()
    stop(process, signal.SIGKILL)
    await asyncio.sleep(max(due - time.time(), 0) + 0.5)  # every deadline passes while down
    restarted, restarted_wall = time.perf_counter(), time.time()
    process = start_server(port, data_dir, SERVE_ENV)
    listening = time.perf_counter() - restarted
    settled: dict[str, float] = {}
    try:
        async with Client(url) as client:
            answered = 0.0
            while len(settled) < jobs:
                for first in range(0, jobs, 100):
                    batch = [n for n in names[first : first + 100] if n not in settled]
                    if not batch:
                        continue
                    statuses = (await client.call_tool("probe_status", {"job_names": batch})).data
                    answered = answered or time.perf_counter() - restarted
                    for status in statuses:
                        if status["status"] == "completed":
                            at = dt.datetime.fromisoformat(status["settled_at"]).timestamp()
                            settled[status["job_name"]] = at
                await asyncio.sleep(0.05)
    finally:
        stop(process)
    resumed = [at - restarted_wall for at in settled.values() if at > killed]
    return {
        "jobs": jobs,
        "resumed": len(resumed),
        "restart_to_listening_s": round(listening, 2),
        "restart_to_first_answer_s": round(answered, 2),
        "restart_to_first_done_s": round(min(resumed), 2) if resumed else None,
        "restart_to_all_done_s": round(max(resumed), 2) if resumed else None,
    }


async def measure(sizes: Sizes, root: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with server("bare", root / "bare") as (bare, _), server("ours", root / "floor") as (url, _):
        results["bare_noop"], results["floor_noop"] = await paired([bare, url], noop, sizes.calls)
        results["bare_calls_per_s_16_clients"] = await concurrent(
            bare, noop, sizes.concurrent_calls
        )
        results["floor_calls_per_s_16_clients"] = await concurrent(
            url, noop, sizes.concurrent_calls
        )
    results["middleware"] = {
        "cost_ms": round(results["floor_noop"]["p50_ms"] - results["bare_noop"]["p50_ms"], 2),
        "our_noop_over_bare": round(
            results["floor_noop"]["p50_ms"] / results["bare_noop"]["p50_ms"], 2
        ),
    }
    with server("baseline", root / "baseline") as (url, _):
        results["baseline_set_timer"] = await sequential(url, set_timer("seq"), sizes.calls)
        results["baseline_starts_per_s_16_clients"] = await concurrent(
            url, set_timer("con"), sizes.concurrent_calls
        )
    for store in ("embedded", "memory"):
        with server("ours", root / store, store) as (url, _):
            results[f"set_timer_{store}"] = await sequential(url, set_timer("seq"), sizes.calls)
            results[f"starts_per_s_16_clients_{store}"] = await concurrent(
                url, set_timer("con"), sizes.concurrent_calls
            )
            if store == "embedded":
                results["probe_status"] = await sequential(url, probe, sizes.calls)
                results["direct_get_timer_status"] = await sequential(url, get_status, sizes.calls)
                proxy = StdioTransport(
                    command=sys.executable,
                    args=[PROXY],
                    env={**os.environ, "DURABLE_MCP_URL": url},
                    keep_alive=False,
                )
                results["proxy_get_timer_status"] = await sequential(
                    Client(proxy), get_status, sizes.calls
                )
    results["cpu_hog"] = await under_cpu_hog(root / "hog", sizes.calls)
    with server("ours", root / "timers") as (url, pid):
        results["sleeping_timers"] = await many_timers(url, pid, sizes.timers)
    results["recovery_after_kill_9"] = await recovery(root / "recovery", sizes.in_flight)
    return results


#: A row of the table: figure, value against the bare floor, the same against our
#: own no-op (None where that means nothing), goal, met.
Row = tuple[str, float | None, float | None, str, bool | None]


def targets(r: dict[str, Any]) -> list[Row]:
    bare = r["bare_noop"]["p50_ms"]
    ours = r["floor_noop"]["p50_ms"]
    timers = r["sleeping_timers"]
    rows: list[Row] = []

    def check(name: str, value: float | None, goal: str, ok: bool | None) -> None:
        rows.append((name, value, None, goal, ok))

    def latency_ratio(name: str, figure: str, goal: float) -> None:
        p50 = r[figure]["p50_ms"]
        ratio = round(p50 / bare, 2)
        rows.append((name, ratio, round(p50 / ours, 2), f"<= {goal}", ratio <= goal))

    cost = r["middleware"]["cost_ms"]
    check("middleware ms (our no-op - bare, p50)", cost, "<= 0.3", cost <= 0.3)
    latency_ratio("set_timer p50 / floor (embedded)", "set_timer_embedded", 1.5)
    latency_ratio("set_timer p50 / floor (memory)", "set_timer_memory", 1.5)
    latency_ratio("probe_status p50 / floor", "probe_status", 1.15)
    latency_ratio("get_timer_status p50 / floor", "direct_get_timer_status", 1.15)
    proxy_ratio = round(
        r["proxy_get_timer_status"]["p50_ms"] / r["direct_get_timer_status"]["p50_ms"], 2
    )
    check("proxy p50 / direct p50", proxy_ratio, "<= 1.15", proxy_ratio <= 1.15)
    starts = r["starts_per_s_16_clients_embedded"]
    throughput = round(starts / r["bare_calls_per_s_16_clients"], 2)
    rows.append(
        (
            "starts/s / floor calls/s (16 clients)",
            throughput,
            round(starts / r["floor_calls_per_s_16_clients"], 2),
            ">= 0.6",
            throughput >= 0.6,
        )
    )
    hog = r["cpu_hog"]
    growth = round(hog["set_timer_slowdown"] / hog["floor_slowdown"], 2)
    check("set_timer / floor slowdown, 4 CPU hogs", growth, "<= 1.0", growth <= 1.0)
    check(
        f"peak RSS MB, {timers['timers']} timers",
        timers["peak_rss_mb"],
        "<= 300",
        timers["peak_rss_mb"] <= 300,
    )
    p99 = timers["lateness_p99_s"]
    check("timer lateness p99 s", p99, "<= 1.5", p99 is not None and p99 <= 1.5)
    recovery = r["recovery_after_kill_9"]
    first = recovery["restart_to_first_done_s"]
    check("restart to first resumed job done s", first, "<= 1", first is not None and first <= 1)
    listening = recovery["restart_to_listening_s"]
    check("restart to listening s", listening, "<= 1.2", listening <= 1.2)
    return rows


#: A figure of the other benches, with its goal: (name, value, goal, met).
Target = tuple[str, Any, str, bool]


def record_targets(results: dict[str, Any], rows: list[Target]) -> None:
    """Add ``rows`` to ``results`` as its targets, and print each: its goal, met or MISSED."""
    results["targets"] = [
        {"figure": name, "value": value, "goal": goal, "met": ok} for name, value, goal, ok in rows
    ]
    for name, value, goal, ok in rows:
        print(f"{name:<40} {value!s:>8}  goal {goal:<7} {'met' if ok else 'MISSED'}")


def print_rows(rows: list[Row]) -> None:
    """The table: ratios are against the bare floor, our own no-op's in brackets."""
    print(f"{'':<40} {'value':>8}  {'(ours)':>8}  goal")
    for name, value, against_ours, goal, ok in rows:
        ours = f"({against_ours})" if against_ours is not None else ""
        print(f"{name:<40} {value!s:>8}  {ours:>8}  goal {goal:<7} {'met' if ok else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: check it runs")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    options = parser.parse_args()
    quick = options.quick
    with tempfile.TemporaryDirectory() as tmp:
        results = asyncio.run(measure(QUICK if quick else FULL, Path(tmp)))
    rows = targets(results)
    results["targets"] = [
        {"figure": name, "value": value, "against_our_noop": ours, "goal": goal, "met": ok}
        for name, value, ours, goal, ok in rows
    ]
    results["quick"] = quick
    for name, figures in results.items():
        if name not in ("targets", "quick"):
            print(f"{name:<36} {figures}")
    print()
    print_rows(rows)
    options.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
