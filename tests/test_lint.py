"""The linter: every rule-file problem is found at load, with a stable code and a location.

Most cases are data. Each bad rule set under ``tests/data/lint/`` (a ``.yaml`` file, with
its ``NAME.tests.yaml`` if any, or a folder holding ``ruleset.yaml``) declares the
diagnostics it must produce in comments at the top of the file they point into::

    # expect: E201 16:28
    # expect: W401 12:11 warning

One parametrised test loads each and compares the exact multiset of
(file, code, line, col, severity): a missing or an extra diagnostic fails. Rule sets
under ``tests/data/lint/good/`` must load with no diagnostic at all.

The regression tests at the end pin bugs found while writing this suite (now fixed).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.errors import CODES, Diagnostic
from engine.rules.compiler import LoadResult, load
from engine.ruletests import run_all

DATA = Path(__file__).parent / "data" / "lint"
ROOT = Path(__file__).resolve().parents[1]
GOOD = DATA / "good"
RULES = Path(__file__).resolve().parents[1] / "rules"
#: The environment every case loads with: HOOKMAP_LINT_UNSET is deliberately absent.
ENV = {"HOOKMAP_LINT_SET": "set"}
EXPECT = re.compile(
    r"#\s*expect:\s*(?P<code>[EW]\d{3})\s+(?P<line>\d+):(?P<col>\d+)"
    r"(?:\s+(?P<severity>error|warning))?\s*$"
)

Key = tuple[str, str, int, int, str]


def _case_files(case: Path) -> list[Path]:
    """The files one case loads: a folder's .yaml files, or a file and its tests file."""
    if case.is_dir():
        return sorted(case.glob("*.yaml"))
    tests = case.with_name(f"{case.stem}.tests.yaml")
    return [case, tests] if tests.is_file() else [case]


def _cases(folder: Path) -> list[Path]:
    files = [p for p in folder.glob("*.yaml") if not p.name.endswith(".tests.yaml")]
    folders = [p for p in folder.iterdir() if (p / "ruleset.yaml").is_file()]
    return sorted(files + folders)


BAD = _cases(DATA)
GOOD_CASES = _cases(GOOD)


def _id(case: Path) -> str:
    return case.name


def _expected(case: Path) -> Counter[Key]:
    """The diagnostics a case declares in the leading comments of its files."""
    out: Counter[Key] = Counter()
    for path in _case_files(case):
        for text in path.read_text(encoding="utf-8").splitlines():
            if not text.startswith("#"):
                break
            if not re.match(r"#\s*expect\b", text):
                continue  # a description line
            match = EXPECT.match(text)
            assert match, f"{path.name}: malformed expectation {text!r}"
            out[
                (
                    path.name,
                    match["code"],
                    int(match["line"]),
                    int(match["col"]),
                    match["severity"] or "error",
                )
            ] += 1
    return out


def _load(case: Path) -> LoadResult:
    return load([case], env=ENV)


def _key(diagnostic: Diagnostic) -> Key:
    loc = diagnostic.location
    assert loc is not None, f"diagnostic without a location: {diagnostic}"
    return (Path(loc.file).name, diagnostic.code, loc.line, loc.col, diagnostic.severity)


def _all_bad_diagnostics() -> list[Diagnostic]:
    return [d for case in BAD for d in _load(case).diagnostics]


def test_lint_cases_are_found() -> None:
    """Both kinds of cases exist, and every bad case declares what it expects."""
    assert len(BAD) >= 18
    assert len(GOOD_CASES) >= 4
    for case in BAD:
        assert _expected(case), f"{case.name} declares no expected diagnostic"


@pytest.mark.parametrize("case", BAD, ids=_id)
def test_bad_rule_set_gives_exactly_the_declared_diagnostics(case: Path) -> None:
    """The exact multiset of (file, code, line:col, severity) the case's comments declare."""
    result = _load(case)
    actual = Counter(_key(d) for d in result.diagnostics)
    rendered = "\n".join(d.render() for d in result.diagnostics)
    assert actual == _expected(case), f"diagnostics were:\n{rendered}"
    assert not result.rulesets, "a rule set with errors must be left out"


