"""The Postgres engine: resonate-pg's connector, kept working across database outages.

Selected by ``RESONATE_PG_DSN``. What is added to resonate-pg's
``PostgresConnection``, each for a failure seen when Postgres restarts or is
out of reach:

- pooled connections are checked before use, and one found dead throws out
  every idle one (they all date from before the outage);
- a call fails within seconds with a one-line error naming the database's
  host:port (:class:`DatabaseUnreachable`) instead of waiting 30 s for a
  connection (psycopg_pool's default ``timeout``); a connection attempt gives
  up after a few seconds (``connect_timeout``; libpq's default is to wait for
  the operating system, minutes on a lost network);
- the pool tries to reconnect at least every :data:`RECONNECT_SECONDS`: its
  own backoff doubles up to five minutes, so after a long outage the first
  calls and timers waited half as long again as the outage had lasted;
- durable timers are fired by a loop of our own that never gives up, and the
  LISTEN connection is retried every :data:`LISTEN_RETRY_SECONDS` (not on
  resonate-pg's ladder to 60 s);
- each loop logs an outage once: a WARNING when it starts, an INFO when it
  ends (:class:`Outage`).

:func:`check_database` is the start-up check: a database out of reach or
without resonate-pg's schema stops ``durable-mcp serve`` before it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from resonate_pg import PostgresConnection, PsycopgSessions

from durable_mcp.config import ConfigError
from durable_mcp.sdk_compat import (
    CORE_LOGGER,
    DEFAULT_MAX_POOL_SIZE,
    OBSERVER_LOGGER,
    PERIODIC_LOGGERS,
    PROCESS_TIMEOUTS_SQL,
    AddConnection,
    MaintenanceTask,
    PgConn,
    outbox_channel,
)

logger = logging.getLogger(__name__)

#: How often this process fires resonate-pg's due timers (pg_cron's floor is 5 s).
TIMER_SECONDS = 0.25

#: How long a connection attempt may take (libpq's ``connect_timeout``; 2 at least).
CONNECT_TIMEOUT_SECONDS = 3

#: How long a call waits for a pooled connection before it fails (psycopg_pool: 30 s).
POOL_WAIT_SECONDS = 3.0

#: The longest pause between the pool's attempts to reconnect (psycopg_pool: up to 5 min).
RECONNECT_SECONDS = 0.5

#: The pause between attempts to reopen the LISTEN connection (resonate-pg: up to 60 s).
#: Work is picked up on the pump's 0.25 s tick meanwhile; LISTEN only shortens that.
LISTEN_RETRY_SECONDS = 1.0

#: The functions of resonate-pg's schema this engine calls.
SCHEMA_FUNCTIONS = ("resonate_rpc", "dequeue_execute", "dequeue_unblock", "process_timeouts")


#: What a session on a healthy connection reads when Postgres shuts down or restarts.
SHUTDOWN_ERRORS = (
    psycopg.errors.AdminShutdown,
    psycopg.errors.CrashShutdown,
    psycopg.errors.CannotConnectNow,
)


class DatabaseUnreachable(Exception):
    """No connection to the database: what a caller reads, in one line."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(
            f"{self.short}; the server keeps trying, retry when it is back",
        )

    @property
    def short(self) -> str:
        return f"the Postgres database at {self.where}{UNREACHABLE}({self.reason})"


UNREACHABLE = " is unreachable "


class DatabaseBusy(Exception):
    """The database is reachable, but every pooled connection stayed in use."""


def where(dsn: str) -> str:
    """``host:port`` of a DSN, for messages; never its password or user."""
    try:
        params: Mapping[str, Any] = conninfo_to_dict(dsn)
    except psycopg.Error:
        params = {}
    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "localhost"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    return f"{host}:{port}"


