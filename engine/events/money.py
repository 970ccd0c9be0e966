"""Money values in one form: every amount of one event is written the same way.

Platforms write amounts as they like: WooCommerce and Shopify as decimal strings with the
store's decimals (``"20.00"``), their line prices as JSON numbers (``10.0``), Magento with
four places (``"58.0400"``), Stripe and commercetools in minor units that ``money()``
turns into numbers. Sent as they come, one order would read ``"20.00"`` beside ``10.0``.

The form chosen is the number's shortest decimal, which is how JSON writes a number:
``89.1``, ``86``, ``12800``, ``1.5``, ``-7.7``. It is the only form the item costs inside
``items`` (JSON numbers) can take, so the params beside them take it too; a fixed two
decimals would misstate JPY (no decimals) and KWD (three), and the platform's own form
cannot be kept for amounts the rules compute (sums, minor units). The value is unchanged:
only its spelling is, and the CDP reads numbers.

Which params are money is the catalogue's to say (``Field.money``: totalCost, shipping,
discount, taxes, an item's cost, a product's price); custom events are left as they are,
and so is anything that is not a number (the checks report it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from engine.events.catalogue import EVENT_TYPES, Field
from engine.events.encode import clean_number

_PLAIN_DECIMAL = re.compile(r"\s*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*")


def normalize(event_type: str, params: Sequence[tuple[str, Any]]) -> Sequence[tuple[str, Any]]:
    """``params`` with every money value in the one form (the same tuple if none changes)."""
    spec = EVENT_TYPES.get(event_type)
    if spec is None:
        return params
    fields = spec.money_fields
    out: list[tuple[str, Any]] | None = None
    for index, (name, value) in enumerate(params):
        field = fields.get(name)
        if field is None:
            continue
        new = _written(field, value)
        if new is not value and not (type(new) is type(value) and new == value):
            if out is None:
                out = list(params)
            out[index] = (name, new)
    return params if out is None else tuple(out)


def as_text(value: Any) -> Any:
    """A money param's value as its shortest decimal text, or ``value`` if not a number."""
    exact = _exact(value)
    return value if exact is None else _text(exact)


def as_number(value: Any) -> Any:
    """An amount inside an item as a JSON number (an integer when whole), or ``value``."""
    exact = _exact(value)
    if exact is None:
        return value
    if exact == exact.to_integral_value():
        return int(exact)
    return float(exact)


def _written(field: Field, value: Any) -> Any:
    if field.shape is None:
        return as_text(value)
    keys = field.shape.money_keys
    if isinstance(value, dict):
        return _object(value, keys)
    if isinstance(value, list):  # items; a JSON string the rule built stays as it is
        rebuilt = [_object(v, keys) if isinstance(v, dict) else v for v in value]
        changed = any(new is not old for new, old in zip(rebuilt, value, strict=True))
        return rebuilt if changed else value
    return value


def _object(obj: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    changes = {}
    for key in keys:
        if key in obj:
            new = as_number(obj[key])
            if new is not obj[key] and not (type(new) is type(obj[key]) and new == obj[key]):
                changes[key] = new
    return {**obj, **changes} if changes else obj


def _exact(value: Any) -> Decimal | None:
    """The amount ``value`` states, exactly, or None when it is no number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return Decimal(repr(clean_number(value)))  # 0.1 + 0.2 is 0.3, as encoding writes it
    if isinstance(value, str) and _PLAIN_DECIMAL.fullmatch(value):
        return Decimal(value.strip())
    return None


def _text(exact: Decimal) -> str:
    text = format(exact.normalize(), "f")
    return "0" if text in ("-0", "0") else text
