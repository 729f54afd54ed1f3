"""Settings from flags and the environment, validated once at start.

Every setting has one name in the environment (the contract table in the
README) and one flag on ``durable-mcp serve``; a flag wins over the
environment. A bad value raises :class:`ConfigError` naming the setting, which
the CLI prints as one line (exit 2) -- never a traceback.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

DEFAULT_OPEN_METEO_ARCHIVE_URL = "https://archive-api.open-meteo.com/v1/archive"

#: Claude Desktop abandons a tool call after about 60 s; stay well below it.
DEFAULT_AWAIT_MAX_SECONDS = 45.0

#: How long settled jobs stay retrievable in the embedded store.
DEFAULT_RETENTION = timedelta(days=7)

#: How many jobs may run at once before a start is refused as busy.
DEFAULT_MAX_RUNNING_JOBS = 10_000

#: probe_status/await_result/get_timer_status calls per second, per client session.
DEFAULT_RATE_LIMIT = 10.0

#: Open-Meteo requests in flight at once; more weather jobs wait their turn.
DEFAULT_MAX_FETCHES = 8
#: Each fetch in flight takes a thread: a bound against a typo such as 100000.
MOST_FETCHES = 256

#: The shortest bearer token we accept.
MIN_TOKEN_LENGTH = 16

Store = Literal["memory", "embedded"]
STORES: tuple[Store, ...] = ("memory", "embedded")


class StartError(SystemExit):
    """Durable tools cannot start: a bad setting, a data dir in use or damaged.

    A ``SystemExit``, as argparse's errors are: an app that does not catch it
    ends with its one line on stderr (``durable-mcp: ...``, exit code 1), as
    `durable-mcp serve` does, never a traceback. An app that wants to go on
    catches it by name; ``str()`` is the message alone.
    """

    def __init__(self, message: str) -> None:
        super().__init__(f"durable-mcp: {message}")
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(StartError):
    """A setting has a value we cannot run with; the message names it."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 5001
    store: Store = "embedded"
    data_dir: Path = Path(".durable-mcp")
    resonate_url: str | None = None
    pg_dsn: str | None = None
    open_meteo_url: str = DEFAULT_OPEN_METEO_ARCHIVE_URL
    await_max_seconds: float = DEFAULT_AWAIT_MAX_SECONDS
    retention: timedelta = DEFAULT_RETENTION
    job_deadlines: Mapping[str, timedelta] = field(default_factory=dict)
    token: str | None = field(default=None, repr=False)  # never in a log line
    allowed_origins: tuple[str, ...] = ()
    max_running_jobs: int = DEFAULT_MAX_RUNNING_JOBS
    rate_limit: float = DEFAULT_RATE_LIMIT
    max_fetches: int = DEFAULT_MAX_FETCHES
    tasks: bool = True  # serve MCP tasks (SEP-2663) to clients that opt in

    @property
    def engine(self) -> str:
        """What holds the jobs' state, for logs: ``memory``, ``embedded`` or a URL."""
        if self.pg_dsn:
            return "postgres (resonate-pg)"
        if self.resonate_url:
            return f"resonate server at {self.resonate_url}"
        return self.store


@dataclass(frozen=True)
class Option:
    """One setting: its environment variable, its flag on ``durable-mcp serve``
    (None: the environment only), and what ``--help`` and the README say of it."""

    env: str
    flag: str | None
    default: str
    meaning: str


