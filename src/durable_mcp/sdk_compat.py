"""What durable-mcp takes from the SDK's insides, and how it works around it: one place.

resonate-sdk (0.8.1) and resonate-pg (0.8.0) are pinned exactly. The rest of
the code imports these names from here, never from the SDK's own modules, and
``tests/test_sdk_compat.py`` checks that each one still holds: an upgrade that
changes one fails there, naming what to revisit. Nothing here imports FastMCP.

Names the SDK does not offer as its API:

- ``ServerState``, ``DurablePromise``, ``Task``, ``ScheduleStub``, ``PTimeout``,
  ``TTimeout``, ``OutgoingMessage`` (``resonate.connections.local``): the
  embedded store runs the SDK's own in-process state machine, and its snapshots
  hold these structs field by field.
- ``unwrap_request_envelope``, ``wrap_response_envelope``: the embedded store
  speaks the wire protocol to the SDK as ``LocalConnection`` does.
- ``extract_action_data``, ``execute_task_id`` (the SDK's ``_execute_task_id``):
  ``IndexedState``'s indexes read requests and messages as the reference does.
- ``parse_promise`` (``resonate.send``), ``Codec``, ``NoopEncryptor``: the job
  layer decodes a promise read straight from the in-process state as the SDK
  decodes a response.
- ``LocalConnection``, ``Sender``, ``Transport``, ``AsyncHeartbeat``,
  ``DEFAULT_TTL``, ``HEARTBEAT_INTERVAL_DIVISOR``: the engine builds the SDK's
  heartbeat itself, for stores the SDK would not heartbeat, and takes the SDK's
  lease and beat where it keeps them.
- ``CORE_LOGGER``, ``OBSERVER_LOGGER``, ``PERIODIC_LOGGERS``: the SDK's logger
  names, which our log filters attach to.
- ``ExecFulfilled``, ``ExecOutcome`` (``resonate.core``'s ``_ExecFulfilled``,
  ``_ExecOutcome``), :func:`context_state`, :func:`is_workflow` (a
  ``Context``'s ``_state`` and its ``workflow`` flag) and :func:`replace_core`
  (``Resonate._core``): ``jobs/failures.py`` fails a job the SDK would hand back
  in a loop, wraps each step a job runs, and knows when the SDK retries one.
- :func:`engine_running` (``Resonate._runtime``'s ``started`` and
  ``stopping``): ``/readyz`` says whether the engine runs.
- :func:`external_promise` (a ``Context``'s ``_global_req``, ``_next_id``,
  ``_remote_future`` and its state's ``chain``): ``ctx.promise()`` with a
  param and tags of our own, for ``jobs/questions.py``'s questions.
- Postgres, imported on first use (resonate-pg imports psycopg, ~0.3 s, which
  only the Postgres engine needs): ``RPC_SQL`` (``PostgresJobsEngine.send``
  runs resonate-pg's request and its job's index row in one transaction),
  ``PROCESS_TIMEOUTS_SQL`` (our own timer loop), ``outbox_channel`` (our own
  LISTEN loop), ``DEFAULT_MAX_POOL_SIZE``, ``PgConn``, ``PgSessions``; and
  psycopg_pool's ``AddConnection`` and ``MaintenanceTask`` (the pool's
  reconnection pace).

SDK methods we override, and private attributes we read (the overrides stay in
their classes; the tests check the SDK still has each, with our arguments):

- ``IndexedState`` (``store/state.py``) overrides ``ServerState``'s ``apply``,
  ``task_create``, ``task_suspend``, ``preload``, ``enqueue_settle``,
  ``send_execute_message``, ``set_p_timeout``, ``del_p_timeout``,
  ``set_t_timeout``, ``del_t_timeout`` and keeps ``p_timeouts``/``t_timeouts``
  as dicts: indexes instead of scans (``tests/test_store.py`` checks it against
  the SDK's own ``ServerState``).
- ``MemoryStore`` (``store/memory.py``) overrides ``LocalConnection``'s
  ``_dispatch_messages`` (called after every request it answers and every
  tick: where it tells of the jobs that ended) and replaces its ``state``
  with ours.
- ``PostgresEngine`` (``postgres.py``) overrides resonate-pg's ``_drain`` and
  ``_listen_loop`` (outages logged once, LISTEN retried every second) and reads
  ``_sessions``, ``_running``, ``_stopped``, ``_sleeper``, ``_unicast``,
  ``_anycast`` and ``_wake``.
- ``CheckedSessions`` (``postgres.py``) overrides ``PsycopgSessions``'s
  ``_ensure_pool`` (its one place that builds the pool) and reads ``_pool``,
  ``_lock``, ``_conninfo``, ``_min_size`` and ``_max_size``;
  ``ReconnectingPool`` overrides psycopg_pool's ``_connect`` and
  ``schedule_task``.

Workarounds of SDK behaviour, here:

- :func:`quiet_observer`: a request refused with 409 reaches the observer as
  text only (``BackgroundTaskFailed.cause``), so ``(code=409)`` is matched in it.
- :class:`ExpectedEnds`, on the ``resonate.core`` logger: an execution meant
  to stop (cancelled, store stopping) is logged by the SDK as an error.
- :class:`RunCountingHeartbeat`: ``AsyncHeartbeat`` keeps one entry per task id.
- :func:`without_null_values`: the SDK's push parser rejects ``"value": null``.
- :func:`error_of`: the SDK stores a failed job's exception pickled; we read
  its type without unpickling it.

And elsewhere, for the same cause: ``Jobs.wait`` (``jobs.py``) reads each
awaited job again every second, because the SDK drops a push it cannot parse
(or one lost with its connection), and ``QuietOutages`` (``postgres.py``) names
the SDK's loggers above.
"""

