"""Argument types the tools share, tolerant of how MCP clients send them.

Clients serialise arguments differently (seed 000): a name may arrive wrapped
as ``{"timer_name": ...}`` or ``{"job_name": ...}``, a list of names as a JSON
string or a single string. These pydantic types unwrap those shapes before
validating, while the schema the model reads stays the plain one (a string, a
list of strings). A value that is still wrong after unwrapping fails with a
message that says what to fix, before any job exists. One thing is refused
that pydantic would let through: ``true`` or ``false`` for a number.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import mcp.types as mt
from fastmcp.exceptions import ValidationError
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools import ToolResult
from pydantic import AfterValidator, BeforeValidator, Field
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import ErrorDetails

from durable_mcp.jobs import InvalidArgument

MAX_NAME_LENGTH = 200
WRAPPER_KEYS = ("timer_name", "job_name", "name", "promise_id")


def _unwrap_name(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        key, inner = next(iter(value.items()))
        if key in WRAPPER_KEYS:
            return inner
    return value


def _check_name(name: str) -> str:
    if not name.strip():
        raise ValueError("a job name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"a job name must be at most {MAX_NAME_LENGTH} characters")
    if not name.isprintable():
        raise ValueError("a job name must not contain control characters")
    if ":" in name:
        # Resonate reserves ':' to separate a job from its durable steps.
        raise ValueError("a job name must not contain ':'")
    return name


def _names_list(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except (json.JSONDecodeError, RecursionError):  # deep nesting: not names either
                return value
        return [value]
    if isinstance(value, dict):
        return [value]
    return value


def _dedupe(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _not_a_bool(value: Any) -> Any:
    # pydantic reads true as 1 and false as 0; a flag where a number belongs is a mistake.
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not {json.dumps(value)}")
    return value


#: The last annotation of every numeric argument: ``Annotated[float, Field(...), NotABoolean]``
#: (after the ``Field``, so its bounds stay in the schema as minimum and maximum).
NotABoolean = BeforeValidator(_not_a_bool)


JobName = Annotated[
    str,
    BeforeValidator(_unwrap_name),
    AfterValidator(_check_name),
    Field(description="The job's name, as returned when it was started."),
]

JobNames = Annotated[
    list[JobName],
    BeforeValidator(_names_list),
    AfterValidator(_dedupe),
    Field(min_length=1, max_length=100, description="One or more job names."),
]


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