def test_every_declared_code_is_documented() -> None:
    """Every code the bad cases expect is listed in engine.errors.CODES (and docs)."""
    codes = {key[1] for case in BAD for key in _expected(case)}
    assert codes <= set(CODES)
    assert codes >= {
        "E101",
        "E102",
        "E103",
        "E104",
        "E105",
        "E106",
        "E107",
        "E108",
        "E201",
        "E202",
        "E203",
        "E204",
        "E301",
        "E302",
        "E303",
        "E304",
        "E305",
        "E401",
        "E402",
        "E403",
        "W401",
    }


@pytest.mark.parametrize("case", GOOD_CASES, ids=_id)
def test_good_rule_set_loads_without_diagnostics(case: Path) -> None:
    """A good rule set loads with zero diagnostics, and its own rule tests pass."""
    result = _load(case)
    assert result.diagnostics == (), "\n".join(d.render() for d in result.diagnostics)
    (ruleset,) = result.rulesets
    failures = [f for outcome in run_all(result.rulesets) for f in outcome.failures]
    assert failures == []
    assert len(ruleset.files) == len(_case_files(case))


def test_good_folder_rule_set_merges_its_files() -> None:
    """The folder form: name from the folder, rules/tables from orders.yaml, tests file."""
    result = _load(GOOD / "folder_set")
    (ruleset,) = result.rulesets
    assert ruleset.name == "folder_set"
    assert [Path(f).name for f in ruleset.files] == [
        "ruleset.yaml",
        "folder_set.tests.yaml",
        "orders.yaml",
    ]
    assert [r.name for r in ruleset.rules] == ["order-paid"]
    assert set(ruleset.tables) == {"status"}
    assert [t.name for t in ruleset.tests] == ["a paid order", "an inline body"]


def test_single_file_rule_set_picks_up_its_tests_file() -> None:
    """NAME.tests.yaml beside NAME.yaml adds its tests to that rule set."""
    (ruleset,) = _load(GOOD / "with_tests.yaml").rulesets
    assert [t.name for t in ruleset.tests] == ["a paid order from a file"]
    assert [Path(f).name for f in ruleset.files] == ["with_tests.yaml", "with_tests.tests.yaml"]


def test_env_interpolation_with_defaults_and_escapes() -> None:
    """${X:-default} takes the default when X is unset, ${X} reads X, $$ is a dollar."""
    (ruleset,) = _load(GOOD / "complete.yaml").rulesets
    assert ruleset.vars["shop_url"] == "https://shop.example"
    assert ruleset.vars["region"] == "set"
    assert ruleset.vars["price_literal"] == "$5"
    assert ruleset.vars["pages"] == 3


def test_unset_env_without_default_is_e303_at_the_dollar() -> None:
    """E303 points at the ${ of the unset variable; the defaulted var is not reported."""
    diagnostics = _load(DATA / "e303_env.yaml").diagnostics
    assert {d.code for d in diagnostics} == {"E303"}
    for d in diagnostics:
        assert d.location is not None and d.source_line is not None
        assert d.source_line[d.location.col - 1 :].startswith("${HOOKMAP_LINT_UNSET}")
    assert not any("with_default" in d.message for d in diagnostics)


def test_unknown_key_hints_suggest_the_closest_key() -> None:
    """E102 says `did you mean` with the nearest declared key, in the hint and render()."""
    diagnostics = _load(DATA / "e102_unknown_keys.yaml").diagnostics
    hints = {d.message: d.hint for d in diagnostics}
    assert hints == {
        "unknown key 'topc' in the rule set": "did you mean 'topic'?",
        "unknown key 'evnts' in rules[0]": "did you mean 'events'?",
        "unknown key 'parms' in rules[0].events[0]": "did you mean 'params'?",
        "unknown key 'requird' in rules[0].events[0].params.a": "did you mean 'required'?",
    }
    assert "unknown key 'evnts' in rules[0] (did you mean 'events'?)" in "\n".join(
        d.render() for d in diagnostics
    )


