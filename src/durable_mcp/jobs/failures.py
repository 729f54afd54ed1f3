"""A job's failures: retried as its tool says, shown while they last, and ended with
the real error -- never a loop that floods the log, never a timeout that hides it.

Every durable function a tool declares runs through :func:`durable_job` (the
registry registers that, not the bare function):

- **Retries.** A step (``ctx.run``) that raises runs again as the tool's policy
  says: ``@durable.tool(retry=...)``, one of ``resonate.retry``'s policies,
  default :data:`DEFAULT_RETRY` (3 more tries, after 2, 4 and 8 s). The job's
  own body is never run again once it has made a durable call (the SDK's rule:
  its steps are on disk), so an error it raises fails the job at once.
- **Shown.** Each failed attempt is a note on the job (``notes.py``): its status
  says which step retries, the attempt and the error, and the log has one line.
- **The real error.** A job that gives up fails with :class:`JobFailed`: the
  exception's own type and message, the step it came from and its attempts.
- **Poison values.** A value the store cannot keep (a plain object, a
  generator) returned by a job or a step fails that job once, naming the type
  and the step, instead of making the SDK hand the task back in a hot loop.
- **Stranded and undecodable jobs.** :class:`FailFastCore` fails a job whose
  function this process does not have (renamed or removed since it started),
  or whose stored arguments it cannot decode, with one log line -- where the
  SDK would hand the task back to be run, and refused, again and again.

Nothing here imports MCP: the functions resume before FastMCP is imported.
"""

from __future__ import annotations

import base64
import functools
import inspect
import io
import logging
import pickle
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from resonate.codec import enc_hook
from resonate.context import Context
from resonate.core import Core
from resonate.effects import Effects
from resonate.error import (
    Base64DecodeError,
    DecodingError,
    FunctionNotFoundError,
    PlatformError,
    SerializationError,
    Suspended,
)
from resonate.retry import Constant, Exponential, Linear, Never, RetryPolicy
from resonate.tree import Tree
from resonate.types import PromiseRecord

from durable_mcp import tracing
from durable_mcp.events import job_event
from durable_mcp.jobs.declaration import resolved_signature
from durable_mcp.jobs.notes import JobNotes, notes_of
from durable_mcp.sdk_compat import (
    PICKLE_KEY,
    ExecFulfilled,
    ExecOutcome,
    context_state,
    is_workflow,
    pickled_class,
)

logger = logging.getLogger("durable_mcp.jobs")

#: A step that raises is tried 3 more times, after 2, 4 and 8 s, then the job fails.
DEFAULT_RETRY: RetryPolicy = Exponential(delay=1, factor=2, max_retries=3, max_delay=60)

#: Where a step's failure says which step it was, and after how many attempts:
#: an attribute of the exception, which survives the SDK's pickling to the job.
_STEP_ATTRIBUTE = "_durable_mcp_step"


class JobFailed(Exception):
    """A job's failure as it is stored: the exception's type and message, the step
    it came from (None: the job's own body) and how many attempts that step had."""

    def __init__(self, type: str, message: str, step: str | None = None, attempts: int = 1) -> None:
        super().__init__(type, message, step, attempts)
        self.type = type
        self.message = message
        self.step = step
        self.attempts = attempts

    def __str__(self) -> str:
        return self.message

    def details(self) -> dict[str, Any]:
        """The status object's ``error``: type, message, and step and attempts when known."""
        out: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.step is not None:
            out["step"] = self.step
        if self.step is not None or self.attempts > 1:
            out["attempts"] = self.attempts
        return out


class Unstorable(TypeError):
    """A value the store cannot keep: no retry can mend it."""


def check_storable(value: Any, what: str) -> None:
    """Raise :class:`Unstorable` unless the SDK's codec can encode ``value``."""
    try:
        msgspec.json.encode(value, enc_hook=enc_hook)
    except (TypeError, ValueError, msgspec.MsgspecError) as exc:
        raise Unstorable(
            f"{what} is {_a(value)}, which cannot be stored ({exc}): return JSON values "
            "(dict, list, str, numbers, bool, None), a pydantic model or a msgspec struct"
        ) from exc