#: Every setting the server reads, in the order ``durable-mcp serve --help`` shows them.
OPTIONS = (
    Option(
        "DURABLE_MCP_HOST",
        "--host",
        "127.0.0.1",
        "bind address; any but localhost needs DURABLE_MCP_TOKEN",
    ),
    Option("DURABLE_MCP_PORT", "--port", "5001", "port, 1 to 65535; the MCP endpoint is /mcp"),
    Option(
        "DURABLE_MCP_STORE",
        "--store",
        "embedded",
        "embedded (durable, in the data dir) or memory (in-process, lost on exit)",
    ),
    Option(
        "DURABLE_MCP_DATA_DIR",
        "--data-dir",
        "./.durable-mcp",
        "where the embedded store keeps its files",
    ),
    Option(
        "DURABLE_MCP_RETENTION",
        "--retention",
        "7d",
        "how long finished jobs stay retrievable: seconds, or 90m, 12h, 7d",
    ),
    Option(
        "DURABLE_MCP_JOB_DEADLINES",
        "--job-deadlines",
        "each kind's own",
        "the longest a kind of job may run, e.g. weather_data=10m,countdown=2h",
    ),
    Option(
        "RESONATE_URL",
        "--resonate-url",
        "unset",
        "keep the jobs on a Resonate Server at this URL instead (not tested here)",
    ),
    Option(
        "RESONATE_PG_DSN",
        "--pg-dsn",
        "unset",
        "keep the jobs on Postgres through resonate-pg instead (schema: make pg-schema)",
    ),
    Option(
        "OPEN_METEO_ARCHIVE_URL",
        "--open-meteo-url",
        DEFAULT_OPEN_METEO_ARCHIVE_URL,
        "the weather archive, an http(s) URL",
    ),
    Option(
        "DURABLE_MCP_AWAIT_MAX_SECONDS",
        "--await-max-seconds",
        "45",
        "the longest await_result waits, in seconds",
    ),
    Option(
        "DURABLE_MCP_TOKEN",
        None,
        "unset",
        f"bearer token every request must carry ({MIN_TOKEN_LENGTH}+ characters); "
        "the proxy sends it too",
    ),
    Option(
        "DURABLE_MCP_ALLOWED_ORIGINS",
        "--allowed-origins",
        "unset",
        "browser origins let in besides this machine's own, comma-separated, e.g. https://app.example.com",
    ),
    Option(
        "DURABLE_MCP_MAX_RUNNING_JOBS",
        "--max-running-jobs",
        "10000",
        "running jobs before a new start is refused as busy (1 or more)",
    ),
    Option(
        "DURABLE_MCP_RATE_LIMIT",
        "--rate-limit",
        "10",
        "probe_status/await_result/get_timer_status calls per second per client "
        "(bursts of twice that)",
    ),
    Option(
        "DURABLE_MCP_MAX_FETCHES",
        "--max-fetches",
        "8",
        f"Open-Meteo requests in flight at once, 1 to {MOST_FETCHES}; "
        "further weather jobs wait their turn",
    ),
    Option(
        "DURABLE_MCP_TASKS",
        "--tasks",
        "on",
        "on or off: serve MCP tasks to clients that ask for them "
        "(off: they get the job name, as any client does)",
    ),
)

#: Every environment variable the server reads.
ENV_NAMES = tuple(option.env for option in OPTIONS)

#: The flag of each environment variable that has one.
FLAGS = {option.env: option.flag for option in OPTIONS if option.flag is not None}


