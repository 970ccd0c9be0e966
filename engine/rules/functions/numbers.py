"""Number functions: ``round``, ``number``, ``money``, ``format_number``, exact in decimal."""

from __future__ import annotations

import decimal
import re
from decimal import Decimal

from engine.errors import InvalidArgument
from engine.rules.functions.common import DECIMALS, NUMERIC
from engine.rules.functions.registry import Example, function, signature

_PLAIN_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


class NumberFunctions:
    @function(
        "money(minor[, fraction_digits])",
        "An amount from integer minor units and its fraction digits (default 2), exactly.",
        Example(
            "money(centAmount, fractionDigits)", 104.7, {"centAmount": 10470, "fractionDigits": 2}
        ),
        Example("money(amount_total)", 84.5, {"amount_total": 8450}),
        Example("money(`1500`, `0`)", 1500),
        Example("money(`null`)", None),
    )
    @signature({"types": NUMERIC}, {"types": ["number", "null"], "optional": True})
    def _func_money(self, minor: str | float | None, digits: float | None = 2) -> float | None:
        # minor units (commercetools centAmount + fractionDigits, Stripe amount_total) to
        # an amount, exactly: 10470 with 2 digits is 104.7, never 104.69999999999999
        exact = None if minor is None else _to_decimal(str(minor))
        if exact is None:
            return None
        places = _digits("money", 2 if digits is None else digits)
        amount = exact.scaleb(-places)
        return int(amount) if places == 0 else float(amount)

    @function(
        "round(number, digits)",
        "The number rounded half up to 0-20 `digits` (exact decimal, so 2.675 -> 2.68);"
        " digits 0 gives an integer; null stays null.",
        Example("round(`2.675`, `2`)", 2.68),
        Example("round(`2.5`, `0`)", 3),
        Example("round(price, `1`)", 21.6, {"price": 21.55}),
    )
    @signature({"types": ["number", "null"]}, {"types": ["number"]})
    def _func_round(self, number: float | None, digits: float) -> float | None:
        if number is None:
            return None
        places = _digits("round", digits)
        rounded = _round_half_up("round", _exact(number), places)
        return int(rounded) if places == 0 else float(rounded)

    @function(
        "number(value)",
        'A number from a number or a plain decimal string; null and `""` give null; other'
        " text is not a number: the param gets a V102 problem (the event is not sent).",
        Example("number(total_price)", 188.09, {"total_price": "188.09"}),
        Example("number(grand_total)", 1566.5, {"grand_total": "1566.5000"}),
        Example("number('12')", 12),
        Example("number(`21.6`)", 21.6),
        Example("number('')", None),
        Example("number('  ')", None),
    )
    @signature({"types": NUMERIC})
    def _func_number(self, value: str | float | None) -> float | None:
        if value is None or not isinstance(value, str):
            return value
        text = value.strip()
        # digits around at most one dot (the prices shops send) pass without the regex
        plain = text.isascii() and text.replace(".", "", 1).isdigit()
        if not plain and _PLAIN_DECIMAL.fullmatch(text) is None:
            if not text:
                return None  # a field left blank: no value, as null
            # "n/a", "12,50", "$5": a value that is there, and no number; null would pass
            # it off as missing
            raise InvalidArgument("number", f"{value!r} is not a number", code="V102")
        # float() and int() of a plain decimal string are exactly float() and int() of
        # its Decimal, without building one
        if "." in value:
            return float(text)
        try:
            return int(text)
        except ValueError:  # over int()'s digit limit (sys.set_int_max_str_digits)
            return int(Decimal(text))

    @function(
        "format_number(value, digits)",
        "A number or numeric string as text with exactly `digits` decimals, rounded half up;"
        " null for null or non-numeric text.",
        Example("format_number(amount, `2`)", "30.00", {"amount": "30.0"}),
        Example("format_number(`2.675`, `2`)", "2.68"),
        Example("format_number('70.180000', `0`)", "70"),
    )
    @signature({"types": NUMERIC}, {"types": ["number"]})
    def _func_format_number(self, value: str | float | None, digits: float) -> str | None:
        places = _digits("format_number", digits)
        exact = None if value is None else _to_decimal(value)
        if exact is None:
            return None
        return format(_round_half_up("format_number", exact, places), "f")


def _exact(number: float) -> Decimal:
    # str() first: Decimal(2.675) is the float's binary value 2.67499999..., while the
    # webhook said 2.675, which is what str() gives back.
    return Decimal(str(number))


def _to_decimal(value: str | float) -> Decimal | None:
    """A number exactly, or a plain decimal string ("188.09", not "1e3"); else None."""
    if not isinstance(value, str):
        return _exact(value)
    text = value.strip()
    return Decimal(text) if _PLAIN_DECIMAL.fullmatch(text) else None


def _digits(function: str, digits: float) -> int:
    # 20 is more than any currency or unit needs, and stops a typo printing 200 zeros
    if (isinstance(digits, float) and not digits.is_integer()) or not 0 <= digits <= 20:
        raise InvalidArgument(function, f"digits must be a whole number 0 to 20, got {digits!r}")
    return int(digits)


def _round_half_up(function: str, number: Decimal, places: int) -> Decimal:
    try:
        rounded = number.quantize(Decimal(1).scaleb(-places), context=DECIMALS)
    except decimal.InvalidOperation as exc:  # infinity or NaN
        raise InvalidArgument(function, f"cannot round {number}") from exc
    return rounded.copy_abs() if rounded.is_zero() else rounded  # never "-0.00"