class Retries:
    """A tool's retry policy, as the SDK consults it, that gives up at once after a
    failure no retry can mend (:class:`Unstorable`).

    The SDK asks ``next`` right after the failure, with no other task run in
    between, so one instance may serve every step of a kind.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self._give_up = False

    def next(self, attempt: int) -> int | None:
        if self._give_up:
            self._give_up = False
            return None
        return self.policy.next(attempt)

    def after(self, failure: Exception, attempt: int, *, workflow: bool) -> int | None:
        """Seconds until the next attempt of a step that failed, or None: no more.

        The SDK asks :meth:`next` next, unless the step made durable calls of
        its own (``workflow``): it never runs such a step again.
        """
        if workflow:
            return None
        if isinstance(failure, Unstorable):
            self._give_up = True
            return None
        return self.policy.next(attempt)

    def most(self) -> int | None:
        """How many attempts the policy allows in all, when it says."""
        if isinstance(self.policy, Never):
            return 1
        if isinstance(self.policy, Exponential | Linear | Constant):
            return self.policy.max_retries + 1
        return None


class JobContext(Context):
    """The ``Context`` a job's function is given: the SDK's own, whose ``ctx.run``
    runs the step through :func:`as_step` (its retries noted, its value checked)."""

    retry: Retries
    notes: JobNotes | None

    @classmethod
    def around(cls, ctx: Context, retry: RetryPolicy, notes: JobNotes | None) -> JobContext:
        job_ctx = cls(context_state(ctx), ctx.opts)
        job_ctx.retry = Retries(retry)
        job_ctx.notes = notes
        return job_ctx

    def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(fn, str):
            return super().run(fn, *args, **kwargs)  # a registered function, by name
        retries = Retries(self.opts.retry_policy) if self.opts.retry_policy else self.retry
        opts = self.opts
        ctx = self.options(
            timeout=opts.timeout, target=opts.target, version=opts.version, retry_policy=retries
        )
        return Context.run(ctx, as_step(fn, retries, self), *args, **kwargs)


def as_step(fn: Callable[..., Any], retries: Retries, parent: JobContext) -> Callable[..., Any]:
    """``fn`` as a step: each failed attempt noted, its value checked before it is stored."""
    name = getattr(fn, "__name__", type(fn).__name__)
    job_id = parent.info.origin_id
    attempts = 0

    async def step(ctx: Context, *args: Any, **kwargs: Any) -> Any:
        nonlocal attempts
        attempts += 1
        try:
            with tracing.step_run(job_id, name, attempts):
                value = fn(JobContext.around(ctx, retries.policy, parent.notes), *args, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
                check_storable(value, f"the value of step {name}")
        except Exception as exc:
            delay = retries.after(exc, attempts, workflow=is_workflow(ctx))
            _note_failure(parent.notes, job_id, name, attempts, retries.most(), exc, delay)
            setattr(exc, _STEP_ATTRIBUTE, (name, attempts))
            raise
        if parent.notes is not None:  # a retry before a restart is over too
            parent.notes.drop(job_id, "retrying")
        return value

    return _like(step, fn)


def durable_job(fn: Callable[..., Awaitable[Any]], retry: RetryPolicy) -> Callable[..., Any]:
    """The function Resonate runs for a tool's ``fn``: the same name and signature,
    its steps retried by ``retry``, its end a value the store keeps or a :class:`JobFailed`."""
    kind = fn.__name__

    async def job(ctx: Context, *args: Any, **kwargs: Any) -> Any:
        notes = notes_of(ctx)
        async with tracing.job_run(notes, ctx.info.origin_id, kind) as span:
            try:
                value = fn(JobContext.around(ctx, retry, notes), *args, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
                check_storable(value, f"the result of {kind}")
            except JobFailed as exc:
                tracing.ended(span, exc)
                _over(notes, ctx)
                raise
            except Exception as exc:
                _over(notes, ctx)
                step, attempts = getattr(exc, _STEP_ATTRIBUTE, (None, 1))
                failure = JobFailed(type(exc).__name__, str(exc), step, attempts)
                tracing.ended(span, failure)
                raise failure from exc
            except Suspended:  # it waits (a sleep, an answer): the next run goes on
                tracing.ended(span, None, suspended=True)
                raise
            tracing.ended(span, None)
            _over(notes, ctx)
            return value

    return _like(job, fn)


class FailFastCore(Core):
    """The SDK's ``Core``, which fails a job it cannot run instead of handing it back.

    The SDK releases the task of a job whose function is not registered, whose
    stored arguments do not decode, or whose value cannot be encoded; the
    store hands it straight back, and the next attempt fails the same way: a
    hot loop of tracebacks that starves every other job, before and after a
    restart. Those failures depend on the job and this code alone, so the job
    is failed here, once, with one log line. Failures of the store itself
    (unreachable, full) are still handed back: they pass.
    """

    async def execute_until_blocked_inner(
        self, promise: PromiseRecord, effects: Effects
    ) -> ExecOutcome:
        try:
            return await super().execute_until_blocked_inner(promise, effects)
        except FunctionNotFoundError as exc:
            failure = JobFailed(
                "FunctionNotFound",
                f"this server has no function {exc.name!r} to run the job: it was renamed or "
                "removed since the job started; start it again with retry=true to run it "
                "with the code the server has now",
            )
        except (SerializationError, Base64DecodeError, DecodingError) as exc:
            failure = JobFailed(type(exc).__name__, f"the job cannot be run: {exc}")
        except PlatformError as exc:
            if not all(isinstance(c, SerializationError | Base64DecodeError) for c in exc.causes):
                raise  # the store failed: the task goes back, to be run when it can
            failure = JobFailed("Unstorable", f"a value of the job cannot be stored: {exc.cause}")
        logger.warning("job %s cannot run, and fails: %s", promise.id, failure)
        tree = Tree(root_id=promise.id)
        tree.settle(promise.id)
        if promise.state != "pending":  # settled meanwhile (cancelled): it stays as it is
            state = "rejected" if promise.state == "rejected_timedout" else promise.state
            return ExecFulfilled(
                state=state, value=self.codec.encode(promise.value.data), tree=tree
            )
        return ExecFulfilled(state="rejected", value=self.codec.encode(failure), tree=tree)


def _over(notes: JobNotes | None, ctx: Context) -> None:
    """The job's function has ended: what it said while it ran is over (every store;
    Postgres tells no ends, so this is where its replica forgets them)."""
    if notes is not None:
        notes.forget(ctx.info.origin_id)


def _note_failure(
    notes: JobNotes | None,
    job_id: str,
    step: str,
    attempt: int,
    most: int | None,
    failure: Exception,
    delay: int | None,
) -> None:
    """One log line per failed attempt, and the note the job's status shows while it retries."""
    error = {"type": type(failure).__name__, "message": str(failure)}
    if delay is None:
        job_event("step_failed", job_id, step=step, attempt=attempt, **error)
        if notes is not None:
            notes.drop(job_id, "retrying")
        return
    job_event("retrying", job_id, step=step, attempt=attempt, next_in=f"{delay}s", **error)
    if notes is not None:
        retrying: dict[str, Any] = {"step": step, "attempt": attempt + 1}
        if most is not None:
            retrying["of"] = most
        retrying["error"] = error
        retrying["at_ms"] = notes.clock() + delay * 1000
        notes.note(job_id, "retrying", retrying)


