"""Many people on one server: sign-in with JWTs, and each job visible only to its owner.

The server runs in-process on 127.0.0.1 with sign-in on (FastMCP's verifier,
the test identity provider's key), on fake time, on both stores; alice, bob
and the admin call it over HTTP with their own JWTs, as a person's client
would. Each test asserts what a caller is answered: another person's job is
``not_found`` (or "no job", or "Task not found") exactly as a job that does
not exist, with the same text.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastmcp import Client
from fastmcp.client.auth.client_credentials import ClientCredentialsOAuthProvider
from fastmcp.client.transports import StdioTransport
from fastmcp.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from resonate.context import Context

from durable_mcp import ask
from durable_mcp.config import Settings
from durable_mcp.functions import BUILT_IN
from durable_mcp.functions.weather import OpenMeteoArchive
from durable_mcp.jobs.registry import DurableTools
from durable_mcp.jobs.service import Jobs
from durable_mcp.server import TOOLS, create_server
from durable_mcp_testing.helpers import FakeTime, call
from durable_mcp_testing.identity import ADMIN_SCOPE, IdentityProvider, unsigned_token
from durable_mcp_testing.processes import free_port
from durable_mcp_testing.served import serving
from durable_mcp_testing.tasks_client import TasksOptIn, start_task, task_method

PROXY = str(Path(__file__).parent.parent / "proxy.py")

#: The subjects: an e-mail, and one with a ':' (kept percent-encoded in the ids).
ALICE, BOB = "alice@example.com", "bob:7"

SCHEMA = {"type": "object", "properties": {"go": {"type": "boolean"}}, "required": ["go"]}

asking = DurableTools()


@asking.tool(job_name=lambda name: f"ask_{name}", deadline=timedelta(days=7))
async def approve(ctx: Context, name: str) -> dict[str, Any]:
    """Asks whether to go on; returns the answer."""
    return await ask(ctx, f"Go on with {name}?", SCHEMA)


class Team:
    """The server under test, its identity provider, and its people's clients."""

    def __init__(self, url: str, idp: IdentityProvider, jobs: Jobs, fake_time: FakeTime) -> None:
        self.url = url
        self.idp = idp
        self.jobs = jobs
        self.time = fake_time
        self.tokens = {
            ALICE: idp.token(ALICE),
            BOB: idp.token(BOB),
            "admin": idp.token("ops", scopes=[ADMIN_SCOPE]),
        }

    def client(self, who: str, *, tasks: bool = False) -> Client[Any]:
        extensions = [TasksOptIn()] if tasks else []
        return Client(f"{self.url}/mcp", auth=self.tokens[who], extensions=extensions)

    def http(self, who: str | None = None) -> httpx2.AsyncClient:
        headers = {"authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx2.AsyncClient(base_url=self.url, headers=headers)


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    with IdentityProvider({"alice-laptop": "s3cret-for-alice"}) as provider:
        yield provider


@pytest.fixture
async def team(
    settings: Settings, idp: IdentityProvider, archive: OpenMeteoArchive, fake_time: FakeTime
) -> AsyncIterator[Team]:
    signed_in = Settings(
        store=settings.store,
        data_dir=settings.data_dir,
        await_max_seconds=5,
        port=free_port(),
        rate_limit=1000,
        max_running_jobs_per_owner=3,
        **idp.settings(),
    )
    layer: list[Jobs] = []
    mcp = create_server(
        signed_in,
        archive=archive,
        durable=DurableTools(BUILT_IN, asking),
        tools=[*TOOLS, lambda mcp, jobs: layer.append(jobs)],
        **fake_time.seams,
    )
    async with serving(mcp, signed_in) as url:
        yield Team(url, idp, layer[0], fake_time)


async def error_of(client: Client[Any], tool: str, **arguments: object) -> str:
    with pytest.raises(ToolError) as refused:
        await call(client, tool, **arguments)
    return str(refused.value)


async def test_two_people_who_each_set_tea_get_two_jobs_and_see_only_their_own(
    team: Team,
) -> None:
    async with team.client(ALICE) as alice, team.client(BOB) as bob:
        await call(alice, "set_timer", timer_name="tea", seconds=60)
        # Other arguments, same name: bob's own new job, not a conflict with alice's.
        await call(bob, "set_timer", timer_name="tea", seconds=300)
        (alices,) = await call(alice, "probe_status", job_names=["tea"])
        (bobs,) = await call(bob, "probe_status", job_names=["tea"])
        assert (alices["job_name"], alices["remaining_seconds"]) == ("tea", 60)
        assert (bobs["job_name"], bobs["remaining_seconds"]) == ("tea", 300)

        await call(bob, "cancel_job", job_name="tea")
        (alices,) = await call(alice, "probe_status", job_names=["tea"])
        assert alices["status"] == "running"
        assert [j["job_name"] for j in (await call(alice, "list_jobs"))["jobs"]] == ["tea"]
        listed = (await call(bob, "list_jobs"))["jobs"]
        assert [(j["job_name"], j["status"]) for j in listed] == [("tea", "cancelled")]

    async with team.client("admin") as admin:
        everyone = (await call(admin, "list_jobs"))["jobs"]
    assert {(j["job_name"], j.get("owner")) for j in everyone} == {
        ("~alice@example.com/tea", ALICE),
        ("~bob%3A7/tea", BOB),
    }


async def test_another_persons_job_is_answered_as_one_that_does_not_exist(team: Team) -> None:
    """Every job tool, with the same text: only the name differs, and it is the caller's."""
    async with team.client(ALICE) as alice, team.client(BOB) as bob:
        await call(alice, "set_timer", timer_name="secret", seconds=600)
        await call(alice, "approve", name="plan")
        await team.time.turns()
        (asked,) = await call(alice, "probe_status", job_names=["ask_plan"])
        assert asked["status"] == "input_required"

        def renamed(answer: Any, name: str, never: str) -> str:
            """``answer`` about alice's ``name`` as if about ``never``; it never names her."""
            text = json.dumps(answer)
            assert ALICE not in text and "alice" not in text
            return text.replace(name, never)

        for name, never in (("secret", "nosuch"), ("ask_plan", "ask_nope")):
            answered: tuple[tuple[str, dict[str, Any]], ...] = (
                ("probe_status", {"job_names": [name]}),
                ("await_result", {"job_names": [name], "timeout_seconds": 0}),
                ("cancel_job", {"job_name": name}),
                ("get_timer_status", {"timer_name": name}),
            )
            for tool, arguments in answered:
                theirs = await call(bob, tool, **arguments)
                missing = await call(
                    bob, tool, **json.loads(json.dumps(arguments).replace(name, never))
                )
                assert renamed(theirs, name, never) == json.dumps(missing), (tool, theirs)
            refused: tuple[tuple[str, dict[str, Any]], ...] = (
                ("answer_job", {"job_name": name, "answer": {"go": True}}),
                ("list_jobs", {"cursor": name}),
            )
            for tool, arguments in refused:
                theirs = await error_of(bob, tool, **arguments)
                missing = await error_of(
                    bob, tool, **json.loads(json.dumps(arguments).replace(name, never))
                )
                assert theirs.replace(name, never) == missing, (tool, theirs)
        # Bob's own "secret" is a new job of his: alice's is neither a conflict nor touched.
        started = await call(bob, "set_timer", timer_name="secret", seconds=5)
        assert started["status"] == "running"
        statuses = await call(alice, "probe_status", job_names=["secret", "ask_plan"])
        assert [s["status"] for s in statuses] == ["running", "input_required"]
        assert statuses[0]["remaining_seconds"] == 600
        assert [j["job_name"] for j in (await call(bob, "list_jobs"))["jobs"]] == ["secret"]


async def test_tasks_are_their_owners_only(team: Team) -> None:
    async with team.client(ALICE, tasks=True) as alice, team.client(BOB, tasks=True) as bob:
        task = await start_task(alice, "approve", name="trip")
        await team.time.turns()
        assert (await task_method(alice, "tasks/get", task["taskId"]))["status"] == (
            "input_required"
        )
        refusals = {}
        for method in ("tasks/get", "tasks/cancel", "tasks/update"):
            for task_id in (task["taskId"], "ask_never"):
                with pytest.raises(MCPError) as refused:
                    await task_method(bob, method, task_id, {"ask_trip:1": {"action": "accept"}})
                refusals[method, task_id] = str(refused.value).replace(task_id, "<id>")
            assert refusals[method, task["taskId"]] == refusals[method, "ask_never"]
        assert refusals["tasks/get", "ask_never"] == "Task '<id>' not found"
        # Bob's own task of that name is his, and alice's still waits.
        mine = await start_task(bob, "approve", name="trip")
        assert mine["taskId"] == "ask_trip"
        assert (await task_method(alice, "tasks/get", "ask_trip"))["status"] == "input_required"


async def test_the_jobs_page_and_metrics_show_each_person_their_own(team: Team) -> None:
    async with team.client(ALICE) as alice, team.client(BOB) as bob:
        await call(alice, "set_timer", timer_name="tea", seconds=60)
        await call(alice, "approve", name="plan")
        await call(bob, "set_timer", timer_name="bread", seconds=60)
        await team.time.turns()
    async with team.http(BOB) as page:
        listed = (await page.get("/jobs/api/jobs")).json()["jobs"]
        assert [j["job_name"] for j in listed] == ["bread"]
        one = (await page.get("/jobs/api/job/tea")).json()
        assert one["job"]["status"] == "not_found" and one["steps"] == []
        refused = await page.post(
            "/jobs/api/cancel",
            json={"job_name": "tea"},
            headers={"origin": team.url, "x-csrf-token": "wrong"},
        )
        assert refused.status_code == 403
        metrics = (await page.get("/metrics")).text
    # Bob's scrape: his own running timer, and nothing that counts anyone else's.
    assert 'durable_mcp_jobs{kind="timer",status="running"} 1.0' in metrics
    assert "approve" not in metrics and "started_total" not in metrics
    async with team.http("admin") as admin:
        metrics = (await admin.get("/metrics")).text
        assert 'durable_mcp_jobs{kind="timer",status="running"} 2.0' in metrics
        assert 'durable_mcp_jobs{kind="approve",status="input_required"} 1.0' in metrics
        assert 'durable_mcp_jobs_started_total{kind="timer"} 2.0' in metrics
        names = {j["job_name"] for j in (await admin.get("/jobs/api/jobs")).json()["jobs"]}
        assert names == {"~alice@example.com/tea", "~alice@example.com/ask_plan", "~bob%3A7/bread"}
    async with team.http() as nobody:
        assert (await nobody.get("/jobs/api/jobs")).status_code == 401
        assert (await nobody.get("/metrics")).status_code == 401


async def test_a_person_logs_in_to_the_jobs_page_with_their_token_and_acts_on_their_jobs(
    team: Team,
) -> None:
    async with team.client(ALICE) as alice:
        await call(alice, "set_timer", timer_name="tea", seconds=60)
    async with team.http() as browser:
        origin = {"origin": team.url}
        wrong = await browser.post("/jobs/login", json={"token": "nope"}, headers=origin)
        assert wrong.status_code == 401
        logged_in = await browser.post(
            "/jobs/login", json={"token": team.tokens[ALICE]}, headers=origin
        )
        assert logged_in.status_code == 200
        assert (
            team.tokens[ALICE] not in (await browser.get("/jobs")).text
        )  # HttpOnly, not in the page
        csrf = re.search(r'name="csrf" content="([0-9a-f]+)"', (await browser.get("/jobs")).text)
        assert csrf is not None
        cancelled = await browser.post(
            "/jobs/api/cancel", json={"job_name": "tea"}, headers=origin | {"x-csrf-token": csrf[1]}
        )
        assert cancelled.json()["job"]["status"] == "cancelled"


async def test_the_running_jobs_cap_is_counted_per_person(team: Team) -> None:
    async with team.client(ALICE) as alice, team.client(BOB) as bob:
        for n in range(3):
            await call(alice, "set_timer", timer_name=f"t{n}", seconds=60)
        refused = await error_of(alice, "set_timer", timer_name="t3", seconds=60)
        assert refused.startswith("busy: 3 jobs of yours are running")
        # Bob is not held back by alice's jobs; attaching to one of hers is never refused.
        await call(bob, "set_timer", timer_name="t0", seconds=60)
        assert (await call(alice, "set_timer", timer_name="t0", seconds=60))["status"] == "running"


@pytest.mark.parametrize(
    "bad",
    ["expired", "wrong audience", "wrong issuer", "unsigned", "garbage", "no subject"],
)
async def test_a_bad_token_gets_401_creates_nothing_and_is_not_logged(
    team: Team, bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    idp = team.idp
    token = {
        "expired": idp.token(ALICE, expires_in=-60),
        "wrong audience": idp.token(ALICE, audience="another-server"),
        "wrong issuer": idp.token(ALICE, issuer="https://elsewhere.example.com"),
        "unsigned": unsigned_token(ALICE, idp.issuer),
        "garbage": "not.a.jwt",
        "no subject": idp.token("", scopes=[ADMIN_SCOPE]),
    }[bad]
    call_tool = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "set_timer", "arguments": {"timer_name": "tea", "seconds": 5}},
    }
    caplog.set_level(logging.DEBUG)
    async with team.http() as http:
        answer = await http.post(
            "/mcp",
            json=call_tool,
            headers={"authorization": f"Bearer {token}", "accept": "application/json"},
        )
        page = await http.get("/jobs/api/jobs", headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and "resource_metadata=" in challenge
    assert page.status_code == 401
    async with team.client("admin") as admin:
        assert (await call(admin, "list_jobs"))["jobs"] == []
    for record in caplog.records:
        assert token not in record.getMessage()
        assert record.levelno < logging.WARNING, record.getMessage()


async def test_a_client_signs_in_by_itself_through_the_protected_resource_metadata(
    team: Team,
) -> None:
    async with team.http() as http:
        for path in (
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-protected-resource",
        ):
            metadata = (await http.get(path)).json()
            assert metadata["authorization_servers"] == [team.idp.issuer]  # as given: no "/" added
            assert metadata["resource"] == f"{team.url}/mcp"
    # FastMCP's own client: the 401 names the metadata, the metadata the authorization
    # server, whose token endpoint gives it a JWT; its job is then the client's own.
    signing_in = ClientCredentialsOAuthProvider(
        client_id="alice-laptop", client_secret="s3cret-for-alice", issuer=team.idp.issuer
    )
    async with Client(f"{team.url}/mcp", auth=signing_in) as client:
        await call(client, "set_timer", timer_name="tea", seconds=60)
    assert team.idp.issued == ["alice-laptop"]
    async with team.client("admin") as admin:
        (job,) = (await call(admin, "list_jobs"))["jobs"]
    assert (job["job_name"], job["owner"]) == ("~alice-laptop/tea", "alice-laptop")


def test_the_single_token_and_sign_in_are_one_or_the_other(tmp_path: Path) -> None:
    from durable_mcp.config import ConfigError, load_settings

    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n")
    sign_in = {"DURABLE_MCP_JWT_PUBLIC_KEY": str(key), "DURABLE_MCP_AUTH_SERVER": "https://idp"}
    loaded = load_settings(sign_in)
    assert loaded.signs_in and loaded.jwt_public_key == key.read_text()
    assert loaded.running_jobs_per_owner == 1000  # a tenth of 10,000
    for env, message in (
        (
            sign_in | {"DURABLE_MCP_TOKEN": "x" * 32},
            "DURABLE_MCP_TOKEN and DURABLE_MCP_JWT_PUBLIC_KEY: choose one",
        ),
        (
            {"DURABLE_MCP_JWT_ISSUER": "https://idp"},
            "DURABLE_MCP_JWT_ISSUER: set only with DURABLE_MCP_JWKS_URI or",
        ),
        (
            sign_in | {"DURABLE_MCP_JWKS_URI": "https://idp/jwks"},
            "DURABLE_MCP_JWKS_URI and DURABLE_MCP_JWT_PUBLIC_KEY: set one, not both",
        ),
        (
            {"DURABLE_MCP_JWT_PUBLIC_KEY": str(tmp_path / "none.pem")},
            "DURABLE_MCP_JWT_PUBLIC_KEY: not a PEM, and cannot read it as a file",
        ),
        (
            {"DURABLE_MCP_JWKS_URI": "https://idp/jwks"},
            "DURABLE_MCP_AUTH_SERVER: required to sign in with JWTs",
        ),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_settings(env)
    # Signed in, the server may listen beyond localhost without the single token.
    assert load_settings(sign_in | {"DURABLE_MCP_HOST": "0.0.0.0"}).host == "0.0.0.0"


async def test_the_proxy_passes_the_persons_token_read_again_for_each_request(
    team: Team, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(team.tokens[ALICE] + "\n")
    transport = StdioTransport(
        command=sys.executable,
        args=[PROXY],
        env={"DURABLE_MCP_URL": f"{team.url}/mcp", "DURABLE_MCP_TOKEN_FILE": str(token_file)},
        keep_alive=False,
    )
    async with Client(transport) as proxied:
        await call(proxied, "set_timer", timer_name="tea", seconds=60)
        token_file.write_text(team.idp.token(ALICE, expires_in=-60))  # expired meanwhile
        with pytest.raises(ToolError, match="refused the proxy's token") as refused:
            await call(proxied, "probe_status", job_names=["tea"])
        assert "a fresh access token of yours" in str(refused.value)
        token_file.write_text(team.tokens[BOB])  # renewed, as bob: no restart
        (bobs,) = await call(proxied, "probe_status", job_names=["tea"])
        assert bobs["status"] == "not_found"
    async with team.client("admin") as admin:
        (job,) = (await call(admin, "list_jobs"))["jobs"]
    assert (job["job_name"], job["owner"]) == ("~alice@example.com/tea", ALICE)
