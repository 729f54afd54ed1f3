"""The embedded durable store: the SDK's reference state machine, made durable.

``EmbeddedStore`` is a Resonate ``Network`` and ``Source`` in one, like the
SDK's in-process ``LocalConnection``, and it runs the same ``ServerState``: the
protocol semantics are the SDK's own, not a re-implementation. What it adds:

* every state change is journaled (see ``journal.py``), in order, so what is
  on disk is always a prefix of what happened: a crash rolls the store back
  to a consistent moment, at most a few milliseconds old;
* ``sync()`` waits until everything applied so far is on disk. Requests are
  answered without waiting -- the SDK's workers run in this same process, so
  a crash loses their view and the store's together -- and whoever answers
  the outside world (the job layer, before any tool result) syncs first: what
  a caller was told has happened survives a crash;
* on start, it rebuilds the state and releases the leases of the process that
  died, so interrupted jobs resume at once instead of after their 60 s lease;
* settled jobs older than the retention period are removed, keeping the
  state and the files bounded.

It refuses to be anything more: no scheduling of its own, no second index.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
from resonate.connections.local import (
    DurablePromise,
    PTimeout,
    ScheduleStub,
    ServerState,
    Task,
    TTimeout,
    unwrap_request_envelope,
    wrap_response_envelope,
)
from resonate.error import DecodingError, ServerError
from resonate.timing import Clock, Sleeper, now_ms, sleep
from resonate_base.error import ConnectorError

from durable_mcp.events import job_event
from durable_mcp.store.journal import Journal, StoreError
from durable_mcp.store.state import IndexedState, is_job

logger = logging.getLogger(__name__)

SCHEME = "embedded"

#: How often deadlines (sleeps, leases, retries) are checked.
TICK_SECONDS = 0.1
#: A snapshot replaces the journal once it holds this many entries.
SNAPSHOT_EVERY = 5_000
#: How often settled jobs past the retention period are removed.
SWEEP_EVERY = timedelta(minutes=10)
DEFAULT_RETENTION = timedelta(days=7)

#: Requests that only read: journaled only when they time out a promise (below).
READ_ONLY = frozenset({"promise.get", "promise.search", "schedule.get", "schedule.search"})


#: Why a request to a stopped store fails; the job resumes at the next start.
STOPPED = "the embedded store has stopped (the server is shutting down)"


class StoreStopped(ConnectorError):
    """A request reached the store after it stopped: the server is shutting down."""


# ── journal entries ────────────────────────────────────────────────────────


class Apply(msgspec.Struct, tag="apply", array_like=True):
    """A request applied at ``now``."""

    now: int
    req: Any


class Tick(msgspec.Struct, tag="tick", array_like=True):
    """The clock passed deadlines at ``now``."""

    now: int


class Sweep(msgspec.Struct, tag="sweep", array_like=True):
    """Jobs settled before ``cutoff`` were removed."""

    cutoff: int


Entry = Apply | Tick | Sweep


class Snapshot(msgspec.Struct):
    promises: dict[str, DurablePromise]
    tasks: dict[str, Task]
    schedules: dict[str, ScheduleStub]
    p_timeouts: list[PTimeout]
    t_timeouts: list[TTimeout]


_entry_decoder = msgspec.msgpack.Decoder(Entry)
_snapshot_decoder = msgspec.msgpack.Decoder(Snapshot)
_encoder = msgspec.msgpack.Encoder()


def replay(state: ServerState, entry: Entry) -> None:
    """Apply one journal entry to ``state``; deterministic, so replay rebuilds it."""
    match entry:
        case Apply(now=now, req=req):
            with contextlib.suppress(ServerError):  # it failed the same way the first time
                state.apply(now, req)
        case Tick(now=now):
            state.tick(now)
        case Sweep(cutoff=cutoff):
            sweep(state, cutoff)
    state.outgoing.clear()


def snapshot_of(state: ServerState) -> bytes:
    return _encoder.encode(
        Snapshot(
            promises=state.promises,
            tasks=state.tasks,
            schedules=state.schedules,
            p_timeouts=state.p_timeouts,
            t_timeouts=state.t_timeouts,
        )
    )


def restore(snapshot: bytes | None, entries: list[bytes]) -> IndexedState:
    state = IndexedState()
    if snapshot is not None:
        saved = _snapshot_decoder.decode(snapshot)
        state.load(saved.promises)
        state.tasks = saved.tasks
        state.schedules = saved.schedules
        state.p_timeouts = saved.p_timeouts
        state.t_timeouts = saved.t_timeouts
    for raw in entries:
        replay(state, _entry_decoder.decode(raw))
    return state


def peek(data_dir: Path) -> IndexedState:
    """The state saved in ``data_dir``, read-only, while its server may be running."""
    saved = Journal.peek(data_dir)
    return restore(saved.snapshot, saved.entries)


def expired_roots(state: ServerState, cutoff: int) -> list[str]:
    """Top-level jobs that settled before ``cutoff``."""
    return [
        p.id
        for p in state.promises.values()
        if is_job(p.id) and p.state != "pending" and (p.settled_at or 0) < cutoff
    ]


def sweep(state: ServerState, cutoff: int) -> None:
    """Remove jobs settled before ``cutoff``, with their steps, tasks and timeouts."""
    roots = set(expired_roots(state, cutoff))
    if not roots:
        return
    gone = {pid for pid in state.promises if pid.split(":", 1)[0] in roots}
    for pid in gone:
        del state.promises[pid]
        state.tasks.pop(pid, None)
    state.p_timeouts = [pt for pt in state.p_timeouts if pt.id not in gone]
    state.t_timeouts = [tt for tt in state.t_timeouts if tt.id not in gone]
    for p in state.promises.values():
        p.awaiters -= gone


def _without_null_values(message: Any) -> Any:
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


def changes_state(state: ServerState, now: int, req: Any) -> bool:
    """Whether applying ``req`` can change the state (and so must be journaled).

    A read changes nothing, except a ``promise.get`` of a pending promise past
    its deadline: the state machine times it out on the way.
    """
    kind = req.get("kind") if isinstance(req, dict) else None
    if kind not in READ_ONLY:
        return True
    if kind == "promise.get":
        p = state.promises.get(req.get("id", ""))
        return p is not None and p.state == "pending" and now >= p.timeout_at
    return False


class EmbeddedStore:
    """A durable Resonate store in ``data_dir``, for one process at a time.

    Every change (apply, journal, take the outgoing messages) runs without an
    ``await`` in between, so on one event loop it needs no lock.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        pid: str,
        group: str,
        retention: timedelta = DEFAULT_RETENTION,
        clock: Clock = now_ms,
        sleeper: Sleeper = sleep,
        tick_seconds: float = TICK_SECONDS,
        snapshot_every: int = SNAPSHOT_EVERY,
    ) -> None:
        self.data_dir = data_dir
        self.retention_ms = int(retention.total_seconds() * 1000)
        self._clock = clock
        self._sleeper = sleeper
        self._tick_seconds = tick_seconds
        self._snapshot_every = snapshot_every
        self._unicast = f"{SCHEME}://uni@{group}/{pid}"
        self._journal = Journal(data_dir)
        self.state = IndexedState()
        self._receivers: list[Callable[[str], None]] = []
        self._tick_task: asyncio.Task[None] | None = None
        self._last_write: asyncio.Future[None] | None = None
        self._last_sweep = 0
        self._stopped = False

    # ── lifecycle ──────────────────────────────────────────────────────────

    def open(self) -> None:
        """Take the data dir and rebuild the saved state (raises StoreError)."""
        saved = self._journal.open()
        try:
            self.state = restore(saved.snapshot, saved.entries)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._journal.close()
            raise StoreError(
                f"the store in {self.data_dir} cannot be read ({exc}); it was left untouched. "
                "Move it aside to start with an empty store."
            ) from exc
        logger.info(
            "embedded store opened: %s (%d jobs, %d journal entries replayed)",
            self.data_dir,
            sum(map(is_job, self.state.promises)),
            len(saved.entries),
        )

    async def start(self) -> None:
        """Resume what the last process left running, then keep time."""
        now = self._clock()
        outgoing = []
        # The data dir is ours alone, so every lease is a dead process's.
        for task in list(self.state.tasks.values()):
            if task.state == "acquired":
                self._apply(now, {"kind": "task.release", "id": task.id})
                outgoing += self._take_outgoing()
        # Execute messages sent to the dead process are lost; send them again.
        for task in self.state.tasks.values():
            promise = self.state.promises.get(task.id)
            target = promise.tags.get("resonate:target") if promise else None
            if task.state == "pending" and target is not None:
                self.state.send_execute_message(target, task.id, task.version)
                if is_job(task.id):
                    job_event("resumed", task.id)
        outgoing += self._take_outgoing()
        if outgoing:
            logger.info("resuming interrupted jobs (%d tasks)", len(outgoing))
        self._sweep(now)
        self._dispatch(outgoing)
        self._tick_task = asyncio.create_task(self._tick_loop())

    async def stop(self) -> None:
        self._stopped = True
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
            self._tick_task = None
        self._receivers.clear()
        if self._journal.entries_since_snapshot:
            snapshot = self._journal.snapshot(snapshot_of(self.state))
            with contextlib.suppress(Exception):
                await snapshot
        self._journal.close()

    # ── Network ────────────────────────────────────────────────────────────

    async def send(self, req: str, headers: dict[str, str] | None = None) -> str:
        if self._stopped:
            raise StoreStopped(RuntimeError(STOPPED))
        try:
            flat = unwrap_request_envelope(msgspec.json.decode(req))
        except msgspec.DecodeError as exc:
            raise DecodingError(f"invalid JSON request: {exc}") from exc

        error: ServerError | None = None
        now = self._clock()
        if changes_state(self.state, now, flat):
            try:
                response = self._apply(now, flat)
            except ServerError as exc:
                error = exc
        else:
            response = self.state.apply(now, flat)
        outgoing = self._take_outgoing()
        self._dispatch(outgoing)
        if error is not None:
            raise error
        return msgspec.json.encode(wrap_response_envelope(response)).decode()

    # ── Source ─────────────────────────────────────────────────────────────

    def unicast(self) -> str:
        return self._unicast

    def resolve_target(self, target: str) -> str:
        return f"{SCHEME}://any@{target}"

    def recv(self, callback: Callable[[str], None]) -> None:
        self._receivers.append(callback)

    # ── internals ──────────────────────────────────────────────────────────

    def _apply(self, now: int, req: Any) -> dict[str, Any]:
        """Apply and journal a request (journaled even if it fails: replay fails alike)."""
        try:
            return self.state.apply(now, req)
        finally:
            self._write(Apply(now=now, req=req))

    def _write(self, entry: Entry) -> None:
        self._last_write = self._journal.append(_encoder.encode(entry))

    def sync(self) -> Awaitable[None]:
        """Something to await until every change applied until now is on disk.

        What "until now" covers is fixed by the call, not by the await: changes
        made meanwhile need not be waited for.
        """
        return self._written(self._last_write)

    async def _written(self, write: asyncio.Future[None] | None) -> None:
        if write is None:
            return
        try:
            await write
        except Exception as exc:
            logger.error("the embedded store could not write to %s: %s", self.data_dir, exc)
            raise ConnectorError(exc) from exc

    def _take_outgoing(self) -> list[Any]:
        outgoing = self.state.outgoing
        self.state.outgoing = []
        return outgoing

    def _dispatch(self, outgoing: list[Any]) -> None:
        for message in outgoing:
            if self._is_stale(message.message):
                continue
            text = msgspec.json.encode(_without_null_values(message.message)).decode()
            for receiver in list(self._receivers):
                receiver(text)

    def _is_stale(self, message: Any) -> bool:
        """An execute for a task that has moved on since (a short sleep already over)."""
        if message.get("kind") != "execute":
            return False
        ref = message["data"]["task"]
        task = self.state.tasks.get(ref["id"])
        return task is None or task.state != "pending" or task.version != ref["version"]

    def _sweep(self, now: int) -> None:
        cutoff = now - self.retention_ms
        self._last_sweep = now
        if expired_roots(self.state, cutoff):
            sweep(self.state, cutoff)
            self._write(Sweep(cutoff=cutoff))

    async def tick(self) -> None:
        """Act on the deadlines that have passed; now and then sweep and snapshot."""
        outgoing: list[Any] = []
        now = self._clock()
        if self.state.is_due(now):
            self.state.tick(now)
            self._write(Tick(now=now))
            outgoing = self._take_outgoing()
        if now - self._last_sweep >= SWEEP_EVERY.total_seconds() * 1000:
            self._sweep(now)
        if self._journal.entries_since_snapshot >= self._snapshot_every:
            self._last_write = self._journal.snapshot(snapshot_of(self.state))
        self._dispatch(outgoing)

    async def _tick_loop(self) -> None:
        while True:
            await self._sleeper(self._tick_seconds)
            await self.tick()
