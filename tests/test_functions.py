"""hookmap's custom JMESPath functions: every documented example, then the edge cases."""

from __future__ import annotations

import hashlib
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import jmespath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jmespath import exceptions as jp_exceptions
from jmespath import functions as jp_functions

from engine.errors import EvaluationError, InvalidArgument
from engine.rules.functions import (
    EXAMPLE_CONTEXT,
    SPECS,
    EngineFunctions,
    Example,
    arity,
    function_table,
    make_options,
)


def search(expression: str, data: Any = None) -> Any:
    """Evaluate as the engine does, in the context the documented examples use."""
    return jmespath.compile(expression).search(
        data if data is not None else {}, options=make_options(EXAMPLE_CONTEXT)
    )


def same(got: Any, expected: Any) -> bool:
    """Equal and of the same type: 3 is not 3.0 and False is not 0 in a produced event."""
    return bool(got == expected and type(got) is type(expected))


# -- the registry ----------------------------------------------------------------

EXAMPLES = [
    pytest.param(example, id=f"{name}: {example.expression}")
    for name, function_spec in SPECS.items()
    for example in function_spec.examples
]


@pytest.mark.parametrize("example", EXAMPLES)
def test_documented_example(example: Example) -> None:
    """Each spec example evaluates to its documented result, so the docs cannot drift."""
    options = make_options(EXAMPLE_CONTEXT)
    got = jmespath.compile(example.expression).search(
        example.data if example.data is not None else {}, options=options
    )
    assert same(got, example.result), f"{example.expression} gave {got!r}"
    dropped = [d.reason for d in options.custom_functions.dropped]
    assert dropped == ([example.dropped] if example.dropped else [])


def test_root_example_data_is_the_context_root() -> None:
    """root()'s example data is EXAMPLE_CONTEXT.root, so root() and @ agree there."""
    (example,) = SPECS["root"].examples
    assert example.data == EXAMPLE_CONTEXT.root


def test_every_custom_function_has_a_spec_and_every_spec_a_function() -> None:
    """The functions beyond JMESPath's built-ins and the documented ones are the same set."""
    builtins = set(jp_functions.Functions.FUNCTION_TABLE)
    methods = {name[len("_func_") :] for name in dir(EngineFunctions) if name.startswith("_func_")}
    assert methods - builtins == set(SPECS)
    assert set(SPECS) <= set(function_table())


def test_every_spec_has_an_example_and_usage_matching_its_arity() -> None:
    """Each spec shows at least one example and its usage names as many args as allowed."""
    for name, function_spec in SPECS.items():
        assert function_spec.examples, name
        found = arity(name)
        assert found is not None
        low, high = found
        usage_args = function_spec.usage.split("(", 1)[1].rstrip(")")
        named = [arg for arg in usage_args.replace("[", "").split(",") if arg.strip()]
        if high is None:
            assert "..." in usage_args, name
        else:
            assert len(named) == high, name
            assert usage_args.count("[") == high - low, name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("iso_datetime", (1, 2)),
        ("phone", (1, None)),
        ("concat", (1, None)),
        ("coalesce", (1, None)),
        ("format", (1, None)),
        ("round", (2, 2)),
        ("root", (0, 0)),
        ("merge", (1, None)),
        ("nope", None),
    ],
)
def test_arity_reports_optional_and_variadic_arguments(
    name: str, expected: tuple[int, int | None] | None
) -> None:
    """arity() gives the load-time checker the real (min, max), optional args included."""
    assert arity(name) == expected


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("iso_datetime()", jp_exceptions.VariadictArityError),
        ("iso_datetime('2026-10-14', 'UTC', 'x')", jp_exceptions.ArityError),
        ("phone()", jp_exceptions.VariadictArityError),
        ("concat()", jp_exceptions.VariadictArityError),
        ("format()", jp_exceptions.VariadictArityError),
        ("lower('a', 'b')", jp_exceptions.ArityError),
        ("length('a', 'b')", jp_exceptions.ArityError),
    ],
)
def test_wrong_argument_count_raises_jmespath_arity_errors(
    expression: str, error: type[Exception]
) -> None:
    """A call with too few or too many arguments fails as jmespath reports arity."""
    with pytest.raises(error):
        search(expression)


