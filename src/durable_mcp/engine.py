"""Builds the one Resonate instance a server runs on, for the configured store.

The choice of engine is made here and nowhere else: the job layer and the
tools only ever see a :class:`Resonate`. The instance is built without
starting it (``autostart=False``); the server's lifespan starts and stops it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from resonate.connections.local import LocalConnection
from resonate.error import ServerError
from resonate.observability import BackgroundTaskFailed, Event, logging_observer
from resonate.resonate import Resonate
from resonate.timing import Clock, Sleeper, now_ms, sleep
from resonate_base.connections import Network

from durable_mcp.config import Settings
from durable_mcp.store import STOPPED, EmbeddedStore, StoreStopped
from durable_mcp.store.state import IndexedState

#: The routing group our workers join; every replica of the server shares it.
GROUP = "durable-mcp"

#: How often the in-process store checks deadlines. The SDK's default of 1 s
#: makes a timer fire up to a second late; a tenth of that costs nothing.
LOCAL_TICK_SECONDS = 0.1


logger = logging.getLogger(__name__)


def observe(event: Event) -> None:
    """The SDK's logging observer, minus one false alarm.

    The store tells workers about a task with an ``execute`` message sent
    asynchronously; by the time the worker asks to acquire it, the task may be
    done already -- a short ``ctx.sleep`` whose deadline passed in between, or
    another worker that won it. The store then answers 409 and the SDK, which
    has nobody to hand that answer to, logs it as a failed background task.
    Nothing failed: the work is done or in other hands. Likewise a task cut
    off by the embedded store stopping: it resumes at the next start. Both are
    logged at debug level.
    """
    if isinstance(event, BackgroundTaskFailed) and (
        "(code=409)" in event.cause or STOPPED in event.cause
    ):
        logger.debug("background task ended early, nothing lost: %s", event.cause)
        return
    logging_observer(event)


class ExpectedEnds(logging.Filter):
    """Quiet the SDK's tracebacks for an execution that was meant to stop.

    When a running job is cancelled (or passes its deadline), its promise
    settles while the function is still executing. The function's next durable
    step is then refused with 409 -- which is how it stops -- and the SDK logs
    that refusal, and the release that follows, as errors with tracebacks.
    The same happens to a job still running when the server shuts down (the
    store refuses it; the job resumes at the next start). Both are logged at
    debug level here.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.exc_info and _expected(record.exc_info[1]):
            logger.debug("execution stopped as expected: %s", record.getMessage())
            return False
        return True


def _expected(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, StoreStopped) or (isinstance(exc, ServerError) and exc.code == 409):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


_expected_ends = ExpectedEnds()


@dataclass(frozen=True)
class Engine:
    """The Resonate instance, and what the job layer must know of its store."""

    resonate: Resonate
    #: The embedded store, when it is the engine: answers are synced to its disk.
    store: EmbeddedStore | None = None
    #: The state machine, when it runs in this process (embedded and memory stores).
    state: IndexedState | None = None


def build_engine(settings: Settings, *, clock: Clock = now_ms, sleeper: Sleeper = sleep) -> Engine:
    """Return an unstarted Resonate wired to the store ``settings`` selects.

    The embedded store is opened here (raises ``StoreError``), so that a data
    dir in use or damaged stops the start before the server listens.
    ``clock`` and ``sleeper`` are the SDK's time seams, given to Resonate and
    to an in-process store alike: one notion of now (tests pass fakes).
    """
    pid = uuid.uuid4().hex
    core_logger = logging.getLogger("resonate.core")
    if _expected_ends not in core_logger.filters:
        core_logger.addFilter(_expected_ends)
    network: Network | None = None
    # Re-registering listeners defends against a dropped push channel; in one
    # process nothing can drop a push, so the in-process stores turn it off.
    refresh_seconds = 0.0
    if settings.pg_dsn:
        # Imported here: psycopg takes ~0.3 s to import, and only Postgres needs it.
        from durable_mcp.postgres import PostgresEngine

        network, refresh_seconds = PostgresEngine(settings.pg_dsn, pid=pid, group=GROUP), 60.0
    elif settings.resonate_url:
        refresh_seconds = 60.0  # Resonate builds its HTTP + SSE connections from the url
    elif settings.store == "embedded":
        store = EmbeddedStore(
            settings.data_dir,
            pid=pid,
            group=GROUP,
            retention=settings.retention,
            clock=clock,
            sleeper=sleeper,
        )
        store.open()  # takes the data dir now: a second server fails before it listens
        network = store
    else:
        network = LocalConnection(
            pid=pid, group=GROUP, clock=clock, sleeper=sleeper, tick_interval=LOCAL_TICK_SECONDS
        )
        network.state = IndexedState()  # the same state machine, with search (list_jobs)
    resonate = Resonate(
        url=settings.resonate_url if network is None else None,
        network=network,
        group=GROUP,
        pid=pid,
        env={},
        clock=clock,
        sleeper=sleeper,
        observer=observe,
        autostart=False,
        subscription_refresh_secs=refresh_seconds,
    )
    if isinstance(network, EmbeddedStore):
        return Engine(resonate, store=network, state=network.state)
    if isinstance(network, LocalConnection):
        return Engine(resonate, state=network.state)  # type: ignore[arg-type]
    return Engine(resonate)
