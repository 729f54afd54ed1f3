"""One structured log line per job state change.

``job_event("completed", "timer1", kind="timer")`` logs
``event=job.completed job=timer1 kind=timer`` at INFO on ``durable_mcp.jobs``:
``key=value`` pairs, a value quoted (JSON) when it holds spaces, quotes or
anything unusual, so a line always parses back. The events: ``started``,
``resumed`` (after a crash), ``completed``, ``failed``, ``cancelled``. Only
job ids and what the jobs themselves report go in; never a token or header.
"""

from __future__ import annotations

import json
import logging
import re

logger = logging.getLogger("durable_mcp.jobs")

_BARE = re.compile(r"[\w.:/@+-]+")


def job_event(event: str, job_id: str, **fields: object) -> None:
    pairs = {"event": f"job.{event}", "job": job_id, **fields}
    logger.info(" ".join(f"{key}={_value(value)}" for key, value in pairs.items()))


def _value(value: object) -> str:
    text = str(value)
    return text if _BARE.fullmatch(text) else json.dumps(text, ensure_ascii=False)
