"""The ``durable-mcp`` command: ``durable-mcp serve`` runs the server over HTTP.

Each flag mirrors one environment variable (see ``config.py``); a flag wins.
Anything that stops the start -- a bad setting, a port in use -- is one line
on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from collections.abc import Sequence
from typing import NoReturn

from fastmcp import FastMCP

from durable_mcp.config import ConfigError, Settings, load_settings
from durable_mcp.server import create_server
from durable_mcp.store import StoreError

EXIT_BAD_START = 2

#: flag -> the environment variable it overrides.
SERVE_FLAGS = {
    "--host": "DURABLE_MCP_HOST",
    "--port": "DURABLE_MCP_PORT",
    "--store": "DURABLE_MCP_STORE",
    "--data-dir": "DURABLE_MCP_DATA_DIR",
    "--resonate-url": "RESONATE_URL",
    "--pg-dsn": "RESONATE_PG_DSN",
    "--open-meteo-url": "OPEN_METEO_ARCHIVE_URL",
    "--await-max-seconds": "DURABLE_MCP_AWAIT_MAX_SECONDS",
    "--retention": "DURABLE_MCP_RETENTION",
    "--job-deadlines": "DURABLE_MCP_JOB_DEADLINES",
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="durable-mcp", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the MCP server over streamable HTTP")
    for flag, env_name in SERVE_FLAGS.items():
        serve_parser.add_argument(flag, metavar="VALUE", help=f"overrides {env_name}")
    args = parser.parse_args(argv)

    overrides = {
        env: getattr(args, flag[2:].replace("-", "_")) for flag, env in SERVE_FLAGS.items()
    }
    configure_logging()
    try:
        settings = load_settings(overrides=overrides)
        sock = bind(settings)
        app = create_server(settings)
    except (ConfigError, StoreError) as exc:
        _fail(str(exc))
    asyncio.run(serve(app, settings, sock))


def _fail(message: str) -> NoReturn:
    print(f"durable-mcp: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_START)


def bind(settings: Settings) -> socket.socket:
    """Bind the listening socket up front, so a taken port is a clear error."""
    try:
        infos = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this; without it Nagle's algorithm meets
        # the client's delayed ACK and every MCP call waits ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
    except OSError as exc:
        raise ConfigError(
            f"DURABLE_MCP_HOST/DURABLE_MCP_PORT: cannot listen on "
            f"{settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from exc
    return sock


async def serve(app: FastMCP, settings: Settings, sock: socket.socket) -> None:
    await app.run_http_async(
        show_banner=False, host=settings.host, port=settings.port, sockets=[sock]
    )


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The SDK logs every durable operation at INFO; keep its warnings and errors.
    logging.getLogger("resonate").setLevel(logging.WARNING)
