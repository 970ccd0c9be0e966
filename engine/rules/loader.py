"""Load stage: YAML text → values checked against a declared schema, every one located.

Rule files are read against ``engine.rules.schema.RULE_SET``, shops files against
``engine.rules.schema_shops.SHOPS_FILE``: the caller names the root type.

The walker keeps each value's place (``engine.rules.source``) so every later stage can
point at ``file:line:col``. It applies what the schema declares (types, required keys,
exclusive groups, defaults) and collects every problem (unknown keys, wrong types,
duplicates, YAML errors) instead of stopping.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from engine.errors import Location, Severity, did_you_mean
from engine.rules import schema_types as t
from engine.rules.diagnostics import Diagnostics
from engine.rules.nodes import MAX_DEPTH, compose, recursive, too_deep
from engine.rules.source import INVALID, ExprText, LocatedDict, LocatedList, SourceFile


class Reader:
    """Walks composed YAML nodes against schema types, collecting diagnostics."""

    def __init__(self, source: SourceFile, diagnostics: Diagnostics) -> None:
        self.source = source
        self.diagnostics = diagnostics
        diagnostics.add_source(source)
        self._scalars = yaml.SafeLoader("")

    def report(
        self,
        code: str,
        message: str,
        loc: Location | None,
        severity: Severity = "error",
        hint: str | None = None,
    ) -> None:
        self.diagnostics.report(code, message, loc, severity, hint)

    def loc(self, node: yaml.Node) -> Location:
        return self.source.location(node.start_mark)

    def scalar(self, node: yaml.ScalarNode) -> Any:
        """The scalar's value as YAML reads it; one E109 and ``Unreadable`` when it cannot.

        PyYAML builds a value from its tag only here, after composing: an unknown tag
        (``!foo``), an explicit one the text does not fit (``!!int abc``) or an
        impossible date (``2026-13-45``, which YAML 1.1 types as a timestamp) raise
        whatever the constructor met, not only YAML errors.
        """
        try:
            return self._scalars.construct_object(node, deep=True)
        except Exception as exc:  # PyYAML's constructors raise what they meet (AttributeError
            # for `!!timestamp abc`): any of it means this text cannot be that value. And
            # the constructor keeps the node it was building as "in progress": forget
            # it, or reading the same node again reports a recursion instead
            self._scalars = yaml.SafeLoader("")
            self.report("E109", _unreadable(node, exc), self.loc(node))
            return Unreadable(node.value)

    def read(self, node: yaml.Node, typ: t.Type, where: str) -> Any:
        """The value of ``node`` read as ``typ``; ``where`` names it in messages."""
        if isinstance(typ, t.OneOf):
            return self._read_one_of(node, typ, where)
        if isinstance(typ, t.Obj):
            return self._read_obj(node, typ, where)
        if isinstance(typ, t.MapOf):
            return self._read_map(node, typ, where)
        if isinstance(typ, t.ListOf):
            return self._read_list(node, typ, where)
        if isinstance(typ, t.AnyValue):
            return self._read_any(node)
        if not isinstance(node, yaml.ScalarNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
            self.report(
                "E103", f"{where} must be {_article(typ.label)}, not {kind}", self.loc(node)
            )
            return None
        value = self.scalar(node)
        if isinstance(value, Unreadable) and not isinstance(typ, (t.Expr, t.Str, t.Scalar)):
            return None  # reported; text as written serves where text is wanted
        if isinstance(typ, t.Scalar):
            return value
        if isinstance(typ, t.Enum):
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
        if isinstance(typ, t.Bool):
            return self._typed(node, value, bool, typ, where)
        if isinstance(typ, t.Int):
            if isinstance(value, bool):
                return self._typed(node, value, int, typ, where, force_error=True)
            return self._typed(node, value, int, typ, where)
        if isinstance(typ, t.Expr):
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
        if isinstance(typ, t.Str):
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
        typ: t.Type,
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

    def _read_one_of(self, node: yaml.Node, typ: t.OneOf, where: str) -> Any:
        for option in typ.options:
            if isinstance(node, yaml.MappingNode) and isinstance(option, (t.Obj, t.MapOf)):
                return self.read(node, option, where)
            if isinstance(node, yaml.SequenceNode) and isinstance(option, t.ListOf):
                return self.read(node, option, where)
            if isinstance(node, yaml.ScalarNode):
                value = self.scalar(node)
                if isinstance(option, t.Expr) and isinstance(value, str):
                    return self.read(node, option, where)
                if isinstance(option, t.Scalar) and not isinstance(value, str):
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

    def _read_obj(self, node: yaml.Node, typ: t.Obj, where: str) -> LocatedDict | None:
        out = self._mapping(node, where, typ.title or "mapping")
        if out is None:
            return None
        if typ.checker:  # judged as a whole by its checker: read as written
            for key, value_node, key_loc in self._keys(node, where):
                out.key_locs[key] = key_loc
                out.value_locs[key] = self.loc(value_node)
                out[key] = self._read_any(value_node)
            return out
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
        for f in typ.fields:  # what the schema says an absent key means
            if f.default is not None and f.name not in out.key_locs:
                out[f.name] = f.default
        return out

    def _read_map(self, node: yaml.Node, typ: t.MapOf, where: str) -> LocatedDict | None:
        out = self._mapping(node, where, "mapping")
        if out is None:
            return None
        for key, value_node, key_loc in self._keys(node, where):
            out.key_locs[key] = key_loc
            out.value_locs[key] = self.loc(value_node)
            out[key] = self.read(value_node, typ.value, _join(where, key))
        return out

    def _read_list(self, node: yaml.Node, typ: t.ListOf, where: str) -> LocatedList | None:
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
    if not isinstance(node, yaml.MappingNode):
        return pairs  # a null read as an empty mapping: its value is text, not pairs
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
    # a merged key that is a list or mapping is kept for ``_keys`` to report
    kept = [p for p in merged if not isinstance(p[0], yaml.ScalarNode) or p[0].value not in own]
    return kept + pairs


class Unreadable(str):
    """A scalar YAML could not build a value from, as written (already reported)."""


def _unreadable(node: yaml.ScalarNode, exc: Exception) -> str:
    """Why a scalar cannot be read, in the user's terms."""
    shown = node.value if len(node.value) <= 40 else node.value[:37] + "..."
    if node.tag.startswith("tag:yaml.org,2002:"):
        kind = node.tag.rsplit(":", 1)[1]
        if kind == "timestamp":  # ValueError says what is impossible; else it is no date
            why = f" ({exc})" if isinstance(exc, ValueError) else ""
            return f"{shown!r} reads as a date but is not one{why}: quote it to mean the text"
        problem = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else exc
        return f"{shown!r} cannot be read as !!{kind} ({problem})"
    return f"unknown YAML tag {node.tag!r} on {shown!r}: remove it (rule files use plain YAML)"


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


