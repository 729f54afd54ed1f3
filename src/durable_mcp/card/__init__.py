"""The job card: an MCP App (``io.modelcontextprotocol/ui``) that shows a durable
job in the chat, live: its status, progress, question (a form that answers it),
cancel and retry, then its result or error.

Every start tool names the card (``_meta.ui.resourceUri`` = :data:`CARD_URI`);
a host that renders MCP Apps loads ``static/job_card.html``, hands it the
start tool's result, and the card follows the job by calling ``probe_status``
through the host. A kind may draw its own result (``@durable.tool(card=...)``,
a JavaScript function ``(result, root, card) => ...``; the weather job's chart
is ``functions/weather_card.js``), or have no card (``card=False``).

The page is one resource with everything inline (its script, its style, each
kind's view): no CDN, and a CSP that allows nothing external. A client that
does not declare the Apps extension sees the tools and resources exactly as
they were before the card existed (:class:`HiddenFromPlainClients`).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import mcp.types as mt
from fastmcp import FastMCP
from fastmcp.apps import UI_EXTENSION_ID, UI_MIME_TYPE, AppConfig, ResourceCSP
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext

#: The card's resource.
CARD_URI = "ui://durable-mcp/job-card.html"

#: Where the page's template puts each kind's view and start tool, and the
#: question's form fields it shares with the jobs page (``jobs/question_form.js``).
KIND_VIEWS, QUESTION_FORM = "/*KIND_VIEWS*/", "/*QUESTION_FORM*/"


class JobCard:
    """The card of one app: the page, with the views and start tools of its kinds."""

    def __init__(self) -> None:
        self.views: dict[str, str] = {}  # kind -> its result view's JavaScript
        self.start_tools: dict[str, str] = {}  # kind -> its start tool's name (for retry)

    def add(self, kind: str, tool_name: str, card: bool | str) -> AppConfig | None:
        """A kind's start tool: the ``app`` it is declared with (None: no card)."""
        if card is False:
            return None
        self.start_tools[kind] = tool_name
        if isinstance(card, str):
            self.views[kind] = card
        return AppConfig(resource_uri=CARD_URI)

    def page(self) -> str:
        template = resources.files("durable_mcp.card").joinpath("static", "job_card.html")
        lines = [f"DurableCard.startTools = {_script_json(self.start_tools)};"]
        for kind, view in sorted(self.views.items()):
            lines.append(f"DurableCard.views[{_script_json(kind)}] = (\n{view.strip()}\n);")
        form = resources.files("durable_mcp.jobs").joinpath("question_form.js").read_text()
        page = template.read_text().replace(QUESTION_FORM, form)
        return page.replace(KIND_VIEWS, "\n".join(lines))


def _script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def serve_card(mcp: FastMCP) -> JobCard:
    """Serve the card's resource on ``mcp``, hidden from clients without Apps."""
    card = JobCard()

    # No external origin of any kind: the page brings everything it needs.
    @mcp.resource(
        CARD_URI,
        name="job_card",
        description="A durable job, live: status, progress, question, result",
        mime_type=UI_MIME_TYPE,
        app=AppConfig(csp=ResourceCSP(), prefers_border=False),
    )
    def job_card() -> str:
        return card.page()

    mcp.add_middleware(HiddenFromPlainClients())
    return card


class HiddenFromPlainClients(Middleware):
    """For a client that did not declare the Apps extension: tools without their
    ``_meta.ui``, and no ``ui://`` resource, so that it sees what it saw before."""

    async def on_list_tools(
        self, context: MiddlewareContext[mt.ListToolsRequest], call_next: CallNext[Any, Any]
    ) -> Any:
        tools = await call_next(context)
        if _has_apps(context):
            return tools
        return [_without_ui(tool) for tool in tools]

    async def on_list_resources(
        self, context: MiddlewareContext[mt.ListResourcesRequest], call_next: CallNext[Any, Any]
    ) -> Any:
        found = await call_next(context)
        if _has_apps(context):
            return found
        return [r for r in found if not str(r.uri).startswith("ui://")]


def _has_apps(context: MiddlewareContext[Any]) -> bool:
    ctx = context.fastmcp_context
    return ctx is not None and ctx.client_supports_extension(UI_EXTENSION_ID)


def _without_ui(tool: Any) -> Any:
    meta = getattr(tool, "meta", None)
    if not meta or "ui" not in meta:
        return tool
    rest = {key: value for key, value in meta.items() if key != "ui"}
    return tool.model_copy(update={"meta": rest or None})
