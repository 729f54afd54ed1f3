"""What we take from the SDK's insides still holds (see ``durable_mcp/sdk_compat.py``).

resonate-sdk and resonate-pg are pinned exactly. A test here that fails after
an upgrade names a name, a signature, a field or a behaviour that changed:
revisit the item of that name in ``sdk_compat``'s docstring before the pin.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import os
import pathlib
import pickle
from typing import Any

import msgspec
import pytest
import resonate.core
import resonate.heartbeat
import resonate.observability
import resonate.resonate
from psycopg_pool import AsyncConnectionPool
from resonate.context import Context
from resonate.error import ServerError
from resonate.observability import BackgroundTaskFailed, Dropped, Event
from resonate.retry import Never
from resonate_pg import PostgresConnection, PsycopgSessions

from durable_mcp import sdk_compat
from durable_mcp.config import Settings
from durable_mcp.engine import build_engine
from durable_mcp.postgres import CheckedSessions, PostgresEngine, ReconnectingPool
from durable_mcp.sdk_compat import (
    CONFLICT_TEXT,
    CORE_LOGGER,
    OBSERVER_LOGGER,
    PERIODIC_LOGGERS,
    PROCESS_TIMEOUTS_SQL,
    RPC_SQL,
    AsyncHeartbeat,
    Codec,
    DurablePromise,
    LocalConnection,
    NoopEncryptor,
    OutgoingMessage,
    PTimeout,
    ScheduleStub,
    Sender,
    ServerState,
    Task,
    Transport,
    TTimeout,
    error_of,
    execute_task_id,
    extract_action_data,
    outbox_channel,
    parse_promise,
    pickled_class,
    quiet_observer,
    unwrap_request_envelope,
    without_null_values,
    wrap_response_envelope,
)
from durable_mcp.store.memory import MemoryStore
from durable_mcp.store.state import IndexedState


def parameters(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


# ── the state machine the embedded store runs ──────────────────────────────

#: ServerState's methods IndexedState overrides, each called as the SDK calls it.
OVERRIDDEN = (
    "apply",
    "task_create",
    "task_suspend",
    "preload",
    "enqueue_settle",
    "send_execute_message",
    "set_p_timeout",
    "del_p_timeout",
    "set_t_timeout",
    "del_t_timeout",
)


@pytest.mark.parametrize("method", OVERRIDDEN)
def test_server_state_still_has_each_method_we_override_with_our_arguments(method: str) -> None:
    ours, sdks = getattr(IndexedState, method), getattr(ServerState, method)
    assert ours is not sdks
    assert parameters(ours) == parameters(sdks)


def test_local_connection_still_dispatches_through_the_method_the_memory_store_overrides() -> None:
    ours, sdks = MemoryStore._dispatch_messages, LocalConnection._dispatch_messages
    assert ours is not sdks
    assert parameters(ours) == parameters(sdks)
    # Called after each request and each tick (tests/test_job_changes.py checks both ways).
    assert "_dispatch_messages" in inspect.getsource(LocalConnection.send)
    assert "_dispatch_messages" in inspect.getsource(LocalConnection._tick_loop)


def test_server_state_keeps_the_fields_we_snapshot_and_index() -> None:
    assert set(vars(ServerState())) == {
        "promises",
        "tasks",
        "schedules",
        "p_timeouts",
        "t_timeouts",
        "outgoing",
    }


@pytest.mark.parametrize(
    ("struct", "fields"),
    [
        (
            DurablePromise,
            (
                "id",
                "state",
                "param",
                "value",
                "tags",
                "timeout_at",
                "created_at",
                "settled_at",
                "awaiters",
                "subscribers",
            ),
        ),
        (Task, ("id", "state", "version", "pid", "ttl", "resumes")),
        (
            ScheduleStub,
            (
                "id",
                "cron",
                "promise_id",
                "promise_timeout",
                "promise_param",
                "promise_tags",
                "created_at",
            ),
        ),
        (PTimeout, ("id", "timeout")),
        (TTimeout, ("id", "typ", "timeout")),
        (OutgoingMessage, ("address", "message")),
    ],
)
def test_the_structs_our_snapshots_hold_keep_their_fields(
    struct: type[msgspec.Struct], fields: tuple[str, ...]
) -> None:
    # Snapshots on disk hold these field by field: a change must not go unnoticed.
    assert struct.__struct_fields__ == fields


def test_requests_are_unwrapped_and_responses_wrapped_as_the_store_expects() -> None:
    request = {"kind": "promise.get", "head": {"corrId": "c1"}, "data": {"id": "job"}}
    assert unwrap_request_envelope(request) == {"id": "job", "kind": "promise.get", "corrId": "c1"}
    response = wrap_response_envelope({"kind": "promise.get", "corrId": "c1", "status": 404})
    assert response["kind"] == "promise.get"
    assert response["head"]["corrId"] == "c1"
    assert response["head"]["status"] == 404
    assert response["data"] == {}


def test_execute_messages_and_actions_are_read_as_the_index_reads_them() -> None:
    execute = {"kind": "execute", "data": {"task": {"id": "job", "version": 2}}}
    assert execute_task_id(execute) == "job"
    assert execute_task_id({"kind": "unblock", "data": {}}) is None
    assert extract_action_data({"kind": "promise.register", "data": {"awaited": "a"}}) == {
        "awaited": "a"
    }
    assert extract_action_data({"awaited": "a"}) == {"awaited": "a"}


def test_the_sdks_upsert_of_an_execute_message_is_what_ours_replaces() -> None:
    sdk, ours = ServerState(), IndexedState()
    for state in (sdk, ours):
        state.send_execute_message("a1", "job", 1)
        state.send_execute_message("a2", "job", 2)
    assert sdk.outgoing == ours.outgoing
    assert [m.message["data"]["task"]["version"] for m in sdk.outgoing] == [2]


def test_a_promise_read_from_the_state_parses_and_decodes_as_a_response() -> None:
    value = Codec(NoopEncryptor()).encode({"answer": 42})
    promise = DurablePromise(
        id="job",
        state="resolved",
        param={},
        value={"headers": None, "data": value.data},
        tags={},
        timeout_at=10,
        created_at=1,
        settled_at=5,
        awaiters=set(),
        subscribers=set(),
    )
    record = Codec(NoopEncryptor()).decode_promise(parse_promise({"promise": promise.to_record()}))
    assert (record.id, record.state, record.settled_at) == ("job", "resolved", 5)
    assert record.value.data == {"answer": 42}


# ── pushed messages ────────────────────────────────────────────────────────


class OneSource:
    """A push channel of one message, for the SDK's Transport."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def recv(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def push(self, message: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback(msgspec.json.encode(message).decode())


