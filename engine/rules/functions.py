"""The functions rule expressions can call, beyond JMESPath's built-ins.

Each function is a ``_func_<name>`` method with a jmespath ``@signature`` (jmespath's
own registry picks it up) and an entry in ``SPECS`` with a one-line summary and
runnable examples. ``tests/test_functions.py`` runs every example, and
``docs/rules.md`` prints them, so the docs cannot drift from the code.

Context functions (``root()``, ``header()``, ``topic()``, ``var()``, ``lookup()``)
read the ``EvalContext`` the engine builds per webhook: this is how an expression
inside a projection reaches the document root, which plain JMESPath cannot do.

The value functions follow two conventions, because webhooks leave fields out:

* **null in, null out.** ``lower(customer.email)`` is null for a guest, not an error;
  the event validator then reports a missing param where one is required. A value of
  the wrong JSON type (``lower(`5`)``) is still a type error, through the signature.
* **An empty string is no value** where the input is data, not text: ``number("")``,
  ``phone("")``, ``coalesce()`` and ``default()`` treat it as null, since shops send
  ``""`` for a field the customer left blank (Shopify's ``email`` on POS orders).

A value of the right type that a function still cannot use (a template with
``{0.attr}``, a string that is not JSON, an unreadable date) raises ``InvalidArgument``.
"""

from __future__ import annotations

import dataclasses
import decimal
import hashlib
import json
import re
import reprlib
import string
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, TypeVar

import jmespath
from jmespath import exceptions as jp_exceptions
from jmespath import functions as jp_functions

from engine.errors import InvalidArgument, UnknownLookupValue
from engine.records import fast_init
from engine.rules import datetimes

_F = TypeVar("_F", bound=Callable[..., Any])


class ArgSpec(TypedDict):
    """One argument of a signature: jmespath's keys plus hookmap's ``optional``."""

    types: list[str]
    variadic: NotRequired[bool]
    #: a trailing argument that may be left out (``phone(s)`` and ``phone(s, cc)``)
    optional: NotRequired[bool]


def signature(*arguments: ArgSpec) -> Callable[[_F], _F]:
    """jmespath's ``@signature``, typed to accept the ``optional`` key too."""
    return jp_functions.signature(*arguments)


def signature_arity(arguments: Sequence[ArgSpec]) -> tuple[int, int | None]:
    """(min, max) argument count a signature allows; max None when variadic."""
    low = sum(1 for argument in arguments if not argument.get("optional"))
    high = None if arguments and arguments[-1].get("variadic") else len(arguments)
    return low, high


@dataclasses.dataclass(frozen=True)
class Table:
    """A named lookup table: ``mapping`` keys are strings (see ``table_key``)."""

    name: str
    mapping: Mapping[str, Any]
    default: Any = None
    has_default: bool = False
    strict: bool = False

    def get(self, value: Any) -> Any:
        key = table_key(value)
        if key in self.mapping:
            return self.mapping[key]
        if self.strict:
            raise UnknownLookupValue(self.name, value)
        return self.default


