"""``examples/report_builder.py`` as a real server, its steps counted, for the
kill tests: ``python -m durable_mcp_testing.held_report_builder PORT STEPS [HOLD]``.

The example runs with its two step functions wrapped: each writes a line to
the file STEPS (``outline <topic>``, ``section <heading>``) once it has run,
so that the test can see what ran, in every process. The section whose
heading is HOLD, if given, never runs: its step writes ``holding <heading>``
and waits until the process is killed, before it has done anything. The
example must be importable (``PYTHONPATH=examples``); settings come from the
DURABLE_MCP_* environment, as the example's own ``build()`` reads them.
:class:`ReportBuilder` starts, kills and restarts it.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from durable_mcp_testing.helpers import eventually
from durable_mcp_testing.processes import free_port, start_listening, stop

EXAMPLES = Path(__file__).parents[3] / "examples"


class ReportBuilder:
    """The example as a process, on one port and one data dir in ``tmp_path``."""

    def __init__(self, tmp_path: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.steps, self.log = tmp_path / "steps", tmp_path / "server.log"
        self.data_dir = tmp_path / "data"
        self.env = {
            "DURABLE_MCP_DATA_DIR": str(self.data_dir),
            "PYTHONPATH": str(EXAMPLES),
            **(env or {}),
        }
        self.process: Any = None

    def start(self, hold: str | None = None) -> None:
        command = [sys.executable, "-m", __name__, str(self.port), str(self.steps)]
        self.process = start_listening(
            [*command, *([hold] if hold else [])], self.port, self.env, self.log
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            stop(self.process, sig)

    def ran(self) -> list[str]:
        """The steps that have run, in every process, in order."""
        return self.steps.read_text().splitlines() if self.steps.exists() else []

    async def until_ran(self, line: str) -> None:
        """Until a step has written ``line`` (``holding <heading>``, say)."""

        async def ran() -> bool | None:
            return True if line in self.ran() else None

        await eventually(ran)


def main() -> None:
    from resonate.context import Context

    import report_builder

    port, steps = int(sys.argv[1]), sys.argv[2]
    hold = sys.argv[3] if len(sys.argv) > 3 else None
    outline, write_section = report_builder.outline, report_builder.write_section

    def note(line: str) -> None:
        with open(steps, "a") as file:  # written at once: a kill -9 keeps it
            file.write(line + "\n")

    def counted_outline(ctx: Context, topic: str, sections: int) -> Any:
        note(f"outline {topic}")
        return outline(ctx, topic, sections)

    async def counted_section(ctx: Context, heading: str) -> Any:
        if heading == hold:
            note(f"holding {heading}")
            # Until the process is killed; async, so the server goes on meanwhile
            # (a sync step runs on the event loop: a blocked one blocks it all).
            await asyncio.Event().wait()
        note(f"section {heading}")
        return write_section(ctx, heading)

    # The job calls its steps by these module names, so it runs the counted ones
    # (ctx.run takes a sync or an async function alike).
    report_builder.outline = counted_outline
    report_builder.write_section = counted_section  # type: ignore[assignment]
    report_builder.build().run(transport="http", host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()
