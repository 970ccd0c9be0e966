"""Checks on one produced event before it is sent: the service's limits and the catalogue.

The service answers some mistakes with a 400 but silently ignores others (an order
without ``totalCost`` is dropped without a word), so every event is checked here and
every problem is reported at once. Values are checked as rule expressions produced
them, before encoding: object and list params may still be native or already a JSON
string, and both are read the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import Problem, did_you_mean, has_errors
from engine.events.catalogue import (
    BODY_MAX_BYTES,
    EVENT_TYPE_KEY_MAX,
    EVENT_TYPES,
    FORBIDDEN_CHARS,
    KEY_VALUE_MAX,
    PARAM_NAME_MAX,
    EventType,
    Extra,
    Field,
    Kind,
    Shape,
)
from engine.events.contacts import Contact, identify_contact, no_contact
from engine.events.kinds import SCALARS, STRING, fits
from engine.events.values import blank, is_string_list, show
from engine.records import fast_init


@fast_init
@dataclasses.dataclass(frozen=True)
class CheckResult:
    """Every problem found with one event, and who it is about (None: nobody known)."""

    problems: tuple[Problem, ...]
    contact: Contact | None

    @property
    def ok(self) -> bool:
        """True when nothing stops the event being sent (warnings may remain)."""
        return not has_errors(self.problems)


def check_event(
    event_type: str,
    key_value: str | None,
    params: Sequence[tuple[str, Any]],
    identify_by: Sequence[str] = (),
) -> CheckResult:
    """Check one event against the limits and, for a standard type, the catalogue."""
    problems: list[Problem | _Unlisted] = []
    problems += _check_key("eventTypeKey", event_type, EVENT_TYPE_KEY_MAX)
    if key_value:
        problems += _check_key("keyValue", key_value, KEY_VALUE_MAX)
    names = [name for name, _ in params]
    problems += _check_names(names)
    spec = EVENT_TYPES.get(event_type)
    fields = spec.by_name if spec is not None else {}
    for name, value in params:
        field = fields.get(name)
        # the common case first: a custom param's value, or one that plainly fits its
        # scalar field; anything else takes the full check, which words the problem
        if value is not None and (
            field is None
            or (
                field.shape is None
                and ((type(value) is str and field.kind is STRING) or fits(field, value))
                and not (field.required and blank(value))
            )
        ):
            continue
        problems += _check_param(field, name, value)
    if spec is not None:
        problems += _check_presence(spec, params, set(names))
    contact = identify_contact(key_value, params, identify_by)
    if contact is None:
        problems.append(no_contact(params, identify_by))
    return CheckResult(_merge_w104(problems), contact)


#: A recommended key missing in one element of a list (W104): (list, index, key), merged
#: by ``_merge_w104`` into one problem per list and key.
_Unlisted = tuple[str, int, str]


def _merge_w104(problems: list[Problem | _Unlisted]) -> tuple[Problem, ...]:
    """One W104 per list and key ("items[*].url: missing in items 0, 1, 2"), not one per
    item, standing where the first of them stood."""
    merged: dict[tuple[str, str], list[str]] = {}
    out: list[Problem | tuple[str, str]] = []
    for p in problems:
        if isinstance(p, Problem):
            out.append(p)
            continue
        group = (p[0], p[2])
        if group not in merged:
            merged[group] = []
            out.append(group)
        merged[group].append(str(p[1]))
    return tuple(p if isinstance(p, Problem) else _w104(p[0], p[1], tuple(merged[p])) for p in out)


@functools.lru_cache(maxsize=1024)
def _w104(where: str, key: str, indices: tuple[str, ...]) -> Problem:
    """The merged W104 (Problems are immutable: every event lacking the same keys in
    the same elements shares one)."""
    return Problem(
        "W104",
        f"'{key}' is missing in {where} element(s) {', '.join(indices)}: the event "
        "docs ask for it (the event is still sent)",
        f"{where}[*].{key}",
        "warning",
    )


def check_body_size(body: bytes) -> Problem | None:
    """V110 when the encoded event body is over the service's 20 KB."""
    if len(body) <= BODY_MAX_BYTES:
        return None
    return Problem(
        "V110",
        f"the event body is {len(body)} bytes: the limit is 20 KB ({BODY_MAX_BYTES} bytes)",
    )


