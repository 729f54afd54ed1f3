"""/metrics, /healthz and /readyz, and traces: what an operator's tools read.

In process, on fake time: the app's HTTP routes through an ASGI client while
an in-memory MCP client runs the app (its engine) -- the metrics parsed with
prometheus_client's own parser, the trace taken with the OpenTelemetry SDK's
in-memory exporter.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastmcp import Client, FastMCP
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util._once import Once
from prometheus_client.parser import text_string_to_metric_families

import report_builder
from durable_mcp import DurableTools
from durable_mcp.config import Settings
from durable_mcp.functions import BUILT_IN
from durable_mcp.functions.weather import OpenMeteoArchive
from durable_mcp.http import http_app_of
from durable_mcp.server import create_server
from durable_mcp_testing.helpers import FakeTime, call


def routes(server: FastMCP, settings: Settings) -> httpx.AsyncClient:
    """The app's HTTP routes, as `durable-mcp serve` serves them, without a socket."""
    transport = httpx.ASGITransport(app=http_app_of(server, settings))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:5001")


async def scrape(http: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, by name and labels."""
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_metrics_count_a_jobs_start_and_end(
    server: FastMCP, client: Client[Any], settings: Settings, fake_time: FakeTime
) -> None:
    async with routes(server, settings) as http:
        await call(client, "set_timer", timer_name="tea", seconds=1)
        before = await scrape(http)
        assert before[("durable_mcp_jobs_started_total", (("kind", "timer"),))] == 1
        assert before[("durable_mcp_jobs", (("kind", "timer"), ("status", "running")))] == 1
        assert (
            "durable_mcp_jobs_ended_total",
            (("kind", "timer"), ("status", "completed")),
        ) not in before
        assert before[("durable_mcp_start_seconds_count", (("tool", "set_timer"),))] == 1

        await fake_time.advance(1.5, step=0.1)
        await call(client, "await_result", job_names=["tea"])
        after = await scrape(http)
        assert (
            after[("durable_mcp_jobs_ended_total", (("kind", "timer"), ("status", "completed")))]
            == 1
        )
        assert ("durable_mcp_jobs", (("kind", "timer"), ("status", "running"))) not in after
        assert after[("durable_mcp_await_seconds_count", ())] == 1
        if settings.store == "embedded":
            assert after[("durable_mcp_store_bytes", ())] > 0
            assert after[("durable_mcp_store_commit_seconds_count", ())] >= 2  # start, end
            assert after[("durable_mcp_store_commit_changes_sum", ())] >= 2


async def test_readyz_says_ready_while_the_engine_runs_and_which_check_fails_after(
    server: FastMCP, settings: Settings
) -> None:
    async with routes(server, settings) as http:
        async with Client(server):  # the app's lifespan: the engine runs
            ready = await http.get("/readyz", headers={"Accept": "application/json"})
            assert ready.status_code == 200
            assert ready.json() == {"ready": True, "checks": {"store": "ok", "engine": "ok"}}
            assert (await http.get("/readyz")).text == "ready\n"
            assert (await http.get("/healthz")).text == "ok\n"
        stopped = await http.get("/readyz")
        assert stopped.status_code == 503
        engine = "engine: the engine is not running"
        if settings.store == "embedded":
            assert stopped.text == f"not ready: store: the embedded store is not open; {engine}\n"
        else:
            assert stopped.text == f"not ready: {engine}\n"
        assert (await http.get("/healthz")).status_code == 200


async def test_with_web_off_neither_the_page_nor_metrics_is_served(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", web=False)
    server = create_server(settings)
    async with routes(server, settings) as http, Client(server):
        assert (await http.get("/jobs")).status_code == 404
        assert (await http.get("/metrics")).status_code == 404
        assert (await http.get("/readyz")).status_code == 200


# -- traces


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The OpenTelemetry SDK as this process's tracer provider, for one test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        # The API sets its provider once per process: put it back as it was, no SDK.
        trace._TRACER_PROVIDER = None
        trace._TRACER_PROVIDER_SET_ONCE = Once()
        # Not provider.shutdown(): the MCP SDK keeps the tracer it got meanwhile
        # (a module's ProxyTracer), and a shut provider logs each span it is given.
        # A stopped exporter drops them without a word.
        exporter.shutdown()


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


async def test_a_jobs_runs_and_steps_join_the_trace_of_its_call_across_a_restart(
    spans: InMemorySpanExporter, fake_time: FakeTime, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", await_max_seconds=5)
    durable = DurableTools(BUILT_IN, report_builder.durable)
    archive = OpenMeteoArchive("http://127.0.0.1:9/unused")
    first = create_server(settings, archive=archive, durable=durable, **fake_time.seams)
    async with Client(first) as client:
        await call(client, "build_report", report_id="t", topic="Tea", sections=1)
        (asked,) = await call(client, "probe_status", job_names=["report_t"])
        assert asked["status"] == "input_required"
    # A new app on the same store: the job goes on when its question is answered.
    second = create_server(settings, archive=archive, durable=durable, **fake_time.seams)
    async with Client(second) as client:
        await call(client, "answer_job", job_name="report_t", answer={"approve": True})
        done = await call(client, "await_result", job_names=["report_t"])
        assert done["report_t"]["sections"] == ["Tea, part 1: 3 words on it."]

    finished = spans.get_finished_spans()
    (started,) = [s for s in finished if s.kind == SpanKind.SERVER and "build_report" in s.name]
    runs = named(finished, "job build_report")
    assert len(runs) >= 2  # one before the restart (it stopped to ask), one after
    for run in runs:
        assert run.context.trace_id == started.context.trace_id
        assert run.parent is not None and run.parent.span_id == started.context.span_id
    assert (runs[0].attributes or {})["durable_mcp.suspended"] is True
    assert runs[-1].status.status_code == StatusCode.OK
    (outline,) = named(finished, "step outline")  # not run again after the restart
    (section,) = named(finished, "step write_section")
    assert outline.parent is not None and outline.parent.span_id == runs[0].context.span_id
    assert section.parent is not None and section.parent.span_id == runs[-1].context.span_id
    assert (section.attributes or {})["durable_mcp.job"] == "report_t"
