"""One log format for the whole server: ours, FastMCP's, uvicorn's and the SDKs'.

Every line is ``2026-11-24 21:40:01 INFO durable_mcp: message``, written by one
handler on the root logger to stderr. FastMCP and uvicorn are told not to
install handlers of their own (FastMCP's are rich, boxed and multi-line), so
their records reach that one handler too. Nothing here imports either library.
"""

from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

#: Loggers quieter than INFO, and why.
QUIET = {
    # The SDK logs every durable operation at INFO; keep its warnings and errors.
    "resonate": logging.WARNING,
    # The MCP SDK logs each session's id at INFO: a credential of sorts, and noise.
    "mcp.server.streamable_http": logging.WARNING,
    "mcp.server.streamable_http_manager": logging.WARNING,
    # psycopg's pool warns at each failed reconnection attempt (twice a second in
    # an outage); the Postgres engine logs an outage once, when it starts and ends.
    "psycopg.pool": logging.ERROR,
}


def configure_logging(level: int = logging.INFO) -> None:
    """Send every logger's records to stderr in :data:`FORMAT`, before or after
    FastMCP is imported (it reads ``FASTMCP_LOG_ENABLED`` once, at import)."""
    os.environ["FASTMCP_LOG_ENABLED"] = "false"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Imported already (a bench imports it first): undo the handlers its import added.
    fastmcp_logger = logging.getLogger("fastmcp")
    for old in fastmcp_logger.handlers[:]:
        fastmcp_logger.removeHandler(old)
    fastmcp_logger.propagate = True
    for name, quiet_level in QUIET.items():
        logging.getLogger(name).setLevel(quiet_level)
    keep_queries_out()


class WithoutQuery(logging.Filter):
    """uvicorn's access line without the request's query string.

    A client may put a secret there (``/mcp?access_token=...``): it is refused,
    and must not be written down either. The line keeps the path and a ``?``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            path, mark, _ = args[2].partition("?")
            record.args = (*args[:2], path + mark, *args[3:])
        return True


def keep_queries_out() -> None:
    """Install :class:`WithoutQuery` on uvicorn's access logger (once)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, WithoutQuery) for f in access.filters):
        access.addFilter(WithoutQuery())


def quiet_the_sdk() -> None:
    """In an app of one's own: keep the SDK to its warnings (it logs every
    durable operation at INFO, two lines a request), unless the app set the
    ``resonate`` logger's level itself; and keep query strings out of uvicorn's
    access lines."""
    sdk = logging.getLogger("resonate")
    if sdk.level == logging.NOTSET:
        sdk.setLevel(QUIET["resonate"])
    keep_queries_out()
