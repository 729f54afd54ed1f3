"""The ``durable-mcp`` command: ``serve`` runs the server, ``jobs`` lists its jobs,
``claude-config`` prints the Claude Desktop entry for this checkout.

Each flag of ``serve`` mirrors one environment variable (see ``config.py``); a
flag wins.
Anything that stops the start -- a bad setting, a port in use, a Postgres
database out of reach or without its schema -- is one line on stderr and exit
code 2, never a traceback.

``serve`` opens the store and starts the engine -- the jobs a restart
interrupted resume -- before it imports the MCP layer (FastMCP, uvicorn: most
of the start-up time), then builds the app on the running engine and listens.
So this module imports nothing of MCP at import time; `durable-mcp jobs` never does.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import heapq
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from resonate.timing import now_ms

from durable_mcp import __version__, tracing
from durable_mcp.config import (
    OPTIONS,
    ConfigError,
    Option,
    Settings,
    check_http_url,
    load_settings,
)
from durable_mcp.engine import Engine, build_engine, start_engine
from durable_mcp.functions.weather import OpenMeteoArchive
from durable_mcp.logs import configure_logging
from durable_mcp.sdk_compat import DurablePromise
from durable_mcp.store import StoreError, peek
from durable_mcp.store.state import is_job

EXIT_BAD_START = 2

logger = logging.getLogger("durable_mcp")

#: Connections the port holds before they are accepted (uvicorn's default).
BACKLOG = 2048

#: The longest the MCP layer waits for the jobs the start resumed to have run
#: (``resumed_first``), and the sleep that tells an idle event loop from a busy one.
RESUME_HEAD_START = 1.0
IDLE_PROBE = 0.01

#: What `durable-mcp jobs --status` takes: ``jobs.JobStatus`` but not_found
#: (not imported from there: it imports FastMCP).
JOB_STATUSES = ("running", "input_required", "completed", "failed", "cancelled")

DESCRIPTION = """\
durable-mcp: long-running MCP tools as durable jobs. A start tool answers at
once with a job name; the job runs on, across restarts, until it is probed or
awaited."""

EPILOG = """\
Each setting of `serve` is also an environment variable (named in its help); a
flag wins. Docs: README.md in the checkout."""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="durable-mcp", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"durable-mcp {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_parser = commands.add_parser(
        "serve",
        help="run the MCP server over streamable HTTP",
        description="Run the MCP server over streamable HTTP, at http://HOST:PORT/mcp.",
        epilog="Every flag is also an environment variable, named in its help; a flag wins. "
        "The secrets, DURABLE_MCP_TOKEN (the bearer token) and DURABLE_MCP_WEBHOOK_SECRET, "
        "are read from the environment only (a command line is visible to every user of "
        "the machine).",
    )
    for option in OPTIONS:
        if option.flag is not None:
            serve_parser.add_argument(option.flag, help=_help(option))
    jobs_parser = commands.add_parser(
        "jobs",
        help="list the jobs of the embedded store or Postgres (also while the server runs)",
        description="List the jobs of the embedded store (or of Postgres, with "
        "RESONATE_PG_DSN) as a table, newest first. It reads the store without taking it, "
        "so the server can keep running.",
    )
    jobs_parser.add_argument("--data-dir", help=_help(_option("DURABLE_MCP_DATA_DIR")))
    jobs_parser.add_argument("--status", choices=JOB_STATUSES, help="only jobs of this status")
    jobs_parser.add_argument("--kind", help="only jobs of this kind, e.g. timer")
    jobs_parser.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    config_parser = commands.add_parser(
        "claude-config",
        help="print the Claude Desktop entry that runs this checkout's proxy.py (absolute paths)",
        description="Print the mcpServers entry for Claude Desktop's config: this "
        "environment's Python runs this checkout's proxy.py, which forwards to the server. "
        "It only prints; nothing is edited.",
    )
    config_parser.add_argument(
        "--port", help="the server's port (default: DURABLE_MCP_PORT, else 5001)"
    )
    config_parser.add_argument(
        "--url",
        help="the server's MCP endpoint (default: DURABLE_MCP_URL, else http://127.0.0.1:PORT/mcp)",
    )
    args = parser.parse_args(argv)
    if args.command == "jobs":
        list_jobs(args)
        return
    if args.command == "claude-config":
        print(json.dumps(claude_config(port=args.port, url=args.url), indent=2))
        return

    overrides = {option.env: getattr(args, _dest(option.flag)) for option in OPTIONS if option.flag}
    configure_logging()
    tracing.export_if_configured()  # before any job resumes: its spans are exported too
    try:
        settings = load_settings(overrides=overrides)
        sock = bind(settings)
        if settings.pg_dsn:
            check_postgres(settings.pg_dsn)
        engine = build_engine(settings)  # opens the embedded store
    except (ConfigError, StoreError) as exc:
        _fail(str(exc))
    # The port accepts connections from here on: a request that arrives while
    # the MCP layer is still importing waits for it, instead of being refused.
    sock.listen(BACKLOG)
    asyncio.run(run(engine, settings, sock))


def _help(option: Option) -> str:
    """A flag's help: its meaning, default and environment variable (argparse: % doubled)."""
    text = f"{option.meaning}. Default: {option.default}. Env: {option.env}."
    return text.replace("%", "%%")


