"""Compiled evaluation (engine.rules.codegen): the interpreter's results, and nothing executed.

Every expression here runs through both evaluators and must give the same value, or
raise the same exception with the same message. The safety tests feed hostile
identifiers and literals and show they stay data: the generated source names only
what the code generator made up.
"""

from __future__ import annotations

import collections
import decimal
import io
import json
import keyword
import re
import tokenize
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jmespath
import pytest
from click.testing import CliRunner
from jmespath import exceptions as jp_exc
from jmespath import functions as jp_functions

from engine import cli, ruletests
from engine.rules import codegen, compiler, functions
from engine.rules.codegen import COMPILED, INTERPRETER
from engine.rules.diagnostics import Diagnostics
from engine.rules.expressions import Names, compile_expression
from engine.rules.functions import EngineFunctions, EvalContext, make_options
from engine.rules.model import Table
from tests.conftest import ROOT, SHARED
from tests.support.expressions import EVALUATORS, outcome

CONTEXT = EvalContext(
    root={"id": 7, "items": [{"sku": "A"}, {"sku": "B"}]},
    headers={"x-shop": "demo.example"},
    topic="orders/create",
    vars={"country": "380", "n": 2},
    tables={"status": Table("status", {"paid": "DONE"}, default="NEW", has_default=True)},
)

DOC: dict[str, Any] = {
    "a": {"b": {"c": 1}, "list": [0, 1, 2, 3, 4, 5]},
    "people": [
        {"name": "Ann", "age": 31, "tags": ["x", "y"], "email": "Ann@Example.com"},
        {"name": "Bob", "age": 25, "tags": [], "email": None},
        {"name": "Cy", "age": None, "tags": ["z"]},
        {"name": "Dee", "age": 25.5},
    ],
    "nested": [[1, 2], [3, [4, 5]], 6, None],
    "obj": {"x": 1, "y": None, "z": {"w": 2}},
    "zero": 0,
    "one": 1,
    "f": False,
    "t": True,
    "empty": "",
    "text": "hello",
    "nums": [3, 1, 2],
    "strs": ["b", "a"],
    "mixed": [1, "a"],
    "none": None,
    "phone": "(050) 123-45-67",
}


def both(expression: str, data: Any = DOC, functions: Any = None) -> tuple[Any, Any]:
    """(compiled outcome, interpreter outcome) of ``expression`` on ``data``."""
    functions = EngineFunctions(CONTEXT) if functions is None else functions
    parsed = jmespath.compile(expression)
    compiled = codegen.compile_ast(parsed.parsed)
    options = jmespath.Options(custom_functions=functions)
    sink = getattr(functions, "dropped", [])

    def with_dropped(run: Callable[[], Any]) -> tuple[Any, ...]:
        """The outcome, and what functions dropped on the way (W106's source)."""
        sink.clear()
        return (*outcome(run), tuple(sink))

    return (
        with_dropped(lambda: compiled(data, functions)),
        with_dropped(lambda: parsed.search(data, options=options)),
    )


def assert_same(expression: str, data: Any = DOC, functions: Any = None) -> Any:
    compiled, interpreted = both(expression, data, functions)
    assert compiled == interpreted, expression
    return compiled


