"""Value functions: ``to_json``, ``from_json``, ``coalesce``, ``default``, ``compact``."""

from __future__ import annotations

import json
import reprlib
from typing import Any

from engine.errors import InvalidArgument
from engine.rules.functions.common import TEXT, is_missing, reject_constant
from engine.rules.functions.registry import Example, function, signature


class ValueFunctions:
    @function(
        "to_json(value)",
        "Compact JSON text of any value (non-ASCII kept as is).",
        Example(
            "to_json(note_attributes)",
            '[{"name":"gift","value":"oui, très"}]',
            {"note_attributes": [{"name": "gift", "value": "oui, très"}]},
        ),
    )
    @signature({"types": []})
    def _func_to_json(self, value: Any) -> str:
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except ValueError as exc:  # NaN or infinity: JSON has no spelling for them
            raise InvalidArgument("to_json", str(exc)) from exc

    @function(
        "from_json(text)",
        'The value JSON text encodes; null and `""` give null; text that is not JSON fails.',
        Example("from_json(meta.value).size", "XL", {"meta": {"value": '{"size": "XL"}'}}),
        Example("from_json(`null`)", None),
    )
    @signature({"types": TEXT})
    def _func_from_json(self, text: str | None) -> Any:
        if text is None or not text.strip():
            return None
        try:
            return json.loads(text, parse_constant=reject_constant)
        except ValueError as exc:
            raise InvalidArgument("from_json", f"not JSON: {reprlib.repr(text)} ({exc})") from exc

    @function(
        "coalesce(value, ...)",
        'The first value that is neither null nor `""`, else null.',
        Example(
            "coalesce(email, contact_email, customer.email)",
            "ann@example.com",
            {"email": "", "contact_email": None, "customer": {"email": "ann@example.com"}},
        ),
        Example("coalesce(`null`, '')", None),
    )
    @signature({"types": [], "variadic": True})
    def _func_coalesce(self, *values: Any) -> Any:
        # compiled rules inline this test (engine.rules.codegen_calls.CallEmitter._coalesce):
        # keep them alike
        for value in values:  # a plain loop: next() over a generator costs five times more
            if value is None or value == "":
                continue
            return value
        return None

    @function(
        "compact(value)",
        'An object without its null and `""` entries; for an array, each object in it.',
        Example("compact(@)", {"sku": "A"}, {"sku": "A", "image": None, "note": ""}),
        Example(
            "compact(lines[].{id: id, image: image})",
            [{"id": 1}, {"id": 2, "image": "i.png"}],
            {"lines": [{"id": 1}, {"id": 2, "image": "i.png"}]},
        ),
    )
    @signature({"types": []})
    def _func_compact(self, value: Any) -> Any:
        # A projection such as line_items[].{...} keeps every key, null or not; the CDP
        # would store "null" strings, so rules drop them here.
        # (_missing inlined: this runs for every key of every line item; compiled rules
        # build compact(list[].{...}) objects compacted already,
        # engine.rules.codegen._Generator._compact_dict)
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

    @function(
        "default(value, fallback)",
        '`value` unless it is null or `""`, else `fallback` (unlike `||`, keeps 0 and false).',
        Example("default(discount, `0`)", 0, {"discount": None}),
        Example("default(`0`, `5`)", 0),
        Example("default(`false`, `true`)", False),
    )
    @signature({"types": []}, {"types": []})
    def _func_default(self, value: Any, fallback: Any) -> Any:
        return fallback if is_missing(value) else value
