"""A job asks a person a question and waits, for days if need be, for the answer.

``answer = await ask(ctx, "Approve the outline?", schema)`` creates a durable
promise that carries the question (its message, and the JSON Schema of the
answer: MCP's elicitation form schema) and awaits it. Awaiting it suspends the
job: it holds no worker and no lease while it waits, up to its own deadline,
and a restart changes nothing. The job's status is then ``input_required``
with the question; ``answer_job`` (a tool) or ``tasks/update`` (the tasks
extension) settles the promise with the answer, once it is checked against the
schema, and the job goes on from where it was.

The promise is the question's record: its id (``<job>:<n>``) is the key of
the tasks extension's ``inputRequests``, its param the question, its value
the answer, ``{"action", "content", "id"}``: an ``id`` of the answer's own
tells two answers that raced apart, for whichever store settled the promise.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jsonschema
from resonate.context import Context

from durable_mcp.sdk_compat import external_promise
from durable_mcp.store.state import QUESTION_TAG

#: The questions jobs wait to have answered: job ids -> {job: its question's promise id}
#: (the engine's: ``engine.questions_in``, ``PostgresJobsEngine.questions``).
QuestionFinder = Callable[[Sequence[str]], Awaitable[dict[str, str]]]


async def no_questions(job_ids: Sequence[str]) -> dict[str, str]:
    """An engine that knows no questions (a Resonate Server, a test's own)."""
    return {}


#: What a person may do with a question (MCP's elicitation actions).
ACTIONS = ("accept", "decline", "cancel")


class Declined(Exception):
    """The person declined the question, or dismissed it (``action``)."""

    def __init__(self, message: str, action: str) -> None:
        super().__init__(f"the question {message!r} was not answered: {action}")
        self.action = action


@dataclass(frozen=True)
class Question:
    """A question a job waits to have answered."""

    id: str  #: its promise's id, the key of its answer
    message: str
    schema: dict[str, Any]

    def as_status(self) -> dict[str, Any]:
        return {"id": self.id, "message": self.message, "schema": self.schema}


def question_of(promise_id: str, param: Any) -> Question:
    """The question a question's promise carries (its decoded param)."""
    data = param if isinstance(param, dict) else {}
    schema = data.get("schema")
    return Question(
        promise_id, str(data.get("message", "")), schema if isinstance(schema, dict) else {}
    )


async def ask(
    ctx: Context, message: str, schema: dict[str, Any], *, within: timedelta | None = None
) -> dict[str, Any]:
    """Ask a person ``message``; the answer, a dict that fits ``schema``.

    ``schema`` is a JSON Schema of an object, as MCP's elicitation forms take:
    ``{"type": "object", "properties": {"approve": {"type": "boolean"}},
    "required": ["approve"]}``. The job waits at most ``within``, and never
    past its own deadline (the default: until then). A person who declines
    or dismisses the question raises :class:`Declined` here.
    """
    check_schema(schema)
    if within is None:  # until the job's own deadline: a promise never outlives it
        within = timedelta(days=36_500)
    question = {"message": str(message), "schema": schema}
    answer = await external_promise(ctx, question, {QUESTION_TAG: "true"}, within)
    action = answer.get("action") if isinstance(answer, dict) else None
    if action != "accept":
        raise Declined(str(message), str(action))
    content = answer.get("content")
    return content if isinstance(content, dict) else {}


def check_schema(schema: Any) -> None:
    """ValueError unless ``schema`` is a JSON Schema of an object."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise ValueError('a question\'s schema must be a JSON Schema with "type": "object"')
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"a question's schema is not a JSON Schema: {exc.message}") from exc


def check_answer(question: Question, content: Any) -> None:
    """ValueError, saying what is wrong, unless ``content`` fits the question's schema."""
    if not isinstance(content, dict):
        raise ValueError(f"an answer is a JSON object, got {type(content).__name__}")
    validator = jsonschema.validators.validator_for(question.schema)(question.schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(content))
    if error is not None:
        where = "/".join(map(str, error.absolute_path))
        raise ValueError(
            f"the answer does not fit the question's schema: {error.message}"
            + (f" (at {where})" if where else "")
        )


def answer_value(content: dict[str, Any] | None, action: str = "accept") -> dict[str, Any]:
    """The value a question's promise is settled with: the answer, and an id of its own."""
    return {"action": action, "content": content, "id": uuid.uuid4().hex}
