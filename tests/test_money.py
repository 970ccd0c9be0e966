"""Every amount of an event in one form: the shortest decimal, the value unchanged."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.events import money
from engine.events.encode import as_text, to_json

AMOUNTS = st.decimals(
    min_value=-(10**9), max_value=10**9, places=4, allow_nan=False, allow_infinity=False
)


@given(AMOUNTS, st.integers(min_value=0, max_value=3))
def test_text_of_a_decimal_string_is_its_value_without_trailing_zeros(
    amount: Decimal, padding: int
) -> None:
    """ "20.00", "20.0" and "20" are one amount, written "20"; the value never changes."""
    text = format(amount, "f") + ("0" * padding if "." in format(amount, "f") else "")
    written = money.as_text(text)
    assert Decimal(written) == amount
    assert "." not in written or not written.endswith("0")
    assert written != "-0"


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False))
def test_a_float_is_written_as_the_encoder_writes_the_same_number(value: float) -> None:
    """A computed amount (10.0, 0.1 + 0.2) reads as the v1 text of the same number."""
    written = money.as_text(value)
    assert Decimal(written) == Decimal(as_text(value))
    assert money.as_text(written) == written  # already in its form


@pytest.mark.parametrize(
    ("value", "text", "number"),
    [
        ("20.00", "20", 20),
        ("89.10", "89.1", 89.1),
        ("1566.5000", "1566.5", 1566.5),
        ("-58.00", "-58", -58),
        ("-0.00", "0", 0),
        (10.0, "10", 10),
        (0.1 + 0.2, "0.3", 0.3),
        (12800, "12800", 12800),
        (" 7.50 ", "7.5", 7.5),
    ],
)
def test_examples(value: Any, text: str, number: Any) -> None:
    assert money.as_text(value) == text
    got = money.as_number(value)
    assert (got, type(got)) == (number, type(number))


@pytest.mark.parametrize("value", ["n/a", "12,50", "", True, None, float("nan"), [1]])
def test_what_is_no_number_is_left_for_the_checks(value: Any) -> None:
    assert money.as_text(value) is value
    assert money.as_number(value) is value


def test_only_the_catalogues_money_params_change() -> None:
    """totalCost and an item's cost change form; quantities, ids and custom events do not."""
    params = (
        ("externalOrderId", "0012.50"),
        ("totalCost", "20.00"),
        ("items", [{"externalItemId": "7", "quantity": 2.0, "cost": "10.00"}]),
    )
    out = dict(money.normalize("orderCreated", params))
    assert out["externalOrderId"] == "0012.50"
    assert out["totalCost"] == "20"
    assert to_json(out["items"]) == '[{"externalItemId":"7","quantity":2.0,"cost":10}]'
    assert money.normalize("myEvent", params) is params
    same = (("totalCost", "20"), ("items", json.dumps([{"cost": "1.00"}])))
    assert money.normalize("orderCreated", same) is same  # a JSON string is left as built
