"""The job card (MCP Apps) in a real host page: headless chromium runs our test
host (``durable_mcp_testing/apps_host``: ext-apps' AppBridge and the MCP SDK's
client, from npm), which shows the card a start tool names, as a chat host
does. And a client without Apps gets exactly what it got before the card."""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.apps import UI_EXTENSION_ID, UI_MIME_TYPE
from mcp.client import advertise
from mcp.types import TextResourceContents
from resonate.context import Context

import report_builder
from durable_mcp import DurableTools
from durable_mcp.card import CARD_URI
from durable_mcp.config import Settings
from durable_mcp.functions import BUILT_IN
from durable_mcp.functions.weather import OpenMeteoArchive
from durable_mcp.server import create_server
from durable_mcp_testing.apps_host import HostUnavailable, host_bundle, serve_host
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.processes import free_port
from durable_mcp_testing.record_answers import answers
from durable_mcp_testing.served import browser_page, needs_browser, serving

BEFORE = Path(__file__).parent / "data" / "before_apps.json"

#: A kind with a view of its own (the README's example), and one with no card.
OWN = DurableTools()
COUNTED = """(result, root, card) =>
        root.append(card.el("strong", {text: `${result.count} counted`}))"""


@OWN.tool(job_name=lambda name: f"count_{name}", card=COUNTED)
async def count(ctx: Context, name: str) -> dict[str, int]:
    """Counts the letters of a name."""
    return {"count": len(name)}


@OWN.tool(job_name=lambda name: f"quiet_{name}", card=False)
async def quiet(ctx: Context, name: str) -> str:
    """A kind without a card."""
    return name


async def test_a_kind_chooses_its_own_view_or_no_card(tmp_path: Path) -> None:
    mcp = create_server(Settings(data_dir=tmp_path / "data"), durable=DurableTools(BUILT_IN, OWN))
    apps = [advertise(UI_EXTENSION_ID, {"mimeTypes": [UI_MIME_TYPE]})]
    async with Client(mcp, extensions=apps) as client:
        ui = {tool.name: (tool.meta or {}).get("ui") for tool in await client.list_tools()}
        assert ui["count"] == ui["set_timer"] == ui["start_gathering"] == {"resourceUri": CARD_URI}
        assert ui["quiet"] is None and ui["probe_status"] is None
        (page,) = await client.read_resource(CARD_URI)
        assert isinstance(page, TextResourceContents) and page.mime_type == UI_MIME_TYPE
        assert COUNTED.strip() in page.text and "weather" in page.text
        assert re.findall(r"https?://[^\s\"'`]+", page.text) == [
            "http://www.w3.org/2000/svg"  # a namespace name, never fetched
        ]  # nothing external: no script, style or image from anywhere else
        assert "<script src" not in page.text and "<link" not in page.text
    async with Client(mcp) as plain:
        assert all(tool.meta is None or "ui" not in tool.meta for tool in await plain.list_tools())
        assert await plain.list_resources() == []


#: Where the screenshots go: .screenshots/ (ignored by git), or docs/ to refresh the
#: README's with DURABLE_MCP_SCREENSHOTS=docs; a plain `make test` changes no tracked file.
SHOTS = Path(__file__).parent.parent / os.environ.get("DURABLE_MCP_SCREENSHOTS", ".screenshots")
WAIT_MS = 20_000


async def test_a_client_without_apps_gets_exactly_the_answers_it_got_before_the_card() -> None:
    recorded = json.loads(BEFORE.read_text())
    now = json.loads(json.dumps(await answers(), sort_keys=True))
    assert now["tools/list"] == recorded["tools/list"]
    assert now["resources/list"] == recorded["resources/list"]
    assert now["calls"] == recorded["calls"]
    assert json.dumps(now, indent=1, sort_keys=True) + "\n" == BEFORE.read_text()  # byte for byte


@pytest.fixture(scope="module")
def bundle() -> bytes:
    try:
        return host_bundle()
    except HostUnavailable as exc:
        pytest.skip(str(exc))


class Host:
    def __init__(self, url: str, page: Any, archive: FakeOpenMeteo) -> None:
        self.url = url
        self.page = page
        self.archive = archive  # the weather jobs' fake Open-Meteo
        self.cards = 0

    async def shot(self, name: str) -> None:
        """A screenshot of the last card shown, as <SHOTS>/<name>.png."""
        SHOTS.mkdir(exist_ok=True)
        frame = self.page.locator("iframe.app").nth(self.cards - 1)
        await frame.screenshot(path=str(SHOTS / f"{name}.png"))

    async def start(self, tool: str, **arguments: Any) -> Any:
        """Call ``tool`` from the host page; the card it names, inside its frame."""
        await self.page.evaluate("([name, args]) => startTool(name, args)", [tool, arguments])
        self.cards += 1
        return self.page.frame_locator("iframe.app").nth(self.cards - 1)

    async def call(self, tool: str, **arguments: Any) -> Any:
        async with Client(f"{self.url}/mcp") as client:
            return (await client.call_tool(tool, arguments)).data


