"""The README's commands work on a machine with only python3 and make.

Each shell command in a README code block starts with make (a target the
Makefile has), python3, a program a make target puts in the checkout
(``.venv/bin/...``), or the program of another service the README is about
(Postgres, SQLite, a Resonate Server, the MCP Inspector, Claude Code), never
with ``uv`` or ``durable-mcp``, which need not be on PATH.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()

#: Programs of other services the README shows how to use alongside ours.
OTHER_SERVICES = {"psql", "sqlite3", "resonate", "npx", "claude", "curl"}

SHELL_BLOCK = re.compile(r"^ *```(?:sh|bash|console)\n(.*?)^ *```", re.MULTILINE | re.DOTALL)


def readme_commands() -> list[list[str]]:
    """Each command of the README's shell blocks, as words, without VAR=value prefixes."""
    commands = []
    for block in SHELL_BLOCK.findall(README):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words.pop(0)
            if words:
                commands.append(words)
    return commands


def make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([\w.-]+):", makefile, re.MULTILINE))


def test_every_readme_command_starts_with_something_there_without_uv() -> None:
    commands = readme_commands()
    targets = make_targets()
    assert ["make", "claude-config"] in commands  # the shell blocks were found

    for words in commands:
        program = words[0]
        if program == "make":
            assert set(words[1:2]) <= targets, words
        elif program.startswith(".venv/bin/"):
            assert (ROOT / program).is_file(), words
        else:
            assert program == "python3" or program in OTHER_SERVICES, words


def test_no_inline_command_runs_uv_from_path() -> None:
    # (`durable-mcp serve` in prose names the command; the blocks show how to run it.)
    inline = re.findall(r"`([^`\n]+)`", README)

    assert [span for span in inline if re.match(r"uvx? ", span)] == []