def test_builtins_keep_their_behaviour() -> None:
    """The argument check hookmap installs leaves JMESPath's built-ins working."""
    assert search('merge(`{"a": 1}`, `{"b": 2}`)') == {"a": 1, "b": 2}
    assert search("not_null(`null`, a, `3`)", {"a": None}) == 3
    assert search('join(\', \', `["a", "b"]`)') == "a, b"
    with pytest.raises(jp_exceptions.JMESPathTypeError):
        search("merge(`{}`, `5`)")  # a variadic argument past the first is checked too


# -- null propagation and type errors ----------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "lower(missing)",
        "upper(missing)",
        "trim(missing)",
        "replace(missing, 'a', 'b')",
        "split(missing, ',')",
        "from_json(missing)",
        "round(missing, `2`)",
        "number(missing)",
        "format_number(missing, `2`)",
        "iso_datetime(missing)",
        "iso_datetime(missing, 'Europe/Kyiv')",
        "format_datetime(missing, '%Y')",
        "to_epoch(missing)",
        "phone(missing)",
        "phone(missing, '380')",
        "sha256(missing)",
        "md5(missing)",
        "sha1(missing)",
        "coalesce(missing, `null`)",
    ],
)
def test_null_input_gives_null(expression: str) -> None:
    """A field the webhook left out turns into null, not an error."""
    assert search(expression, {"other": 1}) is None


@pytest.mark.parametrize(
    "expression",
    [
        "lower(`5`)",
        'upper(`["a"]`)',
        "trim(`{}`)",
        "replace('a', `1`, 'b')",
        "split('a,b', `null`)",
        "concat('a', `{}`)",
        "concat('a', 'b', 'c', `[1]`)",
        "format('{}', `[1]`)",
        "format(`null`, 'a')",
        "from_json(`5`)",
        "round('2.5', `0`)",
        "round(`2.5`, `null`)",
        "number(`true`)",
        "format_number(`[1]`, `2`)",
        "iso_datetime(`true`)",
        "iso_datetime('2026-10-14', `3`)",
        "format_datetime('2026-10-14', `null`)",
        "to_epoch(`{}`)",
        'phone(`["050"]`)',
        "phone('050', `true`)",
        "phone('050', 'UA', `[\"PL\"]`)",
        "sha256(`5`)",
        "md5(`true`)",
    ],
)
def test_wrong_type_raises_jmespath_type_error(expression: str) -> None:
    """A non-null value of the wrong JSON type is refused by the signature."""
    with pytest.raises(jp_exceptions.JMESPathTypeError):
        search(expression)


def test_invalid_argument_is_an_evaluation_error_and_a_value_error() -> None:
    """InvalidArgument sits in hookmap's tree and is a ValueError as jmespath's errors are."""
    with pytest.raises(InvalidArgument) as caught:
        search("from_json('nope')")
    assert isinstance(caught.value, EvaluationError)
    assert isinstance(caught.value, ValueError)
    assert caught.value.function == "from_json"


# -- strings -----------------------------------------------------------------------


def test_split_rejects_an_empty_separator() -> None:
    """split() with '' as separator is a rule mistake, reported as such."""
    with pytest.raises(InvalidArgument, match="separator"):
        search("split('a,b', '')")


def test_trim_strips_unicode_whitespace() -> None:
    """trim() also removes non-breaking spaces pasted into forms."""
    assert search("trim(s)", {"s": "\u00a0ann@example.com\t"}) == "ann@example.com"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.30000000000000004, "0.3"),
        (7.199999999999999, "7.2"),
        (1.0, "1"),
        (-0.0, "0"),
        (1e20, "100000000000000000000"),
        (1.5e-7, "0.00000015"),
        (12345678901234567890, "12345678901234567890"),
        (True, "true"),
        (False, "false"),
        (None, ""),
        ("x", "x"),
    ],
)
def test_concat_writes_numbers_without_float_noise(value: Any, text: str) -> None:
    """concat() writes floats at 15 significant digits, without exponent, null as ''."""
    assert search("concat(v)", {"v": value} if value is not None else {"w": 1}) == text


