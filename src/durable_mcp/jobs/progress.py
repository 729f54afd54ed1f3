"""A job says how far it has got: ``report_progress(ctx, done, total, message)``.

Called by a durable function between its steps (or inside one). The report is
a note on the job (``notes.py``): its status shows it as ``progress`` (in
``probe_status`` and ``list_jobs``), ``tasks/get`` as its ``statusMessage``,
and ``await_result`` on that job alone as its progress notifications. It costs
a dict update: the store saves the latest report of each job with its next
commit (at most half a second later), never one fsync per report. When a job
replays after a restart its reports are made again as it goes, and until it
does, the last one saved is shown.
"""

from __future__ import annotations

import math

from resonate.context import Context

from durable_mcp.jobs.notes import notes_of

#: The longest message a report keeps.
MAX_MESSAGE = 500


def report_progress(
    ctx: Context, done: float, total: float | None = None, message: str | None = None
) -> None:
    """Say that the job has done ``done`` of ``total`` (if known), with a ``message``.

    ``ctx`` is the job's or a step's. Numbers must be finite, ``done`` at least
    0 and ``total`` more than 0; a bad one raises ``ValueError``. A job whose
    engine keeps no notes (a test's own Resonate) reports to nobody.
    """
    if not (isinstance(done, int | float) and math.isfinite(done) and done >= 0):
        raise ValueError(f"progress: done must be a finite number of at least 0, got {done!r}")
    if total is not None and not (
        isinstance(total, int | float) and math.isfinite(total) and total > 0
    ):
        raise ValueError(f"progress: total must be a finite number above 0, got {total!r}")
    notes = notes_of(ctx)
    if notes is None:
        return
    report: dict[str, object] = {"done": done, "total": total}
    if message is not None:
        report["message"] = str(message)[:MAX_MESSAGE]
    notes.note(ctx.info.origin_id, "progress", report)