def _option(env: str) -> Option:
    return next(option for option in OPTIONS if option.env == env)


def _dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


async def run(engine: Engine, settings: Settings, sock: socket.socket) -> None:
    """Start ``engine`` -- interrupted jobs resume -- then import and build the
    MCP app on it (in a thread, so the jobs run meanwhile), and serve it.

    A SIGINT or SIGTERM at any point stops it cleanly (exit 0): before the
    MCP layer is imported, the engine alone; after, ``serve`` is handed the
    signals caught so far and stops the server at once if there is one.
    """
    stop_asked: list[int] = []
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda signum, frame: stop_asked.append(signum))
    archive = OpenMeteoArchive(settings.open_meteo_url, max_fetches=settings.max_fetches)
    started = start_engine(engine, archive, label=settings.engine)
    try:
        await resumed_first()
        if stop_asked:
            return
        await asyncio.to_thread(_import_mcp_layer)
        if stop_asked:
            return
        from durable_mcp.http import serve
        from durable_mcp.server import create_server

        stopping = asyncio.Event()
        app = create_server(settings, engine=started, stopping=stopping)
        await serve(app, settings, sock, stopping, stop_asked)
    finally:
        # The app's lifespan did this already, unless it never ran; both are idempotent.
        archive.close()
        await engine.resonate.stop()