def unblock_of_a_timed_out_job() -> dict[str, Any]:
    promise = {
        "id": "job",
        "state": "rejected_timedout",
        "param": {"headers": None, "data": None},
        "value": None,
        "tags": {},
        "timeoutAt": 10,
        "createdAt": 1,
        "settledAt": 10,
    }
    return {"kind": "unblock", "data": {"promise": promise}}


def received(message: dict[str, Any]) -> tuple[list[Any], list[Event]]:
    source, got, events = OneSource(), list[Any](), list[Event]()
    transport = Transport(object(), (source,), events.append)  # type: ignore[arg-type]
    transport.recv(got.append)
    source.push(message)
    return got, events


def test_the_sdks_push_parser_still_drops_an_unblock_with_a_null_value() -> None:
    # If this fails, the SDK reads null itself: without_null_values can go.
    got, events = received(unblock_of_a_timed_out_job())
    assert got == []
    assert [type(e) for e in events] == [Dropped]


def test_without_null_values_the_unblock_reaches_the_sdk() -> None:
    got, events = received(without_null_values(unblock_of_a_timed_out_job()))
    assert [m.promise.state for m in got] == ["rejected_timedout"]
    assert events == []


# ── a refused request, and the SDK's logs ──────────────────────────────────


def test_a_refused_request_reads_as_the_text_the_observer_matches() -> None:
    # A background task's failure reaches the observer as str(exc), nothing more.
    assert CONFLICT_TEXT in str(ServerError(409, "task not in pending state"))
    assert CONFLICT_TEXT not in str(ServerError(500, "boom"))


