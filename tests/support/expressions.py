"""What the expression tests share: both evaluators by name, a comparable outcome of a run,
and a small JMESPath grammar (expressions and documents over the same field names) for
property tests."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import strategies as st

from engine.rules.codegen import COMPILED, INTERPRETER
from engine.rules.functions import EvalContext
from engine.rules.model import Evaluator, Table

#: the evaluators by name, for parametrised tests
EVALUATORS: dict[str, Evaluator] = {"compiled": COMPILED, "interpreter": INTERPRETER}


def outcome(run: Any) -> tuple[str, Any]:
    """("ok", value) or ("error", type, message), comparable across evaluators."""
    try:
        return ("ok", _strict(run()))
    except Exception as exc:  # the same failure is part of "the same result"
        message = re.sub(r" at 0x[0-9a-f]+", "", str(exc))
        return ("error", (type(exc), message))


def _strict(value: Any) -> Any:
    """A form where 1, 1.0 and true, or key order, can no longer compare equal."""
    if isinstance(value, dict):
        return ("object", type(value).__name__, [(k, _strict(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("array", [_strict(v) for v in value])
    return (type(value).__name__, value)


FIELDS = ["a", "b", "c", "foo", '"with space"', '"__class__"']
KEYS = ["a", "b", "c", "foo", "with space", "__class__"]


def context_for(document: Any) -> EvalContext:
    return EvalContext(
        root=document,
        headers={"x-shop": "demo"},
        topic="orders/create",
        vars={"v": "Text", "n": 0},
        tables={"t": Table("t", {"1": "one", "a": "A"}, default="other", has_default=True)},
    )


# -- documents ---------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, -1, 2, 0.0, 1.5, -2.5, 10**20]),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["", "a", "B", "abc", " x ", "12", "1.50", "0", "ä", "null"]),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=4),
    ),
    max_leaves=20,
)

# -- expressions -------------------------------------------------------------------------

literals = st.sampled_from(
    [
        "`null`",
        "`true`",
        "`false`",
        "`0`",
        "`1`",
        "`2.5`",
        '`"a"`',
        "`[]`",
        "`{}`",
        "`[1, 2]`",
        '`{"a": 1}`',
        "'a'",
        "''",
        "'B'",
    ]
)
fields = st.sampled_from(FIELDS)
atoms = st.one_of(fields, fields, literals, st.just("@"))
indexes = st.integers(-3, 3).map(str)
slice_parts = st.sampled_from(["", "0", "1", "-1", "2", "-3", "5"])
steps = st.sampled_from(["", ":1", ":-1", ":2", ":-2", ":0"])
comparators = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])

#: the functions the grammar calls, by argument count; "one" and "two" put
#: a wrong count here and there, so arity errors are compared too
UNARY = [
    "length",
    "lower",
    "upper",
    "trim",
    "to_json",
    "to_string",
    "to_number",
    "type",
    "keys",
    "values",
    "sort",
    "reverse",
    "sum",
    "max",
    "min",
    "avg",
    "abs",
    "not_null",
    "to_array",
    "number",
    "compact",
    "from_json",
    "floor",
    "two",
]
BINARY = [
    "coalesce",
    "contains",
    "join",
    "default",
    "starts_with",
    "merge",
    "concat",
    "phone",
    "one",
]


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    paren = inner.map(lambda e: f"({e})")
    return st.one_of(
        st.tuples(inner, fields).map(lambda t: f"{t[0]}.{t[1]}"),
        st.tuples(paren, indexes).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(paren, slice_parts, slice_parts, steps).map(
            lambda t: f"{t[0]}[{t[1]}:{t[2]}{t[3]}]"
        ),
        st.tuples(paren, inner).map(lambda t: f"{t[0]}[*].{projection_rhs(t[1])}"),
        st.tuples(paren, inner).map(lambda t: f"{t[0]}[].{projection_rhs(t[1])}"),
        paren.map(lambda e: f"{e}[]"),
        st.tuples(paren, inner).map(lambda t: f"{t[0]}.*.{projection_rhs(t[1])}"),
        st.tuples(paren, inner, comparators, inner).map(
            lambda t: f"{t[0]}[?({t[1]}) {t[2]} ({t[3]})]"
        ),
        st.tuples(paren, inner).map(lambda t: f"{t[0]}[?{t[1]}]"),
        st.tuples(inner, comparators, inner).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]}) || ({t[1]})"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]}) && ({t[1]})"),
        inner.map(lambda e: f"!({e})"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]}) | ({t[1]})"),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: f"[{', '.join(xs)}]"),
        st.lists(st.tuples(fields, inner), min_size=1, max_size=3).map(
            lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"
        ),
        st.tuples(st.sampled_from(UNARY), inner).map(lambda t: _call(t[0], t[1])),
        st.tuples(st.sampled_from(BINARY), inner, inner).map(lambda t: _call(t[0], *t[1:])),
        st.tuples(st.sampled_from(["sort_by", "max_by", "min_by"]), inner, inner).map(
            lambda t: f"{t[0]}({t[1]}, &{t[2]})"
        ),
        st.tuples(inner, inner).map(lambda t: f"map(&{t[0]}, {t[1]})"),
        st.sampled_from(["root()", "root().a", "header('x-shop')", "var('v')", "topic()"]),
        inner.map(lambda e: f"lookup('t', {e})"),
    )


def _call(name: str, *args: str) -> str:
    # "one" / "two": a function of that many arguments given the other count
    if name in ("one", "two"):
        name = "lower" if name == "one" else "starts_with"
    return f"{name}({', '.join(args)})"


def projection_rhs(expression: str) -> str:
    """A projection's right side: a field or a parenthesised-free form JMESPath accepts."""
    return expression if expression.replace("_", "a").isalnum() else "[" + expression + "]"


expressions = st.recursive(atoms, _extend, max_leaves=12)