# -- generic limits -----------------------------------------------------------------


def _check_key(label: str, value: str, limit: int) -> list[Problem]:
    if value and len(value) <= limit and FORBIDDEN_CHARS.isdisjoint(value):
        return []  # the usual case, decided without building a problem
    problems = []
    if not value:
        problems.append(Problem("V108", f"{label} is empty", label))
    if len(value) > limit:
        problems.append(
            Problem(
                "V108",
                f"{label} {show(value)} is {len(value)} characters: the limit is {limit}",
                label,
            )
        )
    bad = sorted(FORBIDDEN_CHARS.intersection(value))
    if bad:
        problems.append(
            Problem(
                "V108",
                f"{label} {show(value)} contains {' '.join(bad)}: none of "
                f"{' '.join(sorted(FORBIDDEN_CHARS))} may appear in it",
                label,
            )
        )
    return problems


def _check_names(names: Sequence[str]) -> list[Problem]:
    return list(_names_problems(tuple(names)))


@functools.lru_cache(maxsize=1024)
def _names_problems(names: tuple[str, ...]) -> tuple[Problem, ...]:
    """The problems of one list of param names; an event type's events repeat theirs."""
    return tuple(_name_problems(names))


def _name_problems(names: Sequence[str]) -> list[Problem]:
    unique = set(names)
    longest = max(map(len, names), default=0)
    if len(unique) == len(names) and "" not in unique and longest <= PARAM_NAME_MAX:
        return []  # the usual case, decided without building a problem
    problems = [
        Problem("V109", f"param '{name}' appears {count} times: names must be unique", name)
        for name, count in Counter(names).items()
        if count > 1
    ]
    problems += [
        Problem(
            "V113",
            f"param name {show(name)} is {len(name)} characters: names are 1 to "
            f"{PARAM_NAME_MAX} characters",
            name,
        )
        for name in dict.fromkeys(names)
        if not name or len(name) > PARAM_NAME_MAX
    ]
    return problems


# -- the catalogue ------------------------------------------------------------------


def _check_presence(
    spec: EventType, params: Sequence[tuple[str, Any]], present: set[str]
) -> list[Problem]:
    """What the event type requires that ``params`` (their names: ``present``) lack."""
    one_of = spec.one_of
    has_one = not one_of or any(n in one_of and not blank(v) for n, v in params)
    if has_one and spec.expected_names <= present:
        return []  # the usual case, decided without building a problem
    problems = [
        Problem(
            "V101",
            f"'{f.name}' is missing: '{spec.key}' requires it and the service ignores "
            "the event without it",
            f.name,
        )
        for f in spec.required_fields
        if f.name not in present
    ]
    problems += [
        Problem("W103", f"'{f.name}' is absent: {f.if_absent}", f.name, "warning")
        for f in spec.if_absent_fields
        if f.name not in present
    ]
    if not has_one:
        problems.append(
            Problem(
                "V101",
                f"'{spec.key}' requires a value in at least one of {', '.join(spec.one_of)} "
                "(names are case-sensitive) and the service ignores the order without one",
            )
        )
    return problems


def _check_param(field: Field | None, name: str, value: Any) -> list[Problem | _Unlisted]:
    if value is None:
        if field is not None and field.required:
            return [Problem("V101", f"'{name}' is null: it is required", name)]
        return [Problem("V114", f"'{name}' is null: a param needs a value", name)]
    if field is None:
        return []  # a custom param: any value goes
    if field.required and blank(value):
        return [Problem("V101", f"'{name}' is {show(value)}: it is required", name)]
    return _check_value(field, value, name)