from __future__ import annotations

import _compat_pickle
import base64
import importlib
import logging
import pickletools
import sys
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from resonate.codec import Codec, NoopEncryptor
from resonate.connections.local import (
    DurablePromise,
    LocalConnection,
    OutgoingMessage,
    PTimeout,
    ScheduleStub,
    ServerState,
    Task,
    TTimeout,
    extract_action_data,
    unwrap_request_envelope,
    wrap_response_envelope,
)
from resonate.connections.local import _execute_task_id as execute_task_id
from resonate.context import Context, ResonateFuture
from resonate.core import Core
from resonate.core import _ExecFulfilled as ExecFulfilled
from resonate.core import _ExecOutcome as ExecOutcome
from resonate.error import ServerError
from resonate.heartbeat import AsyncHeartbeat
from resonate.observability import BackgroundTaskFailed, Event, Observer, logging_observer
from resonate.resonate import DEFAULT_TTL, HEARTBEAT_INTERVAL_DIVISOR, Resonate
from resonate.send import Sender, parse_promise
from resonate.transport import Transport
from resonate.types import PromiseCreateReq, Value

if TYPE_CHECKING:
    from psycopg_pool.pool_async import AddConnection, MaintenanceTask
    from resonate_pg.client import DEFAULT_MAX_POOL_SIZE, PgConn, PgSessions
    from resonate_pg.connection import PROCESS_TIMEOUTS_SQL, RPC_SQL
    from resonate_pg.wire import outbox_channel

__all__ = [
    "CONFLICT_TEXT",
    "CORE_LOGGER",
    "DEFAULT_MAX_POOL_SIZE",
    "DEFAULT_TTL",
    "HEARTBEAT_INTERVAL_DIVISOR",
    "OBSERVER_LOGGER",
    "PERIODIC_LOGGERS",
    "PICKLE_KEY",
    "PROCESS_TIMEOUTS_SQL",
    "RPC_SQL",
    "AddConnection",
    "AsyncHeartbeat",
    "Codec",
    "DurablePromise",
    "ExecFulfilled",
    "ExecOutcome",
    "ExpectedEnds",
    "LocalConnection",
    "MaintenanceTask",
    "NoopEncryptor",
    "OutgoingMessage",
    "PTimeout",
    "PgConn",
    "PgSessions",
    "RunCountingHeartbeat",
    "ScheduleStub",
    "Sender",
    "ServerState",
    "TTimeout",
    "Task",
    "Transport",
    "context_state",
    "error_of",
    "execute_task_id",
    "external_promise",
    "extract_action_data",
    "is_workflow",
    "outbox_channel",
    "parse_promise",
    "pickled_class",
    "quiet_observer",
    "replace_core",
    "unwrap_request_envelope",
    "without_null_values",
    "wrap_response_envelope",
]

logger = logging.getLogger(__name__)

#: The Postgres names, and the module each is imported from on first use.
_POSTGRES = {
    "RPC_SQL": "resonate_pg.connection",
    "PROCESS_TIMEOUTS_SQL": "resonate_pg.connection",
    "outbox_channel": "resonate_pg.wire",
    "DEFAULT_MAX_POOL_SIZE": "resonate_pg.client",
    "PgConn": "resonate_pg.client",
    "PgSessions": "resonate_pg.client",
    "AddConnection": "psycopg_pool.pool_async",
    "MaintenanceTask": "psycopg_pool.pool_async",
}