def load_settings(
    env: Mapping[str, str] | None = None, overrides: Mapping[str, str | None] | None = None
) -> Settings:
    """Build validated :class:`Settings` from ``env`` plus flag ``overrides``.

    ``overrides`` is keyed by env name (``DURABLE_MCP_PORT``); a ``None`` value
    means the flag was not given. Empty strings count as unset. An error names
    the flag when the value came from one, else the environment variable.
    """
    environ = os.environ if env is None else env
    raw = {name: environ.get(name) or None for name in ENV_NAMES}
    given_as_flag = set()
    for env_name, value in (overrides or {}).items():
        if value is not None:
            raw[env_name] = value
            given_as_flag.add(env_name)

    def name(env_name: str) -> str:
        """How an error names the setting: as the user gave it."""
        return FLAGS[env_name] if env_name in given_as_flag else env_name

    host = raw["DURABLE_MCP_HOST"] or Settings.host
    store = raw["DURABLE_MCP_STORE"] or Settings.store
    if store not in STORES:
        raise ConfigError(
            f"{name('DURABLE_MCP_STORE')}: must be one of {', '.join(STORES)}, got {store!r}"
        )
    pg_dsn = raw["RESONATE_PG_DSN"]
    resonate_url = raw["RESONATE_URL"]
    if pg_dsn and resonate_url:
        raise ConfigError(
            f"{name('RESONATE_PG_DSN')} and {name('RESONATE_URL')}: set one engine, not both"
        )
    if resonate_url is not None:
        check_http_url(name("RESONATE_URL"), resonate_url)
    open_meteo_url = raw["OPEN_METEO_ARCHIVE_URL"] or DEFAULT_OPEN_METEO_ARCHIVE_URL
    check_http_url(name("OPEN_METEO_ARCHIVE_URL"), open_meteo_url)
    token = _token(raw["DURABLE_MCP_TOKEN"], host)

    return Settings(
        host=host,
        port=_whole_number(name("DURABLE_MCP_PORT"), raw["DURABLE_MCP_PORT"], Settings.port, 65535),
        store=store,
        data_dir=Path(raw["DURABLE_MCP_DATA_DIR"] or Settings.data_dir),
        resonate_url=resonate_url,
        pg_dsn=pg_dsn,
        open_meteo_url=open_meteo_url,
        await_max_seconds=_positive_number(
            name("DURABLE_MCP_AWAIT_MAX_SECONDS"),
            raw["DURABLE_MCP_AWAIT_MAX_SECONDS"],
            DEFAULT_AWAIT_MAX_SECONDS,
            "seconds",
        ),
        retention=_duration(name("DURABLE_MCP_RETENTION"), raw["DURABLE_MCP_RETENTION"]),
        job_deadlines=_deadlines(
            name("DURABLE_MCP_JOB_DEADLINES"), raw["DURABLE_MCP_JOB_DEADLINES"]
        ),
        token=token,
        allowed_origins=_origins(
            name("DURABLE_MCP_ALLOWED_ORIGINS"), raw["DURABLE_MCP_ALLOWED_ORIGINS"]
        ),
        max_running_jobs=_whole_number(
            name("DURABLE_MCP_MAX_RUNNING_JOBS"),
            raw["DURABLE_MCP_MAX_RUNNING_JOBS"],
            DEFAULT_MAX_RUNNING_JOBS,
        ),
        rate_limit=_positive_number(
            name("DURABLE_MCP_RATE_LIMIT"),
            raw["DURABLE_MCP_RATE_LIMIT"],
            DEFAULT_RATE_LIMIT,
            "calls per second",
        ),
        max_fetches=_whole_number(
            name("DURABLE_MCP_MAX_FETCHES"),
            raw["DURABLE_MCP_MAX_FETCHES"],
            DEFAULT_MAX_FETCHES,
            MOST_FETCHES,
        ),
        tasks=_on_or_off(name("DURABLE_MCP_TASKS"), raw["DURABLE_MCP_TASKS"], Settings.tasks),
    )


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (``localhost``, ``127.0.0.1``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _token(value: str | None, host: str) -> str | None:
    # The value itself never goes into a message: it is a secret.
    if value is None:
        if not is_loopback(host):
            raise ConfigError(
                f"DURABLE_MCP_TOKEN: required to listen on {host}, which other machines "
                "can reach; set it to a long random secret, e.g. the output of "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return None
    if len(value) < MIN_TOKEN_LENGTH or not value.isprintable() or " " in value:
        raise ConfigError(
            f"DURABLE_MCP_TOKEN: must be at least {MIN_TOKEN_LENGTH} printable characters "
            "without spaces"
        )
    return value


def _origins(name: str, value: str | None) -> tuple[str, ...]:
    """``https://app.example.com,http://localhost:6274``: browser origins let in."""
    origins = tuple(item.strip().rstrip("/") for item in (value or "").split(",") if item.strip())
    for origin in origins:
        parsed = urlparse(origin)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path:
            raise ConfigError(
                f"{name}: expected comma-separated origins such as "
                f"https://app.example.com, got {origin!r}"
            )
    return origins


def _whole_number(name: str, value: str | None, default: int, most: int | None = None) -> int:
    """A whole number from 1 (to ``most``), or ``default`` when unset."""
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1 or (most is not None and number > most):
        rule = f"from 1 to {most}" if most is not None else "of at least 1"
        raise ConfigError(f"{name}: must be a whole number {rule}, got {value!r}")
    return number


def _on_or_off(name: str, value: str | None, default: bool) -> bool:
    """``on`` or ``off`` (also true/false, yes/no, 1/0), or ``default`` when unset."""
    if value is None:
        return default
    text = value.strip().lower()
    if text in ("on", "true", "yes", "1"):
        return True
    if text in ("off", "false", "no", "0"):
        return False
    raise ConfigError(f"{name}: must be on or off, got {value!r}")


def _positive_number(name: str, value: str | None, default: float, unit: str) -> float:
    """A positive, finite number of ``unit``, or ``default`` when unset."""
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise ConfigError(f"{name}: must be a positive number of {unit}, got {value!r}")
    return number


UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _deadlines(name: str, value: str | None) -> dict[str, timedelta]:
    """``weather_data=10m,countdown=2h``: the longest each kind of job may run."""
    deadlines = {}
    for item in (value or "").split(","):
        if not item.strip():
            continue
        kind, sep, duration = item.partition("=")
        if not sep or not kind.strip():
            raise ConfigError(f"{name}: expected kind=duration pairs such as weather_data=10m")
        deadlines[kind.strip()] = _duration(name, duration)
    return deadlines


def _duration(name: str, value: str | None) -> timedelta:
    """``90``, ``90s``, ``15m``, ``12h`` or ``7d``."""
    if value is None:
        return DEFAULT_RETENTION
    text = value.strip().lower()
    unit = UNITS.get(text[-1:], 0)
    number = text[:-1] if unit else text
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(
            f"{name}: must be a positive duration such as 3600, 12h or 7d, got {value!r}"
        )
    return timedelta(seconds=seconds)


def check_http_url(name: str, value: str) -> None:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name}: must be an http:// or https:// URL, got {value!r}")
