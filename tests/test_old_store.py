"""A data dir written by an earlier release opens with today's code, every job intact.

``tests/data/store_28f21d6/`` was written by ``durable_mcp_testing.old_store``
at commit 28f21d6 (before owners): a timer still running, one completed, one
cancelled, a weather job completed with its result and one failed. Its
``expected.json`` is what that code answered for each job. Opened on a copy,
at a moment shortly after it was written (fake time), today's server answers
the same: with no sign-in, also once its ended jobs have left memory for the
archive; and, signed in, to the admin. A signed-in person who is not the
admin sees none of those jobs (they belong to the single owner).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from durable_mcp.config import Settings
from durable_mcp.server import create_server
from durable_mcp_testing.crashes import store_of
from durable_mcp_testing.helpers import FAKE_START_MS, STORE_TICK, FakeTime, call
from durable_mcp_testing.identity import ADMIN_SCOPE, IdentityProvider
from durable_mcp_testing.processes import free_port
from durable_mcp_testing.served import serving

OLD_STORE = Path(__file__).parent / "data" / "store_28f21d6"
EXPECTED: dict[str, Any] = json.loads((OLD_STORE / "expected.json").read_text())


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(OLD_STORE, copy)
    (copy / "expected.json").unlink()
    return copy


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime(FAKE_START_MS + 3_600_000)  # an hour after the store was written


async def answers(client: Client[Any]) -> dict[str, Any]:
    """Each job's status, kind, error type and result, as ``expected.json`` has them."""
    found = {}
    for status in await call(client, "probe_status", job_names=sorted(EXPECTED)):
        entry = {"status": status["status"], "kind": status.get("kind")}
        if "error" in status:
            entry["error"] = status["error"]["type"]
        found[status["job_name"]] = entry
    results = await call(client, "await_result", job_names=sorted(EXPECTED), timeout_seconds=0)
    for name, entry in found.items():
        if entry["status"] == "completed":
            entry["result"] = results[name]
    return found


async def test_every_job_of_the_old_store_answers_as_it_did(
    data_dir: Path, fake_time: FakeTime
) -> None:
    settings = Settings(store="embedded", data_dir=data_dir, await_max_seconds=1)
    mcp = create_server(settings, **fake_time.seams)
    async with Client(mcp) as client:
        assert await answers(client) == EXPECTED
        listed = await call(client, "list_jobs")
        assert {job["job_name"] for job in listed["jobs"]} == set(EXPECTED)
        # Its ended jobs then leave memory for the archive, and answer the same from there.
        await fake_time.advance(1, step=STORE_TICK)
        assert {p for p in store_of(mcp).state.promises if ":" not in p} == {"long bake"}
        assert await answers(client) == EXPECTED
        listed = await call(client, "list_jobs")
        assert {job["job_name"] for job in listed["jobs"]} == set(EXPECTED)


async def test_signed_in_the_old_jobs_are_the_single_owners_the_admin_sees_them(
    data_dir: Path, fake_time: FakeTime
) -> None:
    with IdentityProvider() as idp:
        settings = Settings(store="embedded", data_dir=data_dir, port=free_port(), **idp.settings())
        mcp = create_server(settings, **fake_time.seams)
        async with serving(mcp, settings) as url:
            admin = Client(f"{url}/mcp", auth=idp.token("ops", scopes=[ADMIN_SCOPE]))
            async with admin:
                assert await answers(admin) == EXPECTED
            async with Client(f"{url}/mcp", auth=idp.token("alice")) as alice:
                assert (await call(alice, "list_jobs"))["jobs"] == []
                statuses = await call(alice, "probe_status", job_names=sorted(EXPECTED))
                assert {s["status"] for s in statuses} == {"not_found"}