def test_concat_of_only_nulls_is_empty_text() -> None:
    """concat() counts null as empty even when every argument is null."""
    assert search("concat(a, b)", {"c": 1}) == ""


@pytest.mark.parametrize(
    ("template", "values", "text"),
    [
        ("{}-{}", ["a", 1], "a-1"),
        ("{1}/{0}/{1}", ["a", "b"], "b/a/b"),
        ("{}", [0.30000000000000004], "0.3"),
        ("{:.2f}", [2.675], "2.68"),
        ("{:.2f}", [188.1], "188.10"),
        ("{:05d}", [42], "00042"),
        ("{:>4}", ["ab"], "  ab"),
        ("{:.2f}", [None], ""),
        ("{} {}", [True, None], "true "),
        ("{{literal}} {}", ["x"], "{literal} x"),
        ("no placeholders", [], "no placeholders"),
    ],
)
def test_format_positional_placeholders(template: str, values: list[Any], text: str) -> None:
    """format() fills {} and {N}, cleans numbers, rounds float specs half up, null as ''."""
    args = "".join(f", v[{i}]" for i in range(len(values)))
    assert search(f"format(t{args})", {"t": template, "v": values}) == text


@pytest.mark.parametrize(
    "template",
    [
        "{0.__class__}",
        "{.__class__.__mro__}",
        "{0[x]}",
        "{0.__init__.__globals__}",
        "{name}",
        "{0!r}",
        "{0:{1.__class__}}",
        "{0:{1}}",
    ],
)
def test_format_rejects_attribute_and_index_access(template: str) -> None:
    """format() refuses anything but positions, so a rule cannot reach Python objects."""
    with pytest.raises(InvalidArgument) as caught:
        search("format(t, 'a', 'b')", {"t": template})
    assert repr(template) in str(caught.value)


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{} {0}", "mixes"),
        ("{1}", "needs 2"),
        ("{} {}", "needs 2"),
        ("open {", "Single '{'"),
        ("{:.2f}", "Unknown format code"),
    ],
)
def test_format_reports_template_mistakes(template: str, reason: str) -> None:
    """Mixed numbering, missing values, bad braces and unfit specs name the template."""
    with pytest.raises(InvalidArgument, match=reason) as caught:
        search("format(t, 'a')", {"t": template})
    assert repr(template) in str(caught.value)


# -- values --------------------------------------------------------------------------


def test_to_json_is_compact_and_keeps_non_ascii() -> None:
    """to_json() uses no spaces and writes non-ASCII characters as they are."""
    assert search("to_json(v)", {"v": {"name": "Київ", "n": [1, 2.5]}}) == (
        '{"name":"Київ","n":[1,2.5]}'
    )
    assert search("to_json(`null`)") == "null"


def test_from_json_reads_back_to_json() -> None:
    """from_json(to_json(v)) is v."""
    value = {"a": [1, "b", None, True], "c": {"d": 1.5}}
    assert search("from_json(to_json(v))", {"v": value}) == value


@pytest.mark.parametrize("text", ["", "   "])
def test_from_json_of_blank_text_is_null(text: str) -> None:
    """from_json() treats an empty meta value as no value."""
    assert search("from_json(s)", {"s": text}) is None


