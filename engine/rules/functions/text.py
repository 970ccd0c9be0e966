"""Text functions: ``lower``, ``upper``, ``trim``, ``replace``, ``unescape_html``, ``split``,
``concat``, ``format``."""

from __future__ import annotations

import decimal
import html
import re
import string
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from engine.errors import InvalidArgument
from engine.rules.functions.common import DECIMALS, SCALAR, TEXT, text_of
from engine.rules.functions.registry import Example, function, signature

_POSITION = re.compile(r"[0-9]*")  # "{}" or "{0}": the only placeholders format() allows


class TextFunctions:
    @function(
        "lower(text)",
        "Lower-cased text; null stays null.",
        Example("lower(email)", "ann@example.com", {"email": "Ann@Example.COM"}),
        Example("lower(customer.email)", None, {"customer": {"email": None}}),
    )
    @signature({"types": TEXT})
    def _func_lower(self, text: str | None) -> str | None:
        return None if text is None else text.lower()

    @function(
        "upper(text)",
        "Upper-cased text; null stays null.",
        Example("upper(currency)", "UAH", {"currency": "uah"}),
    )
    @signature({"types": TEXT})
    def _func_upper(self, text: str | None) -> str | None:
        return None if text is None else text.upper()

    @function(
        "trim(text)",
        "Text without leading and trailing whitespace; null stays null.",
        Example("trim(email)", "ann@example.com", {"email": "  ann@example.com\n"}),
    )
    @signature({"types": TEXT})
    def _func_trim(self, text: str | None) -> str | None:
        return None if text is None else text.strip()

    @function(
        "replace(text, old, new)",
        "Text with every `old` replaced by `new`; null stays null.",
        Example("replace(sku, ' ', '-')", "TS-RED-XL", {"sku": "TS RED XL"}),
    )
    @signature({"types": TEXT}, {"types": ["string"]}, {"types": ["string"]})
    def _func_replace(self, text: str | None, old: str, new: str) -> str | None:
        return None if text is None else text.replace(old, new)

    @function(
        "unescape_html(text)",
        "Text with its HTML character references decoded (`&amp;`, `&ndash;`, `&#8211;`), as"
        " WordPress stores product names; null stays null. Tags are left as they are.",
        Example(
            "unescape_html(name)",
            "Linen Shirt – Sage, M",
            {"name": "Linen Shirt &ndash; Sage, M"},
        ),
        Example(
            "unescape_html('Fish &amp; Chips &#8211; 2 for &pound;5')", "Fish & Chips – 2 for £5"
        ),
        Example("unescape_html('AT&T 5 < 6')", "AT&T 5 < 6"),
        Example("unescape_html(title)", "Tote", {"title": "Tote"}),
    )
    @signature({"types": TEXT})
    def _func_unescape_html(self, text: str | None) -> str | None:
        # html.unescape is the HTML5 reading: named references with and without ";",
        # numeric ones, and a bare "&" left alone
        if text is None or "&" not in text:
            return text
        return html.unescape(text)

    @function(
        "split(text, separator)",
        'The parts of text between separators; `""` gives `[]`; null stays null.',
        Example("split(tags, ',')[].trim(@)", ["vip", "wholesale"], {"tags": "vip, wholesale"}),
        Example("split(tags, ',')", [], {"tags": ""}),
    )
    @signature({"types": TEXT}, {"types": ["string"]})
    def _func_split(self, text: str | None, separator: str) -> list[str] | None:
        if not separator:
            raise InvalidArgument("split", "the separator is empty")
        if text is None:
            return None
        # "" is no items (Shopify's tags when there are none), not one empty item
        return text.split(separator) if text else []

    @function(
        "concat(value, ...)",
        "Values joined as text: null is empty, numbers without float noise, true/false.",
        Example(
            "concat(first_name, ' ', last_name)",
            "Ann Lee",
            {"first_name": "Ann", "last_name": "Lee"},
        ),
        Example(
            "concat('order-', id, '/', `1.0`, `null`, `true`)", "order-1001/1true", {"id": 1001}
        ),
        Example("concat(price, ' UAH')", "7.2 UAH", {"price": 7.199999999999999}),
    )
    @signature({"types": SCALAR, "variadic": True})
    def _func_concat(self, *values: Any) -> str:
        return "".join(text_of(value) for value in values)

    @function(
        "format(template, value...)",
        "Python `str.format` with `{}` / `{0}` placeholders only (and a spec: `{:.2f}` rounds"
        " half up); null is empty.",
        Example("format('{} x {}', quantity, title)", "2 x Tee", {"quantity": 2, "title": "Tee"}),
        Example("format('{1}: {0:.2f}', `2.675`, 'total')", "total: 2.68"),
        Example("format('#{}', `null`)", "#"),
    )
    # The template argument alone is required: the rest are optional and repeat.
    @signature({"types": ["string"]}, {"types": SCALAR, "variadic": True, "optional": True})
    def _func_format(self, template: str, *values: Any) -> str:
        return _format(template, values)


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
        return format(text_of(value), spec)
    # a float spec rounds the decimal the webhook wrote, half up, as format_number() does
    number = value if isinstance(value, int) else Decimal(format(value, ".15g"))
    with decimal.localcontext(DECIMALS):
        return format(number, spec)
