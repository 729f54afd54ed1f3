"""Poison jobs beside 50 normal ones, on a real process: each fails alone, with its
own error and a few log lines, and every normal job completes.

The server is ``durable_mcp_testing.poison_app``, a server of one's own: a job
whose value no store can keep, one whose step always raises, one whose step is
a generator function, and one whose function the server lost in a restart
(version 1 had it; it was in flight when the process was killed).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from fastmcp import Client

from durable_mcp.store import peek
from durable_mcp_testing.helpers import eventually, noise
from durable_mcp_testing.processes import free_port, start_listening, stop

NORMAL = 50
POISON = {
    "unencodable_1": ("unencodable", "Unstorable"),
    "raising_1": ("raising_step", "ValueError"),
    "generator_1": ("generator_step", "Unstorable"),
}


async def results(url: str, names: list[str]) -> dict[str, Any]:
    """Each job's answer from await_result, called until none is running."""
    done: dict[str, Any] = {}

    async def finished() -> dict[str, Any] | None:
        waiting = [name for name in names if name not in done]
        async with Client(url) as client:
            answers = (await client.call_tool("await_result", {"job_names": waiting})).data
        for name, answer in answers.items():
            if not (isinstance(answer, dict) and answer.get("status") == "running"):
                done[name] = answer
        return done if len(done) == len(names) else None

    return await eventually(finished, within=120, every=0)


async def test_poison_jobs_fail_alone_and_every_normal_job_completes(tmp_path: Path) -> None:
    port, data_dir, log = free_port(), tmp_path / "data", tmp_path / "server.log"
    url = f"http://127.0.0.1:{port}/mcp"
    command = [sys.executable, "-m", "durable_mcp_testing.poison_app", str(port), str(data_dir)]

    first = start_listening([*command, "v1"], port, log=log)
    try:
        async with Client(url) as client:
            await client.call_tool("doomed", {"n": 1})

        async def in_its_step() -> bool | None:
            return True if "doomed_1:1" in peek(data_dir).promises else None

        await eventually(in_its_step)
    finally:
        stop(first, 9)  # kill -9: the job is left in flight, in a function v2 lacks

    second = start_listening(command, port, log=log)
    try:
        async with Client(url) as client:
            for n in range(NORMAL):
                await client.call_tool("normal", {"n": n})
            for tool, _ in POISON.values():
                await client.call_tool(tool, {"n": 1})
        normal = [f"normal_{n}" for n in range(NORMAL)]
        answers = await results(url, [*normal, *POISON, "doomed_1"])
    finally:
        stop(second)

    assert [answers[name] for name in normal] == list(range(NORMAL))
    for name, (_, error_type) in POISON.items():
        assert answers[name]["status"] == "failed", answers[name]
        assert answers[name]["error"]["type"] == error_type
    assert answers["raising_1"]["error"] == {
        "type": "ValueError",
        "message": "boom 1",
        "step": "failing",
        "attempts": 3,
    }
    assert answers["doomed_1"]["error"]["type"] == "FunctionNotFound"
    assert "no function 'doomed' to run the job" in answers["doomed_1"]["error"]["message"]

    text = log.read_text()
    assert noise(text) == []
    for name in [*POISON, "doomed_1"]:
        lines = [line for line in text.splitlines() if name in line]
        assert len(lines) <= 5, lines