SEMANTICS = [
    # fields, null propagation, index on non-lists
    "a.b.c",
    "a.b.c.d.e",
    "missing.b",
    "a.list.b",
    "text.length",
    "a[0]",
    "a.list[0]",
    "a.list[-1]",
    "a.list[10]",
    "a.list[-10]",
    "text[0]",
    "obj[0]",
    '"a"."b"',
    # slices: negative steps, out of range, on non-lists, step 0 (a ValueError)
    "a.list[1:3]",
    "a.list[::-1]",
    "a.list[::-2]",
    "a.list[-2:]",
    "a.list[:-10]",
    "a.list[10:]",
    "a.list[5:1:-2]",
    "a.list[::0]",
    "text[::-1]",
    "obj[1:]",
    "people[1:].name",
    # projections skip null results
    "people[*].age",
    "people[].email",
    "people[*].tags[0]",
    "people[*].tags[]",
    "nested[]",
    "nested[][]",
    "obj.*",
    "obj.*.w",
    "people.*",
    "text[*]",
    "obj[*]",
    "people[*].[name, age]",
    "people[*].{n: name, a: age}",
    # filters and comparators
    "people[?age > `26`].name",
    "people[?age >= `25`].name",
    "people[?age < `30`].name",
    "people[?age == `25`].name",
    "people[?age != `25`].name",
    "people[?email].name",
    "people[?!email].name",
    "people[?name > 'B'].name",
    "people[?age > name]",
    "people[?tags == `[]`].name",
    "zero == f",
    "one == t",
    "zero != f",
    "zero == `0`",
    "one == `1.0`",
    "`[0]` == `[false]`",
    "f == `0`",
    "t == `1`",
    "`null` == none",
    "a.b == a.b",
    "text < `1`",
    "`1` < text",
    "t < f",
    "none < `1`",
    "`[1]` < `[2]`",
    "text == 'hello'",
    'obj == `{"x": 1, "y": null, "z": {"w": 2}}`',
    # truthiness: && || !
    "empty || text",
    "zero || text",
    "f || none",
    "nums && text",
    "`[]` && text",
    "`{}` || `{}`",
    "!zero",
    "!empty",
    "!`0.0`",
    "!f",
    "!nums",
    "!`[]`",
    "!text",
    "people[?age && email].name",
    # multiselect on null, pipes stopping projections, current node, literals
    "none.[a, b]",
    "none.{a: a}",
    "[none, empty]",
    "{a: none}",
    "{k: a, k: text}",
    "people[*].name | [0]",
    "people[*].name[0]",
    "people[].tags | [0]",
    "@",
    "@.a.b",
    '`{"a": [1, 2]}`.a[1]',
    "'raw string'",
    '`"json"`',
    '`[1, {"x": null}]`',
    # expression references and the built-ins that take them
    "sort_by(people, &name)[*].name",
    "sort_by(people, &age)",
    "sort_by(people[?age], &age)[*].name",
    "max_by(people[?age], &age).name",
    "min_by(people[?age], &age).name",
    "max_by(people, &tags)",
    "map(&name, people)",
    "map(&age, people)",
    "map(&[name, age], people)",
    "sort_by(`[]`, &x)",
    # built-ins: fast path, array element checks, type errors
    "length(people)",
    "length(text)",
    "length(zero)",
    "join(', ', strs)",
    "join(', ', mixed)",
    "join(', ', nums)",
    "sum(nums)",
    "sum(strs)",
    "sum(`[]`)",
    "max(nums)",
    "max(strs)",
    "max(mixed)",
    "max(`[]`)",
    "sort(nums)",
    "sort(mixed)",
    "avg(nums)",
    "abs(`-2`)",
    "abs(text)",
    "contains(strs, 'a')",
    "contains(text, 'ell')",
    "contains(zero, 'a')",
    "to_string(text)",
    "to_string(zero)",
    "to_string(`1.5`)",
    "to_string(t)",
    "to_string(none)",
    "to_string(obj)",
    "to_string(`-0`)",
    "to_string(`100000000000000000000000`)",
    "to_number('12')",
    "to_number('1.5')",
    "to_number('x')",
    "type(people)",
    "keys(obj)",
    "values(obj)",
    'merge(obj, `{"x": 2}`)',
    "not_null(none, empty, text)",
    "reverse(text)",
    "reverse(nums)",
    "starts_with(text, 'he')",
    "ends_with(text, zero)",
    "floor(`1.5`)",
    "ceil(`1.5`)",
    "to_array(text)",
    # hookmap's functions: context, optional arguments, null in null out, type errors
    "root()",
    "root().items[*].sku",
    "people[*].{n: name, order: root().a.b.c}",
    "header('x-shop')",
    "header('X-SHOP')",
    "header('nope')",
    "topic()",
    "var('country')",
    "var('n')",
    "lookup('status', 'paid')",
    "lookup('status', 'other')",
    "lower(people[0].email)",
    "lower(people[1].email)",
    "lower(zero)",
    "upper(text)",
    "coalesce(none, empty, text)",
    "coalesce()",
    "default(zero, `5`)",
    "concat('a', zero, t, none)",
    "concat(obj)",
    "format('{} and {}', text, zero)",
    "format('{0.__class__}', text)",
    "to_json(people[0])",
    "from_json('[1, 2]')",
    "from_json('nope')",
    "compact(people[*].{n: name, e: email})",
    "number('12.50')",
    "number(text)",
    "round(`2.675`, `2`)",
    "phone(phone)",
    "phone(phone, var('country'))",
    "phone(phone, `380`)",
    "phone(phone, obj)",
    "phone(phone, 'UA', `380`, none)",
    "phone('(555) 555-5555', 'US')",
    "iso_datetime('2026-10-14 09:41:27', 'Europe/Kyiv')",
    "iso_datetime('not a date')",
    "sha256(lower(trim(text)))",
    "split(text, 'l')",
    "split(text, '')",
]