async def resumed_first(limit: float = RESUME_HEAD_START) -> None:
    """Return once the event loop is idle -- the work the start resumed has run
    -- or after ``limit`` seconds, whichever is first.

    Importing the MCP layer takes the CPU (and the GIL) for about a second; the
    jobs a restart interrupted go first. The port already accepts connections:
    an early request waits, it is not refused. Idle: a short sleep that ends on
    time, twice in a row (a busy loop runs its sleepers late).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    quiet = 0
    while quiet < 2 and loop.time() < deadline:
        before = loop.time()
        await asyncio.sleep(IDLE_PROBE)
        quiet = quiet + 1 if loop.time() - before < IDLE_PROBE * 1.5 else 0


def _import_mcp_layer() -> None:
    import durable_mcp.http
    import durable_mcp.server  # noqa: F401


def claude_config(port: str | None = None, url: str | None = None) -> dict[str, object]:
    """The ``mcpServers`` entry for Claude Desktop, as ``fastmcp install claude-desktop``
    writes one: this environment's Python runs this checkout's ``proxy.py``.

    Absolute paths, so Claude Desktop needs nothing on its PATH (not even uv).
    The server's URL is ``url``, else one on ``port``; each defaults to this
    environment's (DURABLE_MCP_URL, DURABLE_MCP_PORT), as does the token.
    """
    proxy = Path(__file__).resolve().parents[2] / "proxy.py"
    if not proxy.is_file():
        _fail(f"no proxy.py at {proxy}: run this from a checkout of durable-mcp")
    try:
        settings = load_settings(overrides={"DURABLE_MCP_PORT": port})
        if url is not None:
            check_http_url("--url", url)
    except ConfigError as exc:
        _fail(str(exc))
    if url is None:
        url = (None if port else os.environ.get("DURABLE_MCP_URL")) or (
            f"http://127.0.0.1:{settings.port}/mcp"
        )
    env = {"DURABLE_MCP_URL": url}
    if token := os.environ.get("DURABLE_MCP_TOKEN"):
        env["DURABLE_MCP_TOKEN"] = token
    # The venv's own python (not resolved: the link is what makes it the venv's).
    python = str(Path(sys.executable).absolute())
    entry = {"command": python, "args": [str(proxy)], "env": env}
    return {"mcpServers": {"durable-mcp": entry}}


def list_jobs(args: argparse.Namespace) -> None:
    """Print the jobs in the embedded store or on Postgres as a table, newest first.

    It reads the store's files without taking them, or Postgres's tables, so
    the server can keep running; what it shows is what the server had
    committed when it read.
    """
    if args.limit < 1:
        _fail(f"--limit must be 1 or more (got {args.limit})")
    from durable_mcp.jobs.status import status_from_promise

    try:
        settings = load_settings(overrides={"DURABLE_MCP_DATA_DIR": args.data_dir})
        if settings.pg_dsn:
            list_postgres_jobs(settings.pg_dsn, args)
            return
        if settings.resonate_url or settings.store != "embedded":
            raise ConfigError(
                "`durable-mcp jobs` reads the embedded store or Postgres; the jobs of "
                f"{settings.engine} are listed by the server's list_jobs tool"
            )
        state = peek(Path(settings.data_dir))
    except (ConfigError, StoreError) as exc:
        _fail(str(exc))
    now = now_ms()

    def status_of(promise: DurablePromise) -> dict[str, Any]:
        question = state.promises.pending_question(promise.id)
        return status_from_promise(promise, now, question=question)

    def wanted(job: dict[str, Any]) -> bool:
        return args.status in (None, job["status"]) and args.kind in (None, job["kind"])

    # In memory, the running jobs (and those just ended); in the archive, the ended.
    in_memory = sorted(
        (p for p in state.promises.values() if is_job(p.id)), key=newest, reverse=True
    )
    archived = state.archive.newest_first(None, None, None, None, None) if state.archive else ()
    rows: list[tuple[str, ...]] = []
    for promise in heapq.merge(in_memory, archived, key=newest, reverse=True):
        if len(rows) == args.limit:
            break  # the rest are counted, not read
        job = status_of(promise)
        if wanted(job):
            age = _age(now - promise.created_at)
            rows.append((job["job_name"], job["kind"], job["status"], age))
    print(_table(("JOB", "KIND", "STATUS", "AGE"), rows))
    total = sum(wanted(status_of(promise)) for promise in in_memory)
    if state.archive is not None:
        total += state.archive.count(args.status, args.kind)
    if total > len(rows):
        print(f"... and {total - len(rows)} more (--limit)")


def newest(promise: DurablePromise) -> tuple[int, str]:
    return promise.created_at, promise.id


def list_postgres_jobs(dsn: str, args: argparse.Namespace) -> None:
    """Print the jobs on Postgres, from the server's job index (``postgres_jobs``)."""
    from durable_mcp.jobs.status import JobStatus
    from durable_mcp.postgres_jobs import JobListingError, read_jobs  # psycopg: only here

    status = JobStatus(args.status) if args.status else None
    try:
        listing = asyncio.run(read_jobs(dsn, status, args.kind, args.limit))
    except JobListingError as exc:
        _fail(str(exc))
    now = now_ms()
    rows: list[tuple[str, ...]] = [
        (job["job_name"], str(job["kind"]), job["status"], _age(now - _ms(job["created_at"])))
        for job in listing["jobs"]
    ]
    print(_table(("JOB", "KIND", "STATUS", "AGE"), rows))
    if listing["next_cursor"] is not None:
        print("... and more (--limit)")


def _ms(iso_time: str) -> int:
    return int(dt.datetime.fromisoformat(iso_time).timestamp() * 1000)


def _age(ms: int) -> str:
    seconds = max(ms, 0) // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    if not rows:
        return "no jobs"
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    )


def _fail(message: str) -> NoReturn:
    print(f"durable-mcp: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_START)


def bind(settings: Settings) -> socket.socket:
    """Bind the listening socket up front, so a taken port is a clear error."""
    try:
        infos = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this; without it Nagle's algorithm meets
        # the client's delayed ACK and every MCP call waits ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}; "
            "choose another address or port (--host, --port; DURABLE_MCP_HOST, DURABLE_MCP_PORT)"
        ) from exc
    return sock


def check_postgres(dsn: str) -> None:
    """A database out of reach or without resonate-pg's schema stops the start
    (``ConfigError``): otherwise every call would fail, or wait, until it is fixed."""
    from durable_mcp.postgres import check_database  # psycopg takes ~0.3 s to import

    check_database(dsn)
