"""engine.events.encode: how produced values become the exact request body (v1 text, v2 JSON)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.events.encode import (
    ApiVersion,
    as_text,
    body_bytes,
    clean,
    clean_number,
    request_body,
    to_json,
)


def significant_digits(text: str) -> int:
    """How many significant decimal digits a number's text spells (258.0 has 3)."""
    mantissa = text.lstrip("-").lower().split("e")[0].replace(".", "")
    return len(mantissa.lstrip("0").rstrip("0")) or 1


def _strict_json(raw: bytes) -> Any:
    """json.loads that refuses NaN and Infinity, as a strict JSON parser does."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(raw, parse_constant=refuse)


# -- clean_number ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.1 + 0.2, 0.3),
        (7.199999999999999, 7.2),
        (1.1 * 3, 3.3),
        (1e-7, 1e-7),
        (1e21, 1e21),
        (258.0, 258.0),
        (-0.0, -0.0),
        (123456789.12345679, 123456789.123457),
        (2.675, 2.675),
    ],
)
def test_clean_number_keeps_15_significant_digits(value: float, expected: float) -> None:
    """clean_number drops binary noise past 15 significant digits and nothing else."""
    assert clean_number(value) == expected


def test_clean_number_passes_non_finite_values_through() -> None:
    """inf and nan are not rounded (and not turned into something else)."""
    assert clean_number(math.inf) == math.inf
    assert clean_number(-math.inf) == -math.inf
    assert math.isnan(clean_number(math.nan))


def test_clean_walks_nested_structures() -> None:
    """clean() cleans floats inside dicts, lists and tuples; other values are untouched."""
    value = {"a": [0.1 + 0.2, {"b": 1.1 * 3, "c": (7.199999999999999,)}], 1: True, "n": None}
    assert clean(value) == {"a": [0.3, {"b": 3.3, "c": [7.2]}], "1": True, "n": None}
    assert clean(5) == 5 and type(clean(5)) is int
    assert clean(True) is True


# -- as_text (v1) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.1 + 0.2, "0.3"),
        (7.199999999999999, "7.2"),
        (188.09, "188.09"),
        (2.5, "2.5"),
        # current spelling of integral and extreme floats (Python's repr of the cleaned
        # float); concat()/format() write these "258", "0.0000001", "0": see the report
        (258.0, "258.0"),
        (1e-7, "1e-07"),
        (1e21, "1e+21"),
        (-0.0, "-0.0"),
        (5, "5"),
        (-12, "-12"),
        (10**20, "100000000000000000000"),
        (True, "true"),
        (False, "false"),
        ("text ✓", "text ✓"),
        ("", ""),
    ],
)
def test_as_text_of_scalars(value: Any, expected: str) -> None:
    """v1 text of numbers (no float noise), integers (exact), booleans and strings."""
    assert as_text(value) == expected


def test_as_text_of_structures_is_compact_json_with_unicode_kept() -> None:
    """Objects and arrays become compact JSON, floats cleaned, non-ASCII as is."""
    value = {"name": "Café «ü» ✓", "cost": 0.1 + 0.2, "tags": ["вишня", 1.1 * 3], "ok": True}
    assert as_text(value) == '{"name":"Café «ü» ✓","cost":0.3,"tags":["вишня",3.3],"ok":true}'
    assert as_text([]) == "[]"
    assert as_text({}) == "{}"
    assert as_text([None, 1]) == "[null,1]"


def test_to_json_refuses_nan() -> None:
    """to_json never writes NaN or Infinity, which are not JSON."""
    with pytest.raises(ValueError):
        to_json({"x": math.nan})
    with pytest.raises(ValueError):
        to_json([math.inf])


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_as_text_is_the_15_digit_value(x: float) -> None:
    """For any finite float, as_text reads back as format(x, '.15g') does."""
    text = as_text(x)
    assert float(text) == float(format(x, ".15g"))


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_as_text_has_at_most_15_significant_digits(x: float) -> None:
    """as_text never spells more than 15 significant digits (no binary noise)."""
    assert significant_digits(as_text(x)) <= 15


@given(st.integers(min_value=-(10**30), max_value=10**30))
def test_as_text_of_integers_is_exact(n: int) -> None:
    """Integers are written exactly, however large (no float rounding)."""
    assert as_text(n) == str(n)
    assert int(as_text(n)) == n


def test_significant_digits_helper() -> None:
    """The helper the properties use counts what a reader would."""
    assert significant_digits("258.0") == 3
    assert significant_digits("0.000123") == 3
    assert significant_digits("1e-07") == 1
    assert significant_digits("-1.2345e+21") == 5
    assert significant_digits("0.0") == 1


# -- request_body and body_bytes ---------------------------------------------------------

PARAMS: list[tuple[str, Any]] = [
    ("total", 0.1 + 0.2),
    ("count", 3),
    ("paid", True),
    ("name", "Café"),
    ("items", [{"sku": "A", "cost": 7.199999999999999, "title": "Tee ✓"}]),
    ("meta", {"a": {"b": [1.1 * 3]}}),
]


def test_request_body_v1_sends_every_value_as_text() -> None:
    """v1: eventTypeKey, keyValue, then params whose values are all strings."""
    body = request_body("orderCreated", "ann@example.com", PARAMS, "v1")
    assert body == {
        "eventTypeKey": "orderCreated",
        "keyValue": "ann@example.com",
        "params": [
            {"name": "total", "value": "0.3"},
            {"name": "count", "value": "3"},
            {"name": "paid", "value": "true"},
            {"name": "name", "value": "Café"},
            {"name": "items", "value": '[{"sku":"A","cost":7.2,"title":"Tee ✓"}]'},
            {"name": "meta", "value": '{"a":{"b":[3.3]}}'},
        ],
    }


def test_request_body_v2_sends_objects_and_arrays_natively() -> None:
    """v2: objects and arrays stay JSON (floats cleaned), scalars are written as v1 does."""
    body = request_body("orderCreated", "ann@example.com", PARAMS, "v2")
    assert body["params"] == [
        {"name": "total", "value": "0.3"},
        {"name": "count", "value": "3"},
        {"name": "paid", "value": "true"},
        {"name": "name", "value": "Café"},
        {"name": "items", "value": [{"sku": "A", "cost": 7.2, "title": "Tee ✓"}]},
        {"name": "meta", "value": {"a": {"b": [3.3]}}},
    ]


def test_request_body_without_key_value_has_no_key_value() -> None:
    """A null keyValue is left out of the body, not sent as null."""
    body = request_body("custom", None, [], "v1")
    assert body == {"eventTypeKey": "custom", "params": []}


def test_body_bytes_are_compact_utf8() -> None:
    """The wire bytes: compact separators, non-ASCII as UTF-8 (not \\u escapes)."""
    body = request_body("custom", "ann@example.com", [("name", "Café ✓")], "v1")
    raw = body_bytes(body)
    assert (
        raw
        == (
            '{"eventTypeKey":"custom","keyValue":"ann@example.com",'
            '"params":[{"name":"name","value":"Café ✓"}]}'
        ).encode()
    )
    assert b"\\u" not in raw
    assert _strict_json(raw) == body


def test_body_bytes_measure_utf8_length() -> None:
    """The 20 KB limit counts bytes: a non-ASCII character counts more than once."""
    ascii_body = request_body("custom", None, [("n", "a" * 10)], "v1")
    utf8_body = request_body("custom", None, [("n", "ї" * 10)], "v1")
    assert len(body_bytes(utf8_body)) == len(body_bytes(ascii_body)) + 10


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_body_bytes_never_writes_non_json_numbers(version: ApiVersion) -> None:
    """A non-finite float inside an object param is refused, never written as Infinity."""
    with pytest.raises(ValueError):
        body_bytes(request_body("custom", None, [("o", {"x": math.inf})], version))