@pytest.mark.parametrize("text", ["nope", "{'a': 1}", "NaN", "[1,", "Infinity"])
def test_from_json_rejects_text_that_is_not_json(text: str) -> None:
    """from_json() says the text is not JSON, including Python's NaN/Infinity extensions."""
    with pytest.raises(InvalidArgument, match="not JSON"):
        search("from_json(s)", {"s": text})


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"a": None, "b": 0}, 0),
        ({"a": "", "b": False}, False),
        ({"a": [], "b": "x"}, []),
        ({"a": None, "b": ""}, None),
    ],
)
def test_coalesce_skips_only_null_and_empty_text(data: dict[str, Any], expected: Any) -> None:
    """coalesce() keeps 0, false and [] (unlike ||), skips null and ''."""
    assert same(search("coalesce(a, b)", data), expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "fb"), ("", "fb"), (0, 0), (False, False), ([], []), ("x", "x")],
)
def test_default_replaces_only_null_and_empty_text(value: Any, expected: Any) -> None:
    """default() falls back for null and '' only."""
    assert same(search("default(v, 'fb')", {"v": value, "k": 1}), expected)


# -- numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "digits", "expected"),
    [
        (2.675, 2, 2.68),
        (1.005, 2, 1.01),
        (0.125, 2, 0.13),
        (2.5, 0, 3),
        (3.5, 0, 4),
        (-2.5, 0, -3),
        (2.4, 0, 2),
        (7, 2, 7.0),
        (21.55, 1, 21.6),
        (1e30, 2, 1e30),
    ],
)
def test_round_is_decimal_half_up(number: float, digits: int, expected: float) -> None:
    """round() rounds the decimal the webhook wrote, ties away from zero; 0 digits -> int."""
    assert same(search("round(n, d)", {"n": number, "d": digits}), expected)


def test_round_never_gives_negative_zero() -> None:
    """round() of a tiny negative amount is 0, not -0.0 (which would print as '-0.0')."""
    got = search("round(`-0.001`, `2`)")
    assert got == 0 and math.copysign(1, got) == 1


@pytest.mark.parametrize("digits", ["`1.5`", "`-1`", "`21`"])
def test_round_and_format_number_reject_bad_digits(digits: str) -> None:
    """digits must be a whole number from 0 to 20."""
    for expression in (f"round(`1.5`, {digits})", f"format_number(`1.5`, {digits})"):
        with pytest.raises(InvalidArgument, match="digits"):
            search(expression)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("188.09", 188.09),
        ("12", 12),
        (" 12 ", 12),
        ("-58.00", -58.0),
        ("+3", 3),
        (".5", 0.5),
        ("70.180000", 70.18),
        (0, 0),
        (21.6, 21.6),
        ("", None),
        ("   ", None),
    ],
)
def test_number_reads_plain_decimals_only(value: Any, expected: Any) -> None:
    """number() parses plain decimal strings and passes numbers; blank text is no value."""
    assert same(search("number(v)", {"v": value}), expected)


@pytest.mark.parametrize("value", ["n/a", "1,234.50", "1e3", "€88.80", "NaN", "12 50"])
def test_number_of_other_text_is_not_a_number_not_a_missing_value(value: str) -> None:
    """Text that is there but no number fails with V102, not null (which reads as absent)."""
    with pytest.raises(InvalidArgument, match="is not a number") as caught:
        search("number(v)", {"v": value})
    assert caught.value.code == "V102"


_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet="0123456789.+- \t\n٣²e_,", max_size=8))
def test_number_is_the_plain_decimal_grammar(text: str) -> None:
    """number() of text: Decimal's value of what the plain-decimal grammar accepts
    (after trimming whitespace), a float when written with a dot; null when blank; V102
    for the rest."""
    trimmed = text.strip()
    if not trimmed:
        assert search("number(v)", {"v": text}) is None
    elif _DECIMAL_TEXT.fullmatch(trimmed) is None:
        with pytest.raises(InvalidArgument, match="is not a number"):
            search("number(v)", {"v": text})
    else:
        exact = Decimal(trimmed)
        expected = float(exact) if "." in trimmed else int(exact)
        assert same(search("number(v)", {"v": text}), expected)


