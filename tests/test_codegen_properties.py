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
from engine.rules.functions import EngineFunctions
from tests.support.expressions import (
    BINARY,
    KEYS,
    UNARY,
    context_for,
    documents,
    expressions,
    fields,
    literals,
    outcome,
    projection_rhs,
    scalars,
)


class SlowPath(EngineFunctions):
    """Not EngineFunctions itself: every call goes through ``call_function``."""


def _compare(expression: str, document: Any) -> None:
    try:
        parsed = jmespath.compile(expression)
    except jp_exc.JMESPathError:
        return  # the grammar can write what JMESPath does not parse: not this test's subject
    compiled = codegen.compile_ast(parsed.parsed)
    context = context_for(document)
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
    _compare(f"@[*].{projection_rhs(expression)}", document)
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
    functions = EngineFunctions(context_for({"x": value}))
    options = jmespath.Options(custom_functions=functions)
    interpreted = outcome(lambda: parsed.search({"x": value}, options=options))
    result = outcome(lambda: compiled({"x": value}, functions))
    assert result == interpreted
    assert type(result) is type(interpreted)