def _like(wrapper: Callable[..., Any], fn: Callable[..., Any]) -> Callable[..., Any]:
    """``wrapper`` with ``fn``'s name, docs and signature, annotations resolved.

    The SDK reads a durable function's signature to check and coerce its
    arguments and result, and resolves string annotations in the function's
    own module: the wrapper's module is not it, so they are resolved here.
    """
    functools.update_wrapper(wrapper, fn)
    del wrapper.__wrapped__  # type: ignore[attr-defined]  # the signature below is the one
    wrapper.__signature__ = resolved_signature(fn)  # type: ignore[attr-defined]
    return wrapper


def _a(value: Any) -> str:
    name = type(value).__name__
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def stored_failure(value: Any) -> dict[str, Any] | None:
    """The ``error`` of a job that failed with :class:`JobFailed`, read from the
    rejected promise's stored value; None for any other stored error.

    The SDK stores the exception pickled. Only a pickle of ``JobFailed`` is
    loaded, by an unpickler that can build nothing else.
    """
    if not isinstance(value, dict):
        return None
    pickled = value.get(PICKLE_KEY)
    if not isinstance(pickled, str) or pickled_class(pickled) != (__name__, JobFailed.__name__):
        return None
    try:
        failure = _OnlyJobFailed(io.BytesIO(base64.b64decode(pickled))).load()
    except Exception:
        return None
    return failure.details() if isinstance(failure, JobFailed) else None


class _OnlyJobFailed(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == (__name__, JobFailed.__name__):
            return JobFailed
        raise pickle.UnpicklingError(f"{module}.{name} is not a stored job failure")
