"""The jobs page in a real browser (headless chromium, driven by Playwright): a
person sees the jobs an agent started through MCP, opens one, and cancels,
retries or answers it. Screenshots of the list and of a job's page are taken
(``DURABLE_MCP_SCREENSHOTS=docs`` refreshes the README's)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastmcp import Client

import report_builder
from durable_mcp import DurableTools
from durable_mcp.config import Settings
from durable_mcp.functions import BUILT_IN
from durable_mcp.functions.weather import OpenMeteoArchive
from durable_mcp.server import create_server
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.identity import IdentityProvider
from durable_mcp_testing.processes import free_port
from durable_mcp_testing.served import browser_page, needs_browser, serving, serving_html

pytestmark = needs_browser

TOKEN = "page-token-for-tests-0123456789abcdef"
#: Where the screenshots go: .screenshots/ (ignored by git), or docs/ to refresh the
#: README's with DURABLE_MCP_SCREENSHOTS=docs; a plain `make test` changes no tracked file.
SHOTS = Path(__file__).parent.parent / os.environ.get("DURABLE_MCP_SCREENSHOTS", ".screenshots")
#: How long the browser waits for what the page should show (a hang guard).
WAIT_MS = 20_000


class Site:
    """A durable-mcp server with the report builder's tool too, served on a port."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.token = token

    async def call(self, tool: str, **arguments: object) -> Any:
        async with Client(f"{self.url}/mcp", auth=self.token) as client:
            result = await client.call_tool(tool, arguments, raise_on_error=False)
        if result.is_error:
            return {"error": result.content[0].text}
        return result.data


@pytest.fixture
async def site(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Site]:
    token = TOKEN if request.node.get_closest_marker("token") else None
    settings = Settings(port=free_port(), data_dir=tmp_path / "data", token=token)
    with FakeOpenMeteo() as fake:
        mcp = create_server(
            settings,
            archive=OpenMeteoArchive(fake.url),
            durable=DurableTools(BUILT_IN, report_builder.durable),
        )
        async with serving(mcp, settings) as url:
            yield Site(url, token)


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    async with browser_page() as page:
        yield page


async def rows(page: Any) -> list[str]:
    return list(await page.locator("#rows tr").evaluate_all("rs => rs.map(r => r.dataset.job)"))


async def shows_rows(page: Any, names: list[str]) -> None:
    """Wait until the list shows exactly ``names``, in that order."""
    await page.wait_for_function(
        "names => JSON.stringify([...document.querySelectorAll('#rows tr')]"
        ".map(r => r.dataset.job)) === JSON.stringify(names)",
        arg=names,
        timeout=WAIT_MS,
    )


async def test_the_list_shows_the_jobs_started_through_mcp_and_the_filters_narrow_it(
    site: Site, page: Any
) -> None:
    await site.call("set_timer", timer_name="tea", seconds=0)
    await site.call("await_result", job_names=["tea"])
    await site.call("set_timer", timer_name="coffee", seconds=600)
    await site.call("build_report", report_id="q3", topic="Revenue", sections=2)
    await site.call("await_result", job_names=["report_q3"], timeout_seconds=10)

    await page.goto(f"{site.url}/jobs")
    await shows_rows(page, ["report_q3", "coffee", "tea"])  # newest first
    row = page.locator('#rows tr[data-job="report_q3"]')
    assert "input required" in await row.inner_text()
    assert "Approve this outline" in await row.inner_text()
    SHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SHOTS / "jobs-page-list.png"), full_page=True)

    await page.select_option("#status", "completed")
    await shows_rows(page, ["tea"])
    await page.select_option("#status", "")
    await page.select_option("#kind", "build_report")
    await shows_rows(page, ["report_q3"])
    await page.select_option("#kind", "")
    await page.fill("#name", "off")
    await shows_rows(page, ["coffee"])
    await page.fill("#name", "")
    await shows_rows(page, ["report_q3", "coffee", "tea"])

    # It refreshes by itself: a job started now appears without a reload.
    await site.call("set_timer", timer_name="biscuit", seconds=600)
    await shows_rows(page, ["biscuit", "report_q3", "coffee", "tea"])