@pytest.mark.parametrize(
    ("value", "digits", "expected"),
    [
        ("188.1", 2, "188.10"),
        (188.1, 2, "188.10"),
        (2.675, 2, "2.68"),
        (1.005, 2, "1.01"),
        ("1566.5000", 2, "1566.50"),
        ("-0.001", 2, "0.00"),
        (12, 0, "12"),
        (0.5, 0, "1"),
        ("abc", 2, None),
        ("", 2, None),
    ],
)
def test_format_number_gives_fixed_decimals_half_up(
    value: Any, digits: int, expected: str | None
) -> None:
    """format_number() writes exactly `digits` decimals, rounding the decimal half up."""
    assert search("format_number(v, d)", {"v": value, "d": digits}) == expected


# -- date-times ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "tz", "expected"),
    [
        # the spring gap (03:00 -> 04:00 on 2026-03-29): the wall time moves forward
        ("2026-03-29 03:30:00", "Europe/Kyiv", "2026-03-29T04:30:00+03:00"),
        ("2026-03-29 02:59:59", "Europe/Kyiv", "2026-03-29T02:59:59+02:00"),
        ("2026-03-29 04:00:00", "Europe/Kyiv", "2026-03-29T04:00:00+03:00"),
        # the autumn overlap (04:00 -> 03:00 on 2026-10-25): the first, summer reading
        ("2026-10-25 03:30:00", "Europe/Kyiv", "2026-10-25T03:30:00+03:00"),
        ("2026-10-25 04:30:00", "Europe/Kyiv", "2026-10-25T04:30:00+02:00"),
        ("2026-07-01T12:00:00", "America/New_York", "2026-07-01T12:00:00-04:00"),
        ("2026-01-15T12:00:00", "America/New_York", "2026-01-15T12:00:00-05:00"),
        ("2026-10-14", "Europe/Kyiv", "2026-10-14T00:00:00+03:00"),
        ("2026-10-14 09:41:27", "-0430", "2026-10-14T09:41:27-04:30"),
        ("2026-10-14 09:41:27", "UTC", "2026-10-14T09:41:27+00:00"),
        ("2026-10-14 09:41:27", "Z", "2026-10-14T09:41:27+00:00"),
        ("2026-10-14 09:41:27", None, "2026-10-14T09:41:27"),
        ("2026-10-14 09:41:27", "", "2026-10-14T09:41:27"),
        # an input with an offset, or an epoch (UTC), keeps it whatever the tz
        ("2026-10-14T09:41:27Z", "Europe/Kyiv", "2026-10-14T09:41:27+00:00"),
        (1791985287, "Europe/Kyiv", "2026-10-14T13:41:27+00:00"),
    ],
)
def test_iso_datetime_reads_naive_input_in_tz(value: Any, tz: str | None, expected: str) -> None:
    """A tz (IANA, incl. DST, or an offset) applies only to input without an offset."""
    assert search("iso_datetime(v, tz)", {"v": value, "tz": tz}) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-10-14T09:41:27.987654321-04:00", "2026-10-14T09:41:27-04:00"),
        ("2026-10-14T09:41:27,5+03:00", "2026-10-14T09:41:27+03:00"),
        ("2026-10-14T13:41:27Z", "2026-10-14T13:41:27+00:00"),
        ("2026-10-14T13:41:27+00:00", "2026-10-14T13:41:27+00:00"),
        ("2026-10-14T09:41:27+0300", "2026-10-14T09:41:27+03:00"),
        (" 2026-10-14 09:41:27 ", "2026-10-14T09:41:27"),
        (1791985287, "2026-10-14T13:41:27+00:00"),
        (1791985287.9, "2026-10-14T13:41:27+00:00"),
        ("1791985287.9", "2026-10-14T13:41:27+00:00"),
        (1791985287123, "2026-10-14T13:41:27+00:00"),
        ("1791985287123", "2026-10-14T13:41:27+00:00"),
        (10**11, "5138-11-16T09:46:40+00:00"),
        (10**11 + 1, "1973-03-03T09:46:40+00:00"),
        (0, "1970-01-01T00:00:00+00:00"),
        ("Wed, 14 Oct 2026 09:41:27 +0300", "2026-10-14T09:41:27+03:00"),
        ("Wed, 14 Oct 2026 09:41:27 GMT", "2026-10-14T09:41:27+00:00"),
        ("14 Oct 2026 09:41:27 -0400", "2026-10-14T09:41:27-04:00"),
        ("0000-00-00 00:00:00", None),
        ("0000-00-00", None),
        ("", None),
    ],
)
def test_iso_datetime_input_forms(value: Any, expected: str | None) -> None:
    """Fractions are dropped, Z is +00:00, epochs (s or ms) are UTC, unset dates null."""
    assert search("iso_datetime(v)", {"v": value}) == expected


