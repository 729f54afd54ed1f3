"""The README's install line for an app of one's own, run as written: a virtual
environment on a Python >= 3.12, this checkout installed into it with pip, and the
report builder example served from it.

It installs from the package index (pip's cache makes a second run faster), so it
takes some 30 s; it runs beside the rest of the suite.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()

#: Lists the report builder's tools through FastMCP's in-process client.
LIST_TOOLS = """
import asyncio
from fastmcp import Client
import report_builder

async def main():
    async with Client(report_builder.build()) as client:
        print(sorted(tool.name for tool in await client.list_tools()))

asyncio.run(main())
"""


def install_commands() -> list[list[str]]:
    """The shell block of "Add your own durable tool": the environment, then the checkout."""
    section = README[README.index("## Add your own durable tool") :]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    commands = [shlex.split(line, comments=True) for line in block[1].splitlines()]
    return commands[:2]  # the third installs a wheel instead, once `make wheel` made one


def test_the_install_line_makes_an_environment_that_serves_the_report_builder(
    tmp_path: Path,
) -> None:
    project = tmp_path / "my-app"
    project.mkdir()
    shutil.copy(ROOT / "examples/report_builder.py", project)
    make_venv, install = install_commands()
    assert make_venv[:3] == ["python3", "-m", "venv"]
    assert install[-1] == "/path/to/checkout"
    # python3 >= 3.12, as the README asks: the one this checkout runs on.
    make_venv[0] = sys.executable
    install[-1] = str(ROOT)

    for command in (make_venv, install):
        done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]

    tools = subprocess.run(
        [str(project / ".venv/bin/python"), "-c", LIST_TOOLS],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tools.returncode == 0, tools.stderr
    assert tools.stdout.strip() == str(
        sorted(
            [
                "build_report",
                "probe_status",
                "await_result",
                "answer_job",
                "cancel_job",
                "list_jobs",
            ]
        )
    )
    assert (project / ".report-builder" / "journal.sqlite3").is_file()  # its own store
