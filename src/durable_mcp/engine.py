"""Builds the one Resonate instance a server runs on, for the configured store.

The choice of engine is made here and nowhere else: the job layer and the
tools only ever see a :class:`Resonate`. The instance is built without
starting it (``autostart=False``); the server's lifespan starts and stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from psycopg_pool import AsyncConnectionPool
from resonate.connections.local import LocalConnection
from resonate.observability import BackgroundTaskFailed, Event, logging_observer
from resonate.resonate import Resonate
from resonate_pg import PostgresConnection, PsycopgSessions
from resonate_pg.connection import PROCESS_TIMEOUTS_SQL

from durable_mcp.config import Settings
from durable_mcp.store import EmbeddedStore

#: The routing group our workers join; every replica of the server shares it.
GROUP = "durable-mcp"

#: How often this process fires resonate-pg's due timers (pg_cron's floor is 5 s).
PG_TIMER_SECONDS = 0.25

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
    Nothing failed: the work is done or in other hands. Log it at debug level.
    """
    if isinstance(event, BackgroundTaskFailed) and "(code=409)" in event.cause:
        logger.debug("stale task delivery ignored: %s", event.cause)
        return
    logging_observer(event)


class CheckedSessions(PsycopgSessions):
    """resonate-pg's connection pool, checking a connection before handing it out.

    After Postgres restarts, every pooled connection is dead; unchecked, the
    next request on each fails ("terminating connection due to administrator
    command") and reaches the caller as a tool error. A check costs one round
    trip and replaces a dead connection with a new one. (``_ensure_pool`` is
    the one place PsycopgSessions builds its pool; resonate-pg is pinned.)
    """

    async def _ensure_pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    pool = AsyncConnectionPool(
                        self._conninfo,
                        min_size=self._min_size,
                        max_size=self._max_size,
                        check=AsyncConnectionPool.check_connection,
                        open=False,
                    )
                    await pool.open()
                    self._pool = pool
        return self._pool


class PostgresEngine(PostgresConnection):
    """resonate-pg's connection, with its durable timers driven from here.

    resonate-pg fires timers (durable sleeps, retries, lapsed leases) only when
    something calls ``resonate.process_timeouts()``: pg_cron, which embedded
    and managed Postgres often lack, or the connector's own pump, which gives
    up for good after its first error -- a Postgres restart stops every sleep
    from ever waking. So the connector's driving is off and this loop drives
    the timers instead, and keeps retrying through database outages.
    """

    def __init__(self, dsn: str, *, pid: str, group: str) -> None:
        super().__init__(sessions=CheckedSessions(dsn), pid=pid, group=group, drive_timers=False)
        self._timer_sessions = CheckedSessions(dsn, max_size=1)
        self._timer_loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        self._timer_loop = asyncio.create_task(self._keep_firing_timers())

    async def stop(self) -> None:
        if self._timer_loop is not None:
            self._timer_loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer_loop
        with contextlib.suppress(Exception):
            await self._timer_sessions.close()
        await super().stop()

    async def _keep_firing_timers(self) -> None:
        failing = False
        while True:
            try:
                async with self._timer_sessions.session() as conn:
                    await conn.execute(PROCESS_TIMEOUTS_SQL)
                if failing:
                    logger.info("durable timers are firing again")
                failing = False
            except Exception as exc:
                if not failing:
                    logger.warning("cannot fire durable timers, retrying: %s", exc)
                failing = True
            await asyncio.sleep(PG_TIMER_SECONDS)


def build_resonate(settings: Settings) -> Resonate:
    """Return an unstarted Resonate wired to the store ``settings`` selects.

    The embedded store is opened here (raises ``StoreError``), so that a data
    dir in use or damaged stops the start before the server listens.
    """
    pid = uuid.uuid4().hex
    if settings.pg_dsn:
        return Resonate(
            network=PostgresEngine(settings.pg_dsn, pid=pid, group=GROUP),
            group=GROUP,
            pid=pid,
            env={},
            observer=observe,
            autostart=False,
        )
    if settings.resonate_url:
        # HTTP for requests, SSE for pushed work; replicas share GROUP.
        return Resonate(
            url=settings.resonate_url,
            group=GROUP,
            pid=pid,
            env={},
            observer=observe,
            autostart=False,
        )
    network: LocalConnection | EmbeddedStore
    if settings.store == "embedded":
        network = EmbeddedStore(
            settings.data_dir, pid=pid, group=GROUP, retention=settings.retention
        )
        network.open()  # takes the data dir now: a second server fails before it listens
    else:
        network = LocalConnection(pid=pid, group=GROUP, tick_interval=LOCAL_TICK_SECONDS)
    # In one process nothing can drop a push, so the listener refresh loop is off.
    return Resonate(
        network=network,
        group=GROUP,
        pid=pid,
        env={},
        observer=observe,
        autostart=False,
        subscription_refresh_secs=0,
    )
