"""Owners on Postgres: two replicas, one database, each person's jobs their own on both.

The owner is part of a job's id in the database (``owners.py``), so the
replica that did not start a job enforces it as the one that did.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.helpers import call
from durable_mcp_testing.identity import ADMIN_SCOPE, IdentityProvider
from durable_mcp_testing.postgres_server import needs_schema, replicas_of
from durable_mcp_testing.processes import Server

pytestmark = needs_schema


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    with IdentityProvider() as provider:
        yield provider


@pytest.fixture
def replicas(
    postgres: Any, fake_archive: FakeOpenMeteo, idp: IdentityProvider, tmp_path: Path
) -> Iterator[tuple[Server, Server]]:
    with replicas_of(postgres, fake_archive.url, tmp_path, idp.env()) as both:
        yield both


async def test_a_job_started_on_one_replica_is_not_found_to_another_person_on_the_other(
    replicas: tuple[Server, Server], idp: IdentityProvider
) -> None:
    a, b = replicas
    alice, bob = idp.token("alice"), idp.token("bob")
    async with Client(a.url, auth=alice) as alice_on_a:
        await call(alice_on_a, "set_timer", timer_name="tea", seconds=600)
    async with Client(b.url, auth=bob) as bob_on_b:
        (theirs,) = await call(bob_on_b, "probe_status", job_names=["tea"])
        assert theirs == {"job_name": "tea", "status": "not_found"}
        assert (await call(bob_on_b, "list_jobs"))["jobs"] == []
        cancelled = await call(bob_on_b, "cancel_job", job_name="tea")
        assert cancelled["status"] == "not_found"
        await call(bob_on_b, "set_timer", timer_name="tea", seconds=60)  # his own
    async with Client(b.url, auth=alice) as alice_on_b:
        (mine,) = await call(alice_on_b, "probe_status", job_names=["tea"])
        assert (mine["status"], mine["remaining_seconds"] > 60) == ("running", True)
        assert [j["job_name"] for j in (await call(alice_on_b, "list_jobs"))["jobs"]] == ["tea"]
    async with Client(a.url, auth=idp.token("ops", scopes=[ADMIN_SCOPE])) as admin:
        everyone = (await call(admin, "list_jobs"))["jobs"]
    assert {(j["job_name"], j.get("owner")) for j in everyone} == {
        ("~alice/tea", "alice"),
        ("~bob/tea", "bob"),
    }
