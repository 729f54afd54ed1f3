"""scripts/run_uv.py: every make target finds a Python >= 3.12 already on the machine
(pyenv's inactive versions included) before uv may download one, and says in one
line what to install when there is none and the download fails.

The Pythons here are small shell programs that answer the probe as a real one
would: a new enough Python prints its path, an old one exits 1, and a pyenv
shim of a version that is not active exits 127.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import run_uv

ROOT = Path(__file__).parent.parent

ANSWERS = {
    "new": 'echo "$0"',
    "old": "exit 1",
    "inactive shim": "echo 'pyenv: python3.13: command not found' >&2; exit 127",
}


def fake_python(path: Path, kind: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{ANSWERS[kind]}\n")
    path.chmod(0o755)
    return path


def test_an_inactive_pyenv_version_is_found_behind_the_shims_that_fail(tmp_path: Path) -> None:
    shims = tmp_path / "shims"
    fake_python(shims / "python3.13", "inactive shim")
    fake_python(shims / "python3.12", "inactive shim")
    fake_python(shims / "python3", "old")
    installed = fake_python(tmp_path / "pyenv/versions/3.12.1/bin/python3.12", "new")

    found = run_uv.find_python(path=str(shims), pyenv_root=str(tmp_path / "pyenv"), places=())

    assert found == str(installed)


def test_a_python_on_path_that_works_comes_before_pyenv_and_the_system_places(
    tmp_path: Path,
) -> None:
    on_path = fake_python(tmp_path / "bin/python3.12", "new")
    fake_python(tmp_path / "pyenv/versions/3.13.0/bin/python3.13", "new")
    fake_python(tmp_path / "usr/local/bin/python3.13", "new")

    found = run_uv.find_python(
        path=str(tmp_path / "bin"),
        pyenv_root=str(tmp_path / "pyenv"),
        places=(str(tmp_path / "usr/local/bin"),),
    )

    assert found == str(on_path)


def test_the_system_places_are_looked_in_when_path_and_pyenv_have_none(tmp_path: Path) -> None:
    fake_python(tmp_path / "bin/python3", "old")
    system = fake_python(tmp_path / "opt/python/3.13.1/bin/python3.13", "new")

    found = run_uv.find_python(
        path=str(tmp_path / "bin"),
        pyenv_root=str(tmp_path / "no-pyenv"),
        places=(str(tmp_path / "opt/python/*/bin"),),
    )

    assert found == str(system)


def test_no_python_is_none(tmp_path: Path) -> None:
    fake_python(tmp_path / "bin/python3", "old")

    assert run_uv.find_python(str(tmp_path / "bin"), str(tmp_path / "no-pyenv"), ()) is None


def test_a_failed_download_is_one_line_that_says_what_to_install(tmp_path: Path) -> None:
    # uv without network: a long trace, as the real one prints.
    uv = tmp_path / "uv"
    uv.write_text(
        "#!/bin/sh\necho 'error: Failed to install cpython-3.13' >&2\n"
        + "echo '  cause: dns error' >&2\n" * 8
        + "exit 2\n"
    )
    uv.chmod(0o755)
    log = tmp_path / "tools/python-download.log"

    with pytest.raises(SystemExit) as stopped:
        run_uv.download_python(str(uv), log)

    message = str(stopped.value.code)
    assert "\n" not in message and "dns" not in message
    assert message.startswith("durable-mcp: no Python 3.12 or newer on this machine")
    assert "install Python 3.12 or newer" in message and str(log) in message
    assert "cause: dns error" in log.read_text()  # uv's own words, for whoever wants them


def test_uv_is_given_a_python_it_can_use_when_it_finds_none_itself(tmp_path: Path) -> None:
    # As make runs it: no UV_PYTHON, and not from inside the project's environment.
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV") and k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    script = "import sys; print(sys.version_info >= (3, 12))"

    ran = subprocess.run(
        ["python3", str(ROOT / "scripts/run_uv.py"), "run", "--no-project", "python", "-c", script],
        cwd=tmp_path,  # no project here: uv picks a Python for this script alone
        env=env,
        capture_output=True,
        text=True,
    )

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "True"
