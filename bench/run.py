"""`make bench`: speed, memory and recovery of the real server, as ratios in one run.

Every figure comes from real processes on 127.0.0.1 (see
``durable_mcp_testing.bench_servers``):

- floor: a no-op tool on a bare ``FastMCP("floor")`` (no middleware, no auth, no
  extensions) served the same way -- what any MCP call costs -- and beside it the
  same no-op on our server: the difference is what our middleware costs;
- baseline: the seed 002 design (dict + asyncio task, no durability);
- ours: ``set_timer`` on the embedded and memory stores, ``probe_status``,
  the proxy against a direct call, 16 concurrent clients, 10,000 sleeping
  timers (peak RSS, lateness against their deadlines), recovery after
  ``kill -9`` with 1,000 jobs in flight, ``probe_status`` on a server of
  one's own while poison jobs start beside it, ``set_timer`` and
  ``probe_status`` beside jobs reporting progress 100 times a second, and how
  soon a job resumes once its question is answered.

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
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from durable_mcp_testing.bench_servers import server
from durable_mcp_testing.figures import latency
from durable_mcp_testing.processes import PROXY, free_port, start_listening, start_server, stop
from durable_mcp_testing.workloads import (
    CLIENTS,
    Call,
    concurrent,
    many_timers,
    noop,
    paired,
    set_timer,
)

RESULTS = Path(__file__).parent / "results.json"


@dataclass(frozen=True)
class Sizes:
    calls: int  # sequential calls per latency figure
    concurrent_calls: int  # calls per client, 16 clients
    timers: int  # concurrently sleeping timers
    in_flight: int  # jobs in flight at kill -9
    answers: int  # questions answered, one after the other
    #: Seconds until the first timer is due (None: 5 s more than setting them takes),
    #: and over how many seconds the timers are due.
    timers_due_in: float | None = None
    timers_spread: float = 10
    #: Busy processes beside the cpu-hog figures (--quick: one, so that it does not
    #: starve what runs beside the quick bench: the other test worker).
    hogs: int = 4


FULL = Sizes(calls=500, concurrent_calls=60, timers=10_000, in_flight=1_000, answers=200)
QUICK = Sizes(
    calls=20,
    concurrent_calls=4,
    timers=100,
    in_flight=30,
    answers=10,
    timers_due_in=3,
    timers_spread=2,
    hogs=1,
)


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


async def under_cpu_hog(root: Path, n: int, hogs: int = 4) -> dict[str, float]:
    """The floor and an embedded ``set_timer``, called in turn, on a quiet machine
    and then beside ``hogs`` busy processes: how much slower each gets."""
    figures: dict[str, float] = {"hogs": hogs}
    with server("bare", root / "bare") as (bare, _), server("ours", root / "ours") as (url, _):
        for label, prefix in (("quiet", "quiet"), ("hog", "hog")):
            with cpu_hog(hogs) if label == "hog" else contextlib.nullcontext():
                floor, start = await paired([bare, url], [noop, set_timer(prefix)], n)
            figures[f"floor_{label}_p50_ms"] = floor["p50_ms"]
            figures[f"set_timer_{label}_p50_ms"] = start["p50_ms"]
    for figure in ("floor", "set_timer"):
        figures[f"{figure}_slowdown"] = round(
            figures[f"{figure}_hog_p50_ms"] / figures[f"{figure}_quiet_p50_ms"], 2
        )
    return figures


def probe(client: Client[Any], i: int) -> Awaitable[Any]:
    return client.call_tool("probe_status", {"job_names": [f"seq{max(i, 0)}"]})


def get_status(client: Client[Any], i: int) -> Awaitable[Any]:
    return client.call_tool("get_timer_status", {"timer_name": "seq0"})


#: The bench's `durable-mcp serve`: the limits off, as in ``bench_servers``.
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


async def beside_poison(root: Path, n: int) -> dict[str, Any]:
    """``probe_status`` on a server of one's own (``poison_app``), paired with the
    bare floor: first quiet, then while poison jobs start all the time (a value
    no store keeps, a generator step, a step that always raises): how much the
    poison costs the calls that have nothing to do with it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    command = [sys.executable, "-m", "durable_mcp_testing.poison_app", str(port), str(root)]
    app = start_listening(command, port, SERVE_ENV)
    started = 0

    async def poison() -> None:
        nonlocal started
        async with Client(url) as client:
            while True:
                for tool in ("unencodable", "generator_step", "raising_step"):
                    await client.call_tool(tool, {"n": started})
                started += 1
                await asyncio.sleep(0.05)

    def probe_normal(client: Client[Any], i: int) -> Awaitable[Any]:
        return client.call_tool("probe_status", {"job_names": ["normal_0"]})

    figures: dict[str, Any] = {}
    try:
        async with Client(url) as client:
            await client.call_tool("normal", {"n": 0, "seconds": 3600})
        with server("bare", root / "bare") as (bare, _):
            floor, quiet = await paired([bare, url], [noop, probe_normal], n)
            figures["quiet_ratio"] = round(quiet["p50_ms"] / floor["p50_ms"], 2)
            feeding = asyncio.create_task(poison())
            try:
                floor, poisoned = await paired([bare, url], [noop, probe_normal], n)
            finally:
                feeding.cancel()
            figures["poisoned_ratio"] = round(poisoned["p50_ms"] / floor["p50_ms"], 2)
            figures["poisoned_p99_ms"] = poisoned["p99_ms"]
    finally:
        stop(app)
    figures["poison_jobs_started"] = started * 3
    figures["poisoned_over_quiet"] = round(figures["poisoned_ratio"] / figures["quiet_ratio"], 2)
    return figures