def read_file(
    path: Path,
    display: str,
    diagnostics: Diagnostics,
    root: t.Obj,
    text: str | None = None,
) -> LocatedDict | None:
    """Read one file against ``root`` (a declared mapping); problems go to ``diagnostics``.

    ``text`` is the file's content when the caller has it (edited, not saved); else the
    file is read.
    """
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            diagnostics.report("E100", f"cannot read {display}: {exc}", None)
            return None
    source = SourceFile(display, text)
    reader = Reader(source, diagnostics)
    try:
        node = compose(text)
    except yaml.reader.ReaderError as exc:
        # a character YAML does not allow (NUL, most control characters): located by
        # its offset, since the reader's error carries no mark
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        reader.report(
            "E101",
            f"YAML syntax error: character U+{exc.character:04X} is not allowed in YAML",
            Location(display, line, col),
        )
        return None
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
    deep = too_deep(node)
    if deep is not None:
        reader.report("E101", f"YAML nested deeper than {MAX_DEPTH} levels", reader.loc(deep))
        return None
    cycle = recursive(node)
    if cycle is not None:
        message = "YAML alias inside the node it refers to: a value cannot contain itself"
        reader.report("E101", message, reader.loc(cycle))
        return None
    result = reader.read(node, root, "")
    return result if isinstance(result, LocatedDict) else None
