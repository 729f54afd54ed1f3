"""The Postgres engine: resonate-pg's connector, kept working across database restarts.

Selected by ``RESONATE_PG_DSN``. Two things are added to resonate-pg's
``PostgresConnection``, each for a failure seen when Postgres restarts: pooled
connections are checked before use, and durable timers are fired by a loop of
our own that never gives up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from psycopg_pool import AsyncConnectionPool
from resonate_pg import PostgresConnection, PsycopgSessions
from resonate_pg.connection import PROCESS_TIMEOUTS_SQL

logger = logging.getLogger(__name__)

#: How often this process fires resonate-pg's due timers (pg_cron's floor is 5 s).
TIMER_SECONDS = 0.25


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
            await asyncio.sleep(TIMER_SECONDS)