async def test_an_answer_typed_in_the_form_resumes_the_job_and_its_page_shows_steps_and_result(
    site: Site, page: Any
) -> None:
    await site.call("build_report", report_id="q4", topic="Costs", sections=2)
    await site.call("await_result", job_names=["report_q4"], timeout_seconds=10)
    await page.goto(f"{site.url}/jobs")
    await page.click('a:text-is("report_q4")')
    await page.wait_for_selector("form#answer", timeout=WAIT_MS)
    assert "Approve this outline" in await page.inner_text("#job")
    await page.screenshot(path=str(SHOTS / "jobs-page-question.png"), full_page=True)
    await page.check('input[name="approve"]')
    await page.click('form#answer button[type="submit"]')

    done = await site.call("await_result", job_names=["report_q4"], timeout_seconds=20)
    assert done["report_q4"]["sections"] == [
        "Costs, part 1: 3 words on it.",
        "Costs, part 2: 3 words on it.",
    ]
    await page.wait_for_selector(".status.completed", timeout=WAIT_MS)
    result = await page.inner_text("#job")
    assert "Costs, part 2: 3 words on it." in result  # the result, as readable JSON
    steps = await page.locator("#steps li").all_inner_texts()
    kinds = [text.split("\n")[0].split(" ")[0] for text in steps]
    assert kinds == ["step", "question", "step", "step"]  # outline, approval, two sections
    assert all("resolved" in text for text in steps)
    await page.screenshot(path=str(SHOTS / "jobs-page-job.png"), full_page=True)


async def test_cancel_and_retry_from_the_page_go_through_the_job_service(
    site: Site, page: Any
) -> None:
    await site.call("set_timer", timer_name="kettle", seconds=600)
    await page.goto(f"{site.url}/jobs/job/kettle")
    await page.click("#cancel", timeout=WAIT_MS)
    await page.wait_for_selector(".status.cancelled", timeout=WAIT_MS)
    (status,) = await site.call("probe_status", job_names=["kettle"])
    assert status["status"] == "cancelled"

    await page.click("#retry", timeout=WAIT_MS)
    await page.wait_for_selector(".status.running", timeout=WAIT_MS)
    (status,) = await site.call("probe_status", job_names=["kettle"])
    assert status["status"] == "running"
    assert status["remaining_seconds"] > 590  # started again, with its own 600 s


async def test_a_refused_action_shows_the_tools_own_one_line_error(site: Site, page: Any) -> None:
    await site.call("set_timer", timer_name="pot", seconds=600)
    tool_error = (await site.call("answer_job", job_name="pot", answer={"go": True}))["error"]
    await page.goto(f"{site.url}/jobs/job/pot")
    await page.wait_for_selector(".status.running", timeout=WAIT_MS)
    answer = await page.evaluate(
        "() => act('answer', {job_name: 'pot', answer: {go: true}}).catch(e => e.message)"
    )
    assert answer == tool_error == "job 'pot' is not waiting for an answer (it is running)"


async def test_a_script_in_a_job_name_is_shown_as_text(site: Site, page: Any) -> None:
    name = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await site.call("set_timer", timer_name=name, seconds=600)
    await page.goto(f"{site.url}/jobs")
    await shows_rows(page, [name])
    assert await page.inner_text("#rows td.name a") == name
    await page.click("#rows td.name a")
    await page.wait_for_selector(".status.running", timeout=WAIT_MS)
    assert await page.inner_text("#title") == name
    assert await page.locator("#job script, #job img, #rows img").count() == 0
    assert dialogs == []  # nothing ran


