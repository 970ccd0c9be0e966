"""phone(): numbers made international with libphonenumber, and dropped out loud when invalid.

The cases as data (``tests/data/phones/formats.yaml``: how shops send numbers, country by
country, and the documented numbers that are no numbers at all), then properties over
every region libphonenumber knows: any way of writing a valid number gives its E.164
digits, and whatever phone() gives is a valid number written exactly so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jmespath
import phonenumbers
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from engine.rules.functions import EvalContext, make_options
from engine.rules.functions.phones import normalize, region_of

DATA = Path(__file__).parent / "data" / "phones" / "formats.yaml"


def _cases() -> list[Any]:
    groups = yaml.safe_load(DATA.read_text(encoding="utf-8"))
    return [
        pytest.param(*case, *([None] if len(case) == 3 else []), id=f"{group}: {case[0]!r}")
        for group, cases in groups.items()
        for case in cases
    ]


def phone(value: Any, *regions: Any) -> tuple[Any, list[str]]:
    """phone(value, region...) as a rule expression runs it: its result and the reasons of
    what it dropped."""
    args = "".join(f", r[{index}]" for index in range(len(regions)))
    options = make_options(EvalContext())
    got = jmespath.search(f"phone(v{args})", {"v": value, "r": list(regions)}, options)
    return got, [d.reason for d in options.custom_functions.dropped]


@pytest.mark.parametrize(("value", "regions", "digits", "reason"), _cases())
def test_phone_formats(value: Any, regions: list[Any], digits: str | None, reason: str) -> None:
    """Each way of writing a number gives its E.164 digits, or null and the W106 reason."""
    assert phone(value, *regions) == (digits, [reason] if reason else [])


def test_the_data_covers_many_countries() -> None:
    """The table reads national numbers in at least 40 countries."""
    groups = yaml.safe_load(DATA.read_text(encoding="utf-8"))
    countries = {region_of(case[1][0]) for case in groups["national"]}
    assert len(countries) >= 40, sorted(countries - {None})


# -- every region libphonenumber knows ---------------------------------------------------

#: (region, an example number of it) for each region's fixed-line and mobile examples
EXAMPLES = [
    (region, number)
    for region in sorted(phonenumbers.SUPPORTED_REGIONS)
    for kind in (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE)
    if (number := phonenumbers.example_number_for_type(region, kind)) is not None
]
FORMATS = (
    PhoneNumberFormat.NATIONAL,
    PhoneNumberFormat.INTERNATIONAL,
    PhoneNumberFormat.E164,
    PhoneNumberFormat.RFC3966,
)


def _e164(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)[1:]


def test_every_region_has_examples() -> None:
    """Over 200 regions take part in the properties below."""
    assert len({region for region, _ in EXAMPLES}) > 200


@pytest.mark.parametrize("form", FORMATS, ids=lambda f: f"format {f}")
def test_every_regions_examples_in_every_format(form: int) -> None:
    """Each region's example numbers, written as libphonenumber writes them, national or
    international, give their E.164 digits when read in that region."""
    wrong = [
        (region, text, found)
        for region, number in EXAMPLES
        if (found := normalize(text := phonenumbers.format_number(number, form), [region])).digits
        != _e164(number)
    ]
    assert wrong == []


SEPARATORS = st.sampled_from(["", " ", "-", ".", " - ", "  ", "/"])


@settings(max_examples=300)
@given(st.sampled_from(EXAMPLES), st.data())
def test_separators_do_not_change_the_number(example: Any, data: st.DataObject) -> None:
    """The national digits with any separators between them read as the same number."""
    region, number = example
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    digits = phonenumbers.normalize_digits_only(national)
    text = "".join(digit + data.draw(SEPARATORS) for digit in digits)
    assert normalize(text, [region]).digits == _e164(number)


@given(st.sampled_from(EXAMPLES), st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)))
def test_international_numbers_ignore_the_region(example: Any, other: str) -> None:
    """A number written with its "+" is that number whatever region the shop gives."""
    _, number = example
    text = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    assert normalize(text, [other]).digits == _e164(number)


@settings(max_examples=400)
@given(
    st.text(alphabet="0123456789 +-().x", min_size=1, max_size=20),
    st.lists(st.sampled_from(["US", "UA", "GB", "BR", "DE", "IN", "380", "1", ""]), max_size=3),
)
def test_never_a_wrong_number(text: str, regions: list[str]) -> None:
    """Whatever the input, a result is a valid number written in E.164, and no result
    comes with a reason unless the input was blank."""
    found = normalize(text, regions)
    if found.digits is None:
        assert found.reason is not None or not text.strip()
        return
    number = phonenumbers.parse("+" + found.digits, None)
    assert phonenumbers.is_valid_number(number)
    assert _e164(number) == found.digits
    assert normalize("+" + found.digits, regions).digits == found.digits  # idempotent
