"""The embedded store driven by the SDK's protocol: open, send, crash, and
any request the SDK sends, as hypothesis draws it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import strategies as st
from resonate.error import ServerError
from resonate.testing import FakeClock

from durable_mcp.sdk_compat import ServerState, wrap_response_envelope
from durable_mcp.store import EmbeddedStore

#: Where the stores' fake clocks start, in ms.
START = 1_000_000


def open_store(data_dir: Path, clock: FakeClock, **options: Any) -> EmbeddedStore:
    store = EmbeddedStore(data_dir, pid="p", group="g", clock=clock, **options)
    store.open()
    return store


def crash(store: EmbeddedStore) -> None:
    """Drop the store as a killed process would: no snapshot, no clean stop."""
    store.close()


async def send(store: EmbeddedStore, req: dict[str, Any]) -> Any:
    try:
        return json.loads(await store.send(json.dumps(req)))
    except ServerError as exc:
        return exc.code


def reference_apply(state: ServerState, now: int, req: dict[str, Any]) -> Any:
    """What the SDK's own in-memory state machine answers ``req`` (as ``send`` does)."""
    try:
        response = state.apply(now, req)
    except ServerError as exc:
        return exc.code
    finally:
        state.outgoing.clear()
    return json.loads(msgspec.json.encode(wrap_response_envelope(response)))


IDS = st.sampled_from(["a", "b", "a:1", "b:1"])
TARGET = {"resonate:target": "embedded://any@g"}


def promise_data(draw: Callable[..., Any], now: int) -> dict[str, Any]:
    tags = draw(st.sampled_from([{}, TARGET, {**TARGET, "resonate:timer": "true"}]))
    return {
        "id": draw(IDS),
        "timeoutAt": now + draw(st.sampled_from([0, 50, 1_000, 10**6])),
        "param": {"data": "e30="},
        "tags": tags,
    }


@st.composite
def request(draw: Callable[..., Any], now: int) -> dict[str, Any] | None:
    """A request of any kind the SDK sends, or None for a tick of the clock."""
    kind = draw(
        st.sampled_from(
            [
                "tick",
                "promise.create",
                "promise.settle",
                "promise.get",
                "promise.register_listener",
                "task.create",
                "task.acquire",
                "task.release",
                "task.fulfill",
                "task.suspend",
                "task.fence",
                "task.heartbeat",
                "bogus.kind",
            ]
        )
    )
    state = draw(st.sampled_from(["resolved", "rejected", "rejected_canceled"]))
    version = draw(st.integers(0, 3))
    pid = draw(st.sampled_from(["p", "q"]))
    match kind:
        case "tick":
            return None
        case "promise.create":
            return {"kind": kind, **promise_data(draw, now)}
        case "promise.settle":
            return {"kind": kind, "id": draw(IDS), "state": state, "value": {}}
        case "promise.get":
            return {"kind": kind, "id": draw(IDS)}
        case "promise.register_listener":
            return {"kind": kind, "awaited": draw(IDS), "address": "embedded://uni@g/p"}
        case "task.create":
            action = {"kind": "promise.create", "data": promise_data(draw, now)}
            return {"kind": kind, "pid": pid, "ttl": 500, "action": action}
        case "task.acquire":
            return {"kind": kind, "id": draw(IDS), "version": version, "pid": pid, "ttl": 500}
        case "task.release" | "task.fulfill":
            settle = {"data": {"id": draw(IDS), "state": state, "value": {}}}
            return {"kind": kind, "id": draw(IDS), "version": version, "action": settle}
        case "task.suspend":
            awaited = [{"data": {"awaited": draw(IDS), "awaiter": "x"}}]
            return {"kind": kind, "id": draw(IDS), "version": version, "actions": awaited}
        case "task.fence":
            inner = draw(st.sampled_from(["promise.create", "promise.settle"]))
            data = (
                promise_data(draw, now)
                if inner == "promise.create"
                else {"id": draw(IDS), "state": state, "value": {}}
            )
            action = {"kind": inner, "data": data}
            return {"kind": kind, "id": draw(IDS), "version": version, "action": action}
        case "task.heartbeat":
            return {"kind": kind, "pid": pid, "tasks": [{"id": draw(IDS), "version": version}]}
    return {"kind": kind, "id": draw(IDS)}


@st.composite
def histories(draw: Callable[..., Any]) -> list[tuple[int, dict[str, Any] | None]]:
    """A run of requests (None: a tick), each at its time, from ``START`` on."""
    now, steps = START, []
    for _ in range(draw(st.integers(1, 40))):
        now += draw(st.sampled_from([0, 1, 30, 600, 40_000]))
        steps.append((now, draw(request(now))))
    return steps