def _check_value(field: Field, value: Any, where: str) -> list[Problem | _Unlisted]:
    if field.shape is not None:
        return _check_structured(field, field.shape, value, where)
    code, fits, expected = SCALARS[field.kind]
    if fits(value, field):
        return []
    text = expected(field)
    hint = did_you_mean(value, field.choices) if isinstance(value, str) and field.choices else None
    if hint:
        text += f" ({hint})"
    return [Problem(code, f"{where} is {show(value)}: expected {text}", where)]


def _check_structured(
    field: Field, shape: Shape, value: Any, where: str
) -> list[Problem | _Unlisted]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            text = f"{field.kind.value}, but it is not valid JSON ({exc})"
            return [_shape_problem(where, value, text)]
    if field.kind is Kind.OBJECT:
        if not isinstance(value, dict):
            return [_shape_problem(where, value, _object_text(shape))]
        return _check_object(shape, value, where)
    if field.kind is Kind.WRAPPED_LIST:
        if not isinstance(value, dict) or not isinstance(value.get("array"), list):
            return [_shape_problem(where, value, field.kind.value)]
        value, where = value["array"], f"{where}.array"
    if not isinstance(value, list):
        return [_shape_problem(where, value, f"a JSON list of {_object_text(shape)}")]
    if field.required and not value:
        return [Problem("V101", f"{where} is an empty list: '{field.name}' is required", where)]
    problems: list[Problem | _Unlisted] = []
    for index, element in enumerate(value):
        if isinstance(element, dict):
            problems += _check_object(shape, element, where, index)
        else:
            problems.append(_shape_problem(f"{where}[{index}]", element, _object_text(shape)))
    return problems


def _check_object(
    shape: Shape, obj: Mapping[str, Any], where: str, index: int | None = None
) -> list[Problem | _Unlisted]:
    """Check ``obj``, at ``where`` or, with an ``index``, element ``index`` of ``where``."""
    problems: list[Problem | _Unlisted] = []
    for name, required, recommended, kind, field in shape.rows:
        value = obj.get(name)
        if value is None or (isinstance(value, str) and (not value or value.isspace())):
            if not (required or recommended):
                continue
            if recommended and not required and index is not None:
                problems.append((where, index, name))  # merged: no message yet
                continue
            path = _path(where, index, name)
            state = "missing" if name not in obj else show(value)
            if required:
                problems.append(Problem("V107", f"{path} is {state}: it is required", path))
            else:
                problems.append(
                    Problem(
                        "W104", f"{path} is {state}: the event docs ask for it", path, "warning"
                    )
                )
            continue
        if kind is not None and ((kind is STRING and type(value) is str) or fits(field, value)):
            continue
        problems += _check_value(field, value, _path(where, index, name))
    names = shape.names
    if obj.keys() <= names:  # no undocumented key (a set comparison, in C)
        return problems
    for key, value in obj.items():
        if key in names:
            continue
        path = _path(where, index, key)
        if shape.flat and isinstance(value, list | dict):
            problems.append(
                Problem(
                    "W101",
                    f"{path} is a nested {'array' if isinstance(value, list) else 'object'}: "
                    "the CDP keeps one level of nesting, so it stays a serialized string",
                    path,
                    "warning",
                )
            )
        elif shape.extra is Extra.STRING_LIST and not is_string_list(value):
            problems.append(
                Problem(
                    "W102",
                    f"{path} is {show(value)}: expected an extra property to be a list of "
                    'strings, such as ["green"]',
                    path,
                    "warning",
                )
            )
    return problems


def _path(where: str, index: int | None, key: str) -> str:
    return f"{where}.{key}" if index is None else f"{where}[{index}].{key}"


def _shape_problem(where: str, value: Any, expected: str) -> Problem:
    return Problem("V107", f"{where} is {show(value)}: expected {expected}", where)


def _object_text(shape: Shape) -> str:
    return f"objects with {', '.join(f.name for f in shape.fields if f.required)}"