def test_unknown_key_without_a_close_match_lists_the_keys(tmp_path: Path) -> None:
    """An unknown key nothing resembles gets the list of allowed keys as its hint."""
    path = tmp_path / "far.yaml"
    path.write_text(
        "name: far\ntopic: {header: X-Topic, zzzzzz: 1}\n",
        encoding="utf-8",
    )
    (diagnostic,) = load([path], env=ENV).diagnostics
    assert diagnostic.code == "E102"
    assert diagnostic.hint == "expected one of header, expression"


def test_reference_hints_suggest_the_closest_name() -> None:
    """E201, E301, E302 and E304 suggest the nearest function, table, var or template."""
    hints = {
        (d.code, d.hint)
        for case in ("e201_unknown_function", "e301_e302_undefined", "e304_template")
        for d in _load(DATA / f"{case}.yaml").diagnostics
    }
    assert hints >= {
        ("E201", "did you mean 'length'?"),
        ("E201", "did you mean 'lower'?"),
        ("E301", "did you mean 'order_status'?"),
        ("E302", "did you mean 'shop_url'?"),
        ("E304", "did you mean 'order'?"),
    }


def test_catalogue_hints() -> None:
    """E401 and W401 name the standard spelling they look like."""
    by_code = {d.code: d for d in _load(DATA / "e4xx_catalogue.yaml").diagnostics}
    assert by_code["E401"].hint == "did you mean 'orderCreated'?"
    assert by_code["W401"].hint == "did you mean 'externalOrderId'?"
    assert by_code["W401"].severity == "warning"
    assert "'totalCost'" in by_code["E402"].message


def test_render_has_location_header_source_line_and_caret() -> None:
    """render(): `file:line:col: severity[CODE]: msg`, then `NNNN | source`, then a caret."""
    diagnostics = _all_bad_diagnostics()
    assert len(diagnostics) > 50
    for d in diagnostics:
        loc = d.location
        assert loc is not None
        lines = d.render().split("\n")
        assert lines[0].startswith(f"{loc.file}:{loc.line}:{loc.col}: {d.severity}[{d.code}]: ")
        assert len(lines) == 3, d.render()
        gutter = f"{loc.line:>4} | "
        source = Path(loc.file).read_text(encoding="utf-8").splitlines()[loc.line - 1]
        # a control character of the file (e101_nul_character.yaml) is shown as U+FFFD
        shown = re.sub("[\x00-\x08\x0b-\x1f\x7f-\x9f]", "\N{REPLACEMENT CHARACTER}", source)
        assert lines[1] == gutter + shown.rstrip("\r")
        caret = lines[2]
        assert caret.strip() == "^"
        # the caret stands under the col-th character of the source line
        assert caret.index("^") == len(gutter) + loc.col - 1
        assert 1 <= loc.col <= len(d.source_line or "") + 1


def test_call_diagnostics_point_at_the_call() -> None:
    """E201/E202/E204/E301/E302 carets stand on the first letter of the function called."""
    calls = [
        d for d in _all_bad_diagnostics() if d.code in {"E201", "E202", "E204", "E301", "E302"}
    ]
    assert len(calls) >= 15
    for d in calls:
        assert d.location is not None and d.source_line is not None
        at = d.source_line[d.location.col - 1 :]
        name = re.match(r"([a-z_]+)\(", at)
        assert name, f"caret not on a call: {d.render()}"
        assert name[1] in d.message or d.code in {"E301", "E302"}, d.render()


def test_every_problem_of_a_file_is_collected() -> None:
    """A file with five distinct problems yields five diagnostics, not the first one."""
    diagnostics = _load(DATA / "five_problems.yaml").diagnostics
    assert len(diagnostics) == 5
    assert {d.code for d in diagnostics} == {"E102", "E106", "E201", "E302", "E203"}


