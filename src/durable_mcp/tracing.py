"""Traces: a job's runs and steps in the trace of the tool call that started it.

FastMCP makes a span for each ``tools/call`` (and ``tasks/*``) with the
OpenTelemetry API. When a job is created, :func:`keep_trace` keeps that
span's context (W3C ``traceparent``) with the job, as a note saved with the
store's commit (``jobs/notes.py``). Each run of the job -- the first, and any
after a restart or ``kill -9`` -- is a span ``job <kind>`` whose parent is that
context, and each step it runs a span ``step <name>`` under it
(``jobs/failures.py``): the trace of the call shows the work it started, even
work done by another process a day later.

Spans are made only when an OpenTelemetry SDK is installed as the tracer
provider: by :func:`export_if_configured` when ``OTEL_EXPORTER_OTLP_ENDPOINT``
is set (``durable-mcp serve``), or by the app that embeds the tools. Otherwise
every call here returns at once: nothing is kept, made or exported.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from durable_mcp.jobs.notes import JobNotes

logger = logging.getLogger("durable_mcp")

#: The note that keeps the trace context of the call that started a job.
TRACE_NOTE = "trace"

tracer = trace.get_tracer("durable_mcp")


def tracing_on() -> bool:
    """Whether spans are recorded: an SDK tracer provider is installed."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def keep_trace(notes: JobNotes, job_id: str) -> None:
    """Keep the current trace context (the call that starts the job) with the job."""
    if not tracing_on():
        return
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if carrier:
        notes.note(job_id, TRACE_NOTE, carrier)


@contextlib.asynccontextmanager
async def job_run(notes: JobNotes | None, job_id: str, kind: str) -> AsyncIterator[Span | None]:
    """A span for one run of a job, under the call that started it; None when off.

    The trace is the job's note: this process's own, or the one another replica
    saved (Postgres: a job taken over after its replica died).
    """
    if not tracing_on():
        yield None
        return
    carrier = None
    if notes is not None:
        carrier = (await notes.read([job_id])).get(job_id, {}).get(TRACE_NOTE)
    parent = propagate.extract(carrier) if isinstance(carrier, dict) else None
    attributes = {"durable_mcp.job": job_id, "durable_mcp.kind": kind}
    # Its status is set by the job's code (``ended``): a run that suspends to wait
    # for a sleep or an answer raises the SDK's Suspended, and is no error.
    with tracer.start_as_current_span(
        f"job {kind}",
        context=parent,
        kind=SpanKind.INTERNAL,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


@contextlib.contextmanager
def step_run(job_id: str, name: str, attempt: int) -> Iterator[None]:
    """A span for one attempt of a step, inside its job's run span."""
    if not tracing_on():
        yield
        return
    attributes: dict[str, Any] = {
        "durable_mcp.job": job_id,
        "durable_mcp.step": name,
        "durable_mcp.attempt": attempt,
    }
    with tracer.start_as_current_span(f"step {name}", attributes=attributes):
        yield


def ended(span: Span | None, failure: BaseException | None, *, suspended: bool = False) -> None:
    """Say how a job's run ended on its span: done, failed, or stopped to wait."""
    if span is None:
        return
    if suspended:
        span.set_attribute("durable_mcp.suspended", True)
    elif failure is not None:
        span.record_exception(failure)
        span.set_status(Status(StatusCode.ERROR, f"{type(failure).__name__}: {failure}"))
    else:
        span.set_status(Status(StatusCode.OK))


def export_if_configured() -> bool:
    """With ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) set, install
    the SDK's tracer provider and export spans there over OTLP/HTTP; else nothing."""
    if not (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win, as the SDK reads them.
    resource = Resource.create({"service.name": "durable-mcp"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    logger.info("tracing: spans go to %s over OTLP/HTTP", _endpoint())
    return True


def _endpoint() -> str:
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT", ""
    )
