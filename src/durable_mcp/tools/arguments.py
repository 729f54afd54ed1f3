"""Argument types the tools share, tolerant of how MCP clients send them.

Clients serialise arguments differently (seed 000): a name may arrive wrapped
as ``{"timer_name": ...}`` or ``{"job_name": ...}``, a list of names as a JSON
string or a single string. These pydantic types unwrap those shapes before
validating, while the schema the model reads stays the plain one (a string, a
list of strings). A value that is still wrong after unwrapping fails with a
message that says what to fix, before any job exists. One thing is refused
that pydantic would let through: ``true`` or ``false`` for a number.

Imports nothing of MCP: the durable functions' signatures use these types
(they are the start tools' schemas). ``argument_errors`` words pydantic's errors.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from durable_mcp.jobs.registry import check_job_name

WRAPPER_KEYS = ("timer_name", "job_name", "name", "promise_id")


def _unwrap_name(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        key, inner = next(iter(value.items()))
        if key in WRAPPER_KEYS:
            return inner
    return value


def _check_name(name: str) -> str:
    return check_job_name(name)


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
    Field(
        description="A job's name: as a start tool returned it (job_name), or as you chose it "
        "(a timer's timer_name)."
    ),
]

#: The most names one probe_status or await_result takes.
MAX_NAMES = 100

JobNames = Annotated[
    list[JobName],
    BeforeValidator(_names_list),
    AfterValidator(_dedupe),
    Field(
        min_length=1,
        max_length=MAX_NAMES,
        description=f"One or more job names (at most {MAX_NAMES}), as the start tools "
        "returned them or, for a timer, as you chose them.",
    ),
]
