"""Property: for generated expressions and documents, compiled == interpreted.

Hypothesis builds expressions from a small JMESPath grammar (fields, indexes, slices,
projections, filters with comparators, multiselects, pipes, and calls to built-ins and
hookmap functions) over JSON documents whose keys are the grammar's field names, so
most paths hit data. Both evaluators must give the same value (1, 1.0 and true kept
apart), or raise the same exception with the same message; the call path is checked
both fast (EngineFunctions itself) and slow (a subclass, through call_function).
"""

from __future__ import annotations

import contextlib
from typing import Any

import jmespath
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jmespath import exceptions as jp_exc

from engine.rules import codegen
from engine.rules.functions import EngineFunctions, EvalContext, Table
from tests.test_codegen import outcome

FIELDS = ["a", "b", "c", "foo", '"with space"', '"__class__"']
KEYS = ["a", "b", "c", "foo", "with space", "__class__"]


class SlowPath(EngineFunctions):
    """Not EngineFunctions itself: every call goes through ``call_function``."""


def _context(document: Any) -> EvalContext:
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
        st.tuples(paren, inner).map(lambda t: f"{t[0]}[*].{_rhs(t[1])}"),
        st.tuples(paren, inner).map(lambda t: f"{t[0]}[].{_rhs(t[1])}"),
        paren.map(lambda e: f"{e}[]"),
        st.tuples(paren, inner).map(lambda t: f"{t[0]}.*.{_rhs(t[1])}"),
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


def _rhs(expression: str) -> str:
    """A projection's right side: a field or a parenthesised-free form JMESPath accepts."""
    return expression if expression.replace("_", "a").isalnum() else "[" + expression + "]"


expressions = st.recursive(atoms, _extend, max_leaves=12)


def _compare(expression: str, document: Any) -> None:
    try:
        parsed = jmespath.compile(expression)
    except jp_exc.JMESPathError:
        return  # the grammar can write what JMESPath does not parse: not this test's subject
    compiled = codegen.compile_ast(parsed.parsed)
    context = _context(document)
    for functions in (EngineFunctions(context), SlowPath(context)):
        options = jmespath.Options(custom_functions=functions)
        interpreted = outcome(lambda o=options: parsed.search(document, options=o))
        result = outcome(lambda f=functions: compiled(document, f))
        assert result == interpreted, (expression, document, type(functions).__name__)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions, documents)
def test_compiled_equals_interpreted(expression: str, document: Any) -> None:
    """Same value or same exception for generated expressions on generated documents."""
    _compare(expression, document)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions, st.lists(documents, max_size=5))
def test_compiled_equals_interpreted_on_arrays(expression: str, document: Any) -> None:
    """The same over arrays at the top, where projections and filters apply directly."""
    _compare(f"@[*].{_rhs(expression)}", document)
    _compare(expression, document)


# -- values ------------------------------------------------------------------------------
# One operator or function over two values: denser coverage of value semantics (0 and
# false, empty containers, what orders, what each function accepts) than the grammar.

small_values = st.one_of(
    scalars,
    st.sampled_from([[], {}, [0], [1], [False], [True], ["a"], [1, 2], [1, "a"], {"a": 0}]),
    st.lists(scalars, max_size=3),
)
operands = st.one_of(fields, literals, st.sampled_from(["`[0]`", "`[false]`", "`[[]]`", "a[]"]))
binary_forms = st.sampled_from(
    [
        "{x} == {y}",
        "{x} != {y}",
        "{x} < {y}",
        "{x} <= {y}",
        "{x} > {y}",
        "{x} >= {y}",
        # 0 and 1 never equal false and true, at the top level; inside arrays they do
        "{x} == `0`",
        "{x} != `1`",
        "`false` == {x}",
        "{x} == `true`",
        "[{x}] == [{y}]",
        "{x} || {y}",
        "{x} && {y}",
        "!{x}",
        "[{x}, {y}][?@]",
        "[{x}, {y}][?!@]",
        "[{x}, {y}][?@ == {y}]",
        "[{x}, {y}][*] | [0]",
        "{x}[0]",
        "{x}[-1:]",
        "{x}.*",
        "{x}[]",
        "{{k: {x}}}.k",
        *(f"{name}({{x}})" for name in UNARY if name not in ("two",)),
        *(f"{name}({{x}}, {{y}})" for name in BINARY if name not in ("one",)),
        "sort_by([{x}, {y}], &@)",
        "max_by([{x}, {y}], &@)",
        "min_by({x}, &@)",
        "map(&{x}, {y})",
    ]
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(binary_forms, operands, operands, st.dictionaries(st.sampled_from(KEYS), small_values))
def test_operators_and_functions_on_values(form: str, x: str, y: str, document: Any) -> None:
    """Each operator and function, on two values drawn from fields and literals."""
    _compare(form.format(x=x, y=y), document)


def test_the_grammar_reaches_every_node_type() -> None:
    """A guard on the strategy: the expressions it draws use every AST node type."""
    seen: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict) and "type" in node:
            seen.add(node["type"])
            for child in node.get("children", []):
                walk(child)

    @settings(max_examples=400, deadline=None, database=None)
    @given(expressions)
    def collect(expression: str) -> None:
        with contextlib.suppress(jp_exc.JMESPathError):
            walk(jmespath.compile(expression).parsed)

    collect()
    wanted = {
        "and_expression",
        "comparator",
        "current",
        "expref",
        "field",
        "filter_projection",
        "flatten",
        "function_expression",
        "identity",
        "index",
        "index_expression",
        "key_val_pair",
        "literal",
        "multi_select_dict",
        "multi_select_list",
        "not_expression",
        "or_expression",
        "pipe",
        "projection",
        "slice",
        "subexpression",
        "value_projection",
    }
    assert wanted <= seen, wanted - seen


# The calls written inline (codegen._INLINE): number() and to_string() on the texts and
# numbers shops send, and on the near misses around them (signs, spaces, a second dot,
# an exponent, digits beyond ASCII, huge and negative integers).
price_texts = st.one_of(
    st.from_regex(r"\A[ +\-]?[0-9]{0,6}\.?[0-9]{0,4}[ ]?\Z"),
    st.from_regex(r"\A[0-9٠-٩²]{1,3}[.,]?[0-9٠-٩]{0,3}(e[+-]?[0-9])?\Z"),
    st.text(alphabet="0123456789.-+ eE", max_size=8),
)
inline_values = st.one_of(
    price_texts,
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=1500, deadline=None)
@given(inline_values, st.sampled_from(["number(x)", "to_string(x)", "number(to_string(x))"]))
def test_inline_calls_equal_their_functions(value: Any, expression: str) -> None:
    """Same value and same type as the function called, or the same exception."""
    parsed = jmespath.compile(expression)
    source, _ = codegen.generate(parsed.parsed)
    assert "(F, " in source  # the inline form is there, with its function for the rest
    compiled = codegen.compile_ast(parsed.parsed)
    functions = EngineFunctions(_context({"x": value}))
    options = jmespath.Options(custom_functions=functions)
    interpreted = outcome(lambda: parsed.search({"x": value}, options=options))
    result = outcome(lambda: compiled({"x": value}, functions))
    assert result == interpreted
    assert type(result) is type(interpreted)
