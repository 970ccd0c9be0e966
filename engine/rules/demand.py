"""What a rule set reads of a body, and a reader that builds only that.

Parsing a 16 KB Shopify order into Python objects costs more than evaluating every
rule on it, and most of the order (tax lines, discount allocations, admin ids, the
client's browser details) is never read. Every expression a rule set runs is known
when it loads, so the parts of a body they can observe are known too: this module
walks the expressions' ASTs (jmespath's own parser) into a *demand* tree, and turns
the tree into a typed msgspec decoder that builds those parts as plain dicts, lists
and scalars and skips the rest without building it.

The analysis is conservative: a value whose contents could be observed as a whole
(a result, a function argument, a comparison, anything tested for truth, a multiselect
member) is read whole, exactly as ``json.loads`` reads it; only values that are merely
looked *into* (``customer.email``, ``line_items[*].price``, ``shipping_lines[0]``) are
read in part, and a dict read in part holds only the keys the expressions name. An
expression the analysis does not know (it never guesses) makes the whole body read.

The reader agrees with ``json.loads`` or refuses: msgspec refuses what it reads
differently (NaN, lone surrogates, 1e400, a BOM, nesting past the recursion limit),
and any refusal, or a value that does not fit the demanded shape, falls back to
reading the body whole (``engine.webhook.parse_json``), errors and all.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypedDict, Union

import msgspec

from engine.errors import NotReadInPart
from engine.rules.model import ChangeSpec, Expression, RuleSet

#: functions whose result is the document itself (for a plain JSON body the envelope is
#: the body): reading into their result reads into the root
_ROOT_FUNCTIONS = frozenset({"root", "envelope"})


class Need:
    """The demand on one value of the body: all of it, or some keys and its elements."""

    __slots__ = ("fields", "items", "whole")

    def __init__(self) -> None:
        self.whole = False
        self.fields: dict[str, Need] = {}
        self.items: Need | None = None

    def field(self, name: str) -> Need:
        found = self.fields.get(name)
        if found is None:
            found = self.fields[name] = Need()
        return found

    def element(self) -> Need:
        if self.items is None:
            self.items = Need()
        return self.items

    def describe(self) -> Any:
        """The demand as plain data (``True`` = whole), for tests and ``--explain``."""
        if self.whole:
            return True
        out: dict[str, Any] = {k: v.describe() for k, v in sorted(self.fields.items())}
        if self.items is not None:
            out["[]"] = self.items.describe()
        return out


@dataclasses.dataclass
class _ListOf:
    """A list the expression builds (a projection, slice or flatten) of these values."""

    sources: list[Need | _ListOf]


#: what an expression's value may be made of: parts of the body, or lists built of them;
#: empty for a value computed from the body (already demanded whole) or from nothing
_Value = list[Need | _ListOf]


def _whole(value: _Value) -> None:
    for source in value:
        if isinstance(source, Need):
            source.whole = True
        else:
            _whole(source.sources)


def _field(value: _Value, name: str) -> _Value:
    return [s.field(name) for s in value if isinstance(s, Need)]


def _elements(value: _Value) -> _Value:
    out: _Value = []
    for source in value:
        if isinstance(source, Need):
            out.append(source.element())
        else:
            out.extend(source.sources)
    return out


class _Walker:
    def __init__(self, root: Need) -> None:
        self.root = root

    def walk(self, node: Mapping[str, Any], cur: _Value) -> _Value:
        kind = node["type"]
        children = node.get("children", ())
        if kind in ("identity", "current"):
            return cur
        if kind == "literal":
            return []
        if kind == "field":
            return _field(cur, node["value"])
        if kind in ("subexpression", "index_expression", "pipe"):
            for child in children:
                cur = self.walk(child, cur)
            return cur
        if kind == "index":
            return _elements(cur)
        if kind == "slice":
            return [_ListOf(_elements(cur))]
        if kind == "key_val_pair":
            return self.walk(children[0], cur)
        if kind == "comparator" or kind == "not_expression":
            for child in children:
                _whole(self.walk(child, cur))
            return []
        if kind in ("or_expression", "and_expression"):
            left = self.walk(children[0], cur)
            _whole(left)  # tested for truth: an empty dict and a pruned one differ
            return left + self.walk(children[1], cur)
        if kind == "projection":
            items = _elements(self.walk(children[0], cur))
            return [_ListOf(self.walk(children[1], items))]
        if kind == "filter_projection":
            items = _elements(self.walk(children[0], cur))
            _whole(self.walk(children[2], items))
            return [_ListOf(self.walk(children[1], items))]
        if kind == "flatten":
            items = _elements(self.walk(children[0], cur))
            return [_ListOf(items + _elements(items))]
        if kind == "value_projection":
            _whole(self.walk(children[0], cur))
            self.walk(children[1], [])  # its values are whole; root() may still be read
            return []
        if kind in ("multi_select_list", "multi_select_dict"):
            for child in children:
                _whole(self.walk(child, cur))
            return []
        if kind == "expref":  # runs on values already read whole; root() may be read
            self.walk(children[0], [])
            return []
        if kind == "function_expression":
            for child in children:
                if child["type"] == "expref":
                    self.walk(child, [])
                else:
                    _whole(self.walk(child, cur))
            return [self.root] if node["value"] in _ROOT_FUNCTIONS else []
        raise NotReadInPart(kind)


@dataclasses.dataclass(frozen=True)
class Read:
    """One expression as a rule set runs it: on the body, or on each element ``for_each``
    gives (then ``each`` is that expression)."""

    expr: Expression
    each: Expression | None = None


def demand(reads: Iterable[Read]) -> Need:
    """The demand of running every expression in ``reads`` on one body; raises
    ``NotReadInPart`` for an expression the analysis does not know."""
    root = Need()
    walker = _Walker(root)
    for read in reads:
        cur: _Value = [root]
        if read.each is not None:
            cur = _elements(walker.walk(read.each.parsed.parsed, cur))
        _whole(walker.walk(read.expr.parsed.parsed, cur))
    return root


# -- the decoder -------------------------------------------------------------------------

_names = itertools.count()


def _shape(need: Need) -> Any:
    """The msgspec type that reads what ``need`` demands of a value of any JSON type."""
    if need.whole:
        return Any
    if not all(name.isascii() for name in need.fields):
        # msgspec 0.19-0.22 matches no non-ASCII key of a TypedDict (it drops them): such
        # a rule set is read whole rather than read wrong
        raise NotReadInPart("a non-ASCII key")
    fields = {name: _shape(sub) for name, sub in need.fields.items()}
    # the functional form takes any key, however un-Pythonic (a dunder, a space, "")
    keys: Any = TypedDict(f"Read{next(_names)}", fields, total=False)  # type: ignore[misc]
    # an array whose elements nothing reads: each is skipped, not built
    items: Any = msgspec.Raw if need.items is None else _shape(need.items)
    return Union[keys, list[items], str, int, float, bool, None]  # noqa: UP007


Reader = Callable[[bytes], Any]


def reader(need: Need) -> Reader | None:
    """A function reading the demanded parts of a body (raising msgspec's errors for one
    it cannot read so), or None when the whole body is demanded anyway."""
    if need.whole:
        return None
    try:
        decoder = msgspec.json.Decoder(_shape(need))
    except (NotReadInPart, TypeError):  # TypeError: a shape this msgspec does not take
        return None
    return decoder.decode


#: what a reader raises for a body it does not read as json.loads would: read it whole
READ_ERRORS = (msgspec.MsgspecError, ValueError, RecursionError)


def ruleset_reads(ruleset: RuleSet) -> Iterator[Read]:
    """Every expression ``ruleset`` may run on a body, as it runs it."""
    for expr in (ruleset.topic_expr, ruleset.dedupe_expr):
        if expr is not None:
            yield Read(expr)
    for lookup in ruleset.lookups:
        for _arg, expr in lookup.args:
            yield Read(expr)
    for rule in ruleset.rules:
        if rule.when is not None:
            yield Read(rule.when)
        for spec in rule.events:
            for expr in (spec.when, spec.for_each):
                if expr is not None:
                    yield Read(expr)
            each = spec.for_each
            per_event = [spec.key, *(p.expr for p in spec.params)]
            per_event += [expr for _field, expr in spec.contact]
            per_event += change_expressions(spec.changes)
            for expr in per_event:
                if expr is not None:
                    yield Read(expr, each)


def change_expressions(changes: ChangeSpec | None) -> list[Expression]:
    """The expressions a ``changes:`` declaration runs (its values and its key)."""
    if changes is None:
        return []
    return [*changes.values, *([changes.key] if changes.key is not None else [])]


def ruleset_reader(ruleset: RuleSet) -> Reader | None:
    """The reader for ``ruleset``'s plain JSON bodies; None to read them whole."""
    try:
        return reader(demand(ruleset_reads(ruleset)))
    except NotReadInPart:
        return None
