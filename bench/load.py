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
``--output`` and exits 1 when anything above does not hold. This file is the
command line; the run is ``durable_mcp_testing.load.run()`` (``tests/test_load.py``
calls it in-process), from ``load.harness`` (the clients, the server, the fake
archive), ``load.chaos`` (kills, the full disk) and ``load.report`` (figures,
checks, the summary).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
from pathlib import Path

from durable_mcp_testing.load import run
from durable_mcp_testing.load.harness import Options
from durable_mcp_testing.load.report import summary


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