def test_the_observer_quiets_a_409_and_the_expected_text_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    observe = quiet_observer("store stopped")
    observe(BackgroundTaskFailed(cause=str(ServerError(409, "task not in pending state"))))
    observe(BackgroundTaskFailed(cause="store stopped, retry later"))
    observe(BackgroundTaskFailed(cause=str(ServerError(500, "boom"))))
    assert [(r.name, r.levelno) for r in caplog.records] == [
        ("durable_mcp.sdk_compat", logging.DEBUG),
        ("durable_mcp.sdk_compat", logging.DEBUG),
        (OBSERVER_LOGGER, logging.ERROR),
    ]


def test_the_sdks_loggers_we_filter_still_have_their_names() -> None:
    assert resonate.core.logger.name == CORE_LOGGER
    assert resonate.observability.logger.name == OBSERVER_LOGGER
    assert (resonate.resonate.logger.name, resonate.heartbeat.logger.name) == PERIODIC_LOGGERS


# ── the heartbeat the engine builds ────────────────────────────────────────


async def test_the_heartbeat_is_built_with_the_arguments_the_engine_passes() -> None:
    assert parameters(AsyncHeartbeat) == ["pid", "interval_ms", "sender", "sleeper"]
    assert parameters(Sender) == ["transport", "auth", "corr_id", "observer"]
    assert parameters(Transport) == ["network", "sources", "observer"]
    beat = AsyncHeartbeat("p", 1000, Sender(Transport(object(), ()), None))  # type: ignore[arg-type]
    beat.start("job", 1)
    beat.start("job", 2)
    beat.stop("job")
    # One entry per task id: an old run's stop stops the new run's beats too,
    # which is why RunCountingHeartbeat counts runs.
    assert beat.active_tasks == {}
    beat.shutdown()


# ── Postgres ───────────────────────────────────────────────────────────────


def test_resonate_pgs_sql_and_channel_are_what_our_loops_run() -> None:
    assert RPC_SQL == "SELECT resonate.resonate_rpc(%s::text::jsonb)::text"
    assert PROCESS_TIMEOUTS_SQL == "SELECT resonate.process_timeouts()"
    assert "RPC_SQL" in inspect.getsource(PostgresConnection.send)  # what our send mirrors
    channel = outbox_channel("poll://uni@group/pid")
    assert channel.startswith("resonate_q_")
    assert len(channel) == len("resonate_q_") + 32
    listen_once = inspect.getsource(PostgresConnection._listen_once)
    assert "outbox_channel(address)" in listen_once  # what our _listen_on mirrors


def test_the_postgres_connection_keeps_the_private_parts_our_engine_uses() -> None:
    engine = PostgresEngine("postgresql://u@127.0.0.1:9/db", pid="p", group="g")
    for attribute in ("_sessions", "_running", "_stopped", "_sleeper", "_unicast", "_anycast"):
        assert attribute in vars(engine), attribute
    assert isinstance(engine._wake, asyncio.Event)
    for method in ("_drain", "_listen_loop", "_listen_once"):
        assert parameters(getattr(PostgresConnection, method)) == ["self"], method
    assert PostgresEngine._drain is not PostgresConnection._drain
    assert PostgresEngine._listen_loop is not PostgresConnection._listen_loop


def test_the_sessions_keep_the_private_parts_our_pool_uses() -> None:
    sessions = PsycopgSessions("postgresql://u@127.0.0.1:9/db", min_size=1, max_size=3)
    assert (sessions._conninfo, sessions._min_size, sessions._max_size) == (
        "postgresql://u@127.0.0.1:9/db",
        1,
        3,
    )
    assert sessions._pool is None
    assert isinstance(sessions._lock, asyncio.Lock)
    assert parameters(PsycopgSessions._ensure_pool) == parameters(CheckedSessions._ensure_pool)
    assert CheckedSessions._ensure_pool is not PsycopgSessions._ensure_pool