def table_key(value: Any) -> str:
    """The string a value is looked up by: ``3`` and ``"3"`` find the same entry."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@fast_init
@dataclasses.dataclass(frozen=True)
class EvalContext:
    """What an expression can reach besides its current node."""

    root: Any = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)  # lower-cased names
    topic: str | None = None
    vars: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tables: Mapping[str, Table] = dataclasses.field(default_factory=dict)
    #: answers of the rule set's lookups, fetched before evaluation
    fetched: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: the document around the decoded body (JWT claims, Pub/Sub or CloudEvents envelope)
    envelope: Any = None


@dataclasses.dataclass(frozen=True)
class Example:
    """``expression`` evaluated on ``data`` gives ``result`` (run by the tests)."""

    expression: str
    result: Any
    data: Any = None


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    name: str
    usage: str
    summary: str
    examples: tuple[Example, ...]
    #: names of arguments that must be literal strings naming a table / var
    literal_args: Mapping[int, str] = dataclasses.field(default_factory=dict)


SPECS: dict[str, FunctionSpec] = {}


def spec(
    usage: str,
    summary: str,
    *examples: Example,
    literal_args: Mapping[int, str] | None = None,
) -> None:
    name = usage.split("(", 1)[0]
    SPECS[name] = FunctionSpec(name, usage, summary, tuple(examples), dict(literal_args or {}))


# Argument types the value functions share: data fields may always be null.
_TEXT = ["string", "null"]
_SCALAR = ["string", "number", "boolean", "null"]
_NUMERIC = ["number", "string", "null"]  # a number or a numeric string
_MOMENT = ["string", "number", "null"]  # a date-time string or an epoch
_DIALLABLE = ["string", "number", "null"]  # a phone number, sometimes sent as a number


class EngineFunctions(jp_functions.Functions):
    """JMESPath built-ins plus hookmap's functions, bound to one ``EvalContext``."""

    def __init__(self, context: EvalContext | None = None) -> None:
        self.context = context or EvalContext()

    if TYPE_CHECKING:  # jmespath's own type check, which its stubs leave out

        def _type_check_single(
            self, current: Any, types: list[str], function_name: str
        ) -> None: ...

    # jmespath checks arity exactly (or "at least" when variadic) and the types of the
    # declared positions only. hookmap also needs optional trailing arguments, and a type
    # check on every variadic argument: concat() must refuse an object in fourth place as
    # it does in first. jmespath calls this hook for every function, built-ins included.
    def _validate_arguments(
        self, args: Sequence[Any], arguments: Sequence[ArgSpec], function_name: str
    ) -> None:
        low, high = signature_arity(arguments)
        if len(args) < low:
            error = jp_exceptions.ArityError if high == low else jp_exceptions.VariadictArityError
            raise error(low, len(args), function_name)
        if high is not None and len(args) > high:
            raise jp_exceptions.ArityError(high, len(args), function_name)
        for position, arg in enumerate(args):
            types = arguments[min(position, len(arguments) - 1)]["types"]
            if types:
                self._type_check_single(arg, types, function_name)

    # -- context ---------------------------------------------------------------

    @signature()
    def _func_root(self) -> Any:
        return self.context.root

    @signature({"types": ["string"]})
    def _func_header(self, name: str) -> Any:
        return self.context.headers.get(name.lower())

    @signature()
    def _func_topic(self) -> Any:
        return self.context.topic

    @signature({"types": ["string"]})
    def _func_var(self, name: str) -> Any:
        return self.context.vars.get(name)

    @signature({"types": ["string"]}, {"types": []})
    def _func_lookup(self, table: str, value: Any) -> Any:
        found = self.context.tables.get(table)
        if found is None:  # the loader rejects this; reached only by hand-built contexts
            raise UnknownLookupValue(table, value)
        return found.get(value)

    @signature({"types": ["string"]})
    def _func_fetched(self, name: str) -> Any:
        return self.context.fetched.get(name)

    @signature()
    def _func_envelope(self) -> Any:
        return self.context.envelope

    # -- strings ---------------------------------------------------------------

    @signature({"types": _TEXT})
    def _func_lower(self, text: str | None) -> str | None:
        return None if text is None else text.lower()

    @signature({"types": _TEXT})
    def _func_upper(self, text: str | None) -> str | None:
        return None if text is None else text.upper()

    @signature({"types": _TEXT})
    def _func_trim(self, text: str | None) -> str | None:
        return None if text is None else text.strip()

    @signature({"types": _TEXT}, {"types": ["string"]}, {"types": ["string"]})
    def _func_replace(self, text: str | None, old: str, new: str) -> str | None:
        return None if text is None else text.replace(old, new)

    @signature({"types": _TEXT}, {"types": ["string"]})
    def _func_split(self, text: str | None, separator: str) -> list[str] | None:
        if not separator:
            raise InvalidArgument("split", "the separator is empty")
        if text is None:
            return None
        # "" is no items (Shopify's tags when there are none), not one empty item
        return text.split(separator) if text else []

    @signature({"types": _SCALAR, "variadic": True})
    def _func_concat(self, *values: Any) -> str:
        return "".join(_text(value) for value in values)

    # The template argument alone is required: the rest are optional and repeat.
    @signature({"types": ["string"]}, {"types": _SCALAR, "variadic": True, "optional": True})
    def _func_format(self, template: str, *values: Any) -> str:
        return _format(template, values)

    # -- values ----------------------------------------------------------------

    @signature({"types": []})
    def _func_to_json(self, value: Any) -> str:
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except ValueError as exc:  # NaN or infinity: JSON has no spelling for them
            raise InvalidArgument("to_json", str(exc)) from exc

    @signature({"types": _TEXT})
    def _func_from_json(self, text: str | None) -> Any:
        if text is None or not text.strip():
            return None
        try:
            return json.loads(text, parse_constant=_reject_constant)
        except ValueError as exc:
            raise InvalidArgument("from_json", f"not JSON: {reprlib.repr(text)} ({exc})") from exc

    @signature({"types": [], "variadic": True})
    def _func_coalesce(self, *values: Any) -> Any:
        # compiled rules inline this test (engine.rules.codegen._coalesce): keep them alike
        for value in values:  # a plain loop: next() over a generator costs five times more
            if value is None or value == "":
                continue
            return value
        return None

    @signature({"types": []}, {"types": []})
    def _func_default(self, value: Any, fallback: Any) -> Any:
        return fallback if _missing(value) else value

    @signature({"types": []})
    def _func_compact(self, value: Any) -> Any:
        # A projection such as line_items[].{...} keeps every key, null or not; the CDP
        # would store "null" strings, so rules drop them here.
        # (_missing inlined: this runs for every key of every line item; compiled rules
        # build compact(list[].{...}) objects compacted already, engine.rules.codegen._compact_dict)
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if not (v is None or v == "")}
        if isinstance(value, list):
            return [
                {k: x for k, x in v.items() if not (x is None or x == "")}
                if isinstance(v, dict)
                else v
                for v in value
            ]
        return value

    # -- numbers ---------------------------------------------------------------

    @signature({"types": ["number", "null"]}, {"types": ["number"]})
    def _func_round(self, number: float | None, digits: float) -> float | None:
        if number is None:
            return None
        places = _digits("round", digits)
        rounded = _round_half_up("round", _exact(number), places)
        return int(rounded) if places == 0 else float(rounded)

    @signature({"types": _NUMERIC})
    def _func_number(self, value: str | float | None) -> float | None:
        if value is None or not isinstance(value, str):
            return value
        text = value.strip()
        # digits around at most one dot (the prices shops send) pass without the regex
        plain = text.isascii() and text.replace(".", "", 1).isdigit()
        if not plain and _PLAIN_DECIMAL.fullmatch(text) is None:
            return None
        # float() and int() of a plain decimal string are exactly float() and int() of
        # its Decimal, without building one
        if "." in value:
            return float(text)
        try:
            return int(text)
        except ValueError:  # over int()'s digit limit (sys.set_int_max_str_digits)
            return int(Decimal(text))

    @signature({"types": _NUMERIC}, {"types": ["number", "null"], "optional": True})
    def _func_money(self, minor: str | float | None, digits: float | None = 2) -> float | None:
        # minor units (commercetools centAmount + fractionDigits, Stripe amount_total) to
        # an amount, exactly: 10470 with 2 digits is 104.7, never 104.69999999999999
        exact = None if minor is None else _to_decimal(str(minor))
        if exact is None:
            return None
        places = _digits("money", 2 if digits is None else digits)
        amount = exact.scaleb(-places)
        return int(amount) if places == 0 else float(amount)

    @signature({"types": _NUMERIC}, {"types": ["number"]})
    def _func_format_number(self, value: str | float | None, digits: float) -> str | None:
        places = _digits("format_number", digits)
        exact = None if value is None else _to_decimal(value)
        if exact is None:
            return None
        return format(_round_half_up("format_number", exact, places), "f")

    # -- date-times ------------------------------------------------------------

    @signature({"types": _MOMENT}, {"types": _TEXT, "optional": True})
    def _func_iso_datetime(self, value: str | float | None, tz: str | None = None) -> str | None:
        if tz is None and isinstance(value, str) and _is_written_as_iso(value):
            return value  # what parsing it and isoformat() would give back
        moment = _moment("iso_datetime", value, tz)
        return None if moment is None else moment.isoformat()

    @signature({"types": _MOMENT}, {"types": ["string"]})
    def _func_format_datetime(self, value: str | float | None, pattern: str) -> str | None:
        moment = _moment("format_datetime", value)
        return None if moment is None else moment.strftime(pattern)

    @signature({"types": _MOMENT})
    def _func_to_epoch(self, value: str | float | None) -> int | None:
        moment = _moment("to_epoch", value)
        return None if moment is None else datetimes.to_epoch(moment)

    # -- contacts --------------------------------------------------------------

    @signature({"types": _DIALLABLE}, {"types": _DIALLABLE, "optional": True})
    def _func_phone(
        self, value: str | float | None, country_code: str | float | None = None
    ) -> str | None:
        if value is None:
            return None
        if country_code is None:
            code = None
        elif type(country_code) is str and country_code.isascii() and country_code.isdigit():
            code = country_code  # digits already: nothing to take out
        elif country_code == "":
            code = ""
        else:
            code = _NON_DIGIT.sub("", _text(country_code))
        return _phone(_text(value), code or None)

    @signature({"types": _TEXT})
    def _func_sha256(self, text: str | None) -> str | None:
        return _digest("sha256", text)

    @signature({"types": _TEXT})
    def _func_md5(self, text: str | None) -> str | None:
        return _digest("md5", text)

    @signature({"types": _TEXT})
    def _func_sha1(self, text: str | None) -> str | None:
        return _digest("sha1", text)