@pytest.fixture
async def host(tmp_path: Path, bundle: bytes) -> AsyncIterator[Host]:
    settings = Settings(port=free_port(), data_dir=tmp_path / "data")
    with FakeOpenMeteo() as fake:
        mcp = create_server(
            settings,
            archive=OpenMeteoArchive(fake.url),
            durable=DurableTools(BUILT_IN, report_builder.durable, OWN),
        )
        serve_host(mcp, bundle)
        async with serving(mcp, settings) as url, browser_page() as page:
            await page.goto(f"{url}/test-host")
            await page.wait_for_function("window.hostReady === true", timeout=WAIT_MS)
            yield Host(url, page, fake)


@needs_browser
async def test_a_timers_card_counts_down_and_turns_completed(host: Host) -> None:
    card = await host.start("set_timer", timer_name="tea", seconds=4)
    await card.locator("#status:text-is('running')").wait_for(timeout=WAIT_MS)
    first = await card.locator("#remaining").inner_text()
    await host.shot("card-running")
    await card.locator(f"#remaining:not(:text-is('{first}'))").wait_for(timeout=WAIT_MS)
    assert first.startswith("due in ")
    await card.locator("#status:text-is('completed')").wait_for(timeout=WAIT_MS)
    assert await card.locator("#result").inner_text() == '"complete"'


@needs_browser
async def test_a_weather_jobs_card_draws_the_month_one_point_a_day(host: Host) -> None:
    host.archive.hold()  # the fetch waits: the card shows the job's progress meanwhile
    card = await host.start("start_gathering", latitude=52.52, longitude=13.41, year=2024, month=2)
    await host.archive.arrived(1)
    progress = card.locator("#progress:text-is('0 / 1 · fetching from the Open-Meteo archive')")
    await progress.wait_for(timeout=WAIT_MS)
    assert await card.locator(".meter > div").count() == 1  # the bar
    host.archive.release()
    await card.locator("#status:text-is('completed')").wait_for(timeout=WAIT_MS)
    chart = card.locator("svg#chart")
    assert await chart.locator("polyline.line-max").get_attribute("data-points") == "29"
    assert await chart.locator("polyline.line-min").get_attribute("data-points") == "29"
    maxima = await chart.locator("polyline.line-max").get_attribute("points")
    assert maxima is not None and len(maxima.split()) == 29  # read back from the DOM
    assert await chart.locator("rect.rain").count() == 29
    summary = await card.locator("#summary").inner_text()
    assert summary.startswith("29 days · mean max ")
    await host.shot("card-weather")


@needs_browser
async def test_a_questions_form_on_the_card_answers_the_job(host: Host) -> None:
    card = await host.start("build_report", report_id="q1", topic="Sales", sections=2)
    await card.locator("form#answer").wait_for(timeout=WAIT_MS)
    assert "Approve this outline" in await card.locator(".question").inner_text()
    await host.shot("card-question")
    await card.locator('input[name="approve"]').check()
    await card.locator('form#answer button[type="submit"]').click()
    await card.locator("#status:text-is('completed')").wait_for(timeout=WAIT_MS)
    (status,) = await host.call("probe_status", job_names=["report_q1"])
    assert status["status"] == "completed"  # it went on from its question
    report = (await host.call("await_result", job_names=["report_q1"]))["report_q1"]
    assert report["sections"] == ["Sales, part 1: 3 words on it.", "Sales, part 2: 3 words on it."]
    assert "Sales, part 2: 3 words on it." in await card.locator("#result").inner_text()
    await host.shot("card-done")


@needs_browser
async def test_cancel_on_the_card_cancels_the_job_and_retry_starts_it_again(host: Host) -> None:
    card = await host.start("set_timer", timer_name="kettle", seconds=600)
    await card.locator("#cancel").click(timeout=WAIT_MS)
    await card.locator("#status:text-is('cancelled')").wait_for(timeout=WAIT_MS)
    (status,) = await host.call("probe_status", job_names=["kettle"])
    assert status["status"] == "cancelled"
    await card.locator("#retry").click(timeout=WAIT_MS)
    await card.locator("#status:text-is('running')").wait_for(timeout=WAIT_MS)
    (status,) = await host.call("probe_status", job_names=["kettle"])
    assert status["status"] == "running"


@needs_browser
async def test_a_job_name_with_markup_is_shown_as_text(host: Host) -> None:
    name = "<img src=x onerror=alert(1)>"
    dialogs: list[str] = []
    host.page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    card = await host.start("set_timer", timer_name=name, seconds=600)
    await card.locator("#status:text-is('running')").wait_for(timeout=WAIT_MS)
    assert await card.locator("#job-name").inner_text() == name
    assert await card.locator("img").count() == 0
    assert dialogs == []


@needs_browser
async def test_a_kinds_own_view_draws_its_result(host: Host) -> None:
    card = await host.start("count", name="abc")
    await card.locator("#status:text-is('completed')").wait_for(timeout=WAIT_MS)
    assert await card.locator("#result strong").inner_text() == "3 counted"
