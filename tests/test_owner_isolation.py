"""Random calls from two people on one server: no answer ever names or reveals the other's job.

Hypothesis draws a run of calls, each by alice or bob, on a few names both
use: set a timer, probe, await, cancel, get_timer_status, tasks/get, list
(page by page, with cursors) and list from a name as cursor. Alice's timers
are all 1001 s and bob's 2002 s, so an answer that describes the other's job
is told apart by its remaining time; a model of each person's own jobs says
what every answer must be. Any difference, or the other's subject anywhere in
an answer, is a leak. The server runs in-process on 127.0.0.1 with sign-in on
(memory store, real time: nothing here waits for a timer), one for the module,
each example on names of its own.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastmcp import Client
from fastmcp.exceptions import ToolError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.shared.exceptions import MCPError

from durable_mcp.config import Settings
from durable_mcp.server import create_server
from durable_mcp_testing.identity import IdentityProvider
from durable_mcp_testing.processes import free_port
from durable_mcp_testing.served import serving
from durable_mcp_testing.tasks_client import TasksOptIn, task_method

PEOPLE = ("alice@example.com", "bob:7")
#: Each person's timers: the remaining time of a job tells whose it is.
SECONDS = {PEOPLE[0]: 1001, PEOPLE[1]: 2002}
#: What a leak would show: the other's subject, as given or as kept in ids.
MARKS = {PEOPLE[0]: ("alice",), PEOPLE[1]: ("bob", "%3A7")}
NAMES = ("tea", "bake", "ask", "t")

#: Calls tried and leaks seen, over the whole run (the closing note gives them).
TALLY: Counter[str] = Counter()


@dataclass
class Person:
    name: str
    tools: Client[Any]
    tasks: Client[Any]
    #: Their own jobs of the current example: name -> running or cancelled.
    jobs: dict[str, str] = field(default_factory=dict)


class Team:
    def __init__(self, portal: BlockingPortal, people: dict[str, Person]) -> None:
        self.portal = portal
        self.people = people
        self.examples = itertools.count()

    def call(self, person: Person, tool: str, **arguments: Any) -> Any:
        async def attempt() -> Any:
            return (await person.tools.call_tool(tool, arguments)).data

        return self.portal.call(attempt)

    def refusal(self, person: Person, tool: str, **arguments: Any) -> str | None:
        try:
            self.call(person, tool, **arguments)
        except ToolError as exc:
            return str(exc)
        return None

    def task(self, person: Person, task_id: str) -> dict[str, Any] | str:
        try:
            task: dict[str, Any] = self.portal.call(task_method, person.tasks, "tasks/get", task_id)
            return task
        except MCPError as exc:
            return str(exc)


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    with IdentityProvider() as idp, start_blocking_portal() as portal:
        signed_in = Settings(
            store="memory",
            data_dir=tmp_path_factory.mktemp("data"),
            port=free_port(),
            rate_limit=1e9,
            await_max_seconds=1,
            **idp.settings(),
        )
        mcp = portal.call(lambda: create_server(signed_in))
        with portal.wrap_async_context_manager(serving(mcp, signed_in)) as url:
            people = {}
            with contextlib.ExitStack() as stack:
                for subject in PEOPLE:
                    token = idp.token(subject)
                    tools = Client(f"{url}/mcp", auth=token)
                    tasks = Client(f"{url}/mcp", auth=token, extensions=[TasksOptIn()])
                    people[subject] = Person(
                        subject,
                        stack.enter_context(portal.wrap_async_context_manager(tools)),
                        stack.enter_context(portal.wrap_async_context_manager(tasks)),
                    )
                yield Team(portal, people)


CALLS = st.lists(
    st.tuples(
        st.sampled_from(PEOPLE),
        st.sampled_from(
            ["set", "set", "probe", "await", "cancel", "timer", "task", "list", "cursor"]
        ),
        st.sampled_from(NAMES),
        st.integers(1, 3),
    ),
    min_size=1,
    max_size=14,
)


def check(team: Team, calls: list[tuple[str, str, str, int]]) -> list[str]:
    """Make ``calls``; what differed from each person's own model (the leaks)."""
    suffix = f"-{next(team.examples)}"
    for person in team.people.values():
        person.jobs = {}
    leaks = []
    for subject, action, base, limit in calls:
        person = team.people[subject]
        other = next(p for p in PEOPLE if p != subject)
        name = base + suffix
        expected: Any = person.jobs.get(name, "not_found")
        answer: Any
        got: Any
        match action:
            case "set":
                answer = team.call(person, "set_timer", timer_name=name, seconds=SECONDS[subject])
                person.jobs.setdefault(name, "running")
                got = answer["status"]
                expected = person.jobs[name]
            case "probe" | "await" | "timer":
                if action == "probe":
                    (answer,) = team.call(person, "probe_status", job_names=[name])
                elif action == "await":
                    answer = team.call(person, "await_result", job_names=[name], timeout_seconds=0)[
                        name
                    ]
                else:
                    answer = team.call(person, "get_timer_status", timer_name=name)
                got = answer["status"]
                remaining = answer.get("remaining_seconds")
                if (
                    remaining is not None
                    and not SECONDS[subject] - 60 < remaining <= SECONDS[subject]
                ):
                    leaks.append(f"{subject} {action} {name}: remaining {remaining}")
            case "cancel":
                answer = team.call(person, "cancel_job", job_name=name)
                got = answer["status"]
                if name in person.jobs:
                    person.jobs[name] = expected = "cancelled"
            case "task":
                answer = team.task(person, name)
                task_status = {"working": "running", "cancelled": "cancelled"}
                got = (
                    task_status.get(answer["status"], answer["status"])
                    if isinstance(answer, dict)
                    else "not_found"
                )
                if isinstance(answer, str) and answer != f"Task {name!r} not found":
                    leaks.append(f"{subject} tasks/get {name}: {answer}")
            case "list":
                listed, cursor = [], None
                while True:  # this example's jobs are the newest: page until an older one
                    page = team.call(person, "list_jobs", limit=limit, cursor=cursor)
                    mine = [j for j in page["jobs"] if j["job_name"].endswith(suffix)]
                    listed += mine
                    cursor = page["next_cursor"]
                    if cursor is None or len(mine) < len(page["jobs"]):
                        break
                answer = listed
                got = sorted((j["job_name"], j["status"]) for j in listed)
                expected = sorted(person.jobs.items())
            case "cursor":
                refused = team.refusal(person, "list_jobs", cursor=name, limit=1)
                answer = refused
                got = "not_found" if refused is not None else "found"
                expected = "found" if name in person.jobs else "not_found"
                if refused is not None and "names no job" not in refused:
                    leaks.append(f"{subject} cursor {name}: {refused}")
        TALLY["calls"] += 1
        if got != expected:
            leaks.append(f"{subject} {action} {name}: {got} where their own is {expected}")
        text = json.dumps(answer, default=str)
        if any(mark in text for mark in MARKS[other]):
            leaks.append(f"{subject} {action} {name}: names {other}: {text[:200]}")
    TALLY["leaks"] += len(leaks)
    return leaks


def test_no_answer_to_one_person_names_or_reveals_the_others_job(team: Team) -> None:
    @settings(
        max_examples=120,
        deadline=None,
        derandomize=True,  # the same runs every time: a failure is never a matter of luck
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        database=None,
    )
    @given(calls=CALLS)
    def random_calls(calls: list[tuple[str, str, str, int]]) -> None:
        assert check(team, calls) == []

    random_calls()
    print(f"isolation: {TALLY['calls']} calls tried, {TALLY['leaks']} leaks")  # pytest -s
    assert TALLY["calls"] > 500 and TALLY["leaks"] == 0, TALLY
