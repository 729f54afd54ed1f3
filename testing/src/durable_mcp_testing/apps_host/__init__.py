"""An MCP Apps host page for the tests: ``host.js`` on ext-apps' AppBridge, bundled.

:func:`host_bundle` installs ``@modelcontextprotocol/ext-apps``, the MCP client and
esbuild from npm (once per machine, into a cache directory keyed by their
versions) and bundles ``host.js`` into one script. :func:`serve_host` adds the
page and the script to an app under test, so that the page's MCP client talks
to the app's ``/mcp`` on the same origin.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from fastmcp import FastMCP
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

#: Pinned: the tests' host is built from exactly these.
PACKAGES = (
    "@modelcontextprotocol/ext-apps@2.0.4",
    "@modelcontextprotocol/client@2.4.0",  # the SDK ext-apps 2 is built on
    "esbuild@0.28.2",
)
CACHE = Path(tempfile.gettempdir()) / "durable-mcp-apps-host-2.0.4-2.4.0-0.28.2"
SOURCE = Path(__file__).with_name("host.js")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>test host</title>
<style>body { margin: 16px; font-family: system-ui, sans-serif; background: #f4f6f8; }
iframe.app { display: block; width: 600px; height: 120px; border: 0; margin-bottom: 12px; }</style>
</head><body><div id="apps"></div><script type="module" src="/test-host.js"></script></body></html>
"""


class HostUnavailable(Exception):
    """npm or the packages are not to be had: the tests skip, saying this."""


def host_bundle() -> bytes:
    """The host page's script, built once (npm install, esbuild), then from the cache."""
    bundle = CACHE / "host.bundle.js"
    if bundle.is_file() and bundle.stat().st_mtime >= SOURCE.stat().st_mtime:
        return bundle.read_bytes()
    npm = shutil.which("npm")
    if npm is None:
        raise HostUnavailable(
            "no npm to fetch @modelcontextprotocol/ext-apps: install Node and npm"
        )
    CACHE.mkdir(parents=True, exist_ok=True)
    if not (CACHE / "node_modules" / "esbuild").is_dir():
        installed = subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--silent",
                "--prefix",
                str(CACHE),
                *PACKAGES,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if installed.returncode != 0:
            raise HostUnavailable(
                f"npm install {' '.join(PACKAGES)} failed: {installed.stderr[-300:]}"
            )
    shutil.copy(SOURCE, CACHE / "host.js")
    esbuild = CACHE / "node_modules" / ".bin" / "esbuild"
    subprocess.run(
        [str(esbuild), "host.js", "--bundle", "--format=esm", f"--outfile={bundle.name}"],
        cwd=CACHE,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return bundle.read_bytes()


def serve_host(mcp: FastMCP, bundle: bytes) -> None:
    """Serve the host page at ``/test-host`` on ``mcp`` (the app under test)."""

    @mcp.custom_route("/test-host", methods=["GET"])
    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE)

    @mcp.custom_route("/test-host.js", methods=["GET"])
    async def script(request: Request) -> Response:
        return Response(bundle, media_type="text/javascript")
