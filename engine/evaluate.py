"""Evaluate stage: one matched rule on one webhook body → produced events.

Pure: takes compiled rules and data, does no I/O. Every failure of an expression
on this webhook becomes a ``Problem`` on the event it belongs to (the event is then
not sent), never an exception that would lose the other events.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Literal

import jmespath
from jmespath import exceptions as jp_exc

from engine.errors import EvaluationError, Location, Problem, UnknownLookupValue
from engine.expressions import Expression
from engine.rules import EventSpec, ParamSpec, Rule

Outcome = Literal["sent", "default", "omitted", "problem", "const"]


@dataclasses.dataclass(frozen=True)
class ParamTrace:
    """How one param got its value (``--explain`` prints these)."""

    name: str
    source: str
    value: Any
    outcome: Outcome
    where: Location | None


@dataclasses.dataclass(frozen=True)
class Produced:
    """One event as the rule produced it, before checks and encoding."""

    rule: Rule
    spec: EventSpec
    index: int
    key_value: Any
    params: tuple[tuple[str, Any], ...]
    problems: tuple[Problem, ...]
    traces: tuple[ParamTrace, ...]
    #: True when `when` or `for_each` failed: there is no event to check, only the failure
    aborted: bool = False
    #: the contact to create first (v1/contact field → value), when the event says how
    contact: tuple[tuple[str, Any], ...] = ()


@dataclasses.dataclass(frozen=True)
class Skipped:
    """An event spec that produced nothing, and why (for ``--explain``)."""

    rule: Rule
    spec: EventSpec
    reason: str


#: Errors an expression may raise on a bad webhook; anything else is a bug and propagates.
EXPRESSION_ERRORS = (
    jp_exc.JMESPathError,
    EvaluationError,
    ValueError,
    TypeError,
    ArithmeticError,
    OverflowError,
)


def truthy(value: Any) -> bool:
    """JMESPath truthiness: false, null, and empty strings, lists and objects are false."""
    return not (value is None or value is False or value in ("", [], {}))


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, jp_exc.JMESPathTypeError):
        return str(exc).replace("In function ", "").strip()
    return str(exc) or type(exc).__name__


def run(expr: Expression, data: Any, options: jmespath.Options) -> Any:
    """Evaluate; let ``EXPRESSION_ERRORS`` out for the caller to locate."""
    return expr.search(data, options)


def evaluate_rule(rule: Rule, body: Any, options: jmespath.Options) -> Iterator[Produced | Skipped]:
    """Every event ``rule`` produces for ``body`` (the rule already matched)."""
    index = 0
    for spec in rule.events:
        if spec.when is not None:
            try:
                if not truthy(run(spec.when, body, options)):
                    yield Skipped(rule, spec, f"when `{spec.when.source}` is false")
                    continue
            except EXPRESSION_ERRORS as exc:
                problem = Problem(
                    "V111", f"`when` failed: {describe_error(exc)}", None, where=spec.when.where
                )
                yield Produced(rule, spec, index, None, (), (problem,), (), aborted=True)
                index += 1
                continue
        elements: list[Any] = [body]
        if spec.for_each is not None:
            try:
                found = run(spec.for_each, body, options)
            except EXPRESSION_ERRORS as exc:
                problem = Problem(
                    "V111",
                    f"`for_each` failed: {describe_error(exc)}",
                    None,
                    where=spec.for_each.where,
                )
                yield Produced(rule, spec, index, None, (), (problem,), (), aborted=True)
                index += 1
                continue
            if found is None or found == []:
                yield Skipped(rule, spec, f"for_each `{spec.for_each.source}` is empty")
                continue
            if not isinstance(found, list):
                problem = Problem(
                    "V114",
                    f"for_each `{spec.for_each.source}` must give an "
                    f"array, got {type(found).__name__}",
                    None,
                    where=spec.for_each.where,
                )
                yield Produced(rule, spec, index, None, (), (problem,), (), aborted=True)
                index += 1
                continue
            elements = found
        for element in elements:
            yield _produce(rule, spec, index, element, options)
            index += 1


def _produce(
    rule: Rule, spec: EventSpec, index: int, data: Any, options: jmespath.Options
) -> Produced:
    problems: list[Problem] = []
    key_value: Any = None
    if spec.key is not None:
        try:
            key_value = run(spec.key, data, options)
        except EXPRESSION_ERRORS as exc:
            problems.append(
                Problem("V111", f"key: {describe_error(exc)}", None, where=spec.key.where)
            )
    params: list[tuple[str, Any]] = []
    traces: list[ParamTrace] = []
    for param in spec.params:
        value, outcome, problem = _param(param, data, options)
        traces.append(ParamTrace(param.name, param.source, value, outcome, param.where))
        if problem is not None:
            problems.append(problem)
        if outcome in ("sent", "default", "const"):
            params.append((param.name, value))
    contact: list[tuple[str, Any]] = []
    for field, expr in spec.contact:
        try:
            value = run(expr, data, options)
        except EXPRESSION_ERRORS as exc:
            problems.append(
                Problem("V111", describe_error(exc), f"contact.{field}", where=expr.where)
            )
            continue
        if value not in (None, ""):
            contact.append((field, value))
    return Produced(
        rule,
        spec,
        index,
        key_value,
        tuple(params),
        tuple(problems),
        tuple(traces),
        contact=tuple(contact),
    )


def _param(
    param: ParamSpec, data: Any, options: jmespath.Options
) -> tuple[Any, Outcome, Problem | None]:
    if param.expr is None:
        return param.const, "const", None
    try:
        value = run(param.expr, data, options)
    except UnknownLookupValue as exc:
        return None, "problem", Problem("V112", str(exc), param.name, where=param.where)
    except EXPRESSION_ERRORS as exc:
        return None, "problem", Problem("V111", describe_error(exc), param.name, where=param.where)
    if value is None:
        if param.has_default:
            return param.default, "default", None
        if param.required or param.on_null == "error":
            return (
                None,
                "problem",
                Problem("V101", f"`{param.expr.source}` gave null", param.name, where=param.where),
            )
        return None, "omitted", None
    if value == "":
        if param.on_empty == "omit" and not param.required:
            return value, "omitted", None
        if param.on_empty == "error" or param.required:
            return (
                value,
                "problem",
                Problem(
                    "V101",
                    f"`{param.expr.source}` gave an empty string",
                    param.name,
                    where=param.where,
                ),
            )
    return value, "sent", None
