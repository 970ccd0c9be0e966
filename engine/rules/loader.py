"""Load stage: YAML text → values checked against ``engine.rules.schema``, every one located.

PyYAML's composed nodes carry ``start_mark`` (0-based line and column); the walker
here keeps them so every later stage can point at ``file:line:col``. It collects every
problem (unknown keys, wrong types, duplicates, YAML errors) instead of stopping.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from engine.errors import Diagnostic, Location, Severity, did_you_mean
from engine.rules import schema as s


@dataclasses.dataclass
class SourceFile:
    """One rule file's text, for locations and carets."""

    path: str
    text: str

    def __post_init__(self) -> None:
        self.lines = self.text.splitlines()

    def line(self, number: int) -> str | None:
        """The 1-based source line, or None past the end."""
        if 1 <= number <= len(self.lines):
            return self.lines[number - 1]
        return None

    def location(self, mark: yaml.Mark) -> Location:
        return Location(self.path, mark.line + 1, mark.column + 1)


class LocatedDict(dict[str, Any]):
    """A mapping read from YAML, with where it and each key and value stand."""

    loc: Location
    key_locs: dict[str, Location]
    value_locs: dict[str, Location]
    source: SourceFile


class LocatedList(list[Any]):
    """A list read from YAML, with where it and each item stand."""

    loc: Location
    item_locs: list[Location]


class ExprText(str):
    """An expression string that remembers its YAML node, to locate errors inside it."""

    node: yaml.ScalarNode
    source: SourceFile

    def position(self, offset: int) -> Location:
        """Where character ``offset`` of the expression stands in the file."""
        return scalar_position(self.source, self.node, offset)


def scalar_position(source: SourceFile, node: yaml.ScalarNode, offset: int) -> Location:
    """Map an offset inside a scalar's value to a file location.

    Exact for plain and quoted scalars on one line, and for block scalars (``|`` and
    ``>``) whose lines share one indentation; otherwise the scalar's start.
    """
    start = node.start_mark
    if node.style in ("'", '"') and node.start_mark.line == node.end_mark.line:
        column = _quoted_column(source.line(start.line + 1) or "", start.column, node.style, offset)
        return Location(source.path, start.line + 1, column + 1)
    if node.style in (None, "") and node.start_mark.line == node.end_mark.line:
        return Location(source.path, start.line + 1, start.column + 1 + offset)
    if node.style in ("|", ">"):
        remaining = offset
        for number in range(start.line + 2, node.end_mark.line + 2):
            text = source.line(number)
            if text is None:
                break
            content = text.lstrip(" ")
            if not content and node.style == ">":
                continue  # folding turns the break and the blank line into one "\n"
            indent = len(text) - len(content)
            if remaining <= len(content):
                return Location(source.path, number, indent + remaining + 1)
            remaining -= len(content) + 1
    if node.start_mark.line != node.end_mark.line and node.style in (None, ""):
        # a plain scalar folded over several lines: walk the lines the same way
        remaining = offset
        first = True
        for number in range(start.line + 1, node.end_mark.line + 2):
            text = source.line(number)
            if text is None:
                break
            begin = start.column if first else len(text) - len(text.lstrip(" "))
            content = text[begin:].rstrip()
            if remaining <= len(content):
                return Location(source.path, number, begin + remaining + 1)
            remaining -= len(content) + 1
            first = False
    return Location(source.path, start.line + 1, start.column + 1)


def _quoted_column(line: str, quote_column: int, style: str, offset: int) -> int:
    """0-based column of value character ``offset`` in a one-line quoted scalar.

    Walks the source after the opening quote, so escapes (``\\"`` in double quotes,
    ``''`` in single quotes) that are one character of the value but two of the text
    do not shift the columns after them.
    """
    column = quote_column + 1
    produced = 0
    while column < len(line) and produced < offset:
        char = line[column]
        if style == '"' and char == "\\":
            column += _escape_width(line, column)
        elif style == "'" and char == "'" and line[column + 1 : column + 2] == "'":
            column += 2
        else:
            column += 1
        produced += 1
    return column


def _escape_width(line: str, column: int) -> int:
    """Source width of the double-quoted escape starting at ``column``."""
    kind = line[column + 1 : column + 2]
    return {"x": 4, "u": 6, "U": 10}.get(kind, 2)


#: what a value that failed its type reads as (already reported; compile skips it)
INVALID: Any = object()


