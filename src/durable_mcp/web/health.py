"""``/healthz`` and ``/readyz``, for a load balancer or an orchestrator to call every second.

``/healthz`` answers 200 while the process serves HTTP, and looks at nothing
else. ``/readyz`` answers 200 when the server can take jobs: the store is
open (the embedded store writes: a full disk says so), the engine runs, and on
Postgres the database answers, within a second. Otherwise 503, naming what
failed, in one line of text or in JSON (``Accept: application/json``)::

    {"ready": false, "checks": {"store": "ok", "engine": "ok", "postgres": "timed out"}}

Neither needs the token: they say nothing of any job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

#: Each check: None when fine, else what is wrong, in a few words.
Check = Callable[[], Awaitable[str | None]]

#: The longest a check may take before it counts as failed.
CHECK_SECONDS = 1.0


class Health:
    """The readiness checks of one server, by name."""

    def __init__(self, checks: dict[str, Check]) -> None:
        self.checks = checks

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(self, request: Request) -> Response:
        found = dict(
            zip(
                self.checks,
                await asyncio.gather(*(problem_of(check) for check in self.checks.values())),
                strict=True,
            )
        )
        ready = all(problem is None for problem in found.values())
        code = 200 if ready else 503
        if "application/json" in request.headers.get("accept", ""):
            checks = {name: problem or "ok" for name, problem in found.items()}
            return JSONResponse({"ready": ready, "checks": checks}, status_code=code)
        if ready:
            return PlainTextResponse("ready\n")
        failed = "; ".join(f"{name}: {problem}" for name, problem in found.items() if problem)
        return PlainTextResponse(f"not ready: {failed}\n", status_code=code)


async def problem_of(check: Check) -> str | None:
    """What ``check`` finds wrong, in one line, within :data:`CHECK_SECONDS`; None if fine."""
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            return await check()
    except TimeoutError:
        return f"no answer within {CHECK_SECONDS:g} s"
    except Exception as exc:  # a check that fails says why, in one line
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