def test_shipped_rules_load_clean() -> None:
    """The rules/ shipped with hookmap load with zero diagnostics, warnings included."""
    result = load([RULES], env={})
    assert result.diagnostics == (), "\n".join(d.render() for d in result.diagnostics)
    assert {r.name for r in result.rulesets} >= {"shopify", "woocommerce"}


# -- engine bugs ------------------------------------------------------------------------


def _diagnostics(tmp_path: Path, text: str) -> tuple[Diagnostic, ...]:
    path = tmp_path / "bug.yaml"
    path.write_text(text, encoding="utf-8")
    return load([path], env=ENV).diagnostics


def _event(params: str) -> str:
    return (
        "name: bug\ntopic: {header: X-Topic}\nrules:\n  - name: r\n    topics: [t]\n"
        "    events:\n      - type: custom\n        key: email\n        params:\n" + params
    )


def test_column_after_an_escape_in_a_double_quoted_scalar(tmp_path: Path) -> None:
    """E201 after `\\"a\\"` in a double-quoted expression still points at the call."""
    line = '          p: "contains(x, \\"a\\") && lenght(y)"'
    (d,) = _diagnostics(tmp_path, _event(line + "\n"))
    assert d.code == "E201"
    assert d.location is not None
    assert d.location.col == line.index("lenght(") + 1


def test_column_after_an_escape_in_a_single_quoted_scalar(tmp_path: Path) -> None:
    """E201 after `''a''` in a single-quoted expression still points at the call."""
    line = "          p: 'contains(x, ''a'') && lenght(y)'"
    (d,) = _diagnostics(tmp_path, _event(line + "\n"))
    assert d.code == "E201"
    assert d.location is not None
    assert d.location.col == line.index("lenght(") + 1


def test_a_number_too_long_for_int_is_e203_at_the_number(tmp_path: Path) -> None:
    """jmespath's lexer reads numbers with int(), which raises a bare ValueError past
    4,300 digits: `hookmap validate` crashed on such an index (the faults fuzzer)."""
    line = "          p: a[" + "1" * 5000 + "]"
    (d,) = _diagnostics(tmp_path, _event(line + "\n"))
    assert (d.code, d.message) == ("E203", "JMESPath syntax error: a number of 5,000 digits")
    assert d.location is not None
    assert d.location.col == line.index("1") + 1


def test_an_expression_nested_past_the_stack_is_e203_not_a_recursion_error(
    tmp_path: Path,
) -> None:
    """jmespath parses by recursive descent: 2,000 nested brackets ran out of Python's
    stack and `hookmap validate` crashed (the faults fuzzer)."""
    line = '          p: "' + "[" * 2000 + "a" + "]" * 2000 + '"'
    (d,) = _diagnostics(tmp_path, _event(line + "\n"))
    assert (d.code, d.message) == ("E203", "JMESPath syntax error: nested too deeply")
    assert d.location is not None
    assert d.location.col == line.index("a")  # the innermost "[", just before "a"


def test_column_of_a_bad_call_inside_a_filter(tmp_path: Path) -> None:
    """E202 for `length(a, b)` in `x[?length(a, b)].length(c)` points at the bad call."""
    line = '          p: "x[?length(a, b)].length(c)"'
    (d,) = _diagnostics(tmp_path, _event(line + "\n"))
    assert d.code == "E202"
    assert d.location is not None
    assert d.location.col == line.index("length(a, b)") + 1


def test_e303_column_in_a_quoted_var(tmp_path: Path) -> None:
    """E303 in `"pre-${UNSET}"` points at the `$`."""
    line = '  url: "https://${HOOKMAP_LINT_UNSET}/x"'
    text = f"name: bug\ntopic: {{header: X-Topic}}\nvars:\n{line}\n"
    (d,) = _diagnostics(tmp_path, text)
    assert d.code == "E303"
    assert d.location is not None
    assert d.location.col == line.index("${") + 1