@pytest.mark.parametrize("expression", SEMANTICS)
def test_compiled_gives_the_interpreters_result(expression: str) -> None:
    """Each case: the same value, or the same exception and message, on both paths."""
    assert_same(expression)


@pytest.mark.parametrize("expression", SEMANTICS)
def test_slow_call_path_gives_the_same_result(expression: str) -> None:
    """A Functions class other than EngineFunctions goes through call_function."""

    class Subclass(EngineFunctions):
        pass

    assert_same(expression, functions=Subclass(CONTEXT))


@pytest.mark.parametrize(
    ("expression", "data"),
    [
        pytest.param(example.expression, example.data, id=f"{name}-{index}")
        for name, spec in functions.SPECS.items()
        for index, example in enumerate(spec.examples)
    ],
)
def test_every_function_example_gives_the_same_result(expression: str, data: Any) -> None:
    """The registry's runnable examples, in their context, on both evaluators."""
    compiled = assert_same(expression, data, EngineFunctions(functions.EXAMPLE_CONTEXT))
    assert compiled[0] == "ok", compiled


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("length(a, b)", jp_exc.ArityError),
        ("length()", jp_exc.ArityError),
        ("not_null()", jp_exc.VariadictArityError),
        ("phone()", jp_exc.VariadictArityError),
        ("iso_datetime(a, b, c)", jp_exc.ArityError),
        ("root(a)", jp_exc.ArityError),
        ("nope(a)", jp_exc.UnknownFunctionError),
        ("__import__('os')", jp_exc.UnknownFunctionError),
        ("lower(`5`)", jp_exc.JMESPathTypeError),
        ("sort_by(people, &tags)", jp_exc.JMESPathTypeError),
        ("sort_by(mixed, &@)", jp_exc.JMESPathTypeError),
        ("text < `1`", TypeError),
        ("a.list[::0]", ValueError),
    ],
)
def test_the_same_exceptions(expression: str, error: type[Exception]) -> None:
    """Arity, unknown function and type errors are raised as the interpreter raises them."""
    compiled = assert_same(expression)
    assert compiled[0] == "error" and issubclass(compiled[1][0], error), compiled


def test_compliance_suite_strictly_equal() -> None:
    """Every compliance expression: compiled and interpreted results identical in type too
    (the suite's own test compares with ==, where 1, 1.0 and true are equal)."""
    suite = SHARED / "jmespath-compliance"
    if not suite.is_dir():
        pytest.skip(f"JMESPath compliance suite not found at {suite}")
    checked = 0
    with warnings.catch_warnings():
        # jmespath warns about `literal` strings that are not JSON; the suite has some
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        for path in sorted(suite.glob("*.json")):
            if path.name == "benchmarks.json":
                continue
            for group in json.loads(path.read_text(encoding="utf-8")):
                for case in group["cases"]:
                    try:
                        jmespath.compile(case["expression"])
                    except jp_exc.JMESPathError:
                        continue
                    assert_same(case["expression"], group["given"])
                    checked += 1
    assert checked > 500


