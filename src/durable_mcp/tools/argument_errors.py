"""Pydantic's argument errors as one short line per bad argument (a middleware)."""

from __future__ import annotations

from typing import Any

import mcp.types as mt
from fastmcp.exceptions import ValidationError
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools import ToolResult
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import ErrorDetails

from durable_mcp.jobs.service import InvalidArgument


class ReadableArgumentErrors(Middleware):
    """Turn pydantic's argument errors into one short line per bad argument.

    FastMCP passes pydantic's full report to the model, with type codes and
    documentation links; the model only needs the argument, the rule and what
    it sent.
    """

    async def on_call_tool(
        self,
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        try:
            return await call_next(context)
        except ValidationError as exc:
            cause = exc.__cause__
            if not isinstance(cause, PydanticValidationError):
                raise
            problems = "; ".join(_describe(error) for error in cause.errors())
            raise InvalidArgument(
                f"invalid arguments for {context.message.name}: {problems}"
            ) from exc


def _describe(error: ErrorDetails) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "arguments"
    text = f"{where}: {error['msg'].removeprefix('Value error, ')}"
    if error["type"] in ("missing", "missing_argument"):
        return text
    return f"{text} (got {_shown(error['input'])})"


def _shown(value: Any) -> str:
    """What the caller sent, cut to 80 characters (repr refuses ints of 4,300+ digits)."""
    try:
        return f"{value!r:.80}"
    except ValueError:
        return f"a {type(value).__name__} too large to show"
