"""Evaluate stage: one matched rule on one webhook body → produced events.

Pure: takes compiled rules and data, does no I/O. Every failure of an expression
on this webhook becomes a ``Problem`` on the event it belongs to (the event is then
not sent), never an exception that would lose the other events.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from typing import Any, Literal

import jmespath
from jmespath import exceptions as jp_exc
from jmespath import functions as jp_functions

from engine.errors import EvaluationError, InvalidArgument, Location, Problem, UnknownLookupValue
from engine.records import fast_init
from engine.rules.functions.common import Dropped
from engine.rules.model import BUILTINS, EventSpec, Expression, ParamSpec, Rule

#: ``dropped``: a function dropped the value (W106) and the param is left out
Outcome = Literal["sent", "default", "omitted", "dropped", "problem", "const"]


@dataclasses.dataclass(frozen=True)
class ParamTrace:
    """How one param got its value (``--explain`` prints these)."""

    name: str
    source: str
    value: Any
    outcome: Outcome
    where: Location | None


@dataclasses.dataclass(frozen=True)
class Change:
    """What ``changes:`` compares: the entity, and a fingerprint of the values for it."""

    entity: str
    fingerprint: str
    #: seconds the values are remembered
    expire: float


@fast_init
@dataclasses.dataclass(frozen=True)
class Produced:
    """One event as the rule produced it, before checks and encoding."""

    rule: Rule
    spec: EventSpec
    index: int
    key_value: Any
    params: tuple[tuple[str, Any], ...]
    problems: tuple[Problem, ...]
    #: per param of ``spec.params``: its value and outcome, which ``traces`` explains
    values: tuple[Any, ...] = ()
    outcomes: tuple[Outcome, ...] = ()
    #: True when `when` or `for_each` failed: there is no event to check, only the failure
    aborted: bool = False
    #: the contact to create first (v1/contact field → value), when the event says how
    contact: tuple[tuple[str, Any], ...] = ()
    #: ``changes:``: the entity and the fingerprint of its values (None: not declared, or
    #: no entity on this webhook)
    change: Change | None = None

    @property
    def traces(self) -> tuple[ParamTrace, ...]:
        """How each param got its value. Built when asked (``--explain``, reports), not
        for every webhook: the server never reads them."""
        return tuple(
            ParamTrace(param.name, param.source, value, outcome, param.where)
            for param, value, outcome in zip(
                self.spec.params, self.values, self.outcomes, strict=False
            )
        )


@fast_init
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
                yield Produced(rule, spec, index, None, (), (problem,), aborted=True)
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
                yield Produced(rule, spec, index, None, (), (problem,), aborted=True)
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
                yield Produced(rule, spec, index, None, (), (problem,), aborted=True)
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
    # what functions drop is read after each part of the event, so each warning stands
    # where its value was; drops of `when` and `for_each` are not this event's
    sink: list[Dropped] | None = getattr(options.custom_functions, "dropped", None)
    if sink:
        sink.clear()
    reported: set[tuple[str, str]] = set()
    key_value: Any = None
    key_drops: list[Dropped] = []
    if spec.key is not None:
        try:
            key_value = run(spec.key, data, options)
        except EXPRESSION_ERRORS as exc:
            problems.append(
                Problem("V111", f"key: {describe_error(exc)}", None, where=spec.key.where)
            )
        if sink:
            key_drops, sink[:] = list(sink), []
    # Expression.search, unrolled for the loop below (it runs for every param of every
    # event): compiled code called with the bound functions, else the interpreter
    functions: jp_functions.Functions | None = None
    if options.dict_cls is None:
        found = options.custom_functions
        functions = BUILTINS if found is None else found
    params: list[tuple[str, Any]] = []
    values: list[Any] = []
    outcomes: list[Outcome] = []
    outcome: Outcome
    for param in spec.params:
        expr = param.expr
        if expr is None:
            value, outcome = param.const, "const"
            params.append((param.name, value))
        else:
            try:
                compiled = expr.compiled
                if compiled is not None and functions is not None:
                    value = compiled(data, functions)
                else:
                    value = expr.search(data, options)
            except UnknownLookupValue as exc:
                value, outcome = None, "problem"
                problems.append(Problem("V112", str(exc), param.name, where=param.where))
            except EXPRESSION_ERRORS as exc:
                value, outcome = None, "problem"
                code = exc.code if isinstance(exc, InvalidArgument) else "V111"
                problems.append(Problem(code, describe_error(exc), param.name, where=param.where))
            else:
                if value is None or value == "":
                    value, outcome, problem = _settle(param, expr, value)
                    if problem is not None:
                        problems.append(problem)
                    elif outcome != "omitted":  # a default, or "" kept as it is
                        params.append((param.name, value))
                else:
                    outcome = "sent"
                    params.append((param.name, value))
            if sink:
                problems += _warn_dropped(sink, param.name, param.where, reported)
                if outcome == "omitted":
                    outcome = "dropped"
        values.append(value)
        outcomes.append(outcome)
    # a key such as coalesce(email, phone(tel)) evaluates every argument: what it dropped
    # matters when no key came of it (and is said once, where a param dropped it too)
    if key_drops and key_value is None and spec.key is not None:
        problems += _warn_dropped(key_drops, "key", spec.key.where, reported)
    contact: list[tuple[str, Any]] = []
    for field, expr in spec.contact:
        try:
            value = run(expr, data, options)
        except EXPRESSION_ERRORS as exc:
            problems.append(
                Problem("V111", describe_error(exc), f"contact.{field}", where=expr.where)
            )
            continue
        finally:
            if sink:
                problems += _warn_dropped(sink, f"contact.{field}", expr.where, reported)
        if value not in (None, ""):
            contact.append((field, value))
    change = None if spec.changes is None else _change(rule, spec, data, key_value, options)
    if isinstance(change, Problem):
        problems.append(change)
        change = None
    return Produced(
        rule,
        spec,
        index,
        key_value,
        tuple(params),
        tuple(problems),
        tuple(values),
        tuple(outcomes),
        contact=tuple(contact),
        change=change,
    )


def _warn_dropped(
    drops: list[Dropped], param: str, where: Location | None, reported: set[tuple[str, str]]
) -> list[Problem]:
    """A W106 warning for each value in ``drops`` not reported before for this event (a
    phone read for the key and for the phone param is one dropped value); empties it."""
    out = []
    for drop in drops:
        seen = (drop.function, repr(drop.value))
        if seen in reported:
            continue
        reported.add(seen)
        message = f"{drop.function}() dropped {drop.value!r}: {drop.reason}"
        out.append(Problem("W106", message, param, "warning", where))
    drops.clear()
    return out


def _change(
    rule: Rule, spec: EventSpec, data: Any, key_value: Any, options: jmespath.Options
) -> Change | Problem:
    """The entity and fingerprint of ``spec.changes`` on ``data``, or why there are none."""
    changes = spec.changes
    assert changes is not None
    try:
        values = [run(expr, data, options) for expr in changes.values]
        entity = key_value if changes.key is None else run(changes.key, data, options)
    except EXPRESSION_ERRORS as exc:
        return Problem("V111", f"changes: {describe_error(exc)}", "changes", where=changes.where)
    if entity is None or entity == "":
        return Problem(
            "W107",
            "changes: no entity on this webhook (its key is null): the event is sent "
            "without comparing",
            "changes",
            "warning",
            changes.where,
        )
    # the values as JSON with sorted keys: the same values give the same fingerprint
    text = json.dumps(values, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    name = entity if isinstance(entity, str) else json.dumps(entity, sort_keys=True)
    return Change(f"{rule.name}/{spec.type}/{name}", digest, changes.expire)


def _settle(param: ParamSpec, expr: Expression, value: Any) -> tuple[Any, Outcome, Problem | None]:
    """What a param whose expression gave null or ``""`` sends: its default, nothing, a
    problem, or the empty string itself."""
    if value is None:
        if param.has_default:
            return param.default, "default", None
        if param.required or param.on_null == "error":
            return (
                None,
                "problem",
                Problem("V101", f"`{expr.source}` gave null", param.name, where=param.where),
            )
        return None, "omitted", None
    if param.on_empty == "omit" and not param.required:
        return value, "omitted", None
    if param.on_empty == "error" or param.required:
        return (
            value,
            "problem",
            Problem("V101", f"`{expr.source}` gave an empty string", param.name, where=param.where),
        )
    return value, "sent", None
