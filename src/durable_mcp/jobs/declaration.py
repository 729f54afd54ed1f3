"""What makes a durable tool's declaration sound, checked when it is made.

``@durable.tool`` calls :func:`check_declaration` before it accepts a
function, so a mistake that would fail every call (a rule that names an
argument the function does not take, no ``Context`` first, an argument type
JSON cannot carry) stops the program where the tool is declared, in one line
(:class:`DeclarationError`), instead of failing each call with a traceback.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import pydantic
from resonate.context import Context

from durable_mcp.config import StartError

#: What an unannotated first parameter may be called to be taken for the Context.
CONTEXT_NAMES = ("ctx", "context")


class DeclarationError(StartError):
    """A durable tool is declared so that none of its calls could work."""


def check_declaration(fn: Callable[..., Any], rules: Mapping[str, object]) -> None:
    """Refuse ``fn`` unless it takes a Context first and arguments JSON can carry,
    and every rule (``job_name``, ``deadline``, ``arguments``) names only its arguments."""
    where = _where(fn)
    signature = resolved_signature(fn)
    parameters = list(signature.parameters.values())
    if not parameters or not _is_context(parameters[0]):
        first = f"its first parameter is `{parameters[0]}`" if parameters else "it takes none"
        raise DeclarationError(
            f"{where}: durable function {fn.__name__} must take a Context first ({first})"
        )
    arguments = [p.name for p in parameters[1:]]
    if "retry" in arguments:
        raise DeclarationError(
            f"{where}: durable function {fn.__name__} has an argument named retry, which "
            "every start tool has already; rename it"
        )
    for parameter in parameters[1:]:
        _check_argument_type(where, fn.__name__, parameter)
    for rule_name, rule in rules.items():
        if rule is not None and callable(rule):
            _check_rule(where, fn.__name__, rule_name, rule, arguments)


def resolved_signature(fn: Callable[..., Any]) -> inspect.Signature:
    """``fn``'s signature, each string annotation evaluated where ``fn`` was defined
    (left a string if it cannot be, as the SDK does)."""
    signature = inspect.signature(fn)
    namespace = getattr(fn, "__globals__", None) or getattr(type(fn).__call__, "__globals__", {})

    def resolved(annotation: Any) -> Any:
        if not isinstance(annotation, str):
            return annotation
        try:
            return eval(annotation, namespace)  # as inspect.get_annotations(eval_str=True) does
        except Exception:
            return annotation

    return signature.replace(
        parameters=[
            p.replace(annotation=resolved(p.annotation)) for p in signature.parameters.values()
        ],
        return_annotation=resolved(signature.return_annotation),
    )


def _is_context(parameter: inspect.Parameter) -> bool:
    if parameter.kind not in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
        return False
    annotation = parameter.annotation
    if annotation is parameter.empty:
        return parameter.name in CONTEXT_NAMES
    if isinstance(annotation, str):  # not resolvable here (imported for type checking only)
        return annotation.rsplit(".", 1)[-1] == "Context"
    if annotation in (Any, object):
        return True
    return isinstance(annotation, type) and issubclass(annotation, Context)


def _check_argument_type(where: str, name: str, parameter: inspect.Parameter) -> None:
    """The start tool's schema and the job's stored arguments both need JSON for it."""
    if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
        raise DeclarationError(
            f"{where}: durable function {name} takes `{parameter}`: a tool's arguments are "
            "named, so list each one"
        )
    annotation = Any if parameter.annotation is parameter.empty else parameter.annotation
    try:
        pydantic.TypeAdapter(annotation).json_schema()
    except Exception as exc:
        reason = str(exc).splitlines()[0].split(". ")[0]  # pydantic's advice does not apply
        raise DeclarationError(
            f"{where}: argument `{parameter}` of durable function {name} cannot be carried as "
            f"JSON ({reason}); use JSON types, datetime, bytes, a set, or a pydantic model"
        ) from None


def _check_rule(
    where: str, name: str, rule_name: str, rule: Callable[..., Any], arguments: list[str]
) -> None:
    try:
        parameters = list(inspect.signature(rule).parameters.values())
    except (TypeError, ValueError):
        return  # a builtin without a signature: nothing to check
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    unknown = [p.name for p in parameters if p.name not in arguments and p.default is p.empty]
    if unknown:
        raise DeclarationError(
            f"{where}: the {rule_name} rule of {name} takes {', '.join(unknown)}, which {name} "
            f"does not (its arguments: {', '.join(arguments) or 'none'})"
        )
    returned = inspect.signature(rule).return_annotation
    if rule_name == "job_name" and returned not in (inspect.Signature.empty, str, "str"):
        raise DeclarationError(
            f"{where}: the job_name rule of {name} must return a str, not {returned}"
        )


def _where(fn: Callable[..., Any]) -> str:
    """``file:line`` of ``fn``'s definition, for the one line that refuses it."""
    try:
        return f"{inspect.getsourcefile(fn)}:{inspect.getsourcelines(fn)[1]}"
    except (OSError, TypeError):
        return getattr(fn, "__module__", "?") or "?"