def reason(exc: BaseException) -> str:
    """The gist of a connection error, in one line: ``Connection refused``.

    libpq's messages name the host again and add hints on further lines
    (``connection to server at "h", port 5432 failed: Connection refused``).
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        _, found, after = line.rpartition("failed: ")
        if found and after.strip():
            return _tidy(after)
    return _tidy(lines[0]) if lines else type(exc).__name__


def _tidy(text: str) -> str:
    return text.strip().removeprefix("FATAL:").strip()


def describe(exc: BaseException) -> str:
    """One line for a log: what went wrong, without the advice meant for callers."""
    if isinstance(exc, DatabaseUnreachable):
        return exc.short
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _connect_kwargs(dsn: str) -> dict[str, Any]:
    """``connect_timeout``, unless the DSN sets its own."""
    try:
        if "connect_timeout" in conninfo_to_dict(dsn):
            return {}
    except psycopg.Error:
        pass  # psycopg reports a malformed DSN when it connects
    return {"connect_timeout": CONNECT_TIMEOUT_SECONDS}


class ReconnectingPool(AsyncConnectionPool[psycopg.AsyncConnection[Any]]):
    """psycopg_pool's pool, reconnecting at a steady pace and knowing why it cannot.

    - ``last_error``: the error of the latest failed connection attempt or
      check, None once a connection succeeds: what makes a timeout read
      "unreachable (Connection refused)" rather than "couldn't get a
      connection after 3.00 sec".
    - Each reconnection is retried after at most :data:`RECONNECT_SECONDS`
      (``schedule_task`` is where the pool sets its doubling delay), and never
      given up (``reconnect_timeout``).
    - A connection that fails its check drains the pool: after a restart every
      idle connection is dead, and each would cost a failed check and the
      pool's pause after it (1 s, then 2 s, ...) before a fresh one is reached.
    """

    def __init__(self, conninfo: str, *, min_size: int, max_size: int) -> None:
        self.last_error: BaseException | None = None
        super().__init__(
            conninfo,
            kwargs=_connect_kwargs(conninfo),
            min_size=min_size,
            max_size=max_size,
            check=self._check_alive,
            timeout=POOL_WAIT_SECONDS,
            reconnect_timeout=math.inf,
            open=False,
        )

    async def _check_alive(self, conn: psycopg.AsyncConnection[Any]) -> None:
        try:
            await self.check_connection(conn)
        except Exception as exc:
            self.last_error = exc
            await self.drain()
            raise

    async def _connect(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 (psycopg_pool's signature)
    ) -> psycopg.AsyncConnection[Any]:
        try:
            conn = await super()._connect(timeout)
        except Exception as exc:
            self.last_error = exc
            raise
        self.last_error = None
        return conn

    async def schedule_task(self, task: MaintenanceTask, delay: float) -> None:
        if isinstance(task, AddConnection):
            delay = min(delay, RECONNECT_SECONDS)
        await super().schedule_task(task, delay)


class CheckedSessions(PsycopgSessions):
    """resonate-pg's sessions on a :class:`ReconnectingPool`, failing in one clear line.

    A session that cannot get a connection within :data:`POOL_WAIT_SECONDS`,
    or whose connection breaks under it, raises :class:`DatabaseUnreachable`
    (resonate-pg wraps it in the ``ConnectorError`` the job layer turns into a
    tool error). ``_ensure_pool`` is the one place PsycopgSessions builds its
    pool, ``dedicated`` the one place it opens the LISTEN connection
    (resonate-pg is pinned).
    """

    def __init__(
        self, conninfo: str, *, min_size: int = 1, max_size: int = DEFAULT_MAX_POOL_SIZE
    ) -> None:
        super().__init__(conninfo, min_size=min_size, max_size=max_size)
        self.where = where(conninfo)
        self._pool: ReconnectingPool | None = None

    async def _ensure_pool(self) -> ReconnectingPool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    pool = ReconnectingPool(
                        self._conninfo, min_size=self._min_size, max_size=self._max_size
                    )
                    await pool.open()
                    self._pool = pool
        return self._pool

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[PgConn]:
        pool = await self._ensure_pool()
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            async with pool.connection() as conn:
                yield cast("PgConn", conn)
        except PoolTimeout:
            if pool.last_error is not None:
                raise DatabaseUnreachable(self.where, reason(pool.last_error)) from None
            raise DatabaseBusy(
                f"no connection to the Postgres database at {self.where} came free within "
                f"{POOL_WAIT_SECONDS:g} s (all {pool.max_size} in use); retry shortly"
            ) from None
        except psycopg.OperationalError as exc:
            if conn is None or not (conn.closed or isinstance(exc, SHUTDOWN_ERRORS)):
                raise  # the query failed, not the connection
            raise DatabaseUnreachable(self.where, reason(exc)) from exc

    async def dedicated(self) -> PgConn:
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, **_connect_kwargs(self._conninfo)
            )
        except psycopg.OperationalError as exc:
            raise DatabaseUnreachable(self.where, reason(exc)) from exc
        return cast("PgConn", conn)


class Outage:
    """One loop's failures, logged once: a WARNING when they start, an INFO when they end."""

    def __init__(self, failing: str, working: str) -> None:
        self.failing = failing
        self.working = working
        self.since: float | None = None

    def failed(self, exc: BaseException) -> None:
        if self.since is None:
            self.since = time.monotonic()
            logger.warning("%s: %s", self.failing, describe(exc))

    def ended(self) -> None:
        if self.since is not None:
            logger.info("%s (after %.1f s)", self.working, time.monotonic() - self.since)
            self.since = None


