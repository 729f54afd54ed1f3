"""The operator's window, served by the MCP server itself on its own port:

- ``/jobs``: the jobs, newest first, filtered and live; ``/jobs/job/<name>``: one
  job, its steps, progress, question and result, with cancel, retry and answer
  (``pages.py``, drawn by ``static/``);
- ``/metrics``: Prometheus' format (``metrics.py``);
- ``/healthz`` and ``/readyz``: for a load balancer (``health.py``).

The pages and /metrics need the token when one is set, or a signed-in
person's JWT, and show that person their own jobs (``auth.py``); they are
off with ``DURABLE_MCP_WEB=off``; the health checks are always served.
:func:`serve_window` adds them all to a FastMCP app as custom routes, behind
FastMCP's Host/Origin guard like ``/mcp``.
"""

from __future__ import annotations

from fastmcp import FastMCP

from durable_mcp.config import Settings
from durable_mcp.engine import Engine
from durable_mcp.jobs.service import Jobs
from durable_mcp.sdk_compat import engine_running
from durable_mcp.web.auth import PageAuth
from durable_mcp.web.health import Check, Health
from durable_mcp.web.metrics import CallLatency, JobMetrics
from durable_mcp.web.pages import JobPages

#: Where the jobs page is, on the server's own address.
PAGE_PATH = "/jobs"


def serve_window(
    mcp: FastMCP, jobs: Jobs, engine: Engine, settings: Settings, start_tools: set[str]
) -> JobMetrics | None:
    """Add the pages, /metrics and the health checks to ``mcp``; the metrics, if served.

    ``start_tools`` are the names of the start tools (their latency is measured), a
    set the caller adds to as tools are declared.
    """
    checks = readiness_checks(engine)
    health = Health(checks)
    mcp.custom_route("/healthz", methods=["GET"])(health.healthz)
    mcp.custom_route("/readyz", methods=["GET"])(health.readyz)
    if not settings.web:
        return None
    # Signed in with JWTs, a page's login is checked as a call to /mcp is.
    verify = mcp.auth.verify_token if settings.signs_in and mcp.auth is not None else None
    sign_in_at = settings.auth_server or settings.jwt_issuer
    auth = PageAuth(settings.token, settings.allowed_origins, verify, sign_in_at)
    for path, methods, endpoint in JobPages(jobs, engine.steps, auth).routes():
        mcp.custom_route(path, methods=methods)(endpoint)
    metrics = JobMetrics(jobs, engine, auth, database=checks.get("postgres"))
    mcp.custom_route("/metrics", methods=["GET"])(metrics.endpoint)
    mcp.add_middleware(CallLatency(metrics, start_tools))
    return metrics


def readiness_checks(engine: Engine) -> dict[str, Check]:
    """What ``/readyz`` looks at: the store, the engine, and the database (Postgres)."""

    async def store() -> str | None:
        return engine.store.problem if engine.store is not None else None

    async def running() -> str | None:
        return None if engine_running(engine.resonate) else "the engine is not running"

    checks: dict[str, Check] = {"store": store, "engine": running}
    if engine.ping is not None:
        ping = engine.ping

        async def postgres() -> str | None:
            await ping()
            return None

        checks["postgres"] = postgres
    return checks
