"""Compiled function calls: the fast path past ``call_function``, inlined and fused calls.

Part of the generator (``engine.rules.codegen``): ``CallEmitter`` emits the code for a
function call. Where the functions are ``EngineFunctions`` itself, a call whose
arguments pass the signature's type tests (emitted as plain ``type()`` tests) calls the
function directly, a few calls are written out inline, ``coalesce()`` becomes a chain of
tests and ``compact(list[].{...})`` builds its objects compacted; anything else goes
through jmespath's ``call_function``, which checks and words errors exactly.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from jmespath import functions as jp_functions
from jmespath import visitor as jp_visitor

from engine.rules.codegen_runtime import _Expression, to_number, to_string
from engine.rules.functions import EngineFunctions
from engine.rules.functions.registry import signature_arity

# Python's compiler allows 20 nested loop/try blocks and 100 indentation levels; a subtree
# deeper than these limits goes into a function of its own.
MAX_BLOCKS = 8
MAX_INDENT = 24

# Python types whose name jmespath's type check accepts for each JMESPath type; a value
# of any other type takes the full check (``call_function``), which decides exactly.
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "boolean": (bool,),
    "array": (list,),
    "object": (dict, collections.OrderedDict),
    "null": (type(None),),
    "string": (str,),
    "number": (float, int),
    "expref": (_Expression, jp_visitor._Expression),
}

# The fast call path below re-implements EngineFunctions._validate_arguments (arity from
# ``signature_arity``, then jmespath's ``_type_check_single`` per argument, the last spec
# serving variadic extras). It is used only for that exact class and only when the
# methods it mirrors are the ones it was written against.
_FAST_CALLS = (
    EngineFunctions.call_function is jp_functions.Functions.call_function
    and EngineFunctions._type_check_single is vars(jp_functions.Functions)["_type_check_single"]
)

# Faster equivalents of built-ins whose implementation dominates a typical mapping, used
# only while EngineFunctions still has jmespath's own implementation of that name.
_INTRINSICS: dict[str, Callable[..., Any]] = {
    name: fast
    for name, fast in {"to_string": to_string, "to_number": to_number}.items()
    if EngineFunctions.FUNCTION_TABLE[name]["function"]
    is vars(jp_functions.Functions)[f"_func_{name}"]
}

# Calls written out inline for the values that dominate a mapping (ids and prices,
# per line item), the function called for any other: (the function this form is
# exact for, the form with {a} the argument and {f} the function). Each is tested
# equal to its function (tests/test_codegen_properties.py).
_INLINE: dict[str, tuple[Callable[..., Any], str]] = {
    # text is its own string; an integer is written as json.dumps writes it
    "to_string": (
        to_string,
        "{a} if type({a}) is str else int.__repr__({a}) if type({a}) is int else {f}(F, {a})",
    ),
    # a price such as "12.50": ASCII digits around one dot, which float() reads exactly
    # as number() does (no sign, space or exponent for it to handle)
    "number": (
        EngineFunctions._func_number,
        'float({a}) if type({a}) is str and "." in {a} and {a}.isascii() '
        'and {a}.replace(".", "", 1).isdigit() else {f}(F, {a})',
    ),
}


class CallEmitter:
    """The generator's code for function calls (mixed into ``codegen._Generator``)."""

    constants: dict[str, Any]
    _indent: int
    _blocks: int
    _fast: bool

    if TYPE_CHECKING:  # what the generator provides

        def node(self, node: Mapping[str, Any], src: str) -> str: ...
        def tmp(self) -> str: ...
        def const(self, value: Any) -> str: ...
        def emit(self, line: str) -> None: ...
        def block(self, header: str, loop: bool = False) -> AbstractContextManager[None]: ...
        def fast_or_slow(self, fast: Callable[[], None], slow: Callable[[], None]) -> None: ...

    def _fused_compact(self, node: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The projection in ``compact(list[].{...})``, the rules' idiom for line items,
        when its objects can be built already compacted; else None.

        The fused code runs only for EngineFunctions itself (whose compact() it does):
        under a subclass the call goes through ``call_function`` as any other.
        """
        if node["value"] != "compact" or len(node["children"]) != 1 or not _FAST_CALLS:
            return None
        projection: Mapping[str, Any] = node["children"][0]
        if projection["type"] not in ("projection", "filter_projection"):
            return None
        right = projection["children"][1]
        if right["type"] != "multi_select_dict":
            return None
        keys = [child["value"] for child in right["children"]]
        if len(set(keys)) != len(keys):  # {a: x, a: y} keeps a's last value, not its first
            return None
        if self._blocks + 2 >= MAX_BLOCKS or self._indent + 6 >= MAX_INDENT:
            return None
        return projection

    def _coalesce(self, node: Mapping[str, Any], src: str) -> str | None:
        """``coalesce(a, b, ...)`` as a chain of tests (None: not here, call it).

        The call is the rules' way of saying "the first of these fields that is set", so
        most arguments are plain paths that cannot fail: such an argument is evaluated
        only when the ones before it are null or "". Any other argument may raise, so it
        is evaluated first, in order, whatever the others hold.
        """
        children = node["children"]
        if not _FAST_CALLS or not children or self._indent + len(children) + 8 >= MAX_INDENT:
            return None
        out = self.tmp()

        def fast() -> None:
            early = {i: self.node(c, src) for i, c in enumerate(children) if not _pure(c)}
            depth = 0
            for index, child in enumerate(children):
                value = early[index] if index in early else self.node(child, src)
                self.emit(f"{out} = {value}")
                self.emit(f'if {out} is None or {out} == "":')
                self._indent += 1
                depth += 1
            self.emit(f"{out} = None")
            self._indent -= depth

        def slow() -> None:
            args = [self.node(child, src) for child in children]
            self.emit(f"{out} = F.call_function({self.const('coalesce')}, [{', '.join(args)}])")

        self.fast_or_slow(fast, slow)
        return out

    def _function_expression(self, node: Mapping[str, Any], src: str) -> str:
        name = node["value"]
        if name == "coalesce":
            chained = self._coalesce(node, src)
            if chained is not None:
                return chained
        projection = self._fused_compact(node)
        if projection is not None:
            out = self.tmp()
            method = getattr(self, f"_{projection['type']}")

            def fused() -> None:
                self.emit(f"{out} = {method(projection, src, compact=True)}")

            def called() -> None:
                arg = self.node(projection, src)
                self.emit(f"{out} = F.call_function({self.const(name)}, [{arg}])")

            self.fast_or_slow(fused, called)
            return out
        args = [self.node(child, src) for child in node["children"]]
        out = self.tmp()
        slow = f"{out} = F.call_function({self.const(name)}, [{', '.join(args)}])"
        checks = self._fast_checks(name, args, node["children"])
        if checks is None:
            self.emit(slow)
            return out
        function = self.const(
            _INTRINSICS.get(name) or EngineFunctions.FUNCTION_TABLE[name]["function"]
        )
        inline = _INLINE.get(name)
        if inline is not None and self.constants[function] is inline[0]:
            call = f"{out} = {inline[1].format(a=args[0], f=function)}"
        else:
            call = f"{out} = {function}({', '.join(['F', *args])})"
        tests = checks if self._fast else ["type(F) is _EF", *checks]
        if not tests:
            self.emit(call)
            return out
        with self.block(f"if {' and '.join(tests)}:"):
            self.emit(call)
        with self.block("else:"):
            self.emit(slow)
        return out

    def _fast_checks(
        self, name: str, args: list[str], nodes: list[Mapping[str, Any]]
    ) -> list[str] | None:
        """Type tests under which EngineFunctions would accept ``args`` (computed by
        ``nodes``); None: no fast path."""
        entry = EngineFunctions.FUNCTION_TABLE.get(name) if _FAST_CALLS else None
        if entry is None:
            return None
        spec = entry["signature"]
        low, high = signature_arity(spec)
        if len(args) < low or (high is not None and len(args) > high):
            return None  # the call raises the arity error; call_function words it
        checks: list[str] = []
        for position, arg in enumerate(args):
            types = spec[min(position, len(spec) - 1)]["types"]
            if not types:
                continue
            if not all(t.split("-", 1)[-1] in _PY_TYPES for t in types):
                return None  # a type this module does not know: jmespath's check decides
            if not any("-" in t for t in types):
                allowed = frozenset(py for t in types for py in _PY_TYPES[t])
                literal = nodes[position]
                if literal["type"] == "literal" and type(literal["value"]) in allowed:
                    continue  # a constant of an accepted type: nothing to test
                checks.append(f"type({arg}) in {self.const(allowed)}")
                continue
            # array-number, array-string: jmespath checks each element, and with several
            # element types it takes the first element's and requires it of all; for
            # disjoint element types that is "all of one kind" (an empty array passes)
            if not all(t.startswith("array-") for t in types):
                return None  # a mix like ["array-number", "null"]: leave it to jmespath
            groups = [frozenset(_PY_TYPES[t.split("-", 1)[1]]) for t in types]
            if sum(map(len, groups)) != len(frozenset().union(*groups)):
                return None
            each = " or ".join(f"_each({arg}, {self.const(group)})" for group in groups)
            empty = f"not {arg} or " if len(groups) > 1 else ""
            checks.append(f"type({arg}) is list and ({empty}{each})")
        return checks


_PURE = frozenset(
    ("field", "current", "identity", "literal", "subexpression", "index_expression", "index")
)


def _pure(node: Mapping[str, Any]) -> bool:
    return node["type"] in _PURE and all(_pure(child) for child in node.get("children", ()))