class QuietOutages(logging.Filter):
    """The SDK's lines about an outage: one WARNING per piece of work cut off, no more.

    A job step in flight when the database goes away fails, and the SDK logs
    that (and the release that fails after it) as errors, with a traceback:
    here one WARNING line each. The work is not lost: its lease lapses and it
    runs again once the database is back. The SDK's periodic work -- the
    heartbeat every 30 s, and the refresh of every job it awaits every 60 s,
    one line per job -- would repeat the outage all along; those lines go to
    debug, since the engine's loops have said it once.
    """

    PERIODIC = PERIODIC_LOGGERS

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        cause = _outage_in(record.exc_info[1] if record.exc_info else None)
        if cause is None and UNREACHABLE not in record.getMessage():
            return True  # not the outage (the observer names it only in its text)
        if record.name in self.PERIODIC:
            logger.debug("during the outage: %s", record.getMessage())
            return False
        if cause is not None:
            record.msg, record.args = f"{record.getMessage()}: {cause.short}", ()
            record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _outage_in(exc: BaseException | None) -> DatabaseUnreachable | None:
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, DatabaseUnreachable):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


_quiet_outages = QuietOutages()


class PostgresEngine(PostgresConnection):
    """resonate-pg's connection, with its durable timers driven from here.

    resonate-pg fires timers (durable sleeps, retries, lapsed leases) only when
    something calls ``resonate.process_timeouts()``: pg_cron, which embedded
    and managed Postgres often lack, or the connector's own pump, which gives
    up for good after its first error -- a Postgres restart stops every sleep
    from ever waking. So the connector's driving is off and this loop drives
    the timers instead, and keeps retrying through database outages.

    The pump (resonate-pg's loop, draining this replica's messages every
    0.25 s) and the LISTEN loop log an outage once each, as the timer loop does.
    """

    def __init__(self, dsn: str, *, pid: str, group: str) -> None:
        self._checked = CheckedSessions(dsn)
        super().__init__(sessions=self._checked, pid=pid, group=group, drive_timers=False)
        self._timer_sessions = CheckedSessions(dsn, max_size=1)
        self._timer_loop: asyncio.Task[None] | None = None
        self._pump_outage = Outage(
            "cannot take work from Postgres, retrying",
            "taking work from Postgres again",
        )
        for name in (CORE_LOGGER, OBSERVER_LOGGER, *QuietOutages.PERIODIC):
            sdk_logger = logging.getLogger(name)
            if _quiet_outages not in sdk_logger.filters:
                sdk_logger.addFilter(_quiet_outages)

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
        outage = Outage("cannot fire durable timers, retrying", "durable timers are firing again")
        while True:
            try:
                async with self._timer_sessions.session() as conn:
                    await conn.execute(PROCESS_TIMEOUTS_SQL)
            except Exception as exc:
                outage.failed(exc)
            else:
                outage.ended()
            await asyncio.sleep(TIMER_SECONDS)

    async def _drain(self) -> None:
        """resonate-pg's drain; its failures logged once per outage, not at every tick."""
        try:
            await super()._drain()
        except Exception as exc:
            if self._running:
                self._pump_outage.failed(exc)
        else:
            self._pump_outage.ended()

    async def _listen_loop(self) -> None:
        """Hold a LISTEN connection open, reopening it every :data:`LISTEN_RETRY_SECONDS`.

        resonate-pg's own loop backs off to 60 s and logs every failed attempt.
        """
        outage = Outage(
            f"cannot LISTEN on Postgres, retrying every {LISTEN_RETRY_SECONDS:g} s",
            "listening on Postgres again",
        )
        with contextlib.suppress(asyncio.CancelledError):
            while self._running:
                try:
                    conn = await self._checked.dedicated()
                except Exception as exc:
                    outage.failed(exc)
                else:
                    outage.ended()
                    try:
                        await self._listen_on(conn)
                    except Exception as exc:
                        if self._running:
                            outage.failed(exc)
                if self._running:
                    await self._sleeper(LISTEN_RETRY_SECONDS)

    async def _listen_on(self, conn: PgConn) -> None:
        """resonate-pg's ``_listen_once`` on an open connection: wake the pump on each NOTIFY."""
        try:
            for address in (self._unicast, self._anycast):
                # 'resonate_q_' + 32 hex characters: nothing to escape.
                await conn.execute(f'LISTEN "{outbox_channel(address)}"')
            self._wake.set()  # rows may have landed while the listener was down
            async for _notification in conn.notifies():
                self._wake.set()
                if not self._running:
                    return
        except psycopg.OperationalError as exc:
            raise DatabaseUnreachable(self._checked.where, reason(exc)) from exc
        finally:
            with contextlib.suppress(Exception):
                await conn.close()