# -- helpers -------------------------------------------------------------------

_PLAIN_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
# Precision wide enough for any float's digits: the default 28 makes quantize() fail on
# 1e30, and HALF_UP is how shops and tax rules round money (2.675 -> 2.68).
_DECIMALS = decimal.Context(prec=400, rounding=decimal.ROUND_HALF_UP)
_POSITION = re.compile(r"[0-9]*")  # "{}" or "{0}": the only placeholders format() allows
# An extension after the number ("x12", "ext. 12", ";ext=12") is no part of what
# eSputnik matches contacts on. It must follow a digit, or "Fax: +380..." would lose all.
_EXTENSION = re.compile(r"(?<=[0-9)])\s*[;,]?\s*(?:ext(?:ension)?|x)\s*[.:=]?\s*[0-9]+\s*$", re.I)
_NON_DIGIT = re.compile(r"[^0-9]")
_INTERNATIONAL = re.compile(r"[^0-9]*\+")
# ISO 8601 as most shops write it: whole seconds, an offset or none (see _plain_iso)
_PLAIN_ISO = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:[+-][0-9]{2}:[0-9]{2})?"
)


def _missing(value: Any) -> bool:
    return value is None or value == ""


def _text(value: Any) -> str:
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


def _format(template: str, values: Sequence[Any]) -> str:
    """``str.format`` restricted to positional placeholders, with ``_text`` values."""

    def bad(why: str) -> InvalidArgument:
        return InvalidArgument("format", f"template {template!r}: {why}")

    try:
        pieces = list(string.Formatter().parse(template))
    except ValueError as exc:  # a lone "{" or "}"
        raise bad(str(exc)) from exc
    out: list[str] = []
    auto = 0
    numbering: set[bool] = set()
    for literal, field, spec, conversion in pieces:
        out.append(literal)
        if field is None:
            continue
        # "{0.attr}", "{0[key]}" and nested "{0:{1.attr}}" walk Python objects from a
        # rule (str.format's known escape hatch); "!r" would print Python reprs.
        if not _POSITION.fullmatch(field) or conversion or "{" in (spec or ""):
            raise bad("only {} and {N} placeholders, with an optional format spec, are allowed")
        numbering.add(field == "")
        if len(numbering) > 1:
            raise bad("mixes {} and {N} placeholders")
        if field:
            index = int(field)
        else:
            index, auto = auto, auto + 1
        if index >= len(values):
            raise bad(f"placeholder {index} needs {index + 1} value(s), got {len(values)}")
        try:
            out.append(_format_value(values[index], spec or ""))
        except ValueError as exc:  # a spec that does not fit the value, like "{:.2f}" on text
            raise bad(str(exc)) from exc
    return "".join(out)


