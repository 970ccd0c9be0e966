"""Scalar kinds: what a value of each catalogue ``Kind`` must look like, and the problem
code and wording when it does not (``engine.events.checks`` asks these)."""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from engine.events.catalogue import Field, Kind
from engine.events.values import is_scalar

_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?", re.ASCII)
_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?"
    r"(?:Z|[+-](\d{2}):(\d{2}))?",
    re.ASCII,
)
_CURRENCY = re.compile(r"[A-Z]{3}", re.ASCII)


def fits(field: Field, value: Any) -> bool:
    """Whether ``value`` fits the scalar ``field``: ``SCALARS[field.kind]``'s test."""
    # the usual kinds by identity: an Enum key's __hash__ is Python code, slow per value
    kind = field.kind
    if kind is STRING:
        return is_scalar(value)
    if kind is _NUMBER_KIND:
        if type(value) is int or type(value) is float:
            return math.isfinite(value)  # _is_number's answer for them
        return _is_number(value, field)
    return SCALARS[kind][1](value, field)


STRING = Kind.STRING
_NUMBER_KIND = Kind.NUMBER


def _is_string(value: Any, _: Field) -> bool:
    return is_scalar(value)


def _is_number(value: Any, _: Field) -> bool:
    if type(value) is str:
        return _NUMBER.fullmatch(value) is not None
    # bool is an int in Python, but true/false is no price: JSON keeps them apart.
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return math.isfinite(value)
    return isinstance(value, str) and _NUMBER.fullmatch(value) is not None


def _is_datetime(value: Any, _: Field) -> bool:
    match = _DATETIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return False
    try:  # the calendar (month 13, February 30th, hour 24...), checked in C
        datetime.datetime.fromisoformat(value[:19] if match[6] is not None else value[:16])
    except ValueError:
        return False
    return match[7] is None or (int(match[7]) < 24 and int(match[8]) < 60)


def _is_choice(value: Any, field: Field) -> bool:
    return isinstance(value, str) and value in field.choices


def _is_currency(value: Any, _: Field) -> bool:
    return isinstance(value, str) and _CURRENCY.fullmatch(value) is not None


def _is_flag(value: Any, _: Field) -> bool:
    if isinstance(value, bool):
        return False
    return value in (0, 1) if isinstance(value, int | float) else value in ("0", "1")


_Check = tuple[str, Callable[[Any, Field], bool], Callable[[Field], str]]

#: Per scalar kind: the problem code, whether a value fits, and what was expected.
SCALARS: Mapping[Kind, _Check] = {
    Kind.STRING: ("V114", _is_string, lambda f: "a string or a number"),
    Kind.NUMBER: (
        "V102",
        _is_number,
        lambda f: 'a number such as 188.09 or "188.09" (a dot for decimals)',
    ),
    Kind.DATETIME: (
        "V104",
        _is_datetime,
        lambda f: (
            'an ISO 8601 date-time such as "2020-05-14T10:11:00" '
            "(seconds, fraction and Z or ±HH:MM optional)"
        ),
    ),
    Kind.ENUM: ("V103", _is_choice, lambda f: f"one of {', '.join(f.choices)}"),
    Kind.CURRENCY: (
        "V105",
        _is_currency,
        lambda f: 'an ISO 4217 code of three uppercase letters such as "USD"',
    ),
    Kind.FLAG: ("V103", _is_flag, lambda f: "0 or 1"),
}