def check_database(dsn: str) -> None:
    """Stop the start (``ConfigError``, one line) if the database cannot be used.

    Connects once, within :data:`CONNECT_TIMEOUT_SECONDS`, and looks for
    resonate-pg's functions. Never names the DSN's password: only host:port
    and the database's name.
    """
    try:
        conninfo_to_dict(dsn)
    except psycopg.Error:
        # libpq's message quotes the DSN, password and all.
        raise ConfigError(
            "RESONATE_PG_DSN: not a Postgres connection string or URI "
            "(postgresql://user:password@host:5432/db)"
        ) from None
    at = where(dsn)
    try:
        conn = psycopg.connect(dsn, **_connect_kwargs(dsn))
    except psycopg.Error as exc:
        raise ConfigError(
            f"RESONATE_PG_DSN: cannot connect to the Postgres database at {at} "
            f"({reason(exc)}); start Postgres or correct RESONATE_PG_DSN, then start again"
        ) from None
    with conn:
        dbname = conn.info.dbname
        found = {
            row[0]
            for row in conn.execute(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'resonate' AND p.proname = ANY(%s)",
                (list(SCHEMA_FUNCTIONS),),
            )
        }
    missing = [name for name in SCHEMA_FUNCTIONS if name not in found]
    if missing:
        what = (
            "has no resonate-pg schema"
            if len(missing) == len(SCHEMA_FUNCTIONS)
            else f"has an incomplete resonate-pg schema (no resonate.{missing[0]})"
        )
        raise ConfigError(
            f"RESONATE_PG_DSN: the database {dbname!r} at {at} {what}; "
            f'run `make pg-schema`, then `psql "$RESONATE_PG_DSN" -f resonate.sql`'
        )