def test_values_beyond_json_types_behave_as_in_the_interpreter() -> None:
    """Dict and list subclasses, Decimal: the type-specific fast paths fall back exactly."""

    class Text(str):
        pass

    class Items(list[Any]):
        pass

    data = {
        "od": collections.OrderedDict(),
        "full": collections.OrderedDict(a=1),
        "dec": decimal.Decimal(0),
        "text": Text(""),
        "items": Items([1, None, Items([2])]),
    }
    for expression in [
        "od || 'x'",
        "full || 'x'",
        "dec || 'x'",
        "!dec",
        "text || 'x'",
        "items[]",
        "items[0]",
        "items[::-1]",
        "full.a",
        "full.*",
        "[?@]",
        "dec == `0`",
        "dec < `1`",
        "to_string(text)",
        "length(od)",
        "keys(full)",
    ]:
        assert_same(expression, data)
        assert_same(f"[{expression}]", data)


def test_builtin_functions_alone_without_custom_functions() -> None:
    """With jmespath's plain Functions (no hookmap functions) the results still match."""
    for expression in ("sort_by(people, &name)[*].name", "length(text)", "lower(text)"):
        assert_same(expression, functions=jp_functions.Functions())


def test_a_function_overridden_in_a_subclass_is_the_one_called() -> None:
    """The fast path is for EngineFunctions itself; a subclass's own version wins."""

    class Shouting(EngineFunctions):
        @jp_functions.signature({"types": ["string", "null"]})
        def _func_lower(self, text: str | None) -> str | None:
            return None if text is None else text.upper()

        @jp_functions.signature({"types": []})
        def _func_to_string(self, value: Any) -> str:
            return "always"

    functions = Shouting(CONTEXT)
    assert assert_same("lower(text)", functions=functions) == ("ok", ("str", "HELLO"), ())
    assert assert_same("to_string(zero)", functions=functions) == ("ok", ("str", "always"), ())


def test_deep_nesting_is_split_into_functions() -> None:
    """Nesting beyond Python's block and indentation limits still compiles and agrees."""
    data: Any = 1
    for _ in range(40):
        data = {"a": [data, None]}
    deep = "a[*]." * 39 + "a[0]"
    assert assert_same(deep, data)[0] == "ok"
    filters = "a[?a]." * 39 + "a"
    assert_same(filters, data)
    wrapped = "x"
    for index in range(60):
        wrapped = f"[{wrapped}, x || `{index}`][0]" if index % 2 else f"({wrapped} || y) && x"
    assert_same(wrapped, {"x": 3, "y": 4})


def test_an_ast_too_deep_to_generate_is_left_to_the_interpreter() -> None:
    """Hundreds of levels (`a || a || ...`): loading still works, evaluation fails alike."""
    parsed = jmespath.compile(" || ".join(["a"] * 500))
    compiled = codegen.compile_ast(parsed.parsed)  # no RecursionError at load
    functions = EngineFunctions(CONTEXT)
    options = jmespath.Options(custom_functions=functions)
    got = outcome(lambda: compiled({"a": 1}, functions))
    want = outcome(lambda: parsed.search({"a": 1}, options=options))
    assert got[0] == want[0] and got[1][0] is want[1][0] is RecursionError


def test_dict_cls_option_uses_the_interpreter() -> None:
    """jmespath's dict_cls option is honoured: such a search goes to the interpreter."""
    expr = compile_expression("{b: b, a: a}", Names(), Diagnostics(), evaluator=COMPILED)
    assert expr is not None and expr.compiled is not None
    options = jmespath.Options(dict_cls=collections.OrderedDict)
    assert type(expr.search({"a": 1, "b": 2}, options)) is collections.OrderedDict


