"""Compile stage: rule files → immutable ``RuleSet`` objects, with every problem located.

Discovery: a path is a rule file, a rule-set folder (it holds ``ruleset.yaml``; all its
``*.yaml`` files form one set), or a folder of those (searched recursively). A file
``NAME.tests.yaml`` beside ``NAME.yaml`` adds tests to that rule set.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.decoders import Decode
from engine.errors import Diagnostic, Location, RuleLoadError, UsageError, has_errors
from engine.events import catalogue
from engine.lookups import PLACEHOLDER, LookupSpec, template_host
from engine.rules import demand
from engine.rules.codegen import Evaluator
from engine.rules.expressions import Expression, Names, compile_expression
from engine.rules.functions import Table, table_key
from engine.rules.loader import INVALID, LocatedDict, LocatedList, SourceFile, read_file
from engine.rules.model import EventSpec, ParamSpec, Rule, RuleSet, RuleTest
from engine.rules.schema import HEADER_KEYS
from engine.server.signatures import VerifySpec, parse_verify
from engine.webhook import parse_header_lines, sidecar_headers

RULESET_FILE = "ruleset.yaml"
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
    evaluator: Evaluator = "compiled",
) -> LoadResult:
    """Load every rule set under ``paths``; rule sets with errors are left out.

    ``evaluator="interpreter"`` is the reference path: bodies read whole by ``json``
    and evaluated by jmespath's own interpreter, instead of the expressions compiled to
    Python over only the parts of a body they read (``engine.rules.demand``); same results,
    for comparison and debugging.
    """
    env = os.environ if env is None else env
    diagnostics: list[Diagnostic] = []
    rulesets: list[RuleSet] = []
    seen: dict[str, str] = {}
    for group in discover(paths):
        before = len(diagnostics)
        ruleset = _compile_group(group, env, diagnostics, evaluator)
        if ruleset is None or has_errors(diagnostics[before:]):
            continue
        if evaluator == "compiled":
            ruleset = _with_reader(ruleset)
        if ruleset.name in seen:
            diagnostics.append(
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
    return LoadResult(tuple(rulesets), tuple(dict.fromkeys(diagnostics)))


def load_or_raise(
    paths: Sequence[str | Path],
    env: Mapping[str, str] | None = None,
    evaluator: Evaluator = "compiled",
) -> LoadResult:
    """Like ``load``, raising ``RuleLoadError`` when any rule file has an error."""
    result = load(paths, env, evaluator)
    if not result.ok:
        raise RuleLoadError(result.diagnostics)
    return result


@dataclasses.dataclass(frozen=True)
class Group:
    """The files of one rule set; ``folder`` is set for the folder form."""

    files: tuple[Path, ...]
    folder: Path | None = None


def discover(paths: Sequence[str | Path]) -> list[Group]:
    groups: list[Group] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            groups.append(Group(_with_tests(path)))
        elif path.is_dir():
            groups.extend(_discover_dir(path))
        else:
            raise UsageError(f"no such file or folder: {raw}")
    return groups


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))


def _with_tests(path: Path) -> tuple[Path, ...]:
    tests = path.with_name(f"{path.stem}.tests{path.suffix}")
    return (path, tests) if tests.is_file() and not path.stem.endswith(".tests") else (path,)


def _discover_dir(folder: Path) -> list[Group]:
    if (folder / RULESET_FILE).is_file():
        files = [folder / RULESET_FILE] + [p for p in _yaml_files(folder) if p.name != RULESET_FILE]
        return [Group(tuple(files), folder)]
    groups: list[Group] = []
    for path in _yaml_files(folder):
        if path.stem.endswith(".tests"):
            continue
        groups.append(Group(_with_tests(path)))
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        groups.extend(_discover_dir(sub))
    return groups


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class _Compiler:
    """Compiles the merged documents of one rule set."""

    def __init__(
        self,
        env: Mapping[str, str],
        diagnostics: list[Diagnostic],
        evaluator: Evaluator = "compiled",
    ) -> None:
        self.env = env
        self.diagnostics = diagnostics
        self.evaluator: Evaluator = evaluator
        self.sources: dict[str, SourceFile] = {}

    def error(
        self,
        code: str,
        message: str,
        loc: Location | None,
        hint: str | None = None,
        severity: Any = "error",
    ) -> None:
        line = None
        if loc is not None and loc.file in self.sources:
            line = self.sources[loc.file].line(loc.line)
        self.diagnostics.append(Diagnostic(code, message, loc, severity, line, hint))

    def source_line(self, file: str) -> Any:
        return lambda number: self.sources[file].line(number) if file in self.sources else None

    def expr(self, text: Any, names: Names) -> Expression | None:
        if text is None:
            return None
        file = getattr(getattr(text, "source", None), "path", "")
        return compile_expression(
            text, names, self.diagnostics.append, self.source_line(file), self.evaluator
        )


def _compile_group(
    group: Group,
    env: Mapping[str, str],
    diagnostics: list[Diagnostic],
    evaluator: Evaluator = "compiled",
) -> RuleSet | None:
    comp = _Compiler(env, diagnostics, evaluator)
    docs: list[LocatedDict] = []
    for path in group.files:
        doc = read_file(path, _display(path), diagnostics)
        if doc is not None:
            comp.sources[doc.source.path] = doc.source
            docs.append(doc)
    if not docs:
        return None
    head = docs[0]
    for doc in docs[1:]:
        for key in HEADER_KEYS:
            if key in doc.key_locs:
                comp.error(
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
            comp.error("E104", "rule set needs 'name'", head.loc)
    topic = head.get("topic")
    if topic is None and "topic" not in head.key_locs:
        comp.error("E104", "rule set needs 'topic' (a header or an expression)", head.loc)
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
                    comp.error(
                        "E107",
                        f"{key[:-1]} '{entry}' is defined twice (first at "
                        f"{merged[key].key_locs[entry]})",
                        part.key_locs[entry],
                    )
                    continue
                merged[key][entry] = value
                merged[key].key_locs[entry] = part.key_locs[entry]
                merged[key].value_locs[entry] = part.value_locs[entry]

    variables = _compile_vars(comp, merged["vars"])
    tables = _compile_tables(comp, merged["tables"])
    raw_hosts = head.get("hosts")
    host_list = raw_hosts if isinstance(raw_hosts, LocatedList) else LocatedList()
    hosts = frozenset(
        _interpolate_at(comp, str(h), host_list.item_locs[i], "hosts").lower()
        for i, h in enumerate(host_list)
    )
    lookups = _compile_lookups(
        comp, merged["lookups"], Names(frozenset(tables), frozenset(variables)), hosts
    )
    names = Names(frozenset(tables), frozenset(variables), frozenset(s.name for s in lookups))
    topic_expr = comp.expr(topic.get("expression"), names)

    rules: list[Rule] = []
    rule_names: dict[str, Location] = {}
    tests: list[RuleTest] = []
    for doc in docs:
        for index, raw_rule in enumerate(doc.get("rules") or ()):
            if not isinstance(raw_rule, LocatedDict):
                continue
            loc = doc["rules"].item_locs[index]
            rule = _compile_rule(comp, raw_rule, loc, names, merged["templates"])
            if rule is None:
                continue
            rule = dataclasses.replace(rule, lookups=_closure(rule.lookups, lookups))
            if rule.name in rule_names:
                comp.error(
                    "E107",
                    f"rule name '{rule.name}' is used twice (first at {rule_names[rule.name]})",
                    raw_rule.value_locs.get("name", loc),
                )
                continue
            rule_names[rule.name] = loc
            rules.append(rule)
        tests.extend(_compile_tests(comp, doc))
    test_names: set[str] = set()
    for test in tests:
        if test.name in test_names:
            comp.error("E107", f"test name '{test.name}' is used twice", test.where)
        test_names.add(test.name)

    verify = _compile_verify(comp, head)
    raw_dedupe = head.get("dedupe")
    dedupe: dict[str, Any] = raw_dedupe if isinstance(raw_dedupe, LocatedDict) else {}
    dedupe_expr = comp.expr(dedupe.get("expression"), names)
    if not topic:
        return None  # reported above; everything else was still checked
    return RuleSet(
        name=str(name),
        api_version=head.get("api_version") or "v1",
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
    return Decode(raw.get("format") or "auto", tuple(str(p) for p in raw.get("unwrap") or ()))


def _compile_lookups(
    comp: _Compiler, raw: LocatedDict, names: Names, hosts: frozenset[str]
) -> list[LookupSpec]:
    out: list[LookupSpec] = []
    for name, spec in raw.items():
        if not isinstance(spec, LocatedDict) or not isinstance(spec.get("url"), str):
            continue
        url_loc = spec.value_locs["url"]
        url = _interpolate_at(comp, spec["url"], url_loc, f"lookup '{name}' url")
        host = template_host(url)
        if host is None:
            comp.error(
                "E307",
                f"lookup '{name}': the URL must be http(s) with a fixed host "
                "(no {placeholder} in the host part)",
                url_loc,
            )
        elif host not in hosts:
            comp.error(
                "E307",
                f"lookup '{name}': host '{host}' is not in the rule set's `hosts`",
                url_loc,
                hint=f"add '{host}' to hosts",
            )
        placeholders = set(PLACEHOLDER.findall(url))
        raw_args = spec.get("args")
        if not isinstance(raw_args, LocatedDict):
            raw_args = _empty()
        # arguments may read lookups declared before this one, not after
        earlier = dataclasses.replace(names, lookups=frozenset(s.name for s in out))
        args: list[tuple[str, Expression]] = []
        for arg, text in raw_args.items():
            expr = comp.expr(text, earlier)
            if expr is not None:
                args.append((arg, expr))
            if arg not in placeholders:
                comp.error(
                    "E106",
                    f"lookup '{name}': argument '{arg}' is not used in the URL",
                    raw_args.key_locs[arg],
                )
        for missing in sorted(placeholders - set(raw_args)):
            comp.error("E104", f"lookup '{name}': the URL's {{{missing}}} has no argument", url_loc)
        headers: list[tuple[str, str]] = []
        missing_env: list[str] = []
        for h, v in (spec.get("headers") or {}).items():
            value, missing = interpolate(str(v), comp.env)
            if value.strip() and value.strip() not in ("Bearer", "Basic"):
                # an empty credential (`${TOKEN:-}` unset) sends no header: the API's
                # 401 then says what is missing, where an empty header is a protocol error
                headers.append((h, value))
            for env_name, offset in missing:
                # credentials: validate warns, `hookmap serve` refuses until they are set
                missing_env.append(env_name)
                loc = spec["headers"].value_locs[h]
                offset += _quote_shift(comp, loc)
                comp.error(
                    "W303",
                    f"environment variable {env_name} is not set (lookup "
                    f"'{name}' header {h}): the server will not start without it",
                    Location(loc.file, loc.line, loc.col + offset),
                    severity="warning",
                )
        timeout = spec.get("timeout", 10)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            comp.error(
                "E103",
                f"lookup '{name}': timeout must be a positive number of seconds",
                spec.value_locs.get("timeout", spec.loc),
            )
            timeout = 10
        out.append(
            LookupSpec(
                name,
                url,
                tuple(args),
                tuple(headers),
                float(timeout),
                int(spec.get("retries", 2) or 0),
                float(spec.get("cache_ttl", 0) or 0),
                hosts,
                spec.loc,
                tuple(missing_env),
                spec.get("not_found") or "retry",
            )
        )
    return out


def _quote_shift(comp: _Compiler, loc: Location) -> int:
    """1 when the scalar at ``loc`` is quoted: its value starts after the quote."""
    source = comp.sources.get(loc.file)
    line = (source.line(loc.line) if source else None) or ""
    return 1 if line[loc.col - 1 : loc.col] in ("'", '"') else 0


def _empty() -> LocatedDict:
    out = LocatedDict()
    out.key_locs, out.value_locs = {}, {}
    return out


def _interpolate_at(comp: _Compiler, text: str, loc: Location, what: str) -> str:
    value, missing = interpolate(text, comp.env)
    for env_name, offset in missing:
        offset += _quote_shift(comp, loc)
        comp.error(
            "E303",
            f"environment variable {env_name} is not set ({what}; give a "
            f"default with ${{{env_name}:-value}})",
            Location(loc.file, loc.line, loc.col + offset),
        )
    return value


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


def _compile_verify(comp: _Compiler, head: LocatedDict) -> VerifySpec | None:
    raw = head.get("verify")
    if not isinstance(raw, LocatedDict):
        return None
    spec, problems = parse_verify(dict(raw))
    for message in problems:
        # point at the key the message names, else at the verify mapping
        key = next((k for k in raw.key_locs if f"verify.{k}" in message), None)
        where = raw.value_locs[key] if key else raw.loc
        comp.error("E106", message, where)
    return spec


_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> tuple[str, list[tuple[str, int]]]:
    """Replace ``${NAME}`` / ``${NAME:-default}``; ``$$`` is a literal ``$``.

    Returns the text and the (name, offset) of each variable that is unset with no default.
    """
    missing: list[tuple[str, int]] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                missing.append((name, match.start()))
                return ""
            return default
        return value

    return _ENV.sub(replace, text), missing


def _compile_vars(comp: _Compiler, raw: LocatedDict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, str):
            value = _interpolate_at(comp, value, raw.value_locs[name], f"var '{name}'")
        out[name] = value
    return out


def _compile_tables(comp: _Compiler, raw: LocatedDict) -> dict[str, Table]:
    out: dict[str, Table] = {}
    for name, spec in raw.items():
        if not isinstance(spec, LocatedDict) or not isinstance(spec.get("map"), dict):
            continue
        mapping = {table_key(k): v for k, v in spec["map"].items()}
        out[name] = Table(
            name, mapping, spec.get("default"), "default" in spec.key_locs, bool(spec.get("strict"))
        )
    return out


def _compile_rule(
    comp: _Compiler, raw: LocatedDict, loc: Location, names: Names, templates: LocatedDict
) -> Rule | None:
    name = raw.get("name")
    topics = raw.get("topics")
    if not name or not topics:
        return None
    events: list[EventSpec] = []
    for raw_event in raw.get("events") or ():
        if isinstance(raw_event, LocatedDict):
            event = _compile_event(comp, raw_event, names, templates)
            if event is not None:
                events.append(event)
    when = comp.expr(raw.get("when"), names)
    used: set[str] = set(when.lookups) if when else set()
    for event in events:
        exprs = [
            event.key,
            event.when,
            event.for_each,
            *(p.expr for p in event.params),
            *(e for _, e in event.contact),
        ]
        used.update(n for e in exprs if e is not None for n in e.lookups)
    return Rule(
        name=name,
        topics=tuple(str(t) for t in topics if t is not None),
        events=tuple(events),
        when=when,
        ignore=raw.get("ignore"),
        where=loc,
        lookups=frozenset(used),
    )


def _compile_event(
    comp: _Compiler, raw: LocatedDict, names: Names, templates: LocatedDict
) -> EventSpec | None:
    event_type = raw.get("type")
    params: dict[str, tuple[Any, Location, LocatedDict]] = {}
    contact_raw = raw.get("contact") if isinstance(raw.get("contact"), LocatedDict) else None
    key_text = raw.get("key")
    identify_by = list(raw.get("identify_by") or ())
    base_name = raw.get("extends")
    if base_name is not None:
        base = templates.get(base_name)
        if not isinstance(base, LocatedDict):
            comp.error(
                "E304",
                f"undefined template '{base_name}'",
                raw.value_locs["extends"],
                _hint(base_name, templates),
            )
        else:
            for pname, pvalue in (base.get("params") or {}).items():
                params[pname] = (pvalue, base["params"].key_locs[pname], base["params"])
            key_text = key_text if "key" in raw.key_locs else base.get("key")
            identify_by = identify_by or list(base.get("identify_by") or ())
            if "contact" not in raw.key_locs and isinstance(base.get("contact"), LocatedDict):
                contact_raw = base["contact"]
    own = raw.get("params")
    if isinstance(own, LocatedDict):
        for pname, pvalue in own.items():
            params[pname] = (pvalue, own.key_locs[pname], own)
    if not isinstance(event_type, str):
        return None

    compiled: list[ParamSpec] = []
    for pname, (pvalue, ploc, _owner) in params.items():
        spec = _compile_param(comp, pname, pvalue, ploc, names)
        if spec is not None:
            compiled.append(spec)
    key = comp.expr(key_text, names)
    type_loc = raw.value_locs.get("type", raw.loc)
    for finding in catalogue.static_check(
        event_type, list(params), key_text is not None, identify_by
    ):
        where = params[finding.param][1] if finding.param in params else type_loc
        comp.error(finding.code, finding.message, where, finding.hint, finding.severity)
    contact: list[tuple[str, Expression]] = []
    for field, text in (contact_raw or {}).items():
        expr = comp.expr(text, names)
        if expr is not None:
            contact.append((field, expr))
    if contact_raw is not None and not {"email", "phone", "externalCustomerId"} & set(contact_raw):
        comp.error(
            "E104",
            "contact needs at least one of email, phone, externalCustomerId",
            contact_raw.loc,
        )
    return EventSpec(
        type=event_type,
        params=tuple(compiled),
        key=key,
        when=comp.expr(raw.get("when"), names),
        for_each=comp.expr(raw.get("for_each"), names),
        identify_by=tuple(identify_by),
        where=raw.loc,
        contact=tuple(contact),
    )


def _compile_param(
    comp: _Compiler, name: str, value: Any, loc: Location, names: Names
) -> ParamSpec | None:
    if isinstance(value, LocatedDict):
        expr = comp.expr(value.get("expr"), names)
        if "expr" in value.key_locs and expr is None:
            return None
        return ParamSpec(
            name=name,
            expr=expr,
            const=value.get("const"),
            required=bool(value.get("required")),
            default=value.get("default"),
            has_default="default" in value.key_locs,
            on_null=value.get("on_null") or "omit",
            on_empty=value.get("on_empty") or "keep",
            where=loc,
        )
    if isinstance(value, str):
        expr = comp.expr(value, names)
        return None if expr is None else ParamSpec(name=name, expr=expr, where=loc)
    if value is INVALID:
        return None  # its type error is reported already
    if value is None:
        comp.error("E103", f"param '{name}' has no value (give an expression or `const`)", loc)
        return None
    return ParamSpec(name=name, expr=None, const=value, where=loc)


def _hint(name: str, pool: Mapping[str, Any]) -> str | None:
    from engine.errors import did_you_mean

    return did_you_mean(name, pool)


def _compile_tests(comp: _Compiler, doc: LocatedDict) -> list[RuleTest]:
    out: list[RuleTest] = []
    raw_tests = doc.get("tests")
    if not isinstance(raw_tests, LocatedList):
        return out
    base = Path(doc.source.path).parent
    for index, raw in enumerate(raw_tests):
        if not isinstance(raw, LocatedDict) or not raw.get("name"):
            continue
        loc = raw_tests.item_locs[index]
        headers: dict[str, str] = {}
        body: Any = raw.get("body")
        raw_bytes: bytes | None = None
        body_file = raw.get("webhook")
        if body_file is not None:
            path = (base / body_file) if not Path(body_file).is_absolute() else Path(body_file)
            try:
                raw_bytes = path.read_bytes()
                side = sidecar_headers(path)
                if side.is_file():
                    headers.update(
                        parse_header_lines(side.read_text(encoding="utf-8").splitlines(), str(side))
                    )
            except (OSError, UsageError) as exc:
                comp.error(
                    "E305",
                    f"test '{raw['name']}': cannot read {body_file}: {exc}",
                    raw.value_locs["webhook"],
                )
                continue
        headers.update({k.lower(): str(v) for k, v in (raw.get("headers") or {}).items()})
        mocks: dict[str, Any] = {}
        raw_mocks = raw.get("mocks")
        if not isinstance(raw_mocks, LocatedDict):
            raw_mocks = _empty()
        for lookup, answer in raw_mocks.items():
            if not isinstance(answer, str):
                mocks[lookup] = answer
                continue
            path = base / answer
            try:
                mocks[lookup] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                comp.error(
                    "E305",
                    f"test '{raw['name']}': mock '{lookup}': cannot read {answer}: {exc}",
                    raw_mocks.value_locs[lookup],
                )
        out.append(
            RuleTest(
                name=raw["name"],
                body=body,
                body_file=str(body_file) if body_file is not None else None,
                headers=headers,
                topic=raw.get("topic"),
                expect=dict(raw.get("expect") or {}),
                where=loc,
                raw=raw_bytes,
                mocks=mocks,
            )
        )
    return out
