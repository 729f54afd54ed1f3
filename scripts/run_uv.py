"""Run uv for make: install it into .tools/ when there is none, and point it at a
Python >= 3.12 that is already on this machine before it may download one.

Every make target that needs uv runs ``python3 scripts/run_uv.py ARGS``, so this
is the one place that looks for a Python. uv looks on PATH and among the
Pythons it installed itself; it does not see pyenv's versions that are
installed but not active (their shims answer only for the active one), and
then it downloads a Python, which fails without network. So, in order:

1. what uv finds itself (then uv is run as it is);
2. ``python3.13``, ``python3.12`` ... on PATH, each run to see that it works;
3. pyenv's installed versions (``$(pyenv root)/versions``), active or not;
4. the usual system places (/usr/local/bin, /usr/bin, Homebrew, python.org).

The first found is given to uv as ``UV_PYTHON``, and remembered in
.tools/python: the next run checks that it still works and skips the search.
Only when none exists does uv download one; if that fails, one line says what
to install (uv's own output goes to .tools/python-download.log). ``UV_PYTHON``
set by the user wins.

It runs on whatever ``python3`` the machine has (3.8 and newer), and imports
nothing outside the standard library.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"

#: The Python versions the project runs on, the tested ones first.
MINIMUM = (3, 12)
VERSIONS = ("3.13", "3.12", "3.14", "3.15")

#: Where Pythons are installed when nothing on PATH names them.
SYSTEM_PLACES = (
    "/usr/local/bin",
    "/usr/bin",
    "/opt/homebrew/bin",
    "/opt/local/bin",
    "/Library/Frameworks/Python.framework/Versions/*/bin",
    "/opt/python/*/bin",
)

#: Asked of each candidate: its real path, if it is a Python >= MINIMUM.
PROBE = f"import sys; print(sys.executable) if sys.version_info >= {MINIMUM!r} else sys.exit(1)"

DOWNLOAD_LOG = TOOLS / "python-download.log"
FOUND = TOOLS / "python"


def main(args: list[str]) -> None:
    uv = find_uv()
    env = dict(os.environ)
    if not env.get("UV_PYTHON"):
        python = python_for_uv(uv)
        if python is not None:
            env["UV_PYTHON"] = python
    os.execve(uv, [uv, *args], env)


def python_for_uv(uv: str) -> str | None:
    """The Python to give uv, or None where uv finds one itself."""
    if FOUND.exists():
        remembered = probe(FOUND.read_text().strip())
        if remembered is not None:
            return remembered
    if uv_finds_python(uv):
        return None
    python = find_python()
    if python is None:
        download_python(uv)
        return None  # uv finds the one it installed by itself
    FOUND.write_text(python + "\n")
    return python


def find_uv() -> str:
    """uv on PATH, else the one in .tools/ (installed there with pip the first time)."""
    on_path = shutil.which("uv")
    if on_path is not None:
        return on_path
    uv = TOOLS / "bin" / "uv"
    if not uv.exists():
        print("installing uv into .tools/", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(TOOLS)], check=True)
        subprocess.run(
            [str(TOOLS / "bin" / "python"), "-m", "pip", "install", "-qq", "uv"],
            check=True,
            stdout=sys.stderr,  # make's stdout stays clean (claude-config prints JSON)
        )
    return str(uv)


def uv_finds_python(uv: str) -> bool:
    """Whether uv finds a Python >= MINIMUM by itself (outside any virtual environment)."""
    found = subprocess.run(
        [uv, "python", "find", "--system", "--no-python-downloads", version_request()],
        capture_output=True,
        check=False,
    )
    return found.returncode == 0


def find_python(
    path: str | None = None,
    pyenv_root: str | None = None,
    places: tuple[str, ...] = SYSTEM_PLACES,
) -> str | None:
    """The first Python >= MINIMUM on PATH, in pyenv or in ``places``; its real path."""
    for candidate in candidates(path, pyenv_root, places):
        python = probe(candidate)
        if python is not None:
            return python
    return None


def candidates(path: str | None, pyenv_root: str | None, places: tuple[str, ...]) -> list[str]:
    names = [f"python{version}" for version in VERSIONS] + ["python3"]
    found = []
    search_path = os.environ.get("PATH", "") if path is None else path
    for name in names:
        program = shutil.which(name, path=search_path)
        if program is not None:
            found.append(program)
    root = pyenv_root if pyenv_root is not None else find_pyenv_root()
    if root:
        for version in VERSIONS:
            found += sorted(
                glob.glob(f"{root}/versions/{version}*/bin/python{version}"), reverse=True
            )
    for place in places:
        for directory in sorted(glob.glob(place), reverse=True):
            found += [f"{directory}/python{version}" for version in VERSIONS]
    return [program for program in found if os.access(program, os.X_OK)]


def find_pyenv_root() -> str | None:
    if os.environ.get("PYENV_ROOT"):
        return os.environ["PYENV_ROOT"]
    default = Path.home() / ".pyenv"
    return str(default) if default.is_dir() else None


def probe(program: str) -> str | None:
    """``program``'s real path if it runs and is a Python >= MINIMUM (a pyenv shim of
    a version that is not active exits 127)."""
    try:
        answer = subprocess.run(
            [program, "-c", PROBE], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = answer.stdout.strip().splitlines()
    return lines[-1] if answer.returncode == 0 and lines else None


def download_python(uv: str, log_path: Path = DOWNLOAD_LOG) -> None:
    """Let uv download a Python; on failure, say in one line what to install, and exit."""
    log_path.parent.mkdir(exist_ok=True)
    with open(log_path, "w") as log:
        installed = subprocess.run(
            [uv, "python", "install", VERSIONS[0]], stdout=log, stderr=log, check=False
        )
    if installed.returncode != 0:
        sys.exit(
            "durable-mcp: no Python 3.12 or newer on this machine (looked on PATH, in pyenv "
            f"and in /usr/local/bin, /usr/bin), and uv could not download one (see {log_path}): "
            "install Python 3.12 or newer (your package manager, `pyenv install 3.13`, or "
            "python.org), then run make again"
        )


def version_request() -> str:
    return ">=" + ".".join(map(str, MINIMUM))


if __name__ == "__main__":
    main(sys.argv[1:])
