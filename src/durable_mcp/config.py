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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
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

#: Sessions of 2025-11-25 clients open at once (each ~40 KB; idle ones close after 10 min).
DEFAULT_MAX_SESSIONS = 1000

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
    """What a server runs with. ``load_settings`` reads them from the environment and
    flags; code may build them too (``add_to(mcp, Settings(...))``), and the same
    rules hold: a bad value raises :class:`ConfigError` naming ``Settings.<field>``.
    A path may be a ``str``, a duration a number of seconds or text such as ``7d``.
    """

    host: str = "127.0.0.1"
    port: int = 5001
    store: Store = "embedded"
    data_dir: Path | str = Path(".durable-mcp")  # a str is made a Path
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
    max_sessions: int = DEFAULT_MAX_SESSIONS
    webhook_url: str | None = None  # each job's end and question is POSTed there
    webhook_secret: str | None = field(default=None, repr=False)  # signs them; never logged
    web: bool = True  # the jobs page (/jobs) and /metrics, behind the token if one is set
    # Sign-in with JWTs from the team's identity provider (``security.sign_in``):
    jwks_uri: str | None = None  # where the provider publishes its keys, or:
    jwt_public_key: str | None = field(default=None, repr=False)  # a PEM, or a path to one
    jwt_issuer: str | None = None  # the tokens' "iss"; checked when set
    jwt_audience: str | None = None  # their "aud"; checked when set
    jwt_scopes: tuple[str, ...] = ()  # scopes every token must have
    auth_server: str | None = None  # where clients sign in (default: the issuer)
    admin_scope: str | None = None  # a token with it sees and acts on every owner's jobs
    public_url: str | None = None  # this server as clients reach it (default: http://host:port)
    max_running_jobs_per_owner: int | None = None  # default: running_jobs_per_owner

    def __post_init__(self) -> None:
        def checked(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        def label(name: str) -> str:
            return f"Settings.{name}"

        checked("host", _host(label("host"), self.host))
        checked("port", _whole(label("port"), self.port, 65535))
        checked("store", _store(label("store"), self.store))
        checked("data_dir", _path(label("data_dir"), self.data_dir))
        checked("resonate_url", _optional_url(label("resonate_url"), self.resonate_url))
        checked("pg_dsn", _optional_text(label("pg_dsn"), self.pg_dsn))
        if self.pg_dsn and self.resonate_url:
            raise ConfigError("Settings.pg_dsn and Settings.resonate_url: set one engine, not both")
        checked("open_meteo_url", _url(label("open_meteo_url"), self.open_meteo_url))
        checked("await_max_seconds", _positive(label("await_max_seconds"), self.await_max_seconds))
        checked("retention", _duration(label("retention"), self.retention))
        checked("job_deadlines", _deadlines(label("job_deadlines"), self.job_deadlines))
        checked("jwt_public_key", _public_key(label("jwt_public_key"), self.jwt_public_key))
        checked("jwks_uri", _optional_url(label("jwks_uri"), self.jwks_uri))
        checked("auth_server", _optional_url(label("auth_server"), self.auth_server))
        checked("public_url", _optional_url(label("public_url"), self.public_url))
        checked("jwt_scopes", _scopes(label("jwt_scopes"), self.jwt_scopes))
        for name in ("jwt_issuer", "jwt_audience", "admin_scope"):
            checked(name, _optional_text(label(name), getattr(self, name)))
        _check_sign_in({name: getattr(self, name) for name in SIGN_IN}, self.token, label)
        checked("token", _token(label("token"), self.token, self.host, self.signs_in))
        checked("allowed_origins", _origins(label("allowed_origins"), self.allowed_origins))
        checked("max_running_jobs", _whole(label("max_running_jobs"), self.max_running_jobs))
        if (per_owner := self.max_running_jobs_per_owner) is not None:
            name = label("max_running_jobs_per_owner")
            checked("max_running_jobs_per_owner", _whole(name, per_owner))
        checked("rate_limit", _positive(label("rate_limit"), self.rate_limit))
        checked("max_fetches", _whole(label("max_fetches"), self.max_fetches, MOST_FETCHES))
        checked("tasks", _on_or_off(label("tasks"), self.tasks))
        checked("web", _on_or_off(label("web"), self.web))
        checked("max_sessions", _whole(label("max_sessions"), self.max_sessions))
        checked("webhook_url", _optional_url(label("webhook_url"), self.webhook_url))
        elsewhere = bool(self.pg_dsn or self.resonate_url)
        webhook = (self.webhook_url, self.webhook_secret, elsewhere)
        _check_webhook(*webhook, label("webhook_url"), label("webhook_secret"))

    @property
    def signs_in(self) -> bool:
        """Whether callers sign in with JWTs (then each job belongs to its caller)."""
        return bool(self.jwks_uri or self.jwt_public_key)

    @property
    def running_jobs_per_owner(self) -> int:
        """The most jobs one owner runs at once: all of them for the single owner;
        signed in, a tenth unless set, so that one person cannot fill the server."""
        if self.max_running_jobs_per_owner is not None:
            return min(self.max_running_jobs_per_owner, self.max_running_jobs)
        return max(1, self.max_running_jobs // 10) if self.signs_in else self.max_running_jobs

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
        "bind address; any but localhost needs DURABLE_MCP_TOKEN or sign-in (JWT)",
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
        "the proxy sends it too (a JWT too, when callers sign in)",
    ),
    Option(
        "DURABLE_MCP_JWKS_URI",
        "--jwks-uri",
        "unset",
        "sign callers in with JWTs signed by the keys published at this URL (the identity "
        "provider's JWKS); each job then belongs to whoever started it",
    ),
    Option(
        "DURABLE_MCP_JWT_PUBLIC_KEY",
        "--jwt-public-key",
        "unset",
        "or: the JWTs' public key, a PEM or the path to one",
    ),
    Option("DURABLE_MCP_JWT_ISSUER", "--jwt-issuer", "unset", "the JWTs' issuer (iss), checked"),
    Option(
        "DURABLE_MCP_JWT_AUDIENCE",
        "--jwt-audience",
        "unset",
        "the JWTs' audience (aud), checked: this server's resource identifier",
    ),
    Option(
        "DURABLE_MCP_JWT_SCOPES",
        "--jwt-scopes",
        "unset",
        "scopes every JWT must have, comma-separated",
    ),
    Option(
        "DURABLE_MCP_AUTH_SERVER",
        "--auth-server",
        "the issuer",
        "the authorization server clients sign in at, named in "
        "/.well-known/oauth-protected-resource",
    ),
    Option(
        "DURABLE_MCP_ADMIN_SCOPE",
        "--admin-scope",
        "unset",
        "a JWT with this scope sees and acts on every owner's jobs",
    ),
    Option(
        "DURABLE_MCP_PUBLIC_URL",
        "--public-url",
        "http://HOST:PORT",
        "this server's URL as clients reach it (behind a proxy), for the sign-in metadata",
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
        "DURABLE_MCP_MAX_RUNNING_JOBS_PER_OWNER",
        "--max-running-jobs-per-owner",
        "a tenth of the above, signed in",
        "running jobs of one owner before their new start is refused as busy",
    ),
    Option(
        "DURABLE_MCP_RATE_LIMIT",
        "--rate-limit",
        "10",
        "probe_status/await_result/get_timer_status calls per second per client (signed "
        "in: per owner), and tasks/get calls per second per client and task (bursts of "
        "twice that)",
    ),
    Option(
        "DURABLE_MCP_MAX_SESSIONS",
        "--max-sessions",
        "1000",
        "sessions of 2025-11-25 clients open at once; a new one past it gets 503 "
        "(idle ones close after 10 min)",
    ),
    Option(
        "DURABLE_MCP_MAX_FETCHES",
        "--max-fetches",
        "8",
        f"Open-Meteo requests in flight at once, 1 to {MOST_FETCHES}; "
        "further weather jobs wait their turn",
    ),
    Option(
        "DURABLE_MCP_WEBHOOK_URL",
        "--webhook-url",
        "unset",
        "POST each job's end and each question there, signed (embedded and memory stores)",
    ),
    Option(
        "DURABLE_MCP_WEBHOOK_SECRET",
        None,
        "unset",
        f"the key of the webhook's HMAC-SHA256 signature ({MIN_TOKEN_LENGTH}+ characters); "
        "needed with DURABLE_MCP_WEBHOOK_URL",
    ),
    Option(
        "DURABLE_MCP_TASKS",
        "--tasks",
        "on",
        "on or off: serve MCP tasks to clients that ask for them "
        "(off: they get the job name, as any client does)",
    ),
    Option(
        "DURABLE_MCP_WEB",
        "--web",
        "on",
        "on or off: serve the jobs page (/jobs) and /metrics, behind the token if one "
        "is set (/healthz and /readyz are always served)",
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
    for env_name, flag_value in (overrides or {}).items():
        if flag_value is not None:
            raw[env_name] = flag_value
            given_as_flag.add(env_name)

    def given(env_name: str, default: object = None) -> tuple[str, Any]:
        """The setting's name as the user gave it (flag or variable), and its value."""
        name = FLAGS[env_name] if env_name in given_as_flag else env_name
        text = raw[env_name]
        return name, default if text is None else text

    host = _host(*given("DURABLE_MCP_HOST", Settings.host))
    pg_dsn = _optional_text(*given("RESONATE_PG_DSN"))
    resonate_url = _optional_url(*given("RESONATE_URL"))
    if pg_dsn and resonate_url:
        raise ConfigError(
            f"{given('RESONATE_PG_DSN')[0]} and {given('RESONATE_URL')[0]}: "
            "set one engine, not both"
        )
    webhook_url = _optional_url(*given("DURABLE_MCP_WEBHOOK_URL"))
    webhook_secret = given("DURABLE_MCP_WEBHOOK_SECRET")[1]
    _check_webhook(
        webhook_url,
        webhook_secret,
        bool(pg_dsn or resonate_url),
        given("DURABLE_MCP_WEBHOOK_URL")[0],
        "DURABLE_MCP_WEBHOOK_SECRET",
    )
    sign_in = {
        "jwks_uri": _optional_url(*given("DURABLE_MCP_JWKS_URI")),
        "jwt_public_key": _public_key(*given("DURABLE_MCP_JWT_PUBLIC_KEY")),
        "jwt_issuer": given("DURABLE_MCP_JWT_ISSUER")[1],
        "jwt_audience": given("DURABLE_MCP_JWT_AUDIENCE")[1],
        "jwt_scopes": _scopes(*given("DURABLE_MCP_JWT_SCOPES", ())),
        "auth_server": _optional_url(*given("DURABLE_MCP_AUTH_SERVER")),
        "admin_scope": given("DURABLE_MCP_ADMIN_SCOPE")[1],
        "public_url": _optional_url(*given("DURABLE_MCP_PUBLIC_URL")),
    }
    signs_in = bool(sign_in["jwks_uri"] or sign_in["jwt_public_key"])
    _check_sign_in(sign_in, raw["DURABLE_MCP_TOKEN"], lambda field: given(env_of(field))[0])
    per_owner = given("DURABLE_MCP_MAX_RUNNING_JOBS_PER_OWNER")
    return Settings(
        **sign_in,
        max_running_jobs_per_owner=None if per_owner[1] is None else _whole(*per_owner),
        host=host,
        port=_whole(*given("DURABLE_MCP_PORT", Settings.port), 65535),
        store=_store(*given("DURABLE_MCP_STORE", Settings.store)),
        data_dir=_path(*given("DURABLE_MCP_DATA_DIR", Settings.data_dir)),
        resonate_url=resonate_url,
        pg_dsn=pg_dsn,
        open_meteo_url=_url(*given("OPEN_METEO_ARCHIVE_URL", DEFAULT_OPEN_METEO_ARCHIVE_URL)),
        await_max_seconds=_positive(
            *given("DURABLE_MCP_AWAIT_MAX_SECONDS", DEFAULT_AWAIT_MAX_SECONDS)
        ),
        retention=_duration(*given("DURABLE_MCP_RETENTION", DEFAULT_RETENTION)),
        job_deadlines=_deadlines(*given("DURABLE_MCP_JOB_DEADLINES", {})),
        token=_token(*given("DURABLE_MCP_TOKEN"), host, signs_in),
        allowed_origins=_origins(*given("DURABLE_MCP_ALLOWED_ORIGINS", ())),
        max_running_jobs=_whole(*given("DURABLE_MCP_MAX_RUNNING_JOBS", DEFAULT_MAX_RUNNING_JOBS)),
        rate_limit=_positive(*given("DURABLE_MCP_RATE_LIMIT", DEFAULT_RATE_LIMIT)),
        max_fetches=_whole(*given("DURABLE_MCP_MAX_FETCHES", DEFAULT_MAX_FETCHES), MOST_FETCHES),
        tasks=_on_or_off(*given("DURABLE_MCP_TASKS", Settings.tasks)),
        web=_on_or_off(*given("DURABLE_MCP_WEB", Settings.web)),
        max_sessions=_whole(*given("DURABLE_MCP_MAX_SESSIONS", DEFAULT_MAX_SESSIONS)),
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
    )


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (``localhost``, ``127.0.0.1``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ── the rules: each takes text (the environment, a flag) or a value (code) ──


def _host(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name}: must be a host name or address, got {value!r}")
    return value


def _store(name: str, value: object) -> Store:
    for store in STORES:
        if value == store:
            return store
    raise ConfigError(f"{name}: must be one of {', '.join(STORES)}, got {value!r}")


def _path(name: str, value: object) -> Path:
    if isinstance(value, str | os.PathLike) and str(value):
        return Path(value)
    raise ConfigError(f"{name}: must be a path (a str or a Path), got {value!r}")


def _optional_text(name: str, value: object) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return value
    raise ConfigError(f"{name}: must be a non-empty string or None, got {value!r}")


def _url(name: str, value: object) -> str:
    text = value if isinstance(value, str) else ""
    check_http_url(name, text or repr(value))
    return text


def _optional_url(name: str, value: object) -> str | None:
    return None if value is None else _url(name, value)


def _check_webhook(
    url: str | None, secret: object, elsewhere: bool, url_name: str, secret_name: str
) -> None:
    """The webhook needs a secret to sign with, and a store that writes its events
    in the commit of the change (the embedded store; the memory store keeps them),
    not an engine ``elsewhere``."""
    if url is None:
        if secret is not None:
            raise ConfigError(f"{secret_name}: set only with {url_name}")
        return
    if not isinstance(secret, str) or len(secret) < MIN_TOKEN_LENGTH or not secret.isprintable():
        raise ConfigError(  # the value itself never goes into a message: it is a secret
            f"{secret_name}: required with {url_name}, {MIN_TOKEN_LENGTH} or more printable "
            "characters, e.g. the output of "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    if elsewhere:
        raise ConfigError(
            f"{url_name}: the webhook is sent from the embedded and memory stores only, "
            "not yet from Postgres or a Resonate Server"
        )


def check_http_url(name: str, value: str) -> None:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name}: must be an http:// or https:// URL, got {value!r}")


def _token(name: str, value: object, host: str, signs_in: bool = False) -> str | None:
    # The value itself never goes into a message: it is a secret.
    if value is None:
        if not is_loopback(host) and not signs_in:
            raise ConfigError(
                f"{name}: required to listen on {host}, which other machines "
                "can reach; set it to a long random secret, e.g. the output of "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return None
    if (
        not isinstance(value, str)
        or len(value) < MIN_TOKEN_LENGTH
        or not value.isprintable()
        or " " in value
    ):
        raise ConfigError(
            f"{name}: must be at least {MIN_TOKEN_LENGTH} printable characters without spaces"
        )
    return value


#: The settings of sign-in with JWTs (the first two: where the keys are).
SIGN_IN = (
    "jwks_uri",
    "jwt_public_key",
    "jwt_issuer",
    "jwt_audience",
    "jwt_scopes",
    "auth_server",
    "admin_scope",
)


def env_of(field_name: str) -> str:
    """The environment variable of a setting (``jwt_issuer``: ``DURABLE_MCP_JWT_ISSUER``)."""
    return f"DURABLE_MCP_{field_name.upper()}"


def _check_sign_in(values: Mapping[str, Any], token: object, label: Callable[[str], str]) -> None:
    """One key source for JWTs, not with the single token; the rest only with one."""
    key_source = label("jwks_uri" if values["jwks_uri"] else "jwt_public_key")
    if values["jwks_uri"] and values["jwt_public_key"]:
        raise ConfigError(f"{label('jwks_uri')} and {label('jwt_public_key')}: set one, not both")
    if not (values["jwks_uri"] or values["jwt_public_key"]):
        for name in SIGN_IN[2:]:
            if values[name]:
                raise ConfigError(
                    f"{label(name)}: set only with {label('jwks_uri')} or "
                    f"{label('jwt_public_key')} (sign-in with JWTs)"
                )
        return
    if token is not None:
        raise ConfigError(
            f"{label('token')} and {key_source}: choose one: the single token, or sign-in with JWTs"
        )
    if values["auth_server"] is None and not str(values["jwt_issuer"] or "").startswith("http"):
        raise ConfigError(
            f"{label('auth_server')}: required to sign in with JWTs, unless "
            f"{label('jwt_issuer')} is the authorization server's URL: clients sign in "
            "there (/.well-known/oauth-protected-resource names it)"
        )


def _public_key(name: str, value: object) -> str | None:
    """A PEM public key, given as its text or as the path of a file that holds it."""
    if value is None:
        return None
    text = str(value) if isinstance(value, str | os.PathLike) else ""
    if text and "-----BEGIN" not in text:
        try:
            text = Path(text).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{name}: not a PEM, and cannot read it as a file: {exc}") from exc
    if "-----BEGIN" not in text:
        raise ConfigError(f"{name}: must be a PEM public key (-----BEGIN PUBLIC KEY-----...)")
    return text


def _scopes(name: str, value: object) -> tuple[str, ...]:
    """``mcp:use,jobs`` (commas or spaces), or a sequence of scopes."""
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"{name}: expected scopes such as mcp:use,jobs:read")
    return tuple(item.strip() for item in items if item.strip())


def _origins(name: str, value: object) -> tuple[str, ...]:
    """``https://app.example.com,http://localhost:6274``, or a sequence of them."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"{name}: expected origins such as https://app.example.com")
    origins = tuple(item.strip().rstrip("/") for item in items if item.strip())
    for origin in origins:
        parsed = urlparse(origin)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path:
            raise ConfigError(
                f"{name}: expected comma-separated origins such as "
                f"https://app.example.com, got {origin!r}"
            )
    return origins


def _number(value: object) -> float:
    """``value`` as a number: a number (not a bool) or its text; NaN if it is neither."""
    if isinstance(value, bool):
        return math.nan
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value) if isinstance(value, str) else math.nan
    except ValueError:
        return math.nan


def _whole(name: str, value: object, most: int | None = None) -> int:
    """A whole number from 1 (to ``most``)."""
    number = _number(value)
    if not (number.is_integer() and number >= 1 and (most is None or number <= most)):
        rule = f"from 1 to {most}" if most is not None else "of at least 1"
        raise ConfigError(f"{name}: must be a whole number {rule}, got {value!r}")
    return int(number)


def _positive(name: str, value: object) -> float:
    """A positive, finite number."""
    number = _number(value)
    if not (math.isfinite(number) and number > 0):
        raise ConfigError(f"{name}: must be a positive number, got {value!r}")
    return number


def _on_or_off(name: str, value: object) -> bool:
    """``on`` or ``off`` (also true/false, yes/no, 1/0), or a bool."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else ""
    if text in ("on", "true", "yes", "1"):
        return True
    if text in ("off", "false", "no", "0"):
        return False
    raise ConfigError(f"{name}: must be on or off, got {value!r}")


UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(name: str, value: object) -> timedelta:
    """A positive ``timedelta``, a number of seconds, or text: ``90``, ``90s``, ``15m``, ``7d``."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        text = value.strip().lower()
        unit = UNITS.get(text[-1:], 0)
        seconds = _number(text[:-1] if unit else text) * (unit or 1)
    else:
        seconds = _number(value)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(
            f"{name}: must be a positive duration such as 3600, 12h or 7d, got {value!r}"
        )
    return timedelta(seconds=seconds)


def _deadlines(name: str, value: object) -> dict[str, timedelta]:
    """``weather_data=10m,countdown=2h`` (or a mapping): the longest each kind may run."""
    if isinstance(value, str):
        pairs = []
        for item in value.split(","):
            if not item.strip():
                continue
            kind, sep, duration = item.partition("=")
            if not sep or not kind.strip():
                raise ConfigError(f"{name}: expected kind=duration pairs such as weather_data=10m")
            pairs.append((kind.strip(), duration))
    elif isinstance(value, Mapping) and all(isinstance(kind, str) for kind in value):
        pairs = list(value.items())
    else:
        raise ConfigError(f"{name}: expected kind=duration pairs such as weather_data=10m")
    return {kind: _duration(name, duration) for kind, duration in pairs}