def __getattr__(name: str) -> Any:
    module = _POSTGRES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


# ── the SDK's loggers ──────────────────────────────────────────────────────

#: Logs an execution's failures (with tracebacks).
CORE_LOGGER = "resonate.core"
#: ``logging_observer``'s logger: a background task's failure.
OBSERVER_LOGGER = "resonate.observability"
#: The SDK's periodic work: the refresh of awaited promises, the heartbeat.
PERIODIC_LOGGERS = ("resonate.resonate", "resonate.heartbeat")


# ── a refused request ──────────────────────────────────────────────────────

#: How ``str(ServerError(409, ...))`` reads: all a background failure's event carries.
CONFLICT_TEXT = "(code=409)"


def quiet_observer(*expected: str) -> Observer:
    """The SDK's logging observer, minus one false alarm and the ends in ``expected``.

    The store tells workers about a task with an ``execute`` message sent
    asynchronously; by the time the worker asks to acquire it, the task may be
    done already -- a short ``ctx.sleep`` whose deadline passed in between, or
    another worker that won it. The store then answers 409 and the SDK, which
    has nobody to hand that answer to, logs it as a failed background task.
    Nothing failed: the work is done or in other hands. A failure whose text
    contains one of ``expected`` is likewise logged at debug level.
    """
    markers = (CONFLICT_TEXT, *expected)

    def observe(event: Event) -> None:
        if isinstance(event, BackgroundTaskFailed) and any(m in event.cause for m in markers):
            logger.debug("background task ended early, nothing lost: %s", event.cause)
            return
        logging_observer(event)

    return observe


class ExpectedEnds(logging.Filter):
    """Quiet the SDK's tracebacks for an execution that was meant to stop.

    When a running job is cancelled (or passes its deadline), its promise
    settles while the function is still executing. The function's next durable
    step is then refused with 409 -- which is how it stops -- and the SDK logs
    that refusal, and the release that follows, as errors with tracebacks. An
    error caused by one of the ``expected`` exceptions is an end as planned
    too. All are logged at debug level here. Attach it to :data:`CORE_LOGGER`.
    """

    def __init__(self, *expected: type[BaseException]) -> None:
        super().__init__()
        self.expected = expected

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.exc_info and self.expects(record.exc_info[1]):
            logger.debug("execution stopped as expected: %s", record.getMessage())
            return False
        return True

    def expects(self, exc: BaseException | None) -> bool:
        while exc is not None:
            if isinstance(exc, self.expected) or (isinstance(exc, ServerError) and exc.code == 409):
                return True
            exc = exc.__cause__ or exc.__context__
        return False


# ── running a job ──────────────────────────────────────────────────────────


def context_state(ctx: Context) -> Any:
    """The execution state a ``Context`` shares with every ``options()`` copy of it."""
    return ctx._state


def is_workflow(ctx: Context) -> bool:
    """Whether the execution ``ctx`` runs has made a durable call: the SDK never re-runs it."""
    return bool(ctx._state.workflow)


def external_promise(
    ctx: Context, data: Any, tags: dict[str, str], timeout: timedelta
) -> ResonateFuture[Any]:
    """What ``ctx.promise(timeout)`` makes -- a durable promise settled from outside,
    which the job awaits suspended -- with ``data`` as its param and ``tags`` added.

    Replayed, it is the same promise (its id is the next of the job's sequence).
    """
    state = ctx._state
    state.workflow = True
    link = state.chain.link()
    req = ctx._global_req(ctx._next_id(), timeout, external=True)
    req = PromiseCreateReq(
        id=req.id, timeout_at=req.timeout_at, param=Value(data=data), tags={**req.tags, **tags}
    )
    future: ResonateFuture[Any] = ctx._remote_future(req, link)
    return future


def replace_core[C: Core](resonate: Resonate, core_class: type[C]) -> C:
    """Run ``resonate``'s tasks on ``core_class`` (a ``Core`` subclass) with the same wiring.

    Before the instance is started or copied (``options``): each copy holds the core it had.
    """
    old = resonate._core
    core = core_class(**{name: getattr(old, name) for name in old.__struct_fields__})
    resonate._core = core
    return core


def engine_running(resonate: Resonate) -> bool:
    """Whether ``resonate`` was started and is not stopping (its ``_runtime`` flags)."""
    runtime = resonate._runtime
    return bool(runtime.started and not runtime.stopping)


# ── the heartbeat ──────────────────────────────────────────────────────────


