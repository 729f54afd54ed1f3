"""The jobs page (``/jobs``) and a job's page (``/jobs/job/<name>``), with the JSON
they are drawn from and the actions they take.

Pages are static HTML shells; ``static/*.js`` fetch their data from
``/jobs/api/...`` and build the page with ``textContent`` only, so a job's
name or value is always text. Every read needs :class:`PageAuth`'s login;
every action (``POST /jobs/api/cancel|retry|answer``) its CSRF token too, and
goes through the job service the tools use: a refused action answers the same
one-line error a tool would, as ``{"error": ...}``.
"""

from __future__ import annotations

import html
import inspect
import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from fastmcp.exceptions import ToolError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from durable_mcp import __version__, owners
from durable_mcp.jobs.service import Busy, EngineUnavailable, InvalidArgument, Jobs
from durable_mcp.jobs.status import JobStatus, iso
from durable_mcp.jobs.steps import StepReader, by_start
from durable_mcp.web.auth import PageAuth

#: A route's handler.
Endpoint = Callable[[Request], Awaitable[Response]]

#: Jobs on one page of the list, unless the request asks for fewer (at most 100).
PAGE_SIZE = 25

#: What a page may load: scripts and styles from this server only, no inline code.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

#: The files the pages load, by name: their package's folder, and content type.
#: ``question_form.js`` is the job card's too (``card/``).
ASSETS = {
    "jobs.css": ("durable_mcp.web", "static", "text/css"),
    "question_form.js": ("durable_mcp.jobs", ".", "text/javascript"),
    "common.js": ("durable_mcp.web", "static", "text/javascript"),
    "jobs.js": ("durable_mcp.web", "static", "text/javascript"),
    "job.js": ("durable_mcp.web", "static", "text/javascript"),
    "login.js": ("durable_mcp.web", "static", "text/javascript"),
}

SHELL = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf" content="{csrf}">
{meta}<title>{title} · durable-mcp</title>
<link rel="stylesheet" href="/jobs/static/jobs.css">
</head>
<body>
<header><h1><a href="/jobs">durable-mcp jobs</a></h1><span class="where">v{version}</span></header>
<main>
{body}
</main>
{scripts}
</body>
</html>
"""

LIST_BODY = """<div class="bar">
<label>Status <select id="status"><option value="">any</option>{statuses}</select></label>
<label>Kind <select id="kind"><option value="">any</option></select></label>
<input id="name" type="search" placeholder="Search names" aria-label="Search names">
</div>
<p id="error" class="error" role="alert"></p>
<table id="table"><thead><tr><th>Name</th><th>Status</th><th>Kind</th><th>Started</th>
<th>Progress</th></tr></thead><tbody id="rows"></tbody></table>
<div id="empty" class="empty" hidden>No jobs match.</div>
<div class="pages"><button id="newer">Newer</button><button id="older">Older</button>
<span id="page" class="muted"></span></div>"""

JOB_BODY = """<p><a href="/jobs">← all jobs</a></p>
<h2 id="title"></h2>
<p id="error" class="error" role="alert"></p>
<div id="job"></div>"""

LOGIN_BODY = """<section class="login"><h2>Log in</h2>
<p class="muted">{needs}</p>
<form id="login"><input id="token" type="password" autocomplete="current-password"
 aria-label="Token" placeholder="Token" required><button class="primary">Log in</button></form>