def test_the_pool_keeps_the_methods_our_pool_overrides() -> None:
    for method in ("_connect", "schedule_task"):
        ours, theirs = getattr(ReconnectingPool, method), getattr(AsyncConnectionPool, method)
        assert ours is not theirs
        assert parameters(ours) == parameters(theirs), method


def test_postgres_names_come_on_first_use_and_unknown_names_fail() -> None:
    assert sdk_compat.RPC_SQL == RPC_SQL
    with pytest.raises(AttributeError):
        _ = sdk_compat.no_such_name


# ── a failed job's error ───────────────────────────────────────────────────


class GaugeBrokenError(Exception):
    """A failure of our own kind, as a durable function raises one."""


def broken_gauge(ctx: Context, reading: int) -> int:
    raise GaugeBrokenError(f"reading {reading} is off the scale")


async def test_error_of_reads_a_real_failed_jobs_type_and_message() -> None:
    resonate = build_engine(Settings(store="memory")).resonate
    resonate.register(broken_gauge, retry_policy=Never())
    resonate.start()
    try:
        handle = resonate.run("gauge", broken_gauge, 7)
        with pytest.raises(GaugeBrokenError):
            await asyncio.wait_for(handle.result(), timeout=30)
        record = await resonate.promises.get("gauge")
    finally:
        await resonate.stop()
    assert record.state == "rejected"
    assert "__py_pickle" in (record.value.data or "")  # what the SDK stores beside the message
    assert error_of(record.value.data) == {
        "type": "GaugeBrokenError",
        "message": "reading 7 is off the scale",
    }


def stored_error(exc: BaseException, *, protocol: int | None = None) -> dict[str, str]:
    pickled = pickle.dumps(exc, protocol=protocol)
    return {"message": str(exc), "__py_pickle": base64.b64encode(pickled).decode()}


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_error_of_reads_the_type_at_every_pickle_protocol(protocol: int) -> None:
    value = stored_error(KeyError({"nested": object.__name__}), protocol=protocol)
    assert error_of(value)["type"] == "KeyError"


def test_error_of_reads_a_nested_exception_class() -> None:
    class Inner(ValueError):
        pass

    globals()["Holder"] = type("Holder", (), {"Inner": Inner})
    Inner.__qualname__ = "Holder.Inner"
    try:
        assert pickled_class(stored_error(Inner("x"))["__py_pickle"]) == (__name__, "Holder.Inner")
        assert error_of(stored_error(Inner("x"))) == {"type": "Inner", "message": "x"}
    finally:
        del globals()["Holder"]


class Touch:
    """Unpickled, it creates a file: proof that a pickle ran."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.path,))


def test_error_of_never_runs_a_malicious_pickle(tmp_path: pathlib.Path) -> None:
    ran = tmp_path / "ran"
    pickled = pickle.dumps(Touch(ran))
    value = {"message": "boom", "__py_pickle": base64.b64encode(pickled).decode()}
    assert error_of(value) == {"type": "Error", "message": "boom"}
    assert not ran.exists()
    pickle.loads(pickled)
    assert ran.exists()


def test_error_of_never_imports_a_module_a_pickle_names() -> None:
    pickled = b"cnot_a_loaded_module\nBoomError\n(tR."  # GLOBAL, then a call
    value = {"message": "boom", "__py_pickle": base64.b64encode(pickled).decode()}
    assert pickled_class(value["__py_pickle"]) == ("not_a_loaded_module", "BoomError")
    assert error_of(value) == {"type": "Error", "message": "boom"}


@pytest.mark.parametrize(
    "pickled",
    [
        "not base64!",
        base64.b64encode(b"garbage").decode(),
        base64.b64encode(pickle.dumps(os.system)).decode(),  # a global, not an exception
    ],
)
def test_error_of_reads_error_where_no_exception_class_is_named(pickled: str) -> None:
    assert error_of({"message": "m", "__py_pickle": pickled}) == {"type": "Error", "message": "m"}


def test_error_of_reads_any_other_value_as_its_text() -> None:
    assert error_of("plain") == {"type": "Error", "message": "plain"}
    assert error_of({"message": "no pickle"}) == {"type": "Error", "message": "no pickle"}