class RunCountingHeartbeat:
    """The SDK's heartbeat, told a task is done only when its last run ends.

    ``AsyncHeartbeat`` keeps one entry per task id. A retried job's new run
    starts while the cancelled run may still be finishing its step; when the
    old run stopped, its ``stop(id)`` also stopped the new run's beats, whose
    lease then lapsed and whose work ran a second time.
    """

    def __init__(self, inner: AsyncHeartbeat) -> None:
        self.inner = inner
        self.runs: Counter[str] = Counter()

    def start(self, task_id: str, task_version: int) -> None:
        self.runs[task_id] += 1
        self.inner.start(task_id, task_version)  # the newest run's version is beaten

    def stop(self, task_id: str) -> None:
        self.runs[task_id] -= 1
        if self.runs[task_id] <= 0:
            del self.runs[task_id]
            self.inner.stop(task_id)

    def shutdown(self) -> None:
        self.runs.clear()
        self.inner.shutdown()


# ── pushed messages ────────────────────────────────────────────────────────


def without_null_values(message: Any) -> Any:
    """Drop ``"value": null`` from an unblock's promise, as the SDK does for responses.

    A promise that timed out has no value, and the SDK's parser for pushed
    messages rejects ``null`` there: the unblock was dropped with a warning
    and whoever awaited the job was never woken.
    """
    promise = message.get("data", {}).get("promise") if message.get("kind") == "unblock" else None
    if isinstance(promise, dict):
        for key in ("param", "value"):
            if promise.get(key, 0) is None:
                del promise[key]
    return message


# ── a failed job's error ───────────────────────────────────────────────────

#: Where the SDK's codec keeps the pickled exception beside ``message``.
PICKLE_KEY = "__py_pickle"

_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"})


def error_of(value: Any) -> dict[str, str]:
    """The ``{"type", "message"}`` of a rejected promise's stored (decoded) error.

    The SDK stores ``{"message": str(exc), "__py_pickle": base64 pickle of
    exc}``. Unpickling runs whatever the stored bytes say, so it is never
    done: the type is the class the pickle names first (the exception's own,
    as pickle writes it), read with ``pickletools`` and accepted only if that
    class is already loaded and is an exception. Anything else reads "Error".
    """
    if not isinstance(value, dict):
        return {"type": "Error", "message": str(value)}
    error_type = "Error"
    pickled = value.get(PICKLE_KEY)
    if isinstance(pickled, str):
        found = pickled_class(pickled)
        cls = _loaded_exception(*found) if found is not None else None
        if cls is not None:
            error_type = cls.__name__
    return {"type": error_type, "message": str(value.get("message", ""))}


def pickled_class(pickled: str) -> tuple[str, str] | None:
    """(module, qualified name) of the first global a base64 pickle refers to.

    Reads the opcodes only (``pickletools.genops``): nothing is imported or run.
    """
    strings: list[Any] = []
    memo: dict[int, Any] = {}
    protocol = 0
    try:
        for opcode, arg, _ in pickletools.genops(base64.b64decode(pickled, validate=True)):
            match opcode.name:
                case "PROTO":
                    protocol = int(arg)  # type: ignore[arg-type]
                case "GLOBAL":  # protocols 0 to 3: "module name"
                    module, _, name = str(arg).partition(" ")
                    if protocol < 3:  # Python 2's names, mapped back as pickle does
                        module, name = _compat_pickle.NAME_MAPPING.get(
                            (module, name), (module, name)
                        )
                        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
                    return module, name
                case "STACK_GLOBAL":  # protocol 4 on: the two strings pushed before it
                    if len(strings) >= 2 and all(isinstance(s, str) for s in strings[-2:]):
                        return strings[-2], strings[-1]
                    return None
                case "MEMOIZE":
                    memo[len(memo)] = strings[-1] if strings else None
                case "PUT" | "BINPUT" | "LONG_BINPUT":
                    memo[int(arg)] = strings[-1] if strings else None  # type: ignore[arg-type]
                case "GET" | "BINGET" | "LONG_BINGET":
                    strings.append(memo.get(int(arg)))  # type: ignore[arg-type]
                case name if name in _STRINGS:
                    strings.append(arg)
    except Exception:  # not base64, not a pickle: no type to read
        return None
    return None


def _loaded_exception(module: str, name: str) -> type[BaseException] | None:
    """The exception class ``module.name`` if its module is loaded already (never imported)."""
    found: Any = sys.modules.get(module)
    for part in name.split("."):
        found = vars(found).get(part) if hasattr(found, "__dict__") else None
    return found if isinstance(found, type) and issubclass(found, BaseException) else None