<p id="error" class="error" role="alert"></p></section>"""


def page(title: str, body: str, scripts: tuple[str, ...], csrf: str = "", meta: str = "") -> str:
    tags = "\n".join(f'<script src="/jobs/static/{name}"></script>' for name in scripts)
    return SHELL.format(
        csrf=html.escape(csrf),
        meta=meta,
        title=html.escape(title),
        version=html.escape(__version__),
        body=body,
        scripts=tags,
    )


class JobPages:
    """The routes of the jobs pages, on one job service."""

    def __init__(self, jobs: Jobs, steps: StepReader, auth: PageAuth) -> None:
        self.jobs = jobs
        self.steps = steps
        self.auth = auth

    def routes(self) -> list[tuple[str, list[str], Endpoint]]:
        page, data = self._login_page, lambda: _error("log in first", 401)
        return [
            ("/jobs", ["GET"], self._signed_in(self.list_page, page)),
            ("/jobs/job/{name:path}", ["GET"], self._signed_in(self.job_page, page)),
            ("/jobs/static/{asset}", ["GET"], self.asset),
            ("/jobs/login", ["POST"], self.login),
            ("/jobs/api/jobs", ["GET"], self._signed_in(self.api_jobs, data)),
            ("/jobs/api/job/{name:path}", ["GET"], self._signed_in(self.api_job, data)),
            ("/jobs/api/{action}", ["POST"], self._signed_in(self.action, data)),
        ]

    def _signed_in(self, endpoint: Endpoint, refused: Callable[[], Response]) -> Endpoint:
        """``endpoint`` as the owner the request logged in as (``auth.py``), on that
        owner's jobs; ``refused()`` for a request not logged in."""

        async def as_owner(request: Request) -> Response:
            owner = await self.auth.owner_of(request)
            if owner is None:
                return refused()
            with owners.acting_as(owner):
                return await endpoint(request)

        return as_owner

    # -- pages

    async def list_page(self, request: Request) -> Response:
        statuses = "".join(
            f'<option value="{s.value}">{s.value.replace("_", " ")}</option>'
            for s in JobStatus
            if s != JobStatus.not_found
        )
        body = LIST_BODY.format(statuses=statuses)
        scripts = ("question_form.js", "common.js", "jobs.js")
        return _html(page("Jobs", body, scripts, self.auth.csrf_of(request)))

    async def job_page(self, request: Request) -> Response:
        name = request.path_params["name"]
        meta = f'<meta name="job" content="{html.escape(name, quote=True)}">\n'
        scripts = ("question_form.js", "common.js", "job.js")
        return _html(page(name, JOB_BODY, scripts, self.auth.csrf_of(request), meta))

    def _login_page(self) -> Response:
        if self.auth.verify is None:
            needs = "This server needs its token (DURABLE_MCP_TOKEN)."
        else:
            needs = (
                "Sign in with your access token, from your team's identity provider "
                f"({html.escape(self.auth.sign_in_at or 'its sign-in page')}): you will see "
                "your own jobs."
            )
        body = LOGIN_BODY.format(needs=needs)
        return _html(page("Log in", body, ("login.js",)), status_code=401)

    async def asset(self, request: Request) -> Response:
        name = request.path_params["asset"]
        if name not in ASSETS:
            return Response("not found", status_code=404)
        package, folder, media_type = ASSETS[name]
        data = resources.files(package).joinpath(folder, name).read_bytes()
        return Response(data, media_type=media_type, headers=HEADERS)

    async def login(self, request: Request) -> Response:
        refused = self.auth.refuses_post(request, csrf=False)
        if refused is not None:
            return _error(refused, 403)
        given = (await _json_body(request)).get("token")
        response = JSONResponse({"ok": True}, headers=HEADERS)
        if not await self.auth.log_in(given, response, request):
            if self.auth.verify is None:
                return _error("That is not this server's token.", 401)
            return _error(
                "That token is not accepted here: it may have expired, or be for another "
                "server. Get a fresh access token and try again.",
                401,
            )
        return response

    # -- data

    async def api_jobs(self, request: Request) -> Response:
        query = request.query_params
        try:
            status = JobStatus(query["status"]) if query.get("status") else None
        except ValueError:
            return _error(f"no status is named {query['status']!r}", 400)
        try:
            limit = min(max(int(query.get("limit", PAGE_SIZE)), 1), 100)
        except ValueError:
            return _error("limit must be a whole number", 400)
        page_of_jobs = await _answer(
            self.jobs.list(
                status,
                query.get("kind") or None,
                limit,
                query.get("cursor") or None,
                name=query.get("name") or None,
            )
        )
        if isinstance(page_of_jobs, Response):
            return page_of_jobs
        page_of_jobs |= {"kinds": sorted(self.jobs.kinds), "now": iso(self.jobs.clock())}
        return _json(page_of_jobs)

    async def api_job(self, request: Request) -> Response:
        name = request.path_params["name"]
        job = await _answer(self.jobs.read_status(name))
        if isinstance(job, Response):
            return job
        job.pop("hint", None)  # for a model calling tools
        invocation = await self.jobs.invocation(name)
        arguments = None if invocation is None else self._named(*invocation)
        job_id = owners.current().job_id(name)
        steps = by_start(await self.steps(job_id)) if invocation and job_id else []
        now = iso(self.jobs.clock())
        return _json({"job": job, "arguments": arguments, "steps": steps, "now": now})

    def _named(self, kind: str, args: list[Any]) -> Any:
        """The arguments by their parameter names, where the kind's function is known."""
        fn = self.jobs.functions.get(kind)
        if fn is None:
            return args
        names = list(inspect.signature(fn).parameters)[1:]  # after the Context
        if len(names) < len(args):
            return args
        return dict(zip(names, args, strict=False))

    # -- actions

    async def action(self, request: Request) -> Response:
        refused = self.auth.refuses_post(request)
        if refused is not None:
            return _error(refused, 403)
        body = await _json_body(request)
        name = body.get("job_name")
        if not isinstance(name, str) or not name:
            return _error("job_name must be a job's name", 400)
        match request.path_params["action"]:
            case "cancel":
                done = self.jobs.cancel(name)
            case "retry":
                done = self.jobs.retry(name)
            case "answer":
                answer, question_id = body.get("answer"), body.get("question_id")
                if answer is not None and not isinstance(answer, dict):
                    return _error("answer must be an object (or null to decline)", 400)
                if question_id is not None and not isinstance(question_id, str):
                    return _error("question_id must be a string", 400)
                done = self.jobs.answer(
                    name, answer, action=str(body.get("action", "accept")), question_id=question_id
                )
            case other:
                return _error(f"no action is named {other!r}: cancel, retry or answer", 404)
        job = await _answer(done)
        return job if isinstance(job, Response) else _json({"job": job})


async def _answer[T](work: Awaitable[T]) -> T | Response:
    """What the job service answered, or its refusal as the tools word it."""
    try:
        return await work
    except InvalidArgument as exc:
        return _error(str(exc), 409)
    except Busy as exc:
        return _error(str(exc), 429)
    except EngineUnavailable as exc:
        return _error(str(exc), 503)
    except ToolError as exc:
        return _error(str(exc), 400)


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _html(text: str, status_code: int = 200) -> Response:
    return HTMLResponse(text, status_code=status_code, headers=HEADERS)


def _json(value: Any) -> Response:
    return JSONResponse(value, headers=HEADERS)


def _error(message: str, status_code: int) -> Response:
    return JSONResponse({"error": message}, status_code=status_code, headers=HEADERS)
