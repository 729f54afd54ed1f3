"""The webhook: each job's end and each question POSTed, signed, to the operator's URL,
at least once: retried with backoff while the receiver is down, and again after a
kill -9 that fell between the job's end and its delivery."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from resonate.context import Context

from durable_mcp import DurableTools, ask
from durable_mcp.config import ConfigError, Settings, load_settings
from durable_mcp.functions import BUILT_IN
from durable_mcp.functions.weather import OpenMeteoArchive
from durable_mcp.server import create_server
from durable_mcp.store.journal import DB_NAME
from durable_mcp.webhook import RETRY_WAIT_TASK
from durable_mcp_testing.helpers import FAKE_START_MS, FakeTime, call, eventually
from durable_mcp_testing.processes import Server
from durable_mcp_testing.webhook_receiver import WebhookReceiver

SECRET = "a-webhook-secret-of-some-length"
SCHEMA = {"type": "object", "properties": {"go": {"type": "boolean"}}, "required": ["go"]}

talking = DurableTools()


@talking.tool(job_name=lambda name: f"ask_{name}", deadline=timedelta(days=1))
async def approve(ctx: Context, name: str) -> dict[str, Any]:
    return await ask(ctx, f"Go on with {name}?", SCHEMA)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as receiver:
        yield receiver


@pytest.fixture
def server(
    settings: Settings, archive: OpenMeteoArchive, fake_time: FakeTime, receiver: WebhookReceiver
) -> FastMCP:
    hooked = replace(settings, webhook_url=receiver.url, webhook_secret=SECRET)
    return create_server(
        hooked, archive=archive, durable=DurableTools(BUILT_IN, talking), **fake_time.seams
    )


async def test_each_end_and_question_is_posted_signed_with_its_key(
    client: Client[Any], fake_time: FakeTime, receiver: WebhookReceiver
) -> None:
    await call(client, "approve", name="a")
    await receiver.arrived(1)
    (asked,) = receiver.deliveries
    (status,) = await call(client, "probe_status", job_names=["ask_a"])
    assert asked.event == {
        "event": "input_required",
        "key": f"input_required:ask_a:1:{fake_time.now}",
        "job": {key: value for key, value in status.items() if key != "hint"},
    }
    assert asked.signed
    assert asked.headers["Idempotency-Key"] == asked.event["key"]
    assert asked.headers["Content-Type"] == "application/json"

    await call(client, "answer_job", job_name="ask_a", answer={"go": True})
    await call(client, "set_timer", timer_name="tea", seconds=1)
    await fake_time.advance(2, step=0.1)
    await receiver.arrived(3)
    ends = {d.event["job"]["job_name"]: d.event for d in receiver.deliveries[1:]}
    assert ends["ask_a"]["event"] == "completed"
    assert ends["ask_a"]["job"]["result"] == {"go": True}
    assert ends["ask_a"]["key"].startswith("completed:ask_a:")
    assert ends["tea"]["job"]["status"] == "completed"
    assert all(d.signed and d.status == 204 for d in receiver.deliveries)


async def test_a_receiver_that_is_down_gets_the_event_later_and_the_log_says_so_twice(
    client: Client[Any],
    fake_time: FakeTime,
    receiver: WebhookReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="durable_mcp.webhook")
    receiver.fail_with(500, 503, 500)
    await call(client, "set_timer", timer_name="tea", seconds=1)
    await fake_time.advance(1.5, step=0.1)
    await receiver.arrived(1)

    async def retry_due() -> int | None:  # the server has read the failure: time may move
        return fake_time.wake_of(RETRY_WAIT_TASK)

    # Tried again 1, 2 and 4 s after each failure; nothing else waits for it meanwhile.
    assert (await call(client, "set_timer", timer_name="coffee", seconds=60))["status"] == "running"
    for tries, wait in ((2, 1), (3, 2), (4, 4)):
        due_in = await eventually(retry_due) - fake_time.now
        # The first failure was read while the clock moved; since then it waits for us.
        assert due_in == wait * 1000 if tries > 2 else 0 < due_in <= wait * 1000
        await fake_time.advance(due_in / 1000 - 0.1, step=0.1)
        assert receiver.count == tries - 1  # not before its time
        await fake_time.advance(0.1)
        await receiver.arrived(tries)

    async def said_again() -> bool | None:  # the server has read the answer
        return True if "answers again" in caplog.text else None

    await eventually(said_again)
    assert [d.status for d in receiver.deliveries] == [500, 503, 500, 204]
    keys = {d.headers["Idempotency-Key"] for d in receiver.deliveries}
    assert keys == {f"completed:tea:{FAKE_START_MS}"}  # the same event, each time
    lines = [r.getMessage() for r in caplog.records if r.name == "durable_mcp.webhook"]
    assert lines == [
        f"webhook {receiver.url} fails (HTTP 500): 1 event(s) wait, tried again from 1 s "
        "to 5 min apart",
        f"webhook {receiver.url} answers again",
    ]


def outbox_on_disk(data_dir: Path) -> list[str]:
    uri = f"{(data_dir / DB_NAME).resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        return [key for (key,) in db.execute("SELECT key FROM outbox")]


async def test_an_event_cut_off_by_kill_9_is_delivered_after_the_restart(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    server = Server(tmp_path / "data", "http://127.0.0.1:9/unused")
    server.env |= {"DURABLE_MCP_WEBHOOK_URL": receiver.url, "DURABLE_MCP_WEBHOOK_SECRET": SECRET}
    receiver.hold()  # the first delivery never gets its answer
    server.start()
    try:
        async with Client(server.url) as client:
            await call(client, "set_timer", timer_name="tea", seconds=0.2)
        await receiver.arrived(1)
        # The job's end and its event were written in one commit.
        (key,) = outbox_on_disk(server.data_dir)
        assert key.startswith("completed:tea:")
        server.kill()
        receiver.fail_with(503)  # what the dead process would have read
        receiver.release()

        server.start()
        await receiver.arrived(2)

        async def deleted() -> bool | None:  # with a commit at most half a second later
            return True if outbox_on_disk(server.data_dir) == [] else None

        await eventually(deleted)
    finally:
        server.close()
    assert [(e["key"], e["job"]["status"]) for e in receiver.delivered] == [(key, "completed")]
    assert "Traceback" not in (tmp_path / "server.log").read_text()


@pytest.mark.parametrize(
    ("env", "error"),
    [
        (
            {"DURABLE_MCP_WEBHOOK_URL": "http://127.0.0.1:9/hook"},
            "DURABLE_MCP_WEBHOOK_SECRET: required with DURABLE_MCP_WEBHOOK_URL",
        ),
        (
            {
                "DURABLE_MCP_WEBHOOK_URL": "http://127.0.0.1:9/hook",
                "DURABLE_MCP_WEBHOOK_SECRET": "short",
            },
            "DURABLE_MCP_WEBHOOK_SECRET: required with DURABLE_MCP_WEBHOOK_URL, 16 or more",
        ),
        ({"DURABLE_MCP_WEBHOOK_SECRET": SECRET}, "DURABLE_MCP_WEBHOOK_SECRET: set only with"),
        (
            {"DURABLE_MCP_WEBHOOK_URL": "file:///etc/passwd", "DURABLE_MCP_WEBHOOK_SECRET": SECRET},
            "DURABLE_MCP_WEBHOOK_URL: must be an http:// or https:// URL",
        ),
        (
            {
                "DURABLE_MCP_WEBHOOK_URL": "http://127.0.0.1:9/hook",
                "DURABLE_MCP_WEBHOOK_SECRET": SECRET,
                "RESONATE_PG_DSN": "postgresql://localhost/jobs",
            },
            "DURABLE_MCP_WEBHOOK_URL: the webhook is sent from the embedded and memory stores",
        ),
    ],
)
def test_a_bad_webhook_setting_is_refused_naming_it(env: dict[str, str], error: str) -> None:
    with pytest.raises(ConfigError, match=error) as refused:
        load_settings(env)
    assert SECRET not in str(refused.value) and "short" not in str(refused.value)


def readme_receiver_check() -> Any:
    """The README's ``is_from_durable_mcp``, as it is written there."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    start = readme.index("```python\nimport hashlib\nimport hmac\n") + len("```python\n")
    code = readme[start : readme.index("```", start)]
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # our README's own snippet
    return namespace["is_from_durable_mcp"]


async def test_the_readmes_receiver_check_accepts_a_delivery_and_refuses_a_forgery(
    client: Client[Any], fake_time: FakeTime, receiver: WebhookReceiver
) -> None:
    await call(client, "set_timer", timer_name="tea", seconds=1)
    await fake_time.advance(1.5, step=0.1)
    await receiver.arrived(1)
    (delivery,) = receiver.deliveries
    signature = delivery.headers["X-Durable-MCP-Signature"]
    is_from_durable_mcp = readme_receiver_check()
    assert is_from_durable_mcp(SECRET, delivery.body, signature)
    assert not is_from_durable_mcp(SECRET, delivery.body.replace(b"tea", b"tee"), signature)
    assert not is_from_durable_mcp("another-secret-of-some-length", delivery.body, signature)
