"""``examples/report_builder.py`` as a real server, its steps counted, for the
kill tests: ``python -m durable_mcp_testing.held_report_builder PORT STEPS [HOLD]``.

The example runs with its two step functions wrapped: each first writes a
line to the file STEPS (``outline <topic>``, ``section <heading>``), so that
the test can see what ran, in every process. The section whose heading is
HOLD, if given, never returns: the job stops there until the process is
killed. The example must be importable (``PYTHONPATH=examples``); settings
come from the DURABLE_MCP_* environment, as the example's own ``build()``
reads them.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from resonate.context import Context

import report_builder


def main() -> None:
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
        note(f"section {heading}")
        if heading == hold:
            # Until the process is killed; async, so the server goes on meanwhile
            # (a sync step runs on the event loop: a blocked one blocks it all).
            await asyncio.Event().wait()
        return write_section(ctx, heading)

    # The job calls its steps by these module names, so it runs the counted ones
    # (ctx.run takes a sync or an async function alike).
    report_builder.outline = counted_outline
    report_builder.write_section = counted_section  # type: ignore[assignment]
    report_builder.build().run(transport="http", host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()