def test_column_in_a_folded_scalar_after_a_blank_line(tmp_path: Path) -> None:
    """E201 on the line after a blank line of a `>` folded scalar points at the call."""
    params = "          p: >\n            coalesce(a,\n\n            lenght(b))\n"
    (d,) = _diagnostics(tmp_path, _event(params))
    assert d.code == "E201"
    assert d.location is not None
    assert (d.location.line, d.location.col) == (13, 13)


def test_a_list_param_is_reported_once(tmp_path: Path) -> None:
    """`p: [a]` is one E103 (must be expression or scalar or mapping), not two."""
    diagnostics = _diagnostics(tmp_path, _event("          p: [a]\n"))
    assert [d.code for d in diagnostics] == ["E103"]


def test_arity_message_for_optional_arguments(tmp_path: Path) -> None:
    """E202 for iso_datetime(a, b, c) says it takes 1 to 2 arguments."""
    (d,) = _diagnostics(tmp_path, _event("          p: iso_datetime(a, 'UTC', b)\n"))
    assert d.code == "E202"
    assert "2" in d.message.split("got")[0]


def test_unclosed_quote_points_at_a_source_line(tmp_path: Path) -> None:
    """E101 for `topics: "t` (never closed) renders a source line and caret."""
    text = 'name: bug\ntopic: {header: X-Topic}\nrules:\n  - name: r\n    topics: "t\n'
    (d,) = _diagnostics(tmp_path, text)
    assert d.code == "E101"
    assert d.source_line is not None
    assert len(d.render().split("\n")) == 3


def test_boolean_looking_param_names_are_not_renamed_silently(tmp_path: Path) -> None:
    """`on: a` as a param is kept as 'on', or reported; never sent as a param named 'True'."""
    path = tmp_path / "bug.yaml"
    path.write_text(_event("          on: a\n          no: b\n"), encoding="utf-8")
    result = load([path], env=ENV)
    if result.diagnostics:
        return
    (ruleset,) = result.rulesets
    assert [p.name for p in ruleset.rules[0].events[0].params] == ["on", "no"]


def _nodes(node: Any, seen: set[int] | None = None) -> list[tuple[Any, ...]]:
    """Every node as (kind, tag, style, start and end line/column, scalar value); a node
    met again through an alias once more, without its children (an alias may be a cycle)."""
    if node is None:
        return []
    seen = set() if seen is None else seen
    again = id(node) in seen
    seen.add(id(node))
    marks = (node.start_mark.line, node.start_mark.column)
    marks += (node.end_mark.line, node.end_mark.column)
    style = getattr(node, "style", None) or None  # a plain scalar: None here, "" in libyaml
    value = node.value if isinstance(node, yaml.ScalarNode) else None
    out = [(type(node).__name__, node.tag, style, *marks, value)]
    if again:
        return out
    if isinstance(node, yaml.MappingNode):
        for key, item in node.value:
            out += _nodes(key, seen) + _nodes(item, seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            out += _nodes(item, seen)
    return out


@pytest.mark.skipif(not hasattr(yaml, "CSafeLoader"), reason="PyYAML built without libyaml")
def test_libyaml_composes_rule_files_as_the_python_reader_does() -> None:
    """The loader composes with libyaml for speed: every shipped and test rule file gives
    the same nodes and marks (the columns every diagnostic points with) either way."""
    files = sorted(ROOT.glob("rules/**/*.yaml")) + sorted(DATA.glob("**/*.yaml"))
    compared = 0
    for path in files:
        text = path.read_text(encoding="utf-8")
        try:
            python = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            continue  # the syntax-error cases: composed by the Python reader anyway
        assert _nodes(yaml.compose(text, Loader=yaml.CSafeLoader)) == _nodes(python), path
        compared += 1
    assert compared > 40