@pytest.mark.token
async def test_without_the_token_nothing_is_shown_and_a_login_keeps_it_in_an_httponly_cookie(
    site: Site, page: Any
) -> None:
    await site.call("set_timer", timer_name="secret_tea", seconds=600)
    async with httpx.AsyncClient(base_url=site.url) as http:
        for path in ("/jobs", "/jobs/job/secret_tea", "/jobs/api/jobs", "/metrics"):
            refused = await http.get(path)
            assert refused.status_code == 401, path
            assert "secret_tea" not in refused.text
        assert (await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).is_success

    await page.goto(f"{site.url}/jobs")
    await page.fill("#token", "not-the-token")
    await page.click("#login button")
    await page.wait_for_selector("#error:has-text('not this server')", timeout=WAIT_MS)
    await page.fill("#token", TOKEN)
    await page.click("#login button")
    await shows_rows(page, ["secret_tea"])
    (cookie,) = await page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert TOKEN not in cookie["value"] and TOKEN not in page.url
    assert await page.evaluate("document.cookie") == ""  # no script can read it


async def test_a_forged_cross_origin_post_is_refused_and_changes_nothing(
    site: Site, page: Any
) -> None:
    await site.call("set_timer", timer_name="kettle", seconds=600)
    # A page of another origin (another port on this machine) posts a form to cancel it.
    forged = (
        f'<form method="post" action="{site.url}/jobs/api/cancel" enctype="text/plain">'
        '<input name=\'{"job_name": "kettle", "x": "\' value=\'"}\'></form>'
        "<script>document.forms[0].submit()</script>"
    )
    with serving_html(forged) as other:
        await page.goto(other, wait_until="commit")
        await page.wait_for_url(f"{site.url}/jobs/api/cancel", timeout=WAIT_MS)
        assert "refused" in await page.content()
    # ... and one that fetches with the page's token it does not have.
    await page.goto(f"{site.url}/jobs/job/kettle")
    refused = await page.evaluate(
        """async () => (await fetch('/jobs/api/cancel', {method: 'POST',
             headers: {'Content-Type': 'application/json'},
             body: JSON.stringify({job_name: 'kettle'})})).status"""
    )
    assert refused == 403
    (status,) = await site.call("probe_status", job_names=["kettle"])
    assert status["status"] == "running"


async def test_signed_in_a_person_logs_in_with_their_access_token_and_sees_their_own_jobs(
    tmp_path: Path, page: Any
) -> None:
    with IdentityProvider() as idp:
        settings = Settings(port=free_port(), data_dir=tmp_path / "data", **idp.settings())
        mcp = create_server(settings)
        async with serving(mcp, settings) as url:
            alice, bob = idp.token("alice"), idp.token("bob")
            for token, name in ((alice, "alices_tea"), (bob, "bobs_bread"), (alice, "alices_cake")):
                async with Client(f"{url}/mcp", auth=token) as client:
                    await client.call_tool("set_timer", {"timer_name": name, "seconds": 600})

            await page.goto(f"{url}/jobs")
            assert "your own jobs" in await page.locator(".login").inner_text()
            await page.fill("#token", idp.token("alice", expires_in=-60))
            await page.click("#login button")
            await page.wait_for_selector("#error:has-text('may have expired')", timeout=WAIT_MS)
            SHOTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(SHOTS / "jobs-page-sign-in.png"), full_page=True)
            await page.fill("#token", alice)
            await page.click("#login button")
            await shows_rows(page, ["alices_cake", "alices_tea"])
            await page.screenshot(path=str(SHOTS / "jobs-page-signed-in.png"), full_page=True)
            (cookie,) = await page.context.cookies()
            assert cookie["httpOnly"] and await page.evaluate("document.cookie") == ""
            await page.goto(f"{url}/jobs/job/bobs_bread")  # not hers: as if there were none
            await page.wait_for_selector("#job:has-text('No job has this name')", timeout=WAIT_MS)