def test_without_custom_functions_compiled_uses_the_builtins() -> None:
    """Options without custom functions: jmespath's built-ins, as the interpreter does."""
    expr = compile_expression("length(@)", Names(), Diagnostics(), evaluator=COMPILED)
    assert expr is not None
    assert expr.search([1, 2], jmespath.Options()) == 2


# -- the switch --------------------------------------------------------------------------


def test_evaluator_choice_reaches_the_expression() -> None:
    """compile_expression(evaluator=...) compiles to Python, or leaves it to jmespath."""
    reported = Diagnostics()
    compiled = compile_expression("a.b", Names(), reported, evaluator=COMPILED)
    interpreted = compile_expression("a.b", Names(), reported, evaluator=INTERPRETER)
    assert compiled is not None and interpreted is not None and not reported
    assert compiled.compiled is not None and interpreted.compiled is None
    options = make_options(CONTEXT)
    assert compiled.search(DOC, options) == interpreted.search(DOC, options) == {"c": 1}


def test_compiler_load_threads_the_evaluator() -> None:
    """compiler.load(evaluator=...) reaches every param expression of every rule set."""
    for evaluator in ("compiled", "interpreter"):
        loaded = compiler.load([ROOT / "rules"], evaluator=EVALUATORS[evaluator])
        exprs = [
            p.expr
            for rs in loaded.rulesets
            for r in rs.rules
            for e in r.events
            for p in e.params
            if p.expr is not None
        ]
        assert exprs and all((x.compiled is not None) == (evaluator == "compiled") for x in exprs)


@pytest.mark.parametrize("evaluator", ["compiled", "interpreter"])
def test_every_shipped_rule_test_passes(evaluator: Any) -> None:
    """Every rule test of every shipped platform passes on both evaluation paths."""
    loaded = compiler.load([ROOT / "rules"], evaluator=EVALUATORS[evaluator])
    assert loaded.ok, [d.render() for d in loaded.diagnostics]
    outcomes = ruletests.run_all(loaded.rulesets)
    assert len(outcomes) > 10
    assert [(o.id, o.failures) for o in outcomes if not o.passed] == []


def test_cli_interpreter_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """`hookmap --interpreter test` loads with evaluator="interpreter"; the default compiles."""
    seen: list[str] = []
    real_load = compiler.load

    def spy(paths: Any, env: Any = None, evaluator: Any = COMPILED) -> Any:
        seen.append(evaluator.name)
        return real_load(paths, env, evaluator)

    monkeypatch.setattr(compiler, "load", spy)
    runner = CliRunner()
    for args in (["--interpreter", "test", "rules"], ["test", "rules"]):
        result = runner.invoke(cli.main, args)
        assert result.exit_code == 0, result.output
        assert " 0 failed" in result.output
    assert seen == ["interpreter", "compiled"]


# -- safety ------------------------------------------------------------------------------

HOSTILE = [
    "__import__",
    "__import__('os').system('echo pwned')",
    "__class__",
    "__builtins__",
    "__globals__",
    '"; import os; "',
    "'; import os; '",
    '"""',
    "a\nb",
    "\n__import__('os')\n",
    "back\\slash",
    "\\",
    "\\n",
    "{0}",
    "{}",
    "ключ 🔑",
    "\u2028line separator",
    "\x00nul",
    "_k0",
    "_v1",
    "F",
    "v",
    "_x0",
    "type",
    "exec",
    ")] + [",
]


def _json_string(text: str) -> str:
    return json.dumps(text)


def _raw_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _hostile_expressions(text: str) -> list[str]:
    """``text`` as a quoted identifier, a raw string, a JSON literal and a hash key."""
    quoted = _json_string(text)
    literal = _json_string(text).replace("`", "\\`")
    return [
        quoted,
        f"a.{quoted}",
        f"{quoted}[0]",
        f"{{{quoted}: a, x: {quoted}}}",
        _raw_string(text),
        f"`{literal}`",
        f"`{{{literal}: {literal}}}`",
        f"a[?{quoted} == {_raw_string(text)}]",
        f"[{_raw_string(text)}, `{literal}`]",
        f"lower({_raw_string(text)})",
        f"sort_by(list, &{quoted})",
    ]


