"""The kinds of job a server runs, declared with one decorator.

A kind of job is a durable function (an async function that takes a Resonate
``Context`` first) plus what its start tool needs: how a job is named from the
tool's arguments, how long a job may run, and what its status adds::

    durable = DurableTools()

    @durable.tool(job_name=lambda report_id: f"report_{report_id}")
    async def build_report(ctx: Context, report_id: str, pages: int) -> dict[str, Any]:
        \"\"\"Build a report (the start tool's description, for the model).\"\"\"

    durable.add_to(mcp)  # start tools, probe/await/cancel/list, MCP tasks, the engine

This module imports nothing of MCP (FastMCP, the MCP SDK): `durable-mcp serve`
registers the durable functions, and the jobs a restart interrupted resume,
while FastMCP is still importing. ``add_to`` imports it when called.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from resonate.error import InvalidIdError
from resonate.ids import ORIGIN_SEP, validate_root_id
from resonate.retry import RetryPolicy

from durable_mcp.jobs.declaration import check_declaration
from durable_mcp.jobs.failures import DEFAULT_RETRY, durable_job
from durable_mcp.jobs.status import Details

if TYPE_CHECKING:
    from fastmcp import FastMCP

    from durable_mcp.config import Settings
    from durable_mcp.jobs.service import Jobs

#: How long a job may run when its kind names no deadline.
DEFAULT_DEADLINE = timedelta(hours=1)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


#: The longest job name: a model reads it back and retypes it.
MAX_NAME_LENGTH = 200

#: How much of a name an error message repeats.
SHOWN_LENGTH = 60


def check_job_name(name: str) -> str:
    """``name`` if it can name a job, else ValueError saying why.

    The SDK's own rule for a root id (no ``:``: it separates a job from its
    durable steps, ``job:1``), plus what a model can read back and retype.
    """
    if not name.strip():
        raise ValueError("a job name must not be empty")
    if not name.isprintable():
        raise ValueError("a job name must not contain control characters")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"a job name must be at most {MAX_NAME_LENGTH} characters")
    try:
        validate_root_id(name)
    except InvalidIdError as exc:
        raise ValueError(
            f"a job name must not contain {ORIGIN_SEP!r} (Resonate keeps it for the steps of a job)"
        ) from exc
    return name


def shown(name: str) -> str:
    """``name`` as an error message repeats it: quoted, and cut if it is long."""
    if len(name) <= SHOWN_LENGTH:
        return repr(name)
    return f"{name[:SHOWN_LENGTH]!r}... ({len(name)} characters)"


@dataclass(frozen=True)
class JobKind:
    """What the job service knows of one kind of job (named after its function)."""

    deadline: timedelta
    details: Details | None = None


@dataclass(frozen=True)
class DurableTool:
    """A durable function and its start tool, as ``@DurableTools.tool`` declared them."""

    #: The function as declared (its signature is the start tool's schema).
    fn: Callable[..., Awaitable[Any]]
    #: What Resonate runs for it: ``fn`` with its failures handled (``failures.durable_job``).
    job: Callable[..., Any]
    #: The job's name from the tool's arguments (the ones it names).
    job_name: Callable[..., str]
    #: The start tool's name and description (default: the function's name and docstring).
    name: str
    description: str | None
    #: How long a job may run: fixed, or from the tool's arguments (then it wins over
    #: DURABLE_MCP_JOB_DEADLINES).
    deadline: timedelta | Callable[..., timedelta]
    details: Details | None
    #: The start tool's answer from the job's status object (default: job_name and status).
    result: Callable[[dict[str, Any]], dict[str, Any]] | None
    #: The job's arguments from the tool's: checked (ValueError says what to fix) and
    #: normalised. Default: the tool's arguments as they are.
    arguments: Callable[..., Mapping[str, Any]] | None
    #: How a failing step of its jobs is retried.
    retry: RetryPolicy
    #: Its job card in hosts that render MCP Apps (``card/``): True, the default card;
    #: a JavaScript function ``(result, root, card) => ...`` that draws the result;
    #: False, none.
    card: bool | str = True

    @property
    def kind(self) -> str:
        return self.fn.__name__

    def name_job(self, arguments: Mapping[str, Any]) -> str:
        """The job name the rule gives for these arguments; ValueError if it cannot be
        one, TypeError if the rule gave no str (a bug in the tool's declaration)."""
        name = call_with(self.job_name, arguments)
        if not isinstance(name, str):
            raise TypeError(
                f"the job_name rule of {self.name} returned {name!r}, not a str: a bug in "
                "the tool's declaration"
            )
        try:
            return check_job_name(name)
        except ValueError as exc:
            raise ValueError(f"cannot name a job {shown(name)}: {exc}") from exc

    def deadline_for(self, arguments: Mapping[str, Any]) -> timedelta | None:
        """This job's own deadline, if the kind computes one from the arguments."""
        if isinstance(self.deadline, timedelta):
            return None
        deadline: timedelta = call_with(self.deadline, arguments)
        return deadline


class DurableTools:
    """The durable tools of one server: declare them with :meth:`tool`, serve them
    with :meth:`add_to`."""

    def __init__(self, *include: DurableTools) -> None:
        """Empty, or with the tools ``include`` declared so far."""
        self.tools: dict[str, DurableTool] = {}
        for other in include:
            self.tools |= other.tools
        self._listeners: list[Callable[[DurableTool], None]] = []

    @property
    def functions(self) -> tuple[Callable[..., Any], ...]:
        """What Resonate runs for every durable function declared here (to start an engine with)."""
        return tuple(tool.job for tool in self.tools.values())

    def tool(
        self,
        *,
        job_name: Callable[..., str],
        name: str | None = None,
        description: str | None = None,
        deadline: timedelta | Callable[..., timedelta] = DEFAULT_DEADLINE,
        details: Details | None = None,
        result: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        arguments: Callable[..., Mapping[str, Any]] | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        card: bool | str = True,
    ) -> Callable[[F], F]:
        """Declare the decorated durable function as a kind of job with a start tool.

        The start tool (named ``name``, default the function's) takes the
        function's arguments after the ``Context``, with their type hints as its
        schema, plus ``retry``; it starts the job named ``job_name(...)`` (called
        with the arguments it names) or attaches to it, and answers at once.
        A step (``ctx.run``) of its jobs that raises is retried as ``retry``
        says (one of ``resonate.retry``'s policies; ``Never()`` for none).
        In a host that renders MCP Apps the start tool shows a live job card:
        ``card`` is True (the default card), False (none), or the JavaScript
        of a function ``(result, root, card) => ...`` that draws a completed
        job's result into ``root`` (``card.el(tag, props, ...children)``
        builds elements with text only). The function itself is returned
        unchanged. A declaration no call could work with is refused here
        (``declaration.DeclarationError``, one line).
        """

        def declare(fn: F) -> F:
            rules = {"job_name": job_name, "deadline": deadline, "arguments": arguments}
            check_declaration(fn, rules)  # DeclarationError: one line, where it is declared
            tool = DurableTool(
                fn=fn,
                job=durable_job(fn, retry),
                job_name=job_name,
                name=name or fn.__name__,
                description=description,
                deadline=deadline,
                details=details,
                result=result,
                arguments=arguments,
                retry=retry,
                card=card,
            )
            self.tools[tool.name] = tool
            for listener in self._listeners:
                listener(tool)
            return fn

        return declare

    def listen(self, listener: Callable[[DurableTool], None]) -> None:
        """Call ``listener`` with every tool declared, now and from now on."""
        self._listeners.append(listener)
        for tool in list(self.tools.values()):
            listener(tool)

    def add_to(self, mcp: FastMCP, settings: Settings | None = None, **seams: Any) -> Jobs:
        """Serve these tools on ``mcp``, once per app: see :func:`durable_mcp.attach.attach`,
        which takes ``seams`` too (an engine already started, dependencies, fake time).

        ``settings`` default to the DURABLE_MCP_* environment, as for `durable-mcp serve`.
        A bad setting, or a data dir in use or damaged, raises ``StartError``: one
        line on stderr if the app does not catch it.
        """
        from durable_mcp.attach import attach

        return attach(mcp, self, settings, **seams)


def call_with(rule: Callable[..., Any], arguments: Mapping[str, Any]) -> Any:
    """Call ``rule`` with the arguments it names (all of them if it takes ``**kwargs``)."""
    parameters = inspect.signature(rule).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return rule(**arguments)
    return rule(**{p.name: arguments[p.name] for p in parameters if p.name in arguments})