class Reader:
    """Walks composed YAML nodes against schema types, collecting diagnostics."""

    def __init__(self, source: SourceFile, diagnostics: list[Diagnostic]) -> None:
        self.source = source
        self.diagnostics = diagnostics
        self._scalars = yaml.SafeLoader("")

    def report(
        self,
        code: str,
        message: str,
        loc: Location | None,
        severity: Severity = "error",
        hint: str | None = None,
    ) -> None:
        line = self.source.line(loc.line) if loc else None
        self.diagnostics.append(Diagnostic(code, message, loc, severity, line, hint))

    def loc(self, node: yaml.Node) -> Location:
        return self.source.location(node.start_mark)

    def scalar(self, node: yaml.ScalarNode) -> Any:
        return self._scalars.construct_object(node, deep=True)

    def read(self, node: yaml.Node, typ: s.Type, where: str) -> Any:
        """The value of ``node`` read as ``typ``; ``where`` names it in messages."""
        if isinstance(typ, s.OneOf):
            return self._read_one_of(node, typ, where)
        if isinstance(typ, s.Obj):
            return self._read_obj(node, typ, where)
        if isinstance(typ, s.MapOf):
            return self._read_map(node, typ, where)
        if isinstance(typ, s.ListOf):
            return self._read_list(node, typ, where)
        if isinstance(typ, s.AnyValue):
            return self._read_any(node)
        if not isinstance(node, yaml.ScalarNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
            self.report(
                "E103", f"{where} must be {_article(typ.label)}, not {kind}", self.loc(node)
            )
            return None
        value = self.scalar(node)
        if isinstance(typ, s.Scalar):
            return value
        if isinstance(typ, s.Enum):
            if not isinstance(value, str) or value not in typ.values:
                allowed = ", ".join(typ.values)
                hint = did_you_mean(str(value), typ.values)
                self.report(
                    "E106",
                    f"{where} must be one of {allowed}, not {value!r}",
                    self.loc(node),
                    hint=hint,
                )
                return None
            return value
        if isinstance(typ, s.Bool):
            return self._typed(node, value, bool, typ, where)
        if isinstance(typ, s.Int):
            if isinstance(value, bool):
                return self._typed(node, value, int, typ, where, force_error=True)
            return self._typed(node, value, int, typ, where)
        if isinstance(typ, s.Expr):
            if not isinstance(value, str):
                # numbers and booleans are valid JMESPath only as literals: say so
                self.report(
                    "E103",
                    f"{where} must be an expression string, not "
                    f"{_kind(value)} (quote it, or use `const`)",
                    self.loc(node),
                )
                return None
            text = ExprText(value)
            text.node = node
            text.source = self.source
            return text
        if isinstance(typ, s.Str):
            if not isinstance(value, str):
                self.report("E103", f"{where} must be a string, not {_kind(value)}", self.loc(node))
                return None
            if typ.pattern and not re.match(typ.pattern, value):
                self.report("E106", f"{where} {value!r} must match {typ.pattern}", self.loc(node))
                return None
            return value
        return value

    def _typed(
        self,
        node: yaml.ScalarNode,
        value: Any,
        py: type,
        typ: s.Type,
        where: str,
        force_error: bool = False,
    ) -> Any:
        if force_error or not isinstance(value, py):
            self.report(
                "E103", f"{where} must be {_article(typ.label)}, not {_kind(value)}", self.loc(node)
            )
            return None
        return value

    def _read_any(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return [self._read_any(n) for n in node.value]
        out: dict[Any, Any] = {}
        for key_node, value_node in _pairs(node):
            out[
                self.scalar(key_node)
                if isinstance(key_node, yaml.ScalarNode)
                else str(key_node.value)
            ] = self._read_any(value_node)
        return out

    def _read_one_of(self, node: yaml.Node, typ: s.OneOf, where: str) -> Any:
        for option in typ.options:
            if isinstance(node, yaml.MappingNode) and isinstance(option, (s.Obj, s.MapOf)):
                return self.read(node, option, where)
            if isinstance(node, yaml.SequenceNode) and isinstance(option, s.ListOf):
                return self.read(node, option, where)
            if isinstance(node, yaml.ScalarNode):
                value = self.scalar(node)
                if isinstance(option, s.Expr) and isinstance(value, str):
                    return self.read(node, option, where)
                if isinstance(option, s.Scalar) and not isinstance(value, str):
                    return value
        labels = " or ".join(o.label for o in typ.options)
        self.report("E103", f"{where} must be {labels}", self.loc(node))
        return INVALID

    def _mapping(self, node: yaml.Node, where: str, label: str) -> LocatedDict | None:
        if not isinstance(node, yaml.MappingNode):
            if isinstance(node, yaml.ScalarNode) and self.scalar(node) is None:
                out = LocatedDict()
                self._stamp(out, node)
                return out
            self.report("E103", f"{where} must be {_article(label)}", self.loc(node))
            return None
        out = LocatedDict()
        self._stamp(out, node)
        return out

    def _stamp(self, out: LocatedDict, node: yaml.Node) -> None:
        out.loc = self.loc(node)
        out.key_locs = {}
        out.value_locs = {}
        out.source = self.source

    def _keys(self, node: yaml.Node, where: str) -> Iterator[tuple[str, yaml.Node, Location]]:
        seen: dict[str, Location] = {}
        for key_node, value_node in _pairs(node):
            key_loc = self.loc(key_node)
            if not isinstance(key_node, yaml.ScalarNode):
                self.report("E103", f"a key in {where or 'the rule set'} must be a scalar", key_loc)
                continue
            # the key as written: YAML 1.1 would turn `on:` / `no:` into booleans and `3:`
            # into a number, and a param or table entry named so must keep its name
            key = key_node.value
            if key in seen:
                self.report(
                    "E105",
                    f"duplicate key '{key}' in {where or 'the rule set'} (first at line "
                    f"{seen[key].line})",
                    key_loc,
                )
                continue
            seen[key] = key_loc
            yield key, value_node, key_loc

    def _read_obj(self, node: yaml.Node, typ: s.Obj, where: str) -> LocatedDict | None:
        out = self._mapping(node, where, typ.title or "mapping")
        if out is None:
            return None
        names = [f.name for f in typ.fields]
        for key, value_node, key_loc in self._keys(node, where):
            field = typ.field(key)
            if field is None:
                self.report(
                    "E102",
                    f"unknown key '{key}' in {where or 'the rule set'}",
                    key_loc,
                    hint=did_you_mean(key, names) or f"expected one of {', '.join(names)}",
                )
                continue
            out.key_locs[key] = key_loc
            out.value_locs[key] = self.loc(value_node)
            out[key] = self.read(value_node, field.type, _join(where, key))
        for f in typ.fields:
            if f.required and f.name not in out.key_locs:
                self.report("E104", f"{where or 'the rule set'} needs '{f.name}'", out.loc)
        for group in typ.exclusive:
            given = [k for k in group if k in out.key_locs]
            if len(given) > 1:
                self.report(
                    "E106",
                    f"{where or 'the rule set'}: give only one of {', '.join(group)}",
                    out.key_locs[given[1]],
                )
        for group in typ.one_of:
            if not any(k in out.key_locs for k in group):
                self.report(
                    "E104", f"{where or 'the rule set'} needs one of {', '.join(group)}", out.loc
                )
        return out

    def _read_map(self, node: yaml.Node, typ: s.MapOf, where: str) -> LocatedDict | None:
        out = self._mapping(node, where, "mapping")
        if out is None:
            return None
        for key, value_node, key_loc in self._keys(node, where):
            out.key_locs[key] = key_loc
            out.value_locs[key] = self.loc(value_node)
            out[key] = self.read(value_node, typ.value, _join(where, key))
        return out

    def _read_list(self, node: yaml.Node, typ: s.ListOf, where: str) -> LocatedList | None:
        out = LocatedList()
        out.loc = self.loc(node)
        out.item_locs = []
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                out.item_locs.append(self.loc(item))
                out.append(self.read(item, typ.item, f"{where}[{index}]"))
            return out
        if typ.single_ok and not isinstance(node, yaml.MappingNode):
            out.item_locs.append(self.loc(node))
            out.append(self.read(node, typ.item, where))
            return out
        if isinstance(node, yaml.ScalarNode) and self.scalar(node) is None:
            return out
        self.report("E103", f"{where} must be a list", self.loc(node))
        return None


def _pairs(node: yaml.Node) -> list[tuple[yaml.Node, yaml.Node]]:
    """Key/value node pairs of a mapping node, with YAML merge keys (``<<``) applied."""
    pairs: list[tuple[yaml.Node, yaml.Node]] = []
    merged: list[tuple[yaml.Node, yaml.Node]] = []
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            sources = (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
            for source in sources:
                if isinstance(source, yaml.MappingNode):
                    merged.extend(_pairs(source))
            continue
        pairs.append((key_node, value_node))
    own = {k.value for k, _ in pairs if isinstance(k, yaml.ScalarNode)}
    return [p for p in merged if p[0].value not in own] + pairs


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


def _article(label: str) -> str:
    return f"an {label}" if label[:1] in "aeiou" else f"a {label}"


#: libyaml's composer when PyYAML was built with it: ten times faster, and the same nodes
#: and marks as the pure-Python one (a plain scalar's style is "" there, not None)
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose(text: str) -> yaml.Node | None:
    """The YAML node tree of ``text``. A text libyaml refuses is composed again by the
    pure-Python reader, whose error messages and marks the diagnostics are built on."""
    try:
        node: yaml.Node | None = yaml.compose(text, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    return node


def read_file(path: Path, display: str, diagnostics: list[Diagnostic]) -> LocatedDict | None:
    """Read one rule file against the rule-set schema; problems go to ``diagnostics``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        diagnostics.append(Diagnostic("E100", f"cannot read {display}: {exc}", None))
        return None
    source = SourceFile(display, text)
    reader = Reader(source, diagnostics)
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if mark is not None and source.line(mark.line + 1) is None and exc.context_mark:
            mark = exc.context_mark  # e.g. an unclosed quote: point where it opened
        loc = source.location(mark) if mark else Location(display, 1, 1)
        reader.report("E101", f"YAML syntax error: {exc.problem or exc.context}", loc)
        return None
    if node is None:
        out = LocatedDict()
        out.loc = Location(display, 1, 1)
        out.key_locs, out.value_locs, out.source = {}, {}, source
        return out
    result = reader.read(node, s.RULE_SET, "")
    return result if isinstance(result, LocatedDict) else None