async def beside_progress(root: Path, n: int) -> dict[str, Any]:
    """``set_timer`` and ``probe_status``, paired with the bare floor, first quiet,
    then while jobs report their progress 500 times a second (one after the
    other, 1,000 reports a job): how much the reports cost the other calls."""
    figures: dict[str, Any] = {}
    started = 0
    with server("bare", root / "bare") as (bare, _), server("talking", root / "t") as (url, _):

        async def chatter() -> None:
            nonlocal started
            async with Client(url) as client:
                for i in range(1_000_000):
                    job = f"chatty_{i}"
                    chatty = {"name": str(i), "reports": 1000, "per_second": 500}
                    await client.call_tool("chatty", chatty)
                    started += 1
                    running = True
                    while running:
                        done = await client.call_tool("await_result", {"job_names": [job]})
                        running = isinstance(done.data[job], dict)  # still {"status": "running"}

        async with Client(url) as client:
            await client.call_tool("set_timer", {"timer_name": "probed", "seconds": 3600})
        calls = [noop, set_timer("quiet"), probe]
        floor, timer, probed = await paired([bare, url, url], calls, n)
        quiet = {"set_timer": timer["p50_ms"] / floor["p50_ms"]}
        quiet["probe_status"] = probed["p50_ms"] / floor["p50_ms"]
        chatting = asyncio.create_task(chatter())
        try:
            calls = [noop, set_timer("chatty"), probe]
            floor, timer, probed = await paired([bare, url, url], calls, n)
        finally:
            chatting.cancel()
    for name, busy in (("set_timer", timer), ("probe_status", probed)):
        figures[f"{name}_quiet_ratio"] = round(quiet[name], 2)
        figures[f"{name}_beside_progress_ratio"] = round(busy["p50_ms"] / floor["p50_ms"], 2)
        figures[f"{name}_beside_progress_over_quiet"] = round(
            busy["p50_ms"] / floor["p50_ms"] / quiet[name], 2
        )
    figures["chatty_jobs_started"] = started  # one at a time, 1,000 reports in 2 s each
    return figures


async def answer_to_resumed(root: Path, n: int, store: str = "embedded") -> dict[str, float]:
    """From sending ``answer_job`` to the job running its next step, ``n`` times:
    each job asks, is answered, and returns the wall time it resumed."""
    seconds = []
    with server("talking", root / store, store) as (url, _):
        async with Client(url) as client:
            for i in range(n + 5):  # the first 5 warm up
                job = f"approve_{i}"
                await client.call_tool("approve", {"name": str(i)})
                asked = await client.call_tool("await_result", {"job_names": [job]})
                assert asked.data[job]["status"] == "input_required", asked.data
                sent = time.time()
                await client.call_tool("answer_job", {"job_name": job, "answer": {"go": True}})
                resumed = (await client.call_tool("await_result", {"job_names": [job]})).data[job]
                if i >= 5:
                    seconds.append(resumed - sent)
    return latency(seconds)


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
    results["cpu_hog"] = await under_cpu_hog(root / "hog", sizes.calls, sizes.hogs)
    with server("ours", root / "timers") as (url, pid):
        results["sleeping_timers"] = await many_timers(
            url, pid, sizes.timers, set_phase=sizes.timers_due_in, spread=sizes.timers_spread
        )
    results["recovery_after_kill_9"] = await recovery(root / "recovery", sizes.in_flight)
    results["probe_beside_poison"] = await beside_poison(root / "poison", sizes.calls)
    results["beside_progress"] = await beside_progress(root / "progress", sizes.calls)
    results["answer_to_resumed_embedded"] = await answer_to_resumed(root / "answers", sizes.answers)
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
    hogs = hog.get("hogs", 4)
    check(f"set_timer / floor slowdown, {hogs} CPU hogs", growth, "<= 1.0", growth <= 1.0)
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
    poison = r["probe_beside_poison"]["poisoned_over_quiet"]
    check("probe_status beside poison / quiet", poison, "<= 1.15", poison <= 1.15)
    talking = r["beside_progress"]
    for name in ("set_timer", "probe_status"):
        ratio = talking[f"{name}_beside_progress_over_quiet"]
        check(f"{name} beside 500 reports/s / quiet", ratio, "<= 1.15", ratio <= 1.15)
    answered = r["answer_to_resumed_embedded"]["p50_ms"]
    check("answer -> job resumed p50 ms (embedded)", answered, "<= 20", answered <= 20)
    return rows


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
