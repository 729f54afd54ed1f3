"""Fuzzing every tool's arguments: a result or a clean tool error, never a crash.

Whatever JSON a client sends as whatever argument -- missing, extra, of the
wrong type, huge, not a number, odd unicode, nested junk -- a call must end
in a normal result or a tool error the model can read, and a call that fails
must leave the jobs as they were. The tools are read off ``list_tools``, so a
new tool is fuzzed too: its arguments come from ``PLAUSIBLE`` by name, else
from its input schema.

Hypothesis drives a sync test, so the in-memory client runs on an event loop
of its own (an anyio blocking portal) for the whole run, while examples are
drawn and checked one at a time.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import hypothesis
import mcp.types as mt
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError
from hypothesis import HealthCheck, event, given
from hypothesis import strategies as st
from resonate.context import Context
from resonate.retry import Constant

from durable_mcp import ask
from durable_mcp.config import Settings
from durable_mcp.functions import BUILT_IN
from durable_mcp.functions.weather import OpenMeteoArchive
from durable_mcp.jobs.registry import DurableTools
from durable_mcp.jobs.service import InvalidArgument, Jobs
from durable_mcp.server import TOOLS, create_server
from durable_mcp_testing.fake_open_meteo import FakeOpenMeteo

#: The server's cap on any await_result wait: no fuzzed call blocks for longer.
AWAIT_MAX_SECONDS = 0.05

#: Examples per tool, on each store.
EXAMPLES_PER_TOOL = 100

#: FastMCP 4's wording when a tool raised anything but a ToolError (FastMCP.call_tool):
#: ``Error calling tool 'name': <the exception's text>`` (or without the text when
#: mask_error_details is on); an unexpected HTTP 429 or time-out gets one of the others.
UNEXPECTED = ("Error calling tool ", "Rate limited by upstream API", "Upstream request timed out")

_PYTHON_ERRORS = sorted(
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, Exception) and not issubclass(value, Warning)
)
#: What only a crash puts in an error's text: a traceback, Python's own exception names.
CRASH_WORDS = re.compile(
    rf"Traceback|(?i:internal (?:server )?error)|\b(?:{'|'.join(_PYTHON_ERRORS)})\b"
)


def crash(exc: BaseException) -> str | None:
    """Why ``exc``, raised by ``client.call_tool``, is a crash and not a clean tool error.

    ``None`` for a clean one: a ToolError whose text is the tool's own message.
    An exception the tool did not mean to raise reaches the client as a ToolError
    worded as in ``UNEXPECTED``; one raised outside the tool (a middleware) as an
    MCPError, "Internal server error".
    """
    if not isinstance(exc, ToolError):
        return f"not a tool error: {type(exc).__name__}: {exc}"
    text = str(exc)
    if text.startswith(UNEXPECTED):
        return f"an unexpected exception in the tool: {text[:300]}"
    found = CRASH_WORDS.search(text)
    if found:
        return f"{found.group()!r} in the tool error: {text[:300]}"
    return None


def shown(value: object, limit: int = 150) -> str:
    """``repr`` for a message, cut short; an int too long for ``repr`` (past 4300 digits) too."""
    if isinstance(value, int) and value.bit_length() > 14_000:
        return f"<int of {value.bit_length()} bits>"
    if isinstance(value, dict):
        text = "{" + ", ".join(f"{shown(k)}: {shown(v)}" for k, v in value.items()) + "}"
    elif isinstance(value, list):
        text = "[" + ", ".join(shown(item) for item in value) + "]"
    else:
        text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


# -- The server, and the check of one call ---------------------------------------------------

#: A tool whose job asks a question, so that answer_job has jobs to answer.
ASKING = DurableTools()
OK_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


@ASKING.tool(job_name=lambda name: f"ask_me_{name}")
async def ask_me(ctx: Context, name: str) -> bool:
    """Asks whether all is well."""
    answer = await ask(ctx, "All well?", OK_SCHEMA)
    return bool(answer["ok"])


class Fuzzer:
    """An in-memory client, open on a loop of its own, for sync (hypothesis) code to call."""

    def __init__(self, portal: BlockingPortal, client: Client[Any], jobs: Jobs) -> None:
        self.portal = portal
        self.client = client
        self.jobs = jobs  # the server's job layer: what jobs there are, without a tool call
        self.known: set[str] = portal.call(self._job_names)
        self.outcomes: Counter[tuple[str, bool]] = Counter()

    def tools(self) -> list[mt.Tool]:
        return self.portal.call(self.client.list_tools)

    def attempt(self, tool: str, arguments: dict[str, Any]) -> tuple[Any, Exception | None]:
        """Call a tool: (its data, None), or (None, what the client raised)."""
        outcome: tuple[Any, Exception | None] = self.portal.call(self._attempt, tool, arguments)
        return outcome

    def check(self, tool: str, arguments: dict[str, Any]) -> bool:
        """Call a tool; fail on a crash, or on an error that created a job. True for a result."""
        result: bool = self.portal.call(self._check, tool, arguments)
        self.outcomes[tool, result] += 1
        return result

    async def _attempt(self, tool: str, arguments: dict[str, Any]) -> tuple[Any, Exception | None]:
        try:
            return (await self.client.call_tool(tool, arguments)).data, None
        except Exception as exc:
            return None, exc

    async def _check(self, tool: str, arguments: dict[str, Any]) -> bool:
        data, exc = await self._attempt(tool, arguments)
        created = await self._job_names() - self.known
        self.known |= created
        where = f"{tool}({shown(arguments)})"
        if exc is not None:
            problem = crash(exc)
            assert problem is None, f"{where} crashed: {problem}"
            assert not created, f"{where} failed ({exc}) but created the jobs {created}"
            return False
        # A job a start tool returns must be one the other tools can look up.
        if isinstance(data, dict) and data.get("status") != "not_found":
            for key in ("job_name", "promise_id"):
                if isinstance(data.get(key), str):
                    probe, failed = await self._attempt("probe_status", {"job_names": [data[key]]})
                    assert failed is None, f"{where} returned a job probe_status refuses: {failed}"
                    assert probe[0]["status"] != "not_found", f"{where}: its job is not there"
        return True

    async def _job_names(self) -> set[str]:
        """Every job the server has, whatever its status, as list_jobs pages through them."""
        names: set[str] = set()
        cursor = None
        while True:
            page = await self.jobs.list(limit=100, cursor=cursor)
            names |= {job["job_name"] for job in page["jobs"]}
            cursor = page["next_cursor"]
            if cursor is None:
                return names


@pytest.fixture(scope="module", params=["embedded", "memory"])
def fuzzer(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fuzzer]:
    """One server per store for the whole module, as conftest's but with waits cut short."""
    settings = Settings(
        store=request.param,
        data_dir=tmp_path_factory.mktemp("data"),
        await_max_seconds=AWAIT_MAX_SECONDS,
        rate_limit=1e9,  # the fuzzer polls far faster than an agent is let to
    )
    job_layer: list[Jobs] = []

    def keep_job_layer(mcp: FastMCP, jobs: Jobs) -> None:
        job_layer.append(jobs)  # registers no tool

    with FakeOpenMeteo() as fake, start_blocking_portal() as portal:
        archive = OpenMeteoArchive(
            fake.url, timeout_seconds=5, retry_policy=Constant(delay=0, max_retries=2)
        )
        # On the loop's thread: the embedded store's SQLite works on the thread that opened it.
        server = portal.call(
            lambda: create_server(
                settings,
                archive=archive,
                durable=DurableTools(BUILT_IN, ASKING),
                tools=[*TOOLS, keep_job_layer],
                progress_interval_seconds=0.2,
            )
        )
        with portal.wrap_async_context_manager(Client(server)) as client:
            yield Fuzzer(portal, client, job_layer[0])