def _format_value(value: Any, spec: str) -> str:
    if value is None:
        return ""  # also with a spec: "{:.2f}" of a missing discount is empty, not an error
    if not spec or isinstance(value, str | bool):
        return format(_text(value), spec)
    # a float spec rounds the decimal the webhook wrote, half up, as format_number() does
    number = value if isinstance(value, int) else Decimal(format(value, ".15g"))
    with decimal.localcontext(_DECIMALS):
        return format(number, spec)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json reads NaN and Infinity


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
        rounded = number.quantize(Decimal(1).scaleb(-places), context=_DECIMALS)
    except decimal.InvalidOperation as exc:  # infinity or NaN
        raise InvalidArgument(function, f"cannot round {number}") from exc
    return rounded.copy_abs() if rounded.is_zero() else rounded  # never "-0.00"


def _moment(function: str, value: str | float | None, tz: str | None = None) -> datetime | None:
    try:
        # the zone is checked even when unused, so a typo shows on the first webhook
        where = datetimes.zone(tz) if tz else None
        moment = _plain_iso(value)
        if moment is None:
            moment = datetimes.parse_datetime(value)
    except ValueError as exc:
        raise InvalidArgument(function, str(exc)) from exc
    if moment is None or where is None:
        return moment
    return datetimes.assume_zone(moment, where)