def _generated_names(source: str) -> set[str]:
    return {
        token.string
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.NAME
    }


def _generated_strings(source: str) -> set[str]:
    return {
        token.string
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type in (tokenize.STRING, tokenize.NUMBER)
    }


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_identifiers_and_literals_are_plain_data(text: str) -> None:
    """Quotes, newlines, backslashes, dunders, __import__, unicode: data, as in jmespath."""
    data = {text: {"x": 1}, "a": {text: [text]}, "list": [{text: 2}, {text: 1}]}
    data["a"][text] = [text]
    for expression in _hostile_expressions(text):
        assert_same(expression, data)
        source, _constants = codegen.generate(jmespath.compile(expression).parsed)
        assert text not in source or text in _FIXED_SOURCE_WORDS, (expression, source)
    # it reaches the code as a bound constant, the very string
    _source, constants = codegen.generate(jmespath.compile(_json_string(text)).parsed)
    assert list(constants.values()) == [text]


# the generator's own words: hostile texts equal to one of them are expected in the source
_FIXED_SOURCE_WORDS = {"_k0", "_v1", "F", "v", "_x0", "type", "{}"}
_ALLOWED_NAMES = {
    "def",
    "return",
    "if",
    "else",
    "for",
    "in",
    "not",
    "is",
    "and",
    "or",
    "None",
    "True",
    "False",
    "try",
    "except",
    "v",
    "F",
    # methods the generated code calls: dict.get / .values, list.append / .extend,
    # Functions.call_function
    "get",
    "values",
    "append",
    "extend",
    "call_function",
    *codegen._NAMESPACE,
}


@pytest.mark.parametrize("text", HOSTILE)
def test_generated_source_holds_only_the_generators_names(text: str) -> None:
    """Every name in the source is generated (_k/_v/_x + digits) or a fixed helper, and
    the source holds no string or number literal at all."""
    for expression in [*_hostile_expressions(text), *SEMANTICS[:60]]:
        source, constants = codegen.generate(jmespath.compile(expression).parsed)
        names = _generated_names(source)
        assert all(re.fullmatch(r"_[kvx][0-9]+", n) or n in _ALLOWED_NAMES for n in names), (
            expression,
            names - _ALLOWED_NAMES,
        )
        assert _generated_strings(source) == set(), (expression, source)
        assert all(re.fullmatch(r"_k[0-9]+", name) for name in constants)
        assert not any(keyword.iskeyword(n) and n not in _ALLOWED_NAMES for n in names)


def test_a_literal_that_would_create_a_file_does_not(tmp_path: Path) -> None:
    """Payloads and rule literals written as Python that touches a file: nothing happens."""
    target = tmp_path / "pwned"
    code = f"__import__('pathlib').Path({str(target)!r}).touch()"
    expressions = [
        *_hostile_expressions(code),
        *_hostile_expressions(f"'); {code}; ('"),
        *_hostile_expressions(f'"); {code}; ("'),
        *_hostile_expressions(f"\n{code}\n"),
    ]
    data = {code: code, "a": {code: code}, "list": [{code: code}]}
    for expression in expressions:
        assert_same(expression, data)
        expr = compile_expression(expression, Names(), Diagnostics(), evaluator=COMPILED)
        if expr is not None:  # and through the engine's own path
            options = make_options(EvalContext(root=data))
            outcome(lambda e=expr, o=options: e.search(data, o))
    assert not target.exists()
    exec(code)  # the control: run as Python, the same text does create the file
    assert target.exists()


def test_generated_code_has_no_builtins() -> None:
    """The namespace the code runs in has no builtins: it could not import even if asked."""
    assert codegen._NAMESPACE["__builtins__"] == {}