# -- Strategies -----------------------------------------------------------------------------

#: Made when drawn: hypothesis describes a strategy by its values' repr, and past 4300
#: digits an int has none.
HUGE_INTS = st.sampled_from([2**53 + 1, 2**63, -(2**63) - 1, 2**64]) | st.builds(
    lambda sign, digits: sign * 10**digits, st.sampled_from([1, -1]), st.sampled_from([400, 5000])
)
ODD_FLOATS = st.sampled_from(
    [math.nan, math.inf, -math.inf, -0.0, 1e308, -1e308, 1.7976931348623157e308, 5e-324, 1e-300]
)
ODD_STRINGS = st.sampled_from(
    [
        *("NaN", "nan", "Infinity", "-Infinity", "inf", "1e308", "-0", "0x10", "1_000", " 5 "),
        *("", " ", "\x00", "a\x00b", "\n", "a\nb", "\t", "\x7f", ":", "a:b", "a:1"),
        *("\u202e", "\u200f", "\u2028", "\ufeff", "\U0001f600", "שלום", "مرحبا", "e\u0301"),
        *("null", "true", "[]", "{}", "[1]", '["a"]', '["a", 1]', '{"job_name": "a"}', "[[["),
        *("[" * 10_000, "[" * 10_000 + "]" * 10_000, "[" + "9" * 5_000 + "]"),
        *("x" * 201, "x" * 10_000, "../../etc/passwd", "weather_data_1_2_2020_1"),
    ]
)
LONG_STRINGS = st.tuples(st.text(min_size=1, max_size=3), st.integers(1, 4_000)).map(
    lambda pair: pair[0] * pair[1]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE_INTS,
    st.floats(),
    ODD_FLOATS,
    st.text(max_size=20),
    ODD_STRINGS,
    LONG_STRINGS,
)
#: Any JSON value (and a few that JSON has no way to say: NaN, infinities).
JUNK = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
JUNK_KEYS = st.dictionaries(
    st.sampled_from(["ctx", "args", "kwargs", "self", "", "__proto__", "Seconds", "jobNames"])
    | st.text(max_size=12),
    JUNK,
    min_size=1,
    max_size=3,
)