def _plain_iso(value: Any) -> datetime | None:
    """The moment of the usual ``2026-10-14T09:41:27-04:00`` (whole seconds), else None.

    ``datetimes.parse_datetime`` reads such text the same way, after checks (blank, zero
    date, epoch, fraction) that cannot apply to it; anything else is left to it.
    """
    if type(value) is not str or _PLAIN_ISO.fullmatch(value) is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # month 13, or PrestaShop's 0000-00-00T00:00:00: parse_datetime says
        return None


def _is_written_as_iso(text: str) -> bool:
    """Whether ``text`` is a valid date-time exactly as ``datetime.isoformat`` writes it."""
    # with an offset, isoformat() writes a zero one "+00:00", and 60 minutes or more in
    # hours: "-00:60" is "-01:00"
    if len(text) > 19 and (text[-2] not in "012345" or text.endswith("-00:00")):
        return False
    return _plain_iso(text) is not None


def _phone(number: str, country_code: str | None) -> str | None:
    """International digits without "+", as eSputnik matches contacts on them."""
    if number.isascii() and number.isdigit():  # digits only: no extension, no "+"
        digits = number
    elif number[:1] == "+" and number[1:].isascii() and number[1:].isdigit():
        return number[1:]  # E.164 as Shopify sends it
    else:
        if "x" in number or "X" in number:  # every extension marker has an x
            number = _EXTENSION.sub("", number)
        digits = _NON_DIGIT.sub("", number)
        if not digits:
            return None
        if _INTERNATIONAL.match(number):  # "+" before the first digit: already international
            return digits
    if digits.startswith("00"):  # the international call prefix
        return digits[2:] or None
    if digits.startswith("0") and country_code:  # national, with its trunk 0
        return country_code + digits[1:]
    return digits


def _digest(algorithm: str, text: str | None) -> str | None:
    if text is None:
        return None
    # identifiers, not security: usedforsecurity=False keeps md5 on FIPS-mode Pythons
    return hashlib.new(algorithm, text.encode(), usedforsecurity=False).hexdigest()


