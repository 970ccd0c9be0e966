"""Serialize stage: produced values → the exact request body for v1 or v2.

v1 sends every param value as a string (objects and arrays JSON-encoded, as the
source page's ``items`` example does); v2 sends objects and arrays as native JSON and
every scalar as a string (its spec allows only those). Both print
numbers without binary float noise: ``0.1 + 0.2`` is sent as ``0.3``.

JSON is written by orjson where its bytes are provably those of ``json.dumps`` (text,
integers, floats printed without an exponent below 1e-4), which is ten times faster on
every event; anything else goes through ``json.dumps`` as it always did.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import orjson

from engine.errors import NotForOrjson

ApiVersion = Literal["v1", "v2"]

# Values clean() and _cleaned_for_orjson return as they are.
_PLAIN: frozenset[type] = frozenset((str, int, bool, type(None)))


def clean_number(value: float) -> float:
    """The float with 15 significant digits, which drops the noise of binary arithmetic."""
    if not math.isfinite(value):
        return value
    if value.is_integer() and -1e15 < value < 1e15:
        return value  # a whole number of at most 15 digits has no noise to drop
    return float(format(value, ".15g"))


def clean(value: Any) -> Any:
    """``value`` with every float cleaned, recursively."""
    return _rebuild(value, clean_number, _clean_any)


def _rebuild(value: Any, number: Callable[[float], Any], other: Callable[[Any], Any]) -> Any:
    """``value`` rebuilt with ``number`` applied to each float and ``other`` to anything
    not a plain JSON type (string keys made strings): ``clean`` and
    ``_cleaned_for_orjson`` both walk values this way."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is float:
        return number(value)
    if kind is dict:
        return {
            k if type(k) is str else str(k): v if type(v) in _PLAIN else _rebuild(v, number, other)
            for k, v in value.items()
        }
    if kind is list or kind is tuple:
        return [v if type(v) in _PLAIN else _rebuild(v, number, other) for v in value]
    return other(value)


def _clean_any(value: Any) -> Any:
    """``clean`` for subclasses of the JSON types (and anything else)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return clean_number(value)
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def to_json(value: Any) -> str:
    """Compact JSON, unicode kept as is, floats cleaned."""
    try:
        ready = value if _ready(value) else _cleaned_for_orjson(value)
        return orjson.dumps(ready).decode("utf-8")
    except (NotForOrjson, orjson.JSONEncodeError):
        pass
    return json.dumps(clean(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _cleaned_for_orjson(value: Any) -> Any:
    """``clean(value)``, or ``NotForOrjson`` when orjson's bytes could differ from json's.

    They agree on text (every code point, tested), integers, and floats from 1e-4 up
    (both print the shortest repr, and exponents from 1e16 alike); below 1e-4 orjson
    writes 0.000015 for 1.5e-05, and it writes NaN as null where json raises. Other types
    (subclasses included) are left to json.dumps; orjson refuses integers beyond 64 bits.
    """
    return _rebuild(value, _orjson_number, _not_for_orjson)


def _orjson_number(value: float) -> float:
    cleaned = clean_number(value)
    if cleaned != 0 and not 1e-4 <= abs(cleaned) < math.inf:
        raise NotForOrjson
    return cleaned


def _not_for_orjson(value: Any) -> Any:
    raise NotForOrjson


def _ready(value: Any) -> bool:
    """Whether ``_cleaned_for_orjson(value)`` would equal ``value`` (so need not be built):
    only plain JSON types, string keys, and floats already clean and in orjson's range."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        number: float = value
        return clean_number(number) == number and (number == 0 or 1e-4 <= abs(number) < math.inf)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or (type(item) not in _PLAIN and not _ready(item)):
                return False
        return True
    if kind is list:
        return all(type(item) in _PLAIN or _ready(item) for item in value)
    return False  # tuples and subclasses: built by _cleaned_for_orjson, as before


def as_text(value: Any) -> str:
    """A param value as v1 sends it: a string."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        cleaned = clean_number(value)
        return repr(cleaned) if math.isfinite(cleaned) else str(cleaned)
    return to_json(value)


def request_body(
    event_type: str,
    key_value: str | None,
    params: Sequence[tuple[str, Any]],
    version: ApiVersion,
) -> dict[str, Any]:
    """The Generate event request body, as a JSON-ready dict."""
    body: dict[str, Any] = {"eventTypeKey": event_type}
    if key_value is not None:
        body["keyValue"] = key_value
    if version == "v1":
        body["params"] = [
            {"name": n, "value": v if type(v) is str else as_text(v)} for n, v in params
        ]
    else:
        body["params"] = [{"name": n, "value": as_v2(v)} for n, v in params]
    return body


def as_v2(value: Any) -> Any:
    """A param value as v2 sends it: objects and arrays native, every scalar a string.

    The v2 spec types ``value`` as string or JSON object/array: a bare number or
    boolean is not among them, so scalars are written as v1 writes them.
    """
    if isinstance(value, (dict, list, tuple)):
        return clean(value)
    return as_text(value)


def body_bytes(body: dict[str, Any]) -> bytes:
    """The bytes sent on the wire (also what the 20 KB limit is measured on)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    )


def encode_request(
    event_type: str,
    key_value: str | None,
    params: Sequence[tuple[str, Any]],
    version: ApiVersion,
) -> tuple[dict[str, Any], bytes]:
    """``request_body`` and its ``body_bytes``, built together.

    Raises ValueError for a NaN or infinite value, which JSON cannot carry.
    """
    body = request_body(event_type, key_value, params, version)
    if version == "v1":
        # every value is text (as_text), which orjson writes byte for byte as json does
        try:
            return body, orjson.dumps(body)
        except orjson.JSONEncodeError:  # a lone surrogate: let json.dumps fail as it did
            pass
    return body, body_bytes(body)