def mostly(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Three in four a plausible value, else junk (it shrinks towards the plausible one)."""

    @st.composite
    def draw_one(draw: st.DrawFn) -> Any:
        return draw(JUNK) if draw(st.integers(0, 3)) == 3 else draw(plausible)

    return draw_one()


def numbers(low: float, high: float) -> st.SearchStrategy[Any]:
    """Numbers in [low, high], the bounds, just past them, and as strings."""
    inside = st.floats(low, high) | st.integers(math.ceil(low), math.floor(high))
    edges = st.sampled_from(
        [low, high, math.nextafter(low, -math.inf), math.nextafter(high, math.inf)]
    )
    return inside | edges | inside.map(str)


NAMES = st.sampled_from(
    ["tea", "egg", "a b", "😀 timer", "שלום", "x" * 200, "ask_me_tea", "ask_me_egg", "ask_me_a b"]
) | st.text(min_size=1, max_size=8)
WRAPPED_NAMES = NAMES | st.builds(
    lambda key, name: {key: name},
    st.sampled_from(["timer_name", "job_name", "name", "promise_id"]),
    NAMES,
)
NAME_LISTS = st.lists(WRAPPED_NAMES, min_size=1, max_size=4)
THIS_YEAR = dt.datetime.now(dt.UTC).year

#: Plausible values for the tools' arguments, by name; junk is mixed in with ``mostly``.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "timer_name": WRAPPED_NAMES,
    "job_name": WRAPPED_NAMES,
    "job_names": NAME_LISTS | WRAPPED_NAMES | NAME_LISTS.map(json.dumps),
    "seconds": numbers(0, 30 * 86400) | st.floats(0, 2),
    "latitude": numbers(-90, 90),
    "longitude": numbers(-180, 180),
    "year": st.integers(1939, THIS_YEAR + 1) | st.sampled_from([1940, THIS_YEAR, 9999, 10**400]),
    "month": st.integers(0, 13),
    "timezone": st.sampled_from(["auto", "UTC", "Europe/Berlin", "utc", "Etc/GMT+5", "Mars/Base"])
    | st.text(max_size=65),
    "status": st.none()
    | st.sampled_from(["running", "completed", "failed", "cancelled", "not_found"]),
    "kind": st.none() | st.sampled_from(["timer", "weather_data", ""]) | st.text(max_size=8),
    "limit": st.integers(-1, 102),
    "cursor": st.none() | NAMES,
    "timeout_seconds": st.none() | numbers(0, 60),
    "retry": st.booleans(),  # junk comes from the schema's wild values
    # Mostly right: each question takes one answer, and some must be taken.
    "answer": st.sampled_from([{"ok": True}, {"ok": False}, {"ok": True}, {"ok": "yes"}, {}]),
    "name": NAMES,  # ask_me's: "tea" asks in job ask_me_tea, one of NAMES
}


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of roughly a JSON schema's shape, for an argument ``PLAUSIBLE`` does not name."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([from_schema(option) for option in schema["anyOf"]])
    match schema.get("type"):
        case "string":
            return st.text(max_size=20)
        case "integer":
            return st.integers(-10, 100)
        case "number":
            return st.floats(-10, 100)
        case "boolean":
            return st.booleans()
        case "null":
            return st.none()
        case "array":
            return st.lists(from_schema(schema.get("items", {})), max_size=4)
        case _:
            return JUNK


def arguments_for(tool: mt.Tool) -> st.SearchStrategy[dict[str, Any]]:
    """Argument dicts for ``tool``: each argument plausible or junk, sometimes missing or extra.

    One call in four is tame -- every argument plausible, the required ones all
    there -- so that calls which should work are tried as often as broken ones.
    """
    properties: dict[str, Any] = tool.input_schema.get("properties", {})
    required = set(tool.input_schema.get("required", []))
    plausible = {
        name: PLAUSIBLE[name] if name in PLAUSIBLE else from_schema(schema)
        for name, schema in properties.items()
    }
    wild = {name: mostly(value) for name, value in plausible.items()}

    @st.composite
    def draw_arguments(draw: st.DrawFn) -> dict[str, Any]:
        tame = draw(st.integers(0, 3)) == 0
        arguments: dict[str, Any] = {}
        for name in properties:
            # A required argument is left out one time in ten, an optional one in two.
            if (tame and name in required) or draw(st.integers(0, 9)) < (
                9 if name in required else 5
            ):
                arguments[name] = draw(plausible[name] if tame else wild[name])
        if not tame and draw(st.integers(0, 9)) == 9:
            arguments |= draw(JUNK_KEYS)
        return arguments

    return draw_arguments()


# -- The fuzzing ----------------------------------------------------------------------------


def fuzz(fuzzer: Fuzzer, tool: mt.Tool) -> None:
    @hypothesis.settings(
        max_examples=EXAMPLES_PER_TOOL,
        deadline=None,
        # The same examples every run: the "both outcomes seen" checks below cannot
        # fail by chance (they did, once in a while, for answer_job).
        derandomize=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(arguments=arguments_for(tool))
    def calls(arguments: dict[str, Any]) -> None:
        result = fuzzer.check(tool.name, arguments)
        event(f"{tool.name}: {'result' if result else 'tool error'}")

    calls()


def test_every_tool_gives_a_result_or_a_clean_error_for_any_arguments(fuzzer: Fuzzer) -> None:
    fuzzer.outcomes.clear()
    # The start tools (those that take retry) first: the others then see their jobs.
    tools = sorted(fuzzer.tools(), key=lambda t: "retry" not in t.input_schema["properties"])
    assert {"set_timer", "start_gathering", "probe_status", "list_jobs"} <= {t.name for t in tools}
    for tool in tools:
        fuzz(fuzzer, tool)
    for tool in tools:
        # Both branches ran, or the fuzzing proved little; a new tool whose arguments are
        # never right needs plausible values in PLAUSIBLE.
        assert fuzzer.outcomes[tool.name, True], f"{tool.name} never returned a result"
        assert fuzzer.outcomes[tool.name, False], f"{tool.name} never returned a tool error"


# -- The checks can fail ------------------------------------------------------------------


def test_an_unexpected_exception_in_a_tool_is_flagged_as_a_crash(
    fuzzer: Fuzzer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: Jobs, job_id: str) -> dict[str, Any]:
        raise KeyError(job_id)

    monkeypatch.setattr(Jobs, "read_status", broken)
    _, exc = fuzzer.attempt("probe_status", {"job_names": ["tea"]})
    assert exc is not None
    assert crash(exc) == (
        "an unexpected exception in the tool: Error calling tool 'probe_status': 'tea'"
    )
    with pytest.raises(AssertionError, match=r"probe_status.*crashed"):
        fuzzer.check("probe_status", {"job_names": ["tea"]})


def test_an_error_from_a_call_that_created_a_job_is_flagged(
    fuzzer: Fuzzer, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = Jobs.start

    async def start_then_refuse(self: Jobs, *args: Any, **kwargs: Any) -> dict[str, Any]:
        await start(self, *args, **kwargs)
        raise InvalidArgument("refused once the job was made")

    monkeypatch.setattr(Jobs, "start", start_then_refuse)
    with pytest.raises(
        AssertionError, match=r"failed \(refused.*\) but created the jobs \{'made'\}"
    ):
        fuzzer.check("set_timer", {"timer_name": "made", "seconds": 0})


def test_a_clean_tool_error_is_not_flagged(fuzzer: Fuzzer) -> None:
    _, exc = fuzzer.attempt("set_timer", {"timer_name": "t", "seconds": -1})
    assert isinstance(exc, ToolError)
    assert crash(exc) is None
    assert (
        crash(ToolError("ValueError: boom")) == "'ValueError' in the tool error: ValueError: boom"
    )
    assert crash(RuntimeError("Internal server error")) is not None


# -- The nastiest inputs, one by one --------------------------------------------------------

NESTED = [[["a"]], {"x": [1, {"y": None}]}]


def case(tool: str, id: str, **arguments: Any) -> Any:
    return pytest.param(tool, arguments, id=f"{tool}-{id}")


def weather(id: str, **changes: Any) -> Any:
    """start_gathering for a valid place and month but for ``changes`` (None: left out)."""
    arguments = {"latitude": 52.5, "longitude": 13.4, "year": 2020, "month": 1} | changes
    return case("start_gathering", id, **{k: v for k, v in arguments.items() if v is not None})


NASTY = [
    case("set_timer", "name-201-chars", timer_name="x" * 201, seconds=1),
    case("set_timer", "name-newline", timer_name="a\nb", seconds=1),
    case("set_timer", "name-nul", timer_name="a\x00b", seconds=1),
    case("set_timer", "name-colon", timer_name=":", seconds=1),
    case("set_timer", "name-rtl-override", timer_name="\u202e", seconds=1),
    case("set_timer", "name-empty", timer_name=" ", seconds=1),
    case("set_timer", "name-nested", timer_name={"job_name": {"job_name": "t"}}, seconds=1),
    case("set_timer", "name-list", timer_name=["t"], seconds=1),
    case("set_timer", "name-huge-int", timer_name=10**400, seconds=1),
    case("set_timer", "name-unprintable-int", timer_name=10**5000, seconds=1),
    case("set_timer", "seconds-nan", timer_name="t", seconds=math.nan),
    case("set_timer", "seconds-inf", timer_name="t", seconds=math.inf),
    case("set_timer", "seconds-minus-inf", timer_name="t", seconds=-math.inf),
    case("set_timer", "seconds-NaN-string", timer_name="t", seconds="NaN"),
    case("set_timer", "seconds-Infinity-string", timer_name="t", seconds="Infinity"),
    case("set_timer", "seconds-30-days-and-1", timer_name="t", seconds=30 * 86400 + 1),
    case("set_timer", "seconds-negative", timer_name="t", seconds=-1),
    case("set_timer", "seconds-tiny-negative", timer_name="t", seconds=-1e-9),
    case("set_timer", "seconds-1e308", timer_name="t", seconds=1e308),
    case("set_timer", "seconds-huge-int", timer_name="t", seconds=10**400),
    case("set_timer", "seconds-unprintable-int", timer_name="t", seconds=10**5000),
    case("set_timer", "seconds-nested", timer_name="t", seconds=NESTED),
    case("set_timer", "seconds-missing", timer_name="t"),
    case("set_timer", "extra-argument", timer_name="t", seconds=1, ctx=None),
    case("get_timer_status", "name-unprintable-int", timer_name=10**5000),
    case("cancel_job", "name-201-chars", job_name="x" * 201),
    case("cancel_job", "name-nul", job_name="\x00"),
    case("probe_status", "names-nested", job_names=NESTED),
    case("probe_status", "names-empty", job_names=[]),
    case("probe_status", "names-101", job_names=[f"j{n}" for n in range(101)]),
    case("probe_status", "names-json-nested", job_names='[["a"]]'),
    case("probe_status", "names-json-deep", job_names="[" * 100_000),
    case("probe_status", "names-json-huge-int", job_names="[" + "9" * 5_000 + "]"),
    case("probe_status", "names-unprintable-int", job_names=[10**5000]),
    case("await_result", "names-nested", job_names=NESTED),
    case("await_result", "names-json-deep", job_names="[" * 100_000),
    case("await_result", "timeout-NaN-string", job_names=["a"], timeout_seconds="NaN"),
    case("await_result", "timeout-Infinity-string", job_names=["a"], timeout_seconds="Infinity"),
    case("await_result", "timeout-negative", job_names=["a"], timeout_seconds=-1),
    case("await_result", "timeout-huge-int", job_names=["a"], timeout_seconds=10**400),
    case("await_result", "timeout-unprintable-int", job_names=["a"], timeout_seconds=10**5000),
    case("await_result", "timeout-nested", job_names=["a"], timeout_seconds=NESTED),
    case("list_jobs", "limit-0", limit=0),
    case("list_jobs", "limit-101", limit=101),
    case("list_jobs", "limit-huge-int", limit=10**400),
    case("list_jobs", "limit-unprintable-int", limit=10**5000),
    case("list_jobs", "status-not-found", status="not_found"),
    case("list_jobs", "status-nested", status=NESTED),
    case("list_jobs", "cursor-nul", cursor="\x00"),
    weather("latitude-out-of-range", latitude=90.0001),
    weather("latitude-nan", latitude=math.nan),
    weather("latitude-inf", latitude=math.inf),
    weather("latitude-NaN-string", latitude="NaN"),
    weather("latitude-nested", latitude=NESTED),
    weather("longitude-out-of-range", longitude=-181),
    weather("longitude-huge-int", longitude=10**400),
    weather("year-1939", year=1939),
    weather("year-next", year=THIS_YEAR + 1),
    weather("year-huge-int", year=10**400),
    weather("year-unprintable-int", year=10**5000),
    weather("month-0", month=0),
    weather("month-13", month=13),
    weather("month-huge-int", month=10**400),
    weather("timezone-empty", timezone=""),
    weather("timezone-nul", timezone="\x00"),
    weather("timezone-65-chars", timezone="x" * 65),
    weather("timezone-unknown", timezone="Mars/Base"),
    weather("missing-month", month=None),
]


@pytest.mark.parametrize(("tool", "arguments"), NASTY)
def test_nasty_input_is_a_clean_tool_error_that_creates_nothing(
    fuzzer: Fuzzer, tool: str, arguments: dict[str, Any]
) -> None:
    assert not fuzzer.check(tool, arguments), "a tool error was expected"


@pytest.mark.parametrize("latitude", [5e-324, 1e-300, 1e-7, -0.0, 89.99999999999999])
def test_a_started_weather_job_can_be_looked_up(fuzzer: Fuzzer, latitude: float) -> None:
    arguments = {"latitude": latitude, "longitude": 13.4, "year": 2020, "month": 1}
    assert fuzzer.check("start_gathering", arguments)