@pytest.mark.parametrize("value", ["yesterday", "2026-13-45", "14/10/2026", "2026-10-14T25:00"])
def test_unreadable_date_time_names_the_value(value: str) -> None:
    """A string no form matches fails with an error that quotes it."""
    for function in ("iso_datetime", "format_datetime", "to_epoch"):
        expression = f"{function}(v, '%Y')" if function == "format_datetime" else f"{function}(v)"
        with pytest.raises(InvalidArgument, match=function) as caught:
            search(expression, {"v": value})
        assert repr(value) in str(caught.value)


@pytest.mark.parametrize("tz", ["Mars/Olympus", "+25:00", "../etc/passwd", "EEST"])
def test_unknown_time_zone_fails_even_when_unused(tz: str) -> None:
    """A bad tz is reported on the first webhook, also when the input has an offset."""
    with pytest.raises(InvalidArgument, match="iso_datetime"):
        search("iso_datetime('2026-10-14T09:41:27Z', tz)", {"tz": tz})


def test_zero_dates_are_null_everywhere() -> None:
    """PrestaShop's unset date is null for every date-time function."""
    data = {"d": "0000-00-00 00:00:00"}
    assert search("format_datetime(d, '%Y')", data) is None
    assert search("to_epoch(d)", data) is None
    assert search("iso_datetime(d, 'Europe/Kyiv')", data) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-10-14T09:41:27-04:00", 1791985287),
        ("2026-10-14T13:41:27", 1791985287),
        (1791985287123, 1791985287),
        ("Wed, 14 Oct 2026 13:41:27 +0000", 1791985287),
        ("1970-01-01", 0),
    ],
)
def test_to_epoch_counts_naive_input_as_utc(value: Any, expected: int) -> None:
    """to_epoch() gives integer seconds; input without an offset counts as UTC."""
    assert same(search("to_epoch(v)", {"v": value}), expected)


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=-4)), timezone(timedelta(hours=5, minutes=30))]
        ),
    )
)
def test_iso_datetime_reads_its_own_output(moment: datetime) -> None:
    """iso_datetime() of an ISO string is that moment, whole seconds, and idempotent."""
    whole = moment.replace(microsecond=0)
    once = search("iso_datetime(v)", {"v": moment.isoformat()})
    assert once == whole.isoformat()
    assert search("iso_datetime(v)", {"v": once}) == once
    assert search("to_epoch(v)", {"v": once}) == int(whole.timestamp())


# -- contacts ------------------------------------------------------------------------


# phone() itself: tests/test_phones.py


# -- hashes --------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha256", "md5", "sha1"])
@pytest.mark.parametrize("text", ["ann@example.com", "олена@приклад.укр", ""])
def test_hashes_are_hex_digests_of_utf8(algorithm: str, text: str) -> None:
    """sha256(), md5() and sha1() hash the UTF-8 bytes and give lower-case hex."""
    expected = hashlib.new(algorithm, text.encode("utf-8")).hexdigest()
    assert search(f"{algorithm}(s)", {"s": text}) == expected


def test_hashed_email_ignores_case_and_spaces() -> None:
    """The documented sha256(lower(trim(email))) gives one hash for one address."""
    variants = [{"email": e} for e in ("Ann@Example.com", " ann@example.com ", "ANN@EXAMPLE.COM")]
    assert len({search("sha256(lower(trim(email)))", data) for data in variants}) == 1
