"""Load the benches put on a server: many clients calling at once, many sleeping timers."""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import time
from collections.abc import Awaitable, Callable, Collection
from contextlib import AsyncExitStack
from typing import Any

from fastmcp import Client

from durable_mcp_testing.figures import latency, peak_rss_mb, rss_mb

#: Clients calling at once in the concurrent figures.
CLIENTS = 16

#: One call of a tool, the ``i``-th of its client.
Call = Callable[[Client[Any], int], Awaitable[Any]]


async def concurrent(url: str, call: Call, per_client: int) -> float:
    """Calls per second with CLIENTS clients, each calling ``per_client`` times."""

    async def one(c: int) -> None:
        async with Client(url) as client:
            for i in range(per_client):
                await call(client, c * per_client + i)

    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in range(CLIENTS)))
    return round(CLIENTS * per_client / (time.perf_counter() - started), 1)


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


def noop(client: Client[Any], i: int) -> Awaitable[Any]:
    return client.call_tool("noop", {})


def set_timer(prefix: str) -> Call:
    def call(client: Client[Any], i: int) -> Awaitable[Any]:
        return client.call_tool("set_timer", {"timer_name": f"{prefix}{i}", "seconds": 3600})

    return call


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
