from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from resonate.retry import Constant

from durable_mcp.config import Settings
from durable_mcp.functions import BUILT_IN
from durable_mcp.functions.weather import OpenMeteoArchive
from durable_mcp.jobs.registry import DurableTools
from durable_mcp.jobs.service import Jobs
from durable_mcp.server import TOOLS, create_server
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo
from durable_mcp_testing.helpers import FakeTime
from durable_mcp_testing.postgres_server import running_postgres


@pytest.fixture
def fake_archive() -> Iterator[FakeOpenMeteo]:
    with FakeOpenMeteo() as fake:
        yield fake


@pytest.fixture
def archive(fake_archive: FakeOpenMeteo) -> OpenMeteoArchive:
    # Retries at once, so retry tests take no time; three attempts in all.
    return OpenMeteoArchive(
        fake_archive.url, timeout_seconds=5, retry_policy=Constant(delay=0, max_retries=2)
    )


@pytest.fixture(params=["embedded", "memory"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Every in-memory client test runs on both stores."""
    return Settings(store=request.param, data_dir=tmp_path / "data", await_max_seconds=5)


@pytest.fixture
def fake_time() -> FakeTime:
    """The in-memory server's time: it stands still until the test advances it."""
    return FakeTime()


@pytest.fixture
def durable() -> DurableTools:
    """The server's durable tools: a test module overrides this to add its own."""
    return BUILT_IN


@pytest.fixture
def server_and_jobs(
    settings: Settings, archive: OpenMeteoArchive, fake_time: FakeTime, durable: DurableTools
) -> tuple[FastMCP, Jobs]:
    job_layer: list[Jobs] = []
    server = create_server(
        settings,
        archive=archive,
        durable=durable,
        tools=[*TOOLS, lambda mcp, jobs: job_layer.append(jobs)],  # registers no tool
        progress_interval_seconds=0.2,
        **fake_time.seams,
    )
    return server, job_layer[0]


@pytest.fixture
def server(server_and_jobs: tuple[FastMCP, Jobs]) -> FastMCP:
    return server_and_jobs[0]


@pytest.fixture
def jobs(server_and_jobs: tuple[FastMCP, Jobs]) -> Jobs:
    """The server's job layer: what its store holds, beyond what the tools show."""
    return server_and_jobs[1]


@pytest.fixture
async def client(server: FastMCP) -> AsyncIterator[Client[Any]]:
    async with Client(server) as client:
        yield client


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[Any]:
    """Real Postgres with resonate-pg's schema (mark the module ``needs_schema``)."""
    with running_postgres(tmp_path / "pgdata") as server:
        yield server
