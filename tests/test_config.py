"""Settings: defaults, env, flags, and one clear line for a bad value."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from durable_mcp.cli import bind
from durable_mcp.config import OPTIONS, ConfigError, Settings, load_settings
from durable_mcp_testing.processes import DURABLE_MCP, free_port

#: The environment variable behind each flag.
FLAGS_BY_NAME = {option.flag: option.env for option in OPTIONS if option.flag}


def test_defaults_are_the_documented_ones() -> None:
    settings = load_settings(env={})
    assert settings == Settings(
        host="127.0.0.1",
        port=5001,
        store="embedded",
        data_dir=Path(".durable-mcp"),
        resonate_url=None,
        open_meteo_url="https://archive-api.open-meteo.com/v1/archive",
        await_max_seconds=45.0,
        retention=timedelta(days=7),
        max_fetches=8,
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_localhost_needs_no_token(host: str) -> None:
    assert load_settings(env={"DURABLE_MCP_HOST": host}).token is None


def test_a_token_lets_the_server_listen_beyond_localhost_and_stays_secret() -> None:
    token = "a-long-secret-token-value"
    settings = load_settings(env={"DURABLE_MCP_HOST": "0.0.0.0", "DURABLE_MCP_TOKEN": token})
    assert settings.token == token
    assert token not in repr(settings)
    with pytest.raises(ConfigError) as refused:
        load_settings(env={"DURABLE_MCP_TOKEN": "secret with spaces in it"})
    assert "secret with spaces" not in str(refused.value)  # a refused token is not echoed


def test_env_is_read_and_flags_win_over_it() -> None:
    env = {"DURABLE_MCP_PORT": "6000", "OPEN_METEO_ARCHIVE_URL": "http://127.0.0.1:9/v1/archive"}
    assert load_settings(env=env).port == 6000
    settings = load_settings(env=env, overrides={"DURABLE_MCP_PORT": "7000"})
    assert settings.port == 7000
    assert settings.open_meteo_url == "http://127.0.0.1:9/v1/archive"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DURABLE_MCP_PORT": "abc"}, "DURABLE_MCP_PORT: must be a whole number"),
        ({"DURABLE_MCP_PORT": "70000"}, "DURABLE_MCP_PORT: must be a whole number"),
        ({"DURABLE_MCP_STORE": "disk"}, "DURABLE_MCP_STORE: must be one of memory, embedded"),
        ({"RESONATE_URL": "localhost:8001"}, "RESONATE_URL: must be an http:// or https:// URL"),
        ({"OPEN_METEO_ARCHIVE_URL": "ftp://x"}, "OPEN_METEO_ARCHIVE_URL: must be an http"),
        ({"DURABLE_MCP_AWAIT_MAX_SECONDS": "0"}, "DURABLE_MCP_AWAIT_MAX_SECONDS: must be a pos"),
        (
            {"RESONATE_PG_DSN": "postgresql://x", "RESONATE_URL": "http://x"},
            "RESONATE_PG_DSN and RESONATE_URL: set one engine",
        ),
        ({"DURABLE_MCP_RETENTION": "a week"}, "DURABLE_MCP_RETENTION: must be a positive dur"),
        ({"DURABLE_MCP_RETENTION": "-1d"}, "DURABLE_MCP_RETENTION: must be a positive dur"),
        ({"DURABLE_MCP_HOST": "0.0.0.0"}, "DURABLE_MCP_TOKEN: required to listen on 0.0.0.0"),
        ({"DURABLE_MCP_HOST": "192.168.1.5"}, "DURABLE_MCP_TOKEN: required to listen on 192"),
        ({"DURABLE_MCP_TOKEN": "short"}, "DURABLE_MCP_TOKEN: must be at least 16 printable"),
        ({"DURABLE_MCP_ALLOWED_ORIGINS": "example.com"}, "DURABLE_MCP_ALLOWED_ORIGINS: expected"),
        ({"DURABLE_MCP_ALLOWED_ORIGINS": "https://a.b/path"}, "DURABLE_MCP_ALLOWED_ORIGINS: exp"),
        ({"DURABLE_MCP_MAX_RUNNING_JOBS": "0"}, "DURABLE_MCP_MAX_RUNNING_JOBS: must be a whole"),
        ({"DURABLE_MCP_MAX_RUNNING_JOBS": "1.5"}, "DURABLE_MCP_MAX_RUNNING_JOBS: must be a whole"),
        ({"DURABLE_MCP_RATE_LIMIT": "inf"}, "DURABLE_MCP_RATE_LIMIT: must be a positive number"),
        ({"DURABLE_MCP_MAX_FETCHES": "0"}, "DURABLE_MCP_MAX_FETCHES: must be a whole number from"),
        ({"DURABLE_MCP_MAX_FETCHES": "257"}, "DURABLE_MCP_MAX_FETCHES: must be a whole number fr"),
        ({"DURABLE_MCP_MAX_FETCHES": "many"}, "DURABLE_MCP_MAX_FETCHES: must be a whole number f"),
        ({"DURABLE_MCP_TASKS": "maybe"}, "DURABLE_MCP_TASKS: must be on or off, got 'maybe'"),
    ],
)
def test_a_bad_value_names_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)


@pytest.mark.parametrize(
    ("value", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("12h", 43200), ("7d", 604800)]
)
def test_retention_takes_seconds_or_a_unit(value: str, seconds: int) -> None:
    settings = load_settings(env={"DURABLE_MCP_RETENTION": value})
    assert settings.retention == timedelta(seconds=seconds)


def test_job_deadlines_are_kind_duration_pairs() -> None:
    settings = load_settings(env={"DURABLE_MCP_JOB_DEADLINES": "weather_data=10m, countdown=2h"})
    assert settings.job_deadlines == {
        "weather_data": timedelta(minutes=10),
        "countdown": timedelta(hours=2),
    }
    with pytest.raises(ConfigError, match="DURABLE_MCP_JOB_DEADLINES: expected kind=duration"):
        load_settings(env={"DURABLE_MCP_JOB_DEADLINES": "weather_data"})
    with pytest.raises(ConfigError, match="DURABLE_MCP_JOB_DEADLINES: must be a positive"):
        load_settings(env={"DURABLE_MCP_JOB_DEADLINES": "weather_data=soon"})


def test_max_fetches_is_read_from_env_and_flag() -> None:
    assert load_settings(env={"DURABLE_MCP_MAX_FETCHES": "4"}).max_fetches == 4
    settings = load_settings(
        env={"DURABLE_MCP_MAX_FETCHES": "4"}, overrides={"DURABLE_MCP_MAX_FETCHES": "256"}
    )
    assert settings.max_fetches == 256


def run_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DURABLE_MCP, "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


@pytest.mark.parametrize(
    ("value", "on"), [("on", True), ("OFF", False), ("0", False), ("yes", True)]
)
def test_tasks_are_on_unless_turned_off(value: str, on: bool) -> None:
    assert load_settings(env={}).tasks is True
    assert load_settings(env={"DURABLE_MCP_TASKS": value}).tasks is on
    assert load_settings(env={}, overrides={"DURABLE_MCP_TASKS": value}).tasks is on


def test_serve_with_a_bad_flag_exits_2_with_one_line_that_names_the_flag() -> None:
    result = run_serve("--port", "abc")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "durable-mcp: --port: must be a whole number from 1 to 65535, got 'abc'"
    ]


def test_a_bad_environment_variable_is_named_as_such() -> None:
    result = run_serve(env={**os.environ, "DURABLE_MCP_STORE": "foo"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "durable-mcp: DURABLE_MCP_STORE: must be one of memory, embedded, got 'foo'"
    ]


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--store", "foo", "--store: must be one of memory, embedded, got 'foo'"),
        ("--max-fetches", "0", "--max-fetches: must be a whole number from 1 to 256, got '0'"),
        ("--retention", "soon", "--retention: must be a positive duration"),
        ("--job-deadlines", "x", "--job-deadlines: expected kind=duration pairs"),
        ("--tasks", "maybe", "--tasks: must be on or off, got 'maybe'"),
        ("--open-meteo-url", "ftp://x", "--open-meteo-url: must be an http:// or https:// URL"),
    ],
)
def test_a_flags_error_names_the_flag(flag: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(env={}, overrides={FLAGS_BY_NAME[flag]: value})


def test_serve_on_a_taken_port_exits_2_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_serve("--port", port)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"durable-mcp: cannot listen on 127.0.0.1:{port}: ")


def test_the_listening_socket_disables_nagle() -> None:
    # Without TCP_NODELAY every MCP call waited ~40 ms for a delayed ACK.
    sock = bind(Settings(port=free_port()))
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        sock.close()


def test_version_prints_the_installed_version() -> None:
    shown = subprocess.run([DURABLE_MCP, "--version"], capture_output=True, text=True)

    assert shown.returncode == 0
    assert shown.stdout == f"durable-mcp {version('mcp-durable-jobs')}\n"


def test_help_opens_with_whole_sentences_without_markup() -> None:
    shown = subprocess.run([DURABLE_MCP, "--help"], capture_output=True, text=True).stdout

    description = shown.split("\n\n")[1]
    assert description.startswith("durable-mcp: long-running MCP tools as durable jobs.")
    assert description.rstrip().endswith(".")
    assert "``" not in shown


def test_serve_help_gives_each_settings_meaning_default_and_environment_variable() -> None:
    shown = subprocess.run([DURABLE_MCP, "serve", "--help"], capture_output=True, text=True)
    text = "".join(shown.stdout.split())  # argparse wraps lines, at hyphens too

    for option in OPTIONS:
        if option.flag is None:
            assert option.env in text  # said to be read from the environment only
            continue
        help_text = f"{option.flag} {_metavar(option.flag)} {option.meaning}. "
        assert "".join(help_text.split()) in text
        assert "".join(f"Default: {option.default}. Env: {option.env}.".split()) in text


def _metavar(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_").upper()


def test_the_readmes_settings_table_is_the_one_the_server_reads() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    rows = re.findall(r"^\| `([A-Z_]+)` \| (.*?) \| (.*?) \| .* \|$", readme, re.MULTILINE)
    table = {env: (flag, default.strip("`")) for env, flag, default in rows}

    for option in OPTIONS:
        flag = (
            f"`{option.flag}`" if option.flag else "(none: a command line is visible to all users)"
        )
        assert table[option.env] == (flag, option.default), option.env


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"store": "embeded"}, "Settings.store: must be one of memory, embedded, got 'embeded'"),
        ({"max_fetches": 0}, "Settings.max_fetches: must be a whole number from 1 to 256, got 0"),
        ({"rate_limit": 0}, "Settings.rate_limit: must be a positive number, got 0"),
        ({"await_max_seconds": -1}, "Settings.await_max_seconds: must be a positive number"),
        ({"port": True}, "Settings.port: must be a whole number from 1 to 65535, got True"),
        ({"retention": "soon"}, "Settings.retention: must be a positive duration"),
        ({"data_dir": 7}, "Settings.data_dir: must be a path (a str or a Path), got 7"),
        ({"host": "0.0.0.0"}, "Settings.token: required to listen on 0.0.0.0"),
        ({"allowed_origins": "ftp://x"}, "Settings.allowed_origins: expected comma-separated"),
    ],
)
def test_settings_built_in_code_are_checked_as_the_environment_is(
    given: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings(**given)


def test_settings_in_code_take_a_str_path_and_durations_as_seconds_or_text() -> None:
    settings = Settings(
        data_dir="jobs",
        retention=3600,  # type: ignore[arg-type]  # a number of seconds works too
        job_deadlines={"countdown": "2h"},  # type: ignore[dict-item]  # and text
    )

    assert settings.data_dir == Path("jobs")
    assert settings.retention == timedelta(hours=1)
    assert settings.job_deadlines == {"countdown": timedelta(hours=2)}
    origins = "https://a.example, https://b.example"
    assert Settings(allowed_origins=origins).allowed_origins == (  # type: ignore[arg-type]
        "https://a.example",
        "https://b.example",
    )
