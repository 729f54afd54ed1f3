"""A job's status object, computed from its promise record: pure, no IO.

The store keeps one promise per job; this module maps the promise's state onto
the status vocabulary the tools speak (``running``, ``input_required``,
``completed``, ``failed``, ``cancelled``, ``not_found``), with what the job
said of itself (its notes: progress, a retry) and the question it waits to
have answered. It reads nothing and imports nothing of MCP, so the job
service, the tasks extension and `durable-mcp jobs` share it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from resonate.types import PromiseRecord, Value

from durable_mcp.jobs.failures import stored_failure
from durable_mcp.jobs.questions import Question, question_of
from durable_mcp.sdk_compat import Codec, NoopEncryptor, error_of, parse_promise

if TYPE_CHECKING:
    from durable_mcp.sdk_compat import DurablePromise

#: Extra status fields for one kind of job: (its args, when it was created in ms, now in ms).
Details = Callable[[list[Any], int, int], dict[str, Any]]


class KindOfJob(Protocol):
    """What a status needs of a kind of job (``registry.JobKind``): its extra fields."""

    @property
    def details(self) -> Details | None: ...


#: Polling hints grow with a job's age: a quarter of it, from 1 s up to 30 s.
MIN_POLL_SECONDS, MAX_POLL_SECONDS = 1.0, 30.0

#: What list_jobs shows of each job.
LISTED = (
    "job_name",
    "owner",  # to the admin only: whose job it is
    "kind",
    "status",
    "created_at",
    "settled_at",
    "progress",
    "question",
)

#: Decodes the store's promise records the way the SDK does (values are plain JSON).
_CODEC = Codec(NoopEncryptor())


class JobStatus(StrEnum):
    running = "running"
    input_required = "input_required"  # running, and waiting for a person's answer
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    not_found = "not_found"


def status_from_record(
    job_id: str,
    record: PromiseRecord | None,
    now: int,
    kinds: Mapping[str, KindOfJob] | None = None,
    notes: Mapping[str, Any] | None = None,
    question: Question | None = None,
) -> dict[str, Any]:
    """Map a promise record onto the tools' status object.

    ``result`` is present for completed jobs, ``error`` (type and message,
    and the step and its attempts when a step failed) for failed ones; times
    are ISO 8601 in UTC; ``poll_after_seconds`` suggests when to look again at
    a running job, later the older it is. ``notes`` are what the job said of
    itself while it ran (``notes.py``): a running job shows its ``progress``
    (done, total, message) and, if its step failed, ``retrying`` (the step,
    the next attempt, the error, when). A running job that waits for an
    answer to ``question`` is ``input_required``, with the question and how
    to answer it.
    """
    notes = notes or {}
    if record is None:
        return {"job_name": job_id, "status": JobStatus.not_found}
    kind, args = invocation_of(record)
    out: dict[str, Any] = {"job_name": job_id, "kind": kind}
    out["created_at"] = iso(record.created_at)
    if record.settled_at is not None:
        out["settled_at"] = iso(record.settled_at)
    match record.state:
        case "pending" if question is not None:
            out["status"] = JobStatus.input_required
            out["question"] = question.as_status()
            out["hint"] = (
                f"this job waits for an answer: ask the user {question.message!r}, then call "
                "answer_job(job_name, answer) with an answer that fits question.schema"
            )
            if (progress := notes.get("progress")) is not None:
                out["progress"] = progress
        case "pending":
            out["status"] = JobStatus.running
            age = max(now - record.created_at, 0) / 1000
            poll = min(max(age / 4, MIN_POLL_SECONDS), MAX_POLL_SECONDS)
            job_kind = (kinds or {}).get(kind)
            if job_kind is not None and job_kind.details is not None:
                out |= job_kind.details(args or [], record.created_at, now)
                if "remaining_seconds" in out:  # no point looking before it is due
                    poll = min(poll, max(out["remaining_seconds"], 0.5))
            if (progress := notes.get("progress")) is not None:
                out["progress"] = progress
            if (retrying := notes.get("retrying")) is not None:
                out["retrying"] = {k: v for k, v in retrying.items() if k != "at_ms"}
                out["retrying"]["at"] = iso(retrying["at_ms"])
                # Nothing changes before the next attempt: no point looking sooner.
                until_retry = (retrying["at_ms"] - now) / 1000
                poll = min(max(poll, until_retry), MAX_POLL_SECONDS)
            out["poll_after_seconds"] = round(poll, 1)
        case "resolved":
            out["status"] = JobStatus.completed
            out["result"] = record.value.data
        case "rejected":
            out["status"] = JobStatus.failed
            out["error"] = stored_failure(record.value.data) or error_of(record.value.data)
        case "rejected_timedout":
            out["status"] = JobStatus.failed
            out["error"] = {"type": "Timeout", "message": "the job ran past its deadline"}
            if (retrying := notes.get("retrying")) is not None:  # it was retrying a step
                out["error"]["last_error"] = {"step": retrying["step"], **retrying["error"]}
        case "rejected_canceled":
            out["status"] = JobStatus.cancelled
    return out


def status_from_promise(
    promise: DurablePromise,
    now: int,
    notes: Mapping[str, Any] | None = None,
    question: DurablePromise | None = None,
) -> dict[str, Any]:
    """:func:`status_from_record` of a promise read straight from the in-process
    state (and of the question it waits on, if it does)."""
    asked = None
    if question is not None:
        decoded = _decode(question)
        asked = question_of(decoded.id, decoded.param.data)
    return status_from_record(promise.id, _decode(promise), now, notes=notes, question=asked)


def decoded(data: str | None) -> Any:
    """A promise's param or value as the store keeps it (base64 JSON), decoded."""
    return _CODEC.decode(Value(data=data))


def _decode(promise: DurablePromise) -> PromiseRecord:
    return _CODEC.decode_promise(parse_promise({"promise": promise.to_record()}))


def iso(ms: int) -> str:
    """A time in ms since the epoch as ISO 8601, UTC."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


def invocation_of(record: PromiseRecord) -> tuple[Any, ...]:
    """(function name, JSON args) as the store recorded them when the job started."""
    data = record.param.data if isinstance(record.param.data, dict) else {}
    return data.get("func"), data.get("args")


def describe(invocation: tuple[Any, ...]) -> str:
    """An invocation as the model reads it: ``timer("tea", 5)``."""
    func, args = invocation
    return f"{func}({', '.join(json.dumps(a) for a in args or [])})"