spec(
    "root()",
    "The webhook body, from anywhere, also inside a projection or `for_each`.",
    Example(
        "line_items[].{sku: sku, order: root().id}",
        [{"sku": "A", "order": 7}],
        {"id": 7, "line_items": [{"sku": "A"}]},
    ),
)
spec(
    "header(name)",
    "A request header by name (case-insensitive), or null.",
    Example("header('X-Shopify-Topic')", "orders/create"),
)
spec(
    "topic()", "The webhook's topic as the rule set found it.", Example("topic()", "orders/create")
)
spec(
    "var(name)",
    "A named var of the rule set (after `${ENV}` interpolation).",
    Example("var('shop_url')", "https://shop.example"),
    literal_args={0: "var"},
)
spec(
    "lookup(table, value)",
    "The entry for `value` in a named table; its `default` when absent; a problem if strict.",
    Example("lookup('status', 'completed')", "DELIVERED"),
    Example("lookup('status', 'nope')", "INITIALIZED"),
    literal_args={0: "table"},
)

spec(
    "fetched(name)",
    "The JSON answer of a lookup declared in the rule set (fetched before evaluation).",
    Example("fetched('order').total_inc_tax", "88.10"),
    literal_args={0: "lookup"},
)
spec(
    "envelope()",
    "The document around the decoded body: JWT claims, Pub/Sub push or CloudEvents "
    "envelope; the body itself for plain JSON.",
    Example("envelope().type", "com.commercetools.order.message.OrderCreated"),
)
spec(
    "money(minor[, fraction_digits])",
    "An amount from integer minor units and its fraction digits (default 2), exactly.",
    Example("money(centAmount, fractionDigits)", 104.7, {"centAmount": 10470, "fractionDigits": 2}),
    Example("money(amount_total)", 84.5, {"amount_total": 8450}),
    Example("money(`1500`, `0`)", 1500),
    Example("money(`null`)", None),
)
spec(
    "lower(text)",
    "Lower-cased text; null stays null.",
    Example("lower(email)", "ann@example.com", {"email": "Ann@Example.COM"}),
    Example("lower(customer.email)", None, {"customer": {"email": None}}),
)
spec(
    "upper(text)",
    "Upper-cased text; null stays null.",
    Example("upper(currency)", "UAH", {"currency": "uah"}),
)
spec(
    "trim(text)",
    "Text without leading and trailing whitespace; null stays null.",
    Example("trim(email)", "ann@example.com", {"email": "  ann@example.com\n"}),
)
spec(
    "replace(text, old, new)",
    "Text with every `old` replaced by `new`; null stays null.",
    Example("replace(sku, ' ', '-')", "TS-RED-XL", {"sku": "TS RED XL"}),
)
spec(
    "split(text, separator)",
    'The parts of text between separators; `""` gives `[]`; null stays null.',
    Example("split(tags, ',')[].trim(@)", ["vip", "wholesale"], {"tags": "vip, wholesale"}),
    Example("split(tags, ',')", [], {"tags": ""}),
)
spec(
    "concat(value, ...)",
    "Values joined as text: null is empty, numbers without float noise, true/false.",
    Example(
        "concat(first_name, ' ', last_name)", "Ann Lee", {"first_name": "Ann", "last_name": "Lee"}
    ),
    Example("concat('order-', id, '/', `1.0`, `null`, `true`)", "order-1001/1true", {"id": 1001}),
    Example("concat(price, ' UAH')", "7.2 UAH", {"price": 7.199999999999999}),
)
spec(
    "format(template, value...)",
    "Python `str.format` with `{}` / `{0}` placeholders only (and a spec: `{:.2f}` rounds"
    " half up); null is empty.",
    Example("format('{} x {}', quantity, title)", "2 x Tee", {"quantity": 2, "title": "Tee"}),
    Example("format('{1}: {0:.2f}', `2.675`, 'total')", "total: 2.68"),
    Example("format('#{}', `null`)", "#"),
)
spec(
    "to_json(value)",
    "Compact JSON text of any value (non-ASCII kept as is).",
    Example(
        "to_json(note_attributes)",
        '[{"name":"gift","value":"oui, très"}]',
        {"note_attributes": [{"name": "gift", "value": "oui, très"}]},
    ),
)
spec(
    "from_json(text)",
    'The value JSON text encodes; null and `""` give null; text that is not JSON fails.',
    Example("from_json(meta.value).size", "XL", {"meta": {"value": '{"size": "XL"}'}}),
    Example("from_json(`null`)", None),
)
spec(
    "coalesce(value, ...)",
    'The first value that is neither null nor `""`, else null.',
    Example(
        "coalesce(email, contact_email, customer.email)",
        "ann@example.com",
        {"email": "", "contact_email": None, "customer": {"email": "ann@example.com"}},
    ),
    Example("coalesce(`null`, '')", None),
)
spec(
    "compact(value)",
    'An object without its null and `""` entries; for an array, each object in it.',
    Example("compact(@)", {"sku": "A"}, {"sku": "A", "image": None, "note": ""}),
    Example(
        "compact(lines[].{id: id, image: image})",
        [{"id": 1}, {"id": 2, "image": "i.png"}],
        {"lines": [{"id": 1}, {"id": 2, "image": "i.png"}]},
    ),
)
spec(
    "default(value, fallback)",
    '`value` unless it is null or `""`, else `fallback` (unlike `||`, keeps 0 and false).',
    Example("default(discount, `0`)", 0, {"discount": None}),
    Example("default(`0`, `5`)", 0),
    Example("default(`false`, `true`)", False),
)
spec(
    "round(number, digits)",
    "The number rounded half up to 0-20 `digits` (exact decimal, so 2.675 -> 2.68);"
    " digits 0 gives an integer; null stays null.",
    Example("round(`2.675`, `2`)", 2.68),
    Example("round(`2.5`, `0`)", 3),
    Example("round(price, `1`)", 21.6, {"price": 21.55}),
)
spec(
    "number(value)",
    'A number from a number or a plain decimal string; null, `""` and other text give null.',
    Example("number(total_price)", 188.09, {"total_price": "188.09"}),
    Example("number(grand_total)", 1566.5, {"grand_total": "1566.5000"}),
    Example("number('12')", 12),
    Example("number(`21.6`)", 21.6),
    Example("number('')", None),
    Example("number('n/a')", None),
)
spec(
    "format_number(value, digits)",
    "A number or numeric string as text with exactly `digits` decimals, rounded half up;"
    " null for null or non-numeric text.",
    Example("format_number(amount, `2`)", "30.00", {"amount": "30.0"}),
    Example("format_number(`2.675`, `2`)", "2.68"),
    Example("format_number('70.180000', `0`)", "70"),
)
spec(
    "iso_datetime(value[, tz])",
    "ISO 8601 date-time in whole seconds; UTC written `+00:00`; `tz` (IANA name or `+03:00`)"
    ' applies only to input without an offset; null, `""` and PrestaShop\'s'
    " `0000-00-00 00:00:00` give null.",
    Example(
        "iso_datetime(created_at)",
        "2026-10-14T09:41:27-04:00",
        {"created_at": "2026-10-14T09:41:27-04:00"},
    ),
    Example("iso_datetime('2026-10-14T13:41:27.123Z')", "2026-10-14T13:41:27+00:00"),
    Example(
        "iso_datetime(date_created)", "2026-10-14T09:41:27", {"date_created": "2026-10-14T09:41:27"}
    ),
    Example("iso_datetime('2026-10-14 09:41:27')", "2026-10-14T09:41:27"),
    Example("iso_datetime('2026-10-14 09:41:27', 'Europe/Kyiv')", "2026-10-14T09:41:27+03:00"),
    Example("iso_datetime('2026-12-14 09:41:27', 'Europe/Kyiv')", "2026-12-14T09:41:27+02:00"),
    Example("iso_datetime('2026-10-14 09:41:27', '+05:30')", "2026-10-14T09:41:27+05:30"),
    Example(
        "iso_datetime('2026-10-14T09:41:27-04:00', 'Europe/Kyiv')", "2026-10-14T09:41:27-04:00"
    ),
    Example("iso_datetime('2026-10-14')", "2026-10-14T00:00:00"),
    Example("iso_datetime(created_at)", "2026-10-14T13:41:27+00:00", {"created_at": 1791985287}),
    Example("iso_datetime('1791985287')", "2026-10-14T13:41:27+00:00"),
    Example("iso_datetime(`1791985287123`)", "2026-10-14T13:41:27+00:00"),
    Example("iso_datetime('Wed, 14 Oct 2026 09:41:27 +0000')", "2026-10-14T09:41:27+00:00"),
    Example("iso_datetime(invoice_date)", None, {"invoice_date": "0000-00-00 00:00:00"}),
    Example("iso_datetime(`null`)", None),
)
spec(
    "format_datetime(value, pattern)",
    "A date-time (any form `iso_datetime` reads) written with a strftime `pattern`.",
    Example(
        "format_datetime(date_add, '%d.%m.%Y')", "14.10.2026", {"date_add": "2026-10-14 09:41:27"}
    ),
    Example("format_datetime(`1791985287`, '%Y-%m-%d %H:%M %z')", "2026-10-14 13:41 +0000"),
)
spec(
    "to_epoch(value)",
    "A date-time (any form `iso_datetime` reads) as integer unix seconds; input without"
    " an offset counts as UTC (use `to_epoch(iso_datetime(value, tz))` otherwise).",
    Example("to_epoch('2026-10-14T09:41:27-04:00')", 1791985287),
    Example("to_epoch('2026-10-14 13:41:27')", 1791985287),
    Example("to_epoch(iso_datetime('2026-10-14 16:41:27', 'Europe/Kyiv'))", 1791985287),
)
spec(
    "phone(value[, country_code])",
    "International digits without `+`: `00` dropped; a national number with a trunk 0"
    " gets `country_code` instead; an extension (`x12`, `ext. 12`) dropped; no digits: null.",
    Example("phone(phone)", "380501234567", {"phone": "+380 50 123 45 67"}),
    Example("phone('(050) 123-45-67', '380')", "380501234567"),
    Example("phone('00380501234567')", "380501234567"),
    Example("phone('050.123.45.67')", "0501234567"),
    Example("phone('+1 (555) 123-4567 ext. 89')", "15551234567"),
    Example("phone(`380501234567`)", "380501234567"),
    Example("phone(billing.phone)", None, {"billing": {"phone": ""}}),
)
spec(
    "sha256(text)",
    "Hex SHA-256 of the UTF-8 text, as for hashed emails: `sha256(lower(trim(email)))`.",
    Example(
        "sha256(lower(trim(email)))",
        "71d4f55f72fa128dfb468a1a3901507c804b74316488744d769d7f4b16696476",
        {"email": " Ann@Example.com "},
    ),
    Example("sha256(`null`)", None),
)
spec(
    "md5(text)",
    "Hex MD5 of the UTF-8 text; null stays null.",
    Example("md5('ann@example.com')", "257c57037d384ae37ea27a07e8a01665"),
)
spec(
    "sha1(text)",
    "Hex SHA-1 of the UTF-8 text; null stays null.",
    Example("sha1('ann@example.com')", "85e20fa15f500fa17c1b6975c6647445094c26d9"),
)

#: The context the examples above run in (tests and docs use it).
EXAMPLE_CONTEXT = EvalContext(
    root={"id": 7, "line_items": [{"sku": "A"}]},
    headers={"x-shopify-topic": "orders/create"},
    topic="orders/create",
    vars={"shop_url": "https://shop.example"},
    fetched={"order": {"id": 250, "total_inc_tax": "88.10"}},
    envelope={"type": "com.commercetools.order.message.OrderCreated"},
    tables={
        "status": Table(
            "status", {"completed": "DELIVERED"}, default="INITIALIZED", has_default=True
        )
    },
)


def function_table() -> Mapping[str, Any]:
    """Name → jmespath's ``{'function', 'signature'}`` for every callable function."""
    return EngineFunctions.FUNCTION_TABLE  # type: ignore[no-any-return]


def arity(name: str) -> tuple[int, int | None] | None:
    """(min, max) argument count of a function; max None when variadic; None if unknown."""
    entry = function_table().get(name)
    if entry is None:
        return None
    return signature_arity(entry["signature"])


def make_options(context: EvalContext) -> jmespath.Options:
    """jmespath options that evaluate with hookmap's functions bound to ``context``."""
    return jmespath.Options(custom_functions=EngineFunctions(context))
