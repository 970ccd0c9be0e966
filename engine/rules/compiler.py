"""Compile stage: rule files → immutable ``RuleSet`` objects, with every problem located.

``discovery`` says which files form a rule set; the loader reads each against the
schema; here their parts are merged (vars, tables, templates and lookups may come from
any file of the set) and compiled, rules and lookups by ``compile_rules``, tests by
``fixtures``, every problem reported to one ``Diagnostics``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.errors import Diagnostic, Location, RuleLoadError, has_errors
from engine.rules import demand
from engine.rules.codegen import COMPILED
from engine.rules.compile_rules import compile_lookups, compile_rule, expression
from engine.rules.compiling import CompileContext
from engine.rules.diagnostics import Diagnostics
from engine.rules.discovery import Group, discover, display
from engine.rules.expressions import Names
from engine.rules.fixtures import compile_tests
from engine.rules.loader import read_file
from engine.rules.model import (
    Decode,
    Evaluator,
    LookupSpec,
    Rule,
    RuleSet,
    RuleTest,
    Table,
    table_key,
)
from engine.rules.schema import HEADER_KEYS, RULE_SET
from engine.rules.schemes import SIGNS_BODY, VerifySpec, covers_header
from engine.rules.source import LocatedDict, LocatedList
from engine.rules.verify import check_verify

MERGED_KEYS = ("vars", "tables", "templates", "lookups")


@dataclasses.dataclass(frozen=True)
class LoadResult:
    rulesets: tuple[RuleSet, ...]
    diagnostics: tuple[Diagnostic, ...]

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)

    def get(self, name: str) -> RuleSet | None:
        return next((r for r in self.rulesets if r.name == name), None)


def load(
    paths: Sequence[str | Path],
    env: Mapping[str, str] | None = None,
    evaluator: Evaluator = COMPILED,
) -> LoadResult:
    """Load every rule set under ``paths``; rule sets with errors are left out.

    ``evaluator`` is ``engine.rules.codegen.COMPILED`` (the default: expressions compiled
    to Python, plain JSON bodies read only as far as they look) or ``INTERPRETER``, the
    reference path: bodies read whole and every expression walked by jmespath's own
    interpreter; same results, for comparison and debugging.
    """
    env = os.environ if env is None else env
    sink = Diagnostics()
    ctx = CompileContext(env, sink, evaluator)
    rulesets: list[RuleSet] = []
    seen: dict[str, str] = {}
    for group in discover(paths):
        before = len(sink)
        ruleset = _compile_group(group, ctx)
        if ruleset is None or has_errors(sink.since(before)):
            continue
        if evaluator.reads_in_part:
            ruleset = _with_reader(ruleset)
        if ruleset.name in seen:
            sink.items.append(
                Diagnostic(
                    "E107",
                    f"rule set name '{ruleset.name}' is used twice ({seen[ruleset.name]})",
                    ruleset.where,
                )
            )
            continue
        seen[ruleset.name] = ruleset.files[0]
        rulesets.append(ruleset)
    # a template's expression is compiled once per event extending it: say each once
    return LoadResult(tuple(rulesets), tuple(dict.fromkeys(sink.items)))


def load_or_raise(
    paths: Sequence[str | Path],
    env: Mapping[str, str] | None = None,
    evaluator: Evaluator = COMPILED,
) -> LoadResult:
    """Like ``load``, raising ``RuleLoadError`` when any rule file has an error."""
    result = load(paths, env, evaluator)
    if not result.ok:
        raise RuleLoadError(result.diagnostics)
    return result


def _compile_group(group: Group, ctx: CompileContext) -> RuleSet | None:
    docs: list[LocatedDict] = []
    for path in group.files:
        doc = read_file(path, display(path), ctx.diagnostics, RULE_SET)
        if doc is not None:
            docs.append(doc)
    if not docs:
        return None
    head = docs[0]
    for doc in docs[1:]:
        for key in HEADER_KEYS:
            if key in doc.key_locs:
                ctx.error(
                    "E108",
                    f"'{key}' belongs in {head.source.path}, not in a file that "
                    "adds to the rule set",
                    doc.key_locs[key],
                )
    name = head.get("name")
    if name is None and group.folder is not None:
        name = group.folder.name
    if name is None:
        name = group.files[0].stem
        if not re.match(r"^[a-z0-9][a-z0-9_-]*$", name):
            ctx.error("E104", "rule set needs 'name'", head.loc)
    topic = head.get("topic")
    if topic is None and "topic" not in head.key_locs:
        ctx.error("E104", "rule set needs 'topic' (a header or an expression)", head.loc)
    topic = topic if isinstance(topic, LocatedDict) else {}

    merged: dict[str, LocatedDict] = {}
    for key in MERGED_KEYS:
        merged[key] = LocatedDict()
        merged[key].key_locs, merged[key].value_locs = {}, {}
        for doc in docs:
            part = doc.get(key)
            if not isinstance(part, LocatedDict):
                continue
            for entry, value in part.items():
                if entry in merged[key].key_locs:
                    ctx.error(
                        "E107",
                        f"{key[:-1]} '{entry}' is defined twice (first at "
                        f"{merged[key].key_locs[entry]})",
                        part.key_locs[entry],
                    )
                    continue
                merged[key][entry] = value
                merged[key].key_locs[entry] = part.key_locs[entry]
                merged[key].value_locs[entry] = part.value_locs[entry]

    variables = _compile_vars(ctx, merged["vars"])
    tables = _compile_tables(ctx, merged["tables"])
    raw_hosts = head.get("hosts")
    host_list = raw_hosts if isinstance(raw_hosts, LocatedList) else LocatedList()
    hosts = frozenset(
        ctx.interpolate_at(str(h), host_list.item_locs[i], "hosts").lower()
        for i, h in enumerate(host_list)
    )
    lookups = compile_lookups(
        ctx, merged["lookups"], Names(frozenset(tables), frozenset(variables)), hosts
    )
    names = Names(frozenset(tables), frozenset(variables), frozenset(s.name for s in lookups))
    topic_expr = expression(ctx, topic.get("expression"), names)

    rules: list[Rule] = []
    rule_names: dict[str, Location] = {}
    tests: list[RuleTest] = []
    for doc in docs:
        for index, raw_rule in enumerate(doc.get("rules") or ()):
            if not isinstance(raw_rule, LocatedDict):
                continue
            loc = doc["rules"].item_locs[index]
            rule = compile_rule(ctx, raw_rule, loc, names, merged["templates"])
            if rule is None:
                continue
            rule = dataclasses.replace(rule, lookups=_closure(rule.lookups, lookups))
            if rule.name in rule_names:
                ctx.error(
                    "E107",
                    f"rule name '{rule.name}' is used twice (first at {rule_names[rule.name]})",
                    raw_rule.value_locs.get("name", loc),
                )
                continue
            rule_names[rule.name] = loc
            rules.append(rule)
        tests.extend(compile_tests(ctx, doc))
    test_names: set[str] = set()
    for test in tests:
        if test.name in test_names:
            ctx.error("E107", f"test name '{test.name}' is used twice", test.where)
        test_names.add(test.name)

    verify = _compile_verify(ctx, head)
    raw_dedupe = head.get("dedupe")
    dedupe: dict[str, Any] = raw_dedupe if isinstance(raw_dedupe, LocatedDict) else {}
    dedupe_expr = expression(ctx, dedupe.get("expression"), names)
    _check_dedupe_header(ctx, verify, dedupe)
    if not topic:
        return None  # reported above; everything else was still checked
    return RuleSet(
        name=str(name),
        api_version=head["api_version"],
        topic_header=(topic.get("header") or "").lower() or None,
        topic_expr=topic_expr,
        rules=tuple(rules),
        vars=variables,
        tables=tables,
        tests=tuple(tests),
        description=head.get("description") or "",
        files=tuple(d.source.path for d in docs),
        where=head.loc,
        verify=verify,
        dedupe_header=(dedupe.get("header") or "").lower() or None,
        dedupe_expr=dedupe_expr,
        max_body=head.get("max_body"),
        decode=_compile_decode(head),
        lookups=tuple(lookups),
        hosts=hosts,
        root=str(group.folder if group.folder is not None else group.files[0]),
    )


def _with_reader(ruleset: RuleSet) -> RuleSet:
    """``ruleset`` reading plain JSON bodies in part: only what its expressions read."""
    decode = ruleset.decode or Decode()
    if decode.format not in ("auto", "json") or decode.unwrap:
        return ruleset
    found = demand.ruleset_reader(ruleset)
    if found is None:
        return ruleset
    return dataclasses.replace(ruleset, decode=dataclasses.replace(decode, reader=found))


def _compile_decode(head: LocatedDict) -> Decode | None:
    raw = head.get("decode")
    if not isinstance(raw, LocatedDict):
        return None
    return Decode(raw["format"], tuple(str(p) for p in raw.get("unwrap") or ()))


def _closure(used: frozenset[str], lookups: list[LookupSpec]) -> frozenset[str]:
    """``used`` plus every lookup their arguments read, transitively."""
    by_name = {s.name: s for s in lookups}
    out: set[str] = set()
    pending = list(used)
    while pending:
        name = pending.pop()
        if name in out or name not in by_name:
            continue
        out.add(name)
        pending.extend(n for _, e in by_name[name].args for n in e.lookups)
    return frozenset(out)


def _check_dedupe_header(
    ctx: CompileContext, verify: VerifySpec | None, dedupe: LocatedDict | dict[str, Any]
) -> None:
    """W501 when the delivery-id header is one the scheme's signature does not cover."""
    header = dedupe.get("header")
    if not isinstance(header, str) or verify is None or verify.scheme not in SIGNS_BODY:
        return
    if covers_header(verify.scheme, header):
        return
    where = getattr(dedupe, "value_locs", {}).get("header")
    ctx.error(
        "W501",
        f"the {verify.scheme} signature does not cover the header {header}: anyone who "
        "captured a request could post it again with a fresh id, so repeats are "
        "recognised by the signed body (and topic) instead",
        where,
        hint="remove dedupe, or name an id inside the body with dedupe.expression",
        severity="warning",
    )


def _compile_verify(ctx: CompileContext, head: LocatedDict) -> VerifySpec | None:
    raw = head.get("verify")
    if not isinstance(raw, LocatedDict):
        return None
    spec, findings = check_verify(dict(raw))
    for finding in findings:
        # at the value a finding is about (its key, when the key is unknown), else the mapping
        where = raw.loc
        if finding.key is not None:
            found = raw.key_locs if finding.code == "E102" else raw.value_locs
            where = found.get(finding.key, raw.loc)
        ctx.error(finding.code, finding.message, where)
    return spec


def _compile_vars(ctx: CompileContext, raw: LocatedDict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, str):
            value = ctx.interpolate_at(value, raw.value_locs[name], f"var '{name}'")
        out[name] = value
    return out


def _compile_tables(ctx: CompileContext, raw: LocatedDict) -> dict[str, Table]:
    out: dict[str, Table] = {}
    for name, spec in raw.items():
        if not isinstance(spec, LocatedDict) or not isinstance(spec.get("map"), dict):
            continue
        mapping = {table_key(k): v for k, v in spec["map"].items()}
        out[name] = Table(
            name, mapping, spec.get("default"), "default" in spec.key_locs, bool(spec.get("strict"))
        )
    return out
