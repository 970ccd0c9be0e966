"""Event checks and the catalogue's load-time check.

Most cases are data: ``tests/data/checks/*.json`` are lists of
``{name, eventTypeKey, keyValue, params: [[name, value]...], identify_by?,
problems: [[code, param]...], contact?: {by, name} | null}`` run through one loader
(as jmespath's compliance suite does). ``problems`` is the exact multiset of codes and
params expected, warnings included.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from engine.errors import CODES
from engine.events.catalogue import (
    BODY_MAX_BYTES,
    EVENT_TYPES,
    IDENTIFIER_NAMES,
    Kind,
    static_check,
)
from engine.events.checks import check_body_size, check_event
from engine.events.contacts import Contact

DATA = Path(__file__).parent / "data" / "checks"


def _cases() -> list[Any]:
    cases = []
    for path in sorted(DATA.glob("*.json")):
        for case in json.loads(path.read_text(encoding="utf-8")):
            cases.append(pytest.param(case, id=f"{path.stem}: {case['name']}"))
    return cases


CASES = _cases()


def test_case_files_are_found_and_case_names_are_unique() -> None:
    ids = [param.id for param in CASES]
    assert len(ids) > 50
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", CASES)
def test_check_event_case(case: dict[str, Any]) -> None:
    result = check_event(
        case["eventTypeKey"],
        case["keyValue"],
        [(name, value) for name, value in case["params"]],
        case.get("identify_by", ()),
    )
    got = Counter((p.code, p.param) for p in result.problems)
    assert got == Counter((code, param) for code, param in case["problems"]), [
        p.message for p in result.problems
    ]
    for problem in result.problems:
        assert problem.code in CODES
        assert problem.severity == ("warning" if problem.code.startswith("W") else "error")
        assert problem.message
    assert result.ok == all(code.startswith("W") for code, _ in case["problems"])
    if "contact" in case:
        expected = case["contact"]
        contact = result.contact
        assert (contact and {"by": contact.by, "name": contact.name}) == expected


# -- messages say what was wrong and what was expected ------------------------------

ORDER = [
    ("externalOrderId", "1"),
    ("totalCost", "258.0"),
    ("status", "INITIALIZED"),
    ("date", "2020-05-14T10:11:00"),
    ("currency", "UAH"),
    ("email", "a@example.com"),
]


def _only_problem(params: list[tuple[str, Any]]) -> str:
    (problem,) = check_event("orderCreated", None, params).problems
    return problem.message


def test_message_quotes_the_value_and_the_expectation() -> None:
    message = _only_problem([*ORDER[:1], ("totalCost", "12,5"), *ORDER[2:]])
    assert '"12,5"' in message
    assert "number" in message


def test_message_on_status_suggests_the_case_variant() -> None:
    message = _only_problem([*ORDER[:2], ("status", "delivered"), *ORDER[3:]])
    assert "did you mean 'DELIVERED'?" in message


def test_message_truncates_long_values() -> None:
    message = _only_problem([*ORDER[:3], ("date", "x" * 500), *ORDER[4:]])
    assert '"' + "x" * 58 + "…" in message  # 60 characters in all, quote and ellipsis included
    assert "x" * 59 not in message


def test_message_on_missing_item_key_names_the_items() -> None:
    """A missing recommended item key is one warning naming every element that lacks it."""
    items = [
        {"externalItemId": "1", "name": "n", "quantity": 1, "cost": 1, "url": "u"},
        {"externalItemId": "2", "name": "m", "quantity": 1, "cost": 1, "url": "u"},
    ]
    message = _only_problem([*ORDER, ("items", items)])
    assert message.startswith("'imageUrl' is missing in items element(s) 0, 1")


def test_contact_carries_the_identifying_value() -> None:
    result = check_event("custom", None, [("Phone", 380501234567)])
    assert result.contact == Contact("param", "Phone", "380501234567")
    assert check_event("custom", "k1", []).contact == Contact("keyValue", "keyValue", "k1")


# -- body size -----------------------------------------------------------------------


def test_body_at_the_20_kb_limit_passes() -> None:
    assert check_body_size(b"x" * BODY_MAX_BYTES) is None


def test_body_over_the_20_kb_limit_is_v110_with_its_size() -> None:
    problem = check_body_size(b"x" * (20 * 1024 + 1))
    assert problem is not None
    assert problem.code == "V110"
    assert "20481 bytes" in problem.message
    assert "20 KB" in problem.message


# -- the catalogue -------------------------------------------------------------------


def test_catalogue_lists_the_eleven_standard_types() -> None:
    assert set(EVENT_TYPES) == {
        "orderCreated",
        "orderUpdated",
        "orderDelivered",
        "orderCancelled",
        "pageViewed",
        "productViewed",
        "productCategoryViewed",
        "cartUpdated",
        "productAddedToWishlist",
        "searchRequest",
        "productImpressions",
    }


def test_structured_params_declare_their_shape() -> None:
    """Every object/list param has a shape, and no scalar param has one."""
    structured = {Kind.OBJECT, Kind.OBJECT_LIST, Kind.WRAPPED_LIST}
    for spec in EVENT_TYPES.values():
        for field in spec.params:
            assert (field.shape is not None) == (field.kind in structured), (spec.key, field)


def test_order_requirements_follow_the_current_spec() -> None:
    spec = EVENT_TYPES["orderCreated"]
    assert set(spec.required) == {"externalOrderId", "totalCost", "status", "date", "currency"}
    assert spec.one_of == ("externalCustomerId", "email", "phone")


# -- static_check (load time) --------------------------------------------------------

ORDER_NAMES = ["externalOrderId", "totalCost", "status", "date", "currency", "email"]


def test_static_complete_order_is_clean() -> None:
    assert static_check("orderCreated", ORDER_NAMES, False, ()) == []


def test_static_misspelled_event_type_is_e401_with_hint() -> None:
    (finding,) = static_check("orderCreate", ["email"], False, ())
    assert finding.code == "E401"
    assert finding.severity == "error"
    assert finding.hint == "did you mean 'orderCreated'?"


def test_static_event_type_differing_in_case_is_e401() -> None:
    (finding,) = static_check("ordercreated", ["email"], False, ())
    assert (finding.code, finding.hint) == ("E401", "did you mean 'orderCreated'?")


@pytest.mark.parametrize("event_type", ["orderDeleted", "orderRefunded", "loyaltyPointsEarned"])
def test_static_custom_event_type_is_not_a_misspelling(event_type: str) -> None:
    assert static_check(event_type, ["email"], False, ()) == []


@pytest.mark.parametrize("missing", ["externalOrderId", "totalCost", "status", "date", "currency"])
def test_static_undeclared_required_order_param_is_e402(missing: str) -> None:
    declared = [n for n in ORDER_NAMES if n != missing]
    findings = static_check("orderDelivered", declared, True, ())
    assert [(f.code, f.param) for f in findings] == [("E402", missing)]


def test_static_order_without_contact_field_is_e402_even_with_key_value() -> None:
    declared = [n for n in ORDER_NAMES if n != "email"]
    (finding,) = static_check("orderCreated", declared, True, ())
    assert (finding.code, finding.param) == ("E402", None)
    assert "externalCustomerId, email, phone" in finding.message


def test_static_order_with_capitalised_email_hints_at_the_field_name() -> None:
    declared = [n if n != "email" else "Email" for n in ORDER_NAMES]
    (finding,) = static_check("orderCreated", declared, False, ())
    assert finding.code == "E402"
    assert finding.hint == "for 'Email', did you mean 'email'?"


def test_static_required_params_of_site_events_are_e402() -> None:
    findings = static_check("cartUpdated", ["products", "email"], False, ())
    assert [(f.code, f.param) for f in findings] == [("E402", "recycleStateId")]


def test_static_no_key_value_and_no_identifier_is_e403() -> None:
    (finding,) = static_check("pageViewed", ["page"], False, ())
    assert finding.code == "E403"


@pytest.mark.parametrize(
    ("declared", "has_key_value", "identify_by"),
    [
        (["page"], True, ()),
        (["page", "EMAIL"], False, ()),
        (["page", "contact_KEY"], False, ()),
        (["page", "loyaltyCard"], False, ("LoyaltyCard",)),
    ],
    ids=["keyValue", "identifier in any case", "contact_key", "identify_by name"],
)
def test_static_contact_is_identified(
    declared: list[str], has_key_value: bool, identify_by: tuple[str, ...]
) -> None:
    assert static_check("pageViewed", declared, has_key_value, identify_by) == []


def test_static_custom_event_without_contact_is_e403() -> None:
    assert [f.code for f in static_check("loyaltyPointsEarned", ["points"], False, ())] == ["E403"]


@pytest.mark.parametrize(
    ("event_type", "typo", "meant"),
    [
        ("orderCreated", "externalOrderID", "externalOrderId"),
        ("orderCreated", "totalcost", "totalCost"),
        ("cartUpdated", "recycleStateID", "recycleStateId"),
        ("productViewed", "CurrencyCode", "currencyCode"),
    ],
)
def test_static_misspelled_param_is_w401_with_hint(event_type: str, typo: str, meant: str) -> None:
    declared = [typo, *(f.name for f in EVENT_TYPES[event_type].params if f.required), "email"]
    declared = [n for n in declared if n != meant]
    findings = static_check(event_type, declared, True, ())
    warnings = [f for f in findings if f.code == "W401"]
    assert [(f.param, f.hint, f.severity) for f in warnings] == [
        (typo, f"did you mean '{meant}'?", "warning")
    ]
    # The misspelled param does not fill the real one.
    assert [f.param for f in findings if f.code == "E402"] == (
        [meant] if meant in EVENT_TYPES[event_type].required else []
    )


def test_static_custom_params_and_identifiers_are_not_flagged() -> None:
    declared = [*ORDER_NAMES, "loyaltyTier", "Phone", "EMAIL", "giftWrap"]
    assert static_check("orderCreated", declared, False, ()) == []


def test_identifier_names_are_the_documented_thirteen() -> None:
    assert len(IDENTIFIER_NAMES) == 13
    assert "externalCustomerId" in IDENTIFIER_NAMES


@pytest.mark.parametrize(
    ("value", "fits"),
    [
        ("2020-05-14T10:11:00", True),
        ("2020-05-14T10:11", True),
        ("2020-05-14T10:11:00.123456789Z", True),
        ("2024-02-29T10:00:00+02:00", True),
        ("2020-01-01T10:00:00-23:59", True),
        ("2020-01-01T10:00Z", True),
        ("2020-02-30T10:11:00", False),
        ("2023-02-29T10:00:00Z", False),
        ("2020-13-01T00:00", False),
        ("2020-00-10T00:00:00", False),
        ("0000-01-01T00:00:00", False),
        ("2020-01-01T24:00:00", False),
        ("2020-01-01T23:60", False),
        ("2020-01-01T23:59:60", False),
        ("2020-01-01T10:00:00+24:00", False),
        ("2020-01-01T10:00:00+01:60", False),
        ("2020-01-01 10:00:00", False),
        ("2020-01-01", False),
    ],
)
def test_a_date_must_be_a_real_moment(value: str, fits: bool) -> None:
    """V104 for what is not an ISO 8601 date-time of the calendar: February 30th, month
    13, hour 24, an offset of 24 hours; the same with or without seconds and offset."""
    params = [
        ("externalOrderId", "1"),
        ("totalCost", 1),
        ("status", "INITIALIZED"),
        ("date", value),
        ("currency", "USD"),
        ("email", "a@b.c"),
    ]
    codes = [p.code for p in check_event("orderCreated", "a@b.c", params).problems]
    assert ("V104" not in codes) is fits, codes
