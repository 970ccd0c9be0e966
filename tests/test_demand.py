"""Reading only what the rules read (engine.rules.demand): the same results as reading whole.

The property tests evaluate generated expressions on a body read in part (the demand
of that one expression) and on the body read whole, with both evaluators, and ask for
the same value or the same error. The examples pin what is read in part and what is
read whole, and that a body the reader refuses is read whole, as before.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jmespath
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jmespath import exceptions as jp_exc
from jmespath.parser import ParsedResult

from engine.decoders import decode
from engine.errors import NotReadInPart, PayloadError
from engine.rules import codegen, compiler, demand
from engine.rules.codegen import INTERPRETER
from engine.rules.functions import EngineFunctions
from engine.rules.model import Decode, Expression
from engine.webhook import Webhook, parse_json
from tests.support.expressions import context_for, documents, expressions, outcome, projection_rhs

ROOT = Path(__file__).resolve().parents[1]


def _expression(text: str) -> Expression:
    parsed = jmespath.compile(text)
    return Expression(text, parsed, compiled=codegen.compile_ast(parsed.parsed))


def _describe(*texts: str, each: str | None = None) -> Any:
    over = _expression(each) if each else None
    return demand.demand(demand.Read(_expression(t), over) for t in texts).describe()


# -- what is demanded --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["customer.email"], {"customer": {"email": True}}),
        (["a.b", "a.c.d"], {"a": {"b": True, "c": {"d": True}}}),
        (["line_items[*].price"], {"line_items": {"[]": {"price": True}}}),
        (["line_items[].price"], {"line_items": {"[]": {"[]": {"price": True}, "price": True}}}),
        (["shipping_lines[0].title"], {"shipping_lines": {"[]": {"title": True}}}),
        (["items[?qty > `1`].sku"], {"items": {"[]": {"qty": True, "sku": True}}}),
        (["items[1:].sku"], {"items": {"[]": {"sku": True}}}),
        # looked at as a whole: a result, an argument, a comparison, a truth test
        (["customer"], {"customer": True}),
        (["type(address)"], {"address": True}),
        (["a == b.c"], {"a": True, "b": {"c": True}}),
        (["a || b.c"], {"a": True, "b": {"c": True}}),
        (["a && b.c"], {"a": True, "b": {"c": True}}),
        (["!(a.b)"], {"a": {"b": True}}),
        (["!a.b"], {"a": True}),  # (!a).b: JMESPath binds ! tightly
        (["items[?flag]"], {"items": {"[]": True}}),
        (["[a.b, c]"], {"a": {"b": True}, "c": True}),
        (["{x: a.b}"], {"a": {"b": True}}),
        (["a.*.b"], {"a": True}),
        (["sort_by(items, &price)[0].sku"], {"items": True}),
        # root() reads from the document, wherever it stands
        (["items[*].root().shop.id"], {"items": {"[]": {}}, "shop": {"id": True}}),
        (["envelope().id"], {"id": True}),
        (["header('x') || var('v') || topic()"], {}),
        (['`{"a": 1}`.a', "'lit'"], {}),
    ],
)
def test_demand(texts: list[str], expected: Any) -> None:
    assert _describe(*texts) == expected


def test_for_each_reads_into_each_element() -> None:
    assert _describe("sku", "qty", each="order.items") == {
        "order": {"items": {"[]": {"qty": True, "sku": True}}}
    }


def test_the_whole_document_needs_no_reader() -> None:
    root = demand.demand([demand.Read(_expression("keys(@)"))])
    assert root.whole and demand.reader(root) is None


def test_an_unknown_node_reads_whole() -> None:
    odd = ParsedResult("?", {"type": "something_new", "children": []})
    expr = Expression("?", odd)
    with pytest.raises(NotReadInPart):
        demand.demand([demand.Read(expr)])


# -- reading in part ---------------------------------------------------------------------


def _read(texts: list[str], body: bytes) -> Any:
    read = demand.reader(demand.demand(demand.Read(_expression(t)) for t in texts))
    assert read is not None
    return read(body)


def test_unread_keys_are_not_built() -> None:
    body = json.dumps(
        {
            "id": 7,
            "customer": {"email": "a@b.c", "note": "x" * 100, "tags": [1, 2]},
            "line_items": [{"price": "1.00", "tax_lines": [{"rate": 0.2}]}, "odd", None],
            "big": {"deep": [[[{"x": 1}]]]},
        }
    ).encode()
    got = _read(["customer.email", "line_items[*].price", "id"], body)
    assert got == {
        "id": 7,
        "customer": {"email": "a@b.c"},
        "line_items": [{"price": "1.00"}, "odd", None],
    }


@pytest.mark.parametrize(
    "key",
    ["__class__", "", "with space", "total", "__annotations__", "__required_keys__", 'a"\n\\'],
)
def test_any_ascii_key_can_be_read(key: str) -> None:
    text = f"{json.dumps(key)}.x"
    body = json.dumps({key: {"x": [1, 2.0, True], "y": 1}, "z": 2}).encode()
    assert _read([text], body) == {key: {"x": [1, 2.0, True]}}


@pytest.mark.parametrize("key", ["ä", "日本", "😀"])
def test_a_non_ascii_key_reads_whole(key: str) -> None:
    """msgspec matches no non-ASCII TypedDict key: those rule sets are read whole."""
    root = demand.demand([demand.Read(_expression(f"{json.dumps(key)}.x"))])
    assert demand.reader(root) is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": {"b": NaN}}',
        b'{"a": {"b": "\\ud800"}}',
        b'{"a": {"b": 1e400}}',
        b'\xef\xbb\xbf{"a": {"b": 1}}',
        b'{"a": {"b": 123456789012345678901234567890}}',
        b'{"a": {"b": 1}, "c": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        b'{"a": {"b": 1}, "c": [1,]}',
        b'{"a": {"b": 1}} trailing',
        b'{"a": {"b": "\xff"}}',
        b"",
    ],
)
def test_a_body_the_reader_refuses_is_read_whole(body: bytes) -> None:
    """Whatever the reader does not read as json.loads would, decode reads whole: the
    same value, or the same located error, as without a reader."""
    read = demand.reader(demand.demand([demand.Read(_expression("a.b"))]))
    webhook = Webhook(body, {}, origin="hook.json")
    with_reader = outcome(lambda: decode(webhook, Decode("json", reader=read)).data["a"]["b"])
    whole = outcome(lambda: parse_json(body, "hook.json")["a"]["b"])
    assert with_reader == whole
    if body == b"":
        assert with_reader[0] == "error" and with_reader[1][0] is PayloadError


# -- the same results as reading whole ---------------------------------------------------


def _same(text: str, document: Any, each: str | None = None) -> None:
    try:
        expr = _expression(text)
        over = _expression(each) if each else None
    except jp_exc.JMESPathError:
        return  # the grammar writes what JMESPath does not parse: not this test's subject
    try:
        body = json.dumps(document).encode()
    except ValueError:
        return
    read = demand.reader(demand.demand([demand.Read(expr, over)]))
    if read is None:
        return  # read whole: nothing to compare
    try:
        part = read(body)
    except demand.READ_ERRORS:
        return  # read whole by decode
    whole = json.loads(body)

    def run(data: Any, interpreted: bool) -> Any:
        functions = EngineFunctions(context_for(data))
        targets = [data]
        if over is not None:
            options = jmespath.Options(custom_functions=functions)
            found = outcome(lambda: over.parsed.search(data, options=options))
            if found[0] != "ok":
                return found
            if found[1][0] != "array":  # the pipeline says which type it got, no more
                return found[1][0]
            targets = over.parsed.search(data, options=options)
        out = []
        for target in targets:
            if interpreted:
                ask = jmespath.Options(custom_functions=functions)
                out.append(outcome(lambda t=target, o=ask: expr.parsed.search(t, options=o)))
            else:
                assert expr.compiled is not None
                out.append(outcome(lambda t=target: expr.compiled(t, functions)))  # type: ignore[misc]
        return out

    for interpreted in (True, False):
        assert run(part, interpreted) == run(whole, interpreted), (text, each, document, part)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions, documents)
def test_reading_in_part_gives_the_same_results(expression: str, document: Any) -> None:
    _same(expression, document)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions, st.lists(documents, max_size=5))
def test_reading_in_part_over_arrays(expression: str, document: Any) -> None:
    _same(f"@[*].{projection_rhs(expression)}", document)
    _same(expression, {"a": document})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions, expressions, documents)
def test_reading_in_part_for_each(expression: str, each: str, document: Any) -> None:
    _same(expression, document, each=each)


# -- the shipped rules ---------------------------------------------------------------------


def test_shipped_rule_sets_read_in_part() -> None:
    """The platforms whose bodies are plain JSON get a reader; the interpreter (the
    reference path) reads whole."""
    env = {"SHOPIFY_PHONE_COUNTRY_CODE": ""}
    fast = compiler.load_or_raise([ROOT / "rules"], env)
    with_reader = {rs.name for rs in fast.rulesets if rs.decode and rs.decode.reader}
    assert {"shopify", "woocommerce", "bigcommerce", "stripe", "ecwid"} <= with_reader
    reference = compiler.load_or_raise([ROOT / "rules"], env, evaluator=INTERPRETER)
    assert not any(rs.decode and rs.decode.reader for rs in reference.rulesets)
    shopify = fast.get("shopify")
    assert shopify is not None and shopify.decode is not None
    body = (ROOT / "examples" / "shopify" / "orders-create.json").read_bytes()
    data = decode(Webhook(body, {}), shopify.decode).data
    whole = json.loads(body)
    assert "admin_graphql_api_id" not in data and "admin_graphql_api_id" in whole
    assert data["customer"]["email"] == whole["customer"]["email"]
    assert len(data["line_items"]) == len(whole["line_items"])


def _expressions_in(value: Any, seen: set[int]) -> list[Expression]:
    """Every Expression reachable from ``value`` through dataclass fields and tuples."""
    if id(value) in seen:
        return []
    seen.add(id(value))
    if isinstance(value, Expression):
        return [value]
    if isinstance(value, tuple | list):
        return [e for v in value for e in _expressions_in(v, seen)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        found = []
        for field in dataclasses.fields(value):
            if field.name != "tests":  # rule tests run whole rule sets, not expressions
                found += _expressions_in(getattr(value, field.name), seen)
        return found
    return []


def test_every_expression_a_rule_set_holds_is_analysed() -> None:
    """A new expression field on a rule, event or lookup must be added to ruleset_reads
    (else the reader could leave out what it reads)."""
    rulesets = compiler.load_or_raise([ROOT / "rules"], {"SHOPIFY_PHONE_COUNTRY_CODE": ""})
    for ruleset in rulesets.rulesets:
        held = {id(e) for e in _expressions_in(ruleset, set())}
        analysed = {id(read.expr) for read in demand.ruleset_reads(ruleset)}
        analysed |= {id(read.each) for read in demand.ruleset_reads(ruleset) if read.each}
        assert held and held == analysed, ruleset.name
