"""What the function families share: argument types, how values read as text and money, and
how a function says it dropped a value.

Leaf module (no imports from the engine), so every family can use it.
"""

from __future__ import annotations

import dataclasses
import decimal
from decimal import Decimal
from typing import Any

# Argument types the value functions share: data fields may always be null.
TEXT = ["string", "null"]
SCALAR = ["string", "number", "boolean", "null"]
NUMERIC = ["number", "string", "null"]  # a number or a numeric string
MOMENT = ["string", "number", "null"]  # a date-time string or an epoch
DIALLABLE = ["string", "number", "null"]  # a phone number, sometimes sent as a number
REGION = ["string", "number", "null"]  # a country ("UA") or a calling code ("380", 380)

# Precision wide enough for any float's digits: the default 28 makes quantize() fail on
# 1e30, and HALF_UP is how shops and tax rules round money (2.675 -> 2.68).
DECIMALS = decimal.Context(prec=400, rounding=decimal.ROUND_HALF_UP)


def is_missing(value: Any) -> bool:
    return value is None or value == ""


def text_of(value: Any) -> str:
    """A scalar as concat() and format() write it: null empty, numbers without noise."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # a double keeps 15 significant decimal digits faithfully, so cutting there
        # turns 0.1 + 0.2 back into 0.3; "f" spells out exponents (1e+20 -> 1000...)
        cleaned = Decimal(format(value, ".15g"))
        return "0" if cleaned.is_zero() else format(cleaned, "f")
    return str(value)


def reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json reads NaN and Infinity


@dataclasses.dataclass(frozen=True)
class Dropped:
    """A value a function was given and would not turn into a wrong one (it gave null).

    Functions stay pure in what they return: null, as for an absent value. What they
    gave up on goes to the ``dropped`` list of the functions object they run on, which
    the evaluate stage reads after each param and turns into a W106 warning located at
    that param, so a value that is there but unusable is never lost without a word.
    """

    function: str
    value: Any
    reason: str
