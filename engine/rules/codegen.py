"""Compile stage, second half: jmespath's parsed AST → one Python function.

jmespath evaluates by walking its AST with a visitor: a method lookup and a call per
node, per webhook. Rules are compiled once and run on every webhook, so here each
expression's AST (the plain dicts ``jmespath.compile(text).parsed`` gives) becomes
Python source with one statement per node, compiled once with ``compile()``. The
function it defines takes ``(data, functions)``: ``functions`` is the
``jmespath.functions.Functions`` instance of the current evaluation (hookmap binds
an ``EngineFunctions`` to each webhook's context), so ``root()``, ``header()`` and
``var()`` see the same context as under the interpreter.

**Same results as the interpreter.** Each node's code does what
``jmespath.visitor.TreeInterpreter.visit_<type>`` does, in the same order, with the
same Python operations, so even the errors match (``"a" < `1``` is the same
``TypeError``, a zero slice step the same ``ValueError``). ``tests/test_compliance.py``
and ``tests/test_codegen_properties.py`` check this against the interpreter.

**Nothing from a rule or a payload is executed.** The generated source contains only
names this module makes up (``_v3``, ``_k0``, ``_x1``) and its own fixed code: every
field name, literal, index, slice and function name from the AST is a *bound constant*
(a global of the compiled function's namespace, named ``_k<n>``), never text in the
source. ``tests/test_codegen.py`` feeds hostile identifiers and literals through it.
"""

from __future__ import annotations

import collections
import functools
import itertools
import json
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from numbers import Number
from typing import Any, Literal

from jmespath import functions as jp_functions
from jmespath import visitor as jp_visitor

from engine.rules.functions import EngineFunctions, signature_arity

#: How rule expressions are evaluated: this module's code, or jmespath's own interpreter.
Evaluator = Literal["compiled", "interpreter"]

#: What ``compile_ast`` returns: call it with the data and the bound functions.
Compiled = Callable[[Any, jp_functions.Functions], Any]

#: jmespath's built-ins alone: what the interpreter uses when no custom functions are given.
BUILTINS = jp_functions.Functions()

# Python's compiler allows 20 nested loop/try blocks and 100 indentation levels; a subtree
# deeper than these limits goes into a function of its own.
_MAX_BLOCKS = 8
_MAX_INDENT = 24


class _Expression:
    """What ``&expr`` evaluates to: jmespath's ``_Expression``, backed by compiled code.

    The built-ins (``sort_by``, ``max_by``, ``min_by``, ``map``) call
    ``expref.visit(expref.expression, element)`` and their type check looks for the
    class *name* ``_Expression``, so the name and both attributes are kept.
    """

    __slots__ = ("_compiled", "_functions", "expression")

    def __init__(
        self, expression: Mapping[str, Any], compiled: Compiled, functions: jp_functions.Functions
    ) -> None:
        self.expression = expression
        self._compiled = compiled
        self._functions = functions

    @property
    def interpreter(self) -> jp_visitor.TreeInterpreter:
        """An interpreter with the same functions, for code that visits other nodes."""
        return jp_visitor.TreeInterpreter(jp_visitor.Options(custom_functions=self._functions))

    def visit(self, node: Any, *args: Any, **kwargs: Any) -> Any:
        if node is self.expression and len(args) == 1 and not kwargs:
            return self._compiled(args[0], self._functions)
        return self.interpreter.visit(node, *args, **kwargs)


# -- runtime helpers the generated code calls (the interpreter's semantics) -------------

_MISSING = object()


def _field(value: Any, key: str) -> Any:
    """``visit_field`` for anything but a plain dict (the generated code's fast path)."""
    if value is None:
        return None
    try:
        return value.get(key)
    except AttributeError:
        return None


def _values(value: Any) -> Any:
    """``base.values()`` as ``visit_value_projection`` tries it; ``_MISSING`` if absent."""
    try:
        return value.values()
    except AttributeError:
        return _MISSING


def _is_actual_number(value: Any) -> bool:
    # bool is an int to Python, not a number to JMESPath
    return not isinstance(value, bool) and isinstance(value, Number)


def _equals(x: Any, y: Any) -> Any:
    """``==`` as JMESPath means it: ``0`` and ``1`` never equal ``false`` and ``true``."""
    # jmespath.visitor._equals / _is_special_number_case, step for step
    if _is_actual_number(x) and x in (0, 1):
        if isinstance(y, bool):
            return False
    elif _is_actual_number(y) and y in (0, 1) and isinstance(x, bool):
        return False
    return x == y


def _is_false(value: Any) -> bool:
    """``TreeInterpreter._is_false``: JMESPath's false values."""
    return value == "" or value == [] or value == {} or value is None or value is False


def _comparable(value: Any) -> bool:
    """Ordering operators apply to numbers and strings; anything else gives null."""
    return _is_actual_number(value) or isinstance(value, str)


def _not(value: Any) -> bool:
    if _is_actual_number(value) and value == 0:
        return False  # !0 is false: 0 is not a false value in JMESPath
    return not value


def _each(values: list[Any], allowed: frozenset[type]) -> bool:
    """Every element is of an ``allowed`` type (the array-number / array-string check)."""
    for value in values:  # noqa: SIM110 (a loop: all() over a generator is slower here)
        if type(value) not in allowed:
            return False
    return True


def _to_string(functions: Any, value: Any) -> Any:
    """jmespath's ``to_string``, without ``json.dumps`` for the text and integers it gets."""
    if isinstance(value, str):
        return value
    if type(value) is int:
        return int.__repr__(value)  # what json.dumps writes for an int
    return json.dumps(value, separators=(",", ":"), default=str)


def _to_number(functions: Any, value: Any) -> Any:
    """jmespath's ``to_number``, without the ValueError it raises and catches for "7.95"."""
    if type(value) is str and "." in value:
        # int() refuses any text with a dot, so jmespath's answer is float()'s
        try:
            return float(value)
        except ValueError:
            return None
    return _JMESPATH_TO_NUMBER(functions, value)


_JMESPATH_TO_NUMBER = vars(jp_functions.Functions)["_func_to_number"]


def _unknown_node(node_type: str) -> Any:
    raise NotImplementedError(node_type)  # what TreeInterpreter.default_visit raises


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
    for name, fast in {"to_string": _to_string, "to_number": _to_number}.items()
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
        _to_string,
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

_NAMESPACE: dict[str, Any] = {
    "__builtins__": {},
    "float": float,
    "int": int,
    "str": str,
    "dict": dict,
    "list": list,
    "type": type,
    "isinstance": isinstance,
    "IndexError": IndexError,
    "_EF": EngineFunctions,
    "_Expression": _Expression,
    "_MISSING": _MISSING,
    "_field": _field,
    "_values": _values,
    "_equals": _equals,
    "_comparable": _comparable,
    "_not": _not,
    "_unknown_node": _unknown_node,
    "_each": _each,
    "_is_false": _is_false,
    "_EMPTYABLE": frozenset((str, list, dict)),
}

# literal values for which JMESPath's == is Python's == (no 0/1 versus true/false case)
_PLAIN_EQ = (str, type(None), list, dict)
# literal values that are always comparable (ordering operators)
_ORDERABLE = (int, float, str)


class _Generator:
    """Emits Python source for one expression; AST data only ever becomes a constant."""

    def __init__(self) -> None:
        self.constants: dict[str, Any] = {}
        self.functions: list[list[str]] = []  # finished function definitions
        self._lines: list[str] = []
        self._indent = 1
        self._blocks = 0
        self._names = itertools.count()
        #: variables known to hold a dict where code is being emitted (see _known_dict)
        self._dicts: set[str] = set()
        #: whether the code being emitted runs only where ``type(F) is _EF``
        self._fast = False

    # -- bookkeeping ------------------------------------------------------------------

    def const(self, value: Any) -> str:
        """A name bound to ``value`` in the function's namespace."""
        name = f"_k{len(self.constants)}"
        self.constants[name] = value
        return name

    def tmp(self) -> str:
        return f"_v{next(self._names)}"

    def emit(self, line: str) -> None:
        self._lines.append("    " * self._indent + line)

    @contextmanager
    def block(self, header: str, loop: bool = False) -> Iterator[None]:
        """``header:`` and an indented body; ``loop`` counts towards Python's block limit."""
        self.emit(header)
        self._indent += 1
        self._blocks += loop
        try:
            yield
        finally:
            self._indent -= 1
            self._blocks -= loop

    def function(self, node: Mapping[str, Any]) -> str:
        """Compile ``node`` as a function ``(data, functions)`` of its own; its name."""
        name = f"_x{next(self._names)}"
        saved = self._lines, self._indent, self._blocks, self._dicts, self._fast
        self._lines, self._indent, self._blocks, self._dicts, self._fast = [], 1, 0, set(), False
        try:
            result = self.node(node, "v")
            self.emit(f"return {result}")
            self.functions.append([f"def {name}(v, F):", *self._lines])
        finally:
            self._lines, self._indent, self._blocks, self._dicts, self._fast = saved
        return name

    def fast_or_slow(self, fast: Callable[[], None], slow: Callable[[], None]) -> None:
        """``fast()`` where F is EngineFunctions itself, ``slow()`` elsewhere; inside code
        already under that test, ``fast()`` alone."""
        if self._fast:
            fast()
            return
        with self.block("if type(F) is _EF:"):
            self._fast = True
            try:
                fast()
            finally:
                self._fast = False
        with self.block("else:"):
            slow()

    def _pairs(self, node: Mapping[str, Any], src: str) -> list[tuple[str, str]]:
        """A multi-select dict's (key constant, value variable) pairs on ``src``."""
        return [(self.const(child["value"]), self.node(child, src)) for child in node["children"]]

    def _known_dict(self, src: str, emit: Callable[[], None]) -> None:
        """``emit()`` twice: where ``src`` is a dict (its fields read with a bare ``get``:
        the line items an object is built from, field after field), and elsewhere."""
        if self._indent + 1 >= _MAX_INDENT:
            emit()
            return
        with self.block(f"if type({src}) is dict:"):
            self._dicts.add(src)
            try:
                emit()
            finally:
                self._dicts.discard(src)
        with self.block("else:"):
            emit()

    def falsy(self, name: str) -> str:
        """JMESPath's false test (``TreeInterpreter._is_false``) on a variable.

        A value Python finds true is never JMESPath-false, so ``not`` decides for most
        values at once; a Python-false value is JMESPath-false if it is an empty string,
        array or object (0 is not), which ``_is_false`` settles for unusual types.
        """
        return (
            f"({name} is None or {name} is False or "
            f"(not {name} and (type({name}) in _EMPTYABLE or _is_false({name}))))"
        )

    # -- nodes --------------------------------------------------------------------------

    def node(self, node: Mapping[str, Any], src: str) -> str:
        """Emit the statements for ``node`` applied to the value in ``src``.

        Returns the name (a variable or a constant) holding the result.
        """
        kind = node["type"]
        if kind in ("identity", "current"):
            return src
        if kind == "literal":
            return self.const(node["value"])
        if kind in ("subexpression", "index_expression", "pipe"):
            for child in node["children"]:
                src = self.node(child, src)
            return src
        if kind == "key_val_pair":
            return self.node(node["children"][0], src)
        if kind == "expref":
            inner = node["children"][0]
            out = self.tmp()
            self.emit(f"{out} = _Expression({self.const(inner)}, {self.function(inner)}, F)")
            return out
        if self._blocks >= _MAX_BLOCKS or self._indent >= _MAX_INDENT:
            out = self.tmp()
            self.emit(f"{out} = {self.function(node)}({src}, F)")
            return out
        method = getattr(self, f"_{kind}", None)
        if method is None:
            out = self.tmp()
            self.emit(f"{out} = _unknown_node({self.const(kind)})")
            return out
        result: str = method(node, src)
        return result

    def _field(self, node: Mapping[str, Any], src: str) -> str:
        out, key = self.tmp(), self.const(node["value"])
        if src in self._dicts:
            self.emit(f"{out} = {src}.get({key})")
        else:
            self.emit(f"{out} = {src}.get({key}) if type({src}) is dict else _field({src}, {key})")
        return out

    def _index(self, node: Mapping[str, Any], src: str) -> str:
        out, index = self.tmp(), self.const(node["value"])
        with self.block(f"if isinstance({src}, list):"):
            with self.block("try:", loop=True):
                self.emit(f"{out} = {src}[{index}]")
            with self.block("except IndexError:"):
                self.emit(f"{out} = None")
        with self.block("else:"):
            self.emit(f"{out} = None")
        return out

    def _slice(self, node: Mapping[str, Any], src: str) -> str:
        out, part = self.tmp(), self.const(slice(*node["children"]))
        self.emit(f"{out} = {src}[{part}] if isinstance({src}, list) else None")
        return out

    def _comparator(self, node: Mapping[str, Any], src: str) -> str:
        left_node, right_node = node["children"]
        left = self.node(left_node, src)
        right = self.node(right_node, src)
        out, op = self.tmp(), node["value"]
        if op in ("eq", "ne"):
            plain = any(
                n["type"] == "literal" and isinstance(n["value"], _PLAIN_EQ)
                for n in (left_node, right_node)
            )
            test = f"{left} == {right}" if plain else f"_equals({left}, {right})"
            self.emit(f"{out} = {test}" if op == "eq" else f"{out} = not ({test})")
            return out
        symbol = {"lt": "<", "gt": ">", "lte": "<=", "gte": ">="}[op]
        checks = [
            f"_comparable({name})"
            for name, n in ((left, left_node), (right, right_node))
            if not (
                n["type"] == "literal"
                and isinstance(n["value"], _ORDERABLE)
                and not isinstance(n["value"], bool)
            )
        ]
        condition = " and ".join(checks) or "True"
        self.emit(f"{out} = ({left} {symbol} {right}) if {condition} else None")
        return out

    def _or_expression(self, node: Mapping[str, Any], src: str) -> str:
        return self._short_circuit(node, src, "")

    def _and_expression(self, node: Mapping[str, Any], src: str) -> str:
        return self._short_circuit(node, src, "not ")

    def _short_circuit(self, node: Mapping[str, Any], src: str, negate: str) -> str:
        """``a || b`` (``negate`` ""): b only when a is false; ``a && b`` ("not "): b
        only when a is true; else a itself."""
        left = self.node(node["children"][0], src)
        out = self.tmp()
        self.emit(f"{out} = {left}")
        with self.block(f"if {negate}{self.falsy(out)}:"):
            self.emit(f"{out} = {self.node(node['children'][1], src)}")
        return out

    def _not_expression(self, node: Mapping[str, Any], src: str) -> str:
        value = self.node(node["children"][0], src)
        out = self.tmp()
        self.emit(f"{out} = _not({value})")
        return out

    def _collect(
        self, out: str, node: Mapping[str, Any], element: str, compact: bool = False
    ) -> None:
        """Append ``node`` applied to ``element`` to ``out`` unless it is null; with
        ``compact``, ``node`` is an object built without its null and "" values."""
        value = self._compact_dict(node, element) if compact else self.node(node, element)
        self.emit(f"if {value} is not None: {out}.append({value})")

    def _projection(self, node: Mapping[str, Any], src: str, compact: bool = False) -> str:
        base = self.node(node["children"][0], src)
        out, element = self.tmp(), self.tmp()
        with self.block(f"if isinstance({base}, list):"):
            self.emit(f"{out} = []")
            with self.block(f"for {element} in {base}:", loop=True):
                self._collect(out, node["children"][1], element, compact)
        with self.block("else:"):
            self.emit(f"{out} = None")
        return out

    def _value_projection(self, node: Mapping[str, Any], src: str) -> str:
        base = self.node(node["children"][0], src)
        values, out, element = self.tmp(), self.tmp(), self.tmp()
        self.emit(f"{values} = {base}.values() if type({base}) is dict else _values({base})")
        with self.block(f"if {values} is _MISSING:"):
            self.emit(f"{out} = None")
        with self.block("else:"):
            self.emit(f"{out} = []")
            with self.block(f"for {element} in {values}:", loop=True):
                self._collect(out, node["children"][1], element)
        return out

    def _filter_projection(self, node: Mapping[str, Any], src: str, compact: bool = False) -> str:
        left, right, condition = node["children"]
        base = self.node(left, src)
        out, element = self.tmp(), self.tmp()
        with self.block(f"if isinstance({base}, list):"):
            self.emit(f"{out} = []")
            with self.block(f"for {element} in {base}:", loop=True):
                test = self.node(condition, element)
                with self.block(f"if not {self.falsy(test)}:"):
                    self._collect(out, right, element, compact)
        with self.block("else:"):
            self.emit(f"{out} = None")
        return out

    def _flatten(self, node: Mapping[str, Any], src: str) -> str:
        base = self.node(node["children"][0], src)
        out, element = self.tmp(), self.tmp()
        with self.block(f"if isinstance({base}, list):"):
            self.emit(f"{out} = []")
            with self.block(f"for {element} in {base}:", loop=True):
                with self.block(f"if isinstance({element}, list):"):
                    self.emit(f"{out}.extend({element})")
                with self.block("else:"):
                    self.emit(f"{out}.append({element})")
        with self.block("else:"):
            self.emit(f"{out} = None")
        return out

    def _multi_select_list(self, node: Mapping[str, Any], src: str) -> str:
        out = self.tmp()
        with self.block(f"if {src} is None:"):
            self.emit(f"{out} = None")
        with self.block("else:"):
            items = [self.node(child, src) for child in node["children"]]
            self.emit(f"{out} = [{', '.join(items)}]")
        return out

    def _multi_select_dict(self, node: Mapping[str, Any], src: str) -> str:
        return self._object(node, src, compact=False)

    def _compact_dict(self, node: Mapping[str, Any], src: str) -> str:
        """``compact()`` of the multi-select dict ``node``, built as one: only the values
        that are neither null nor "" are stored (keys are unique: see _fused_compact)."""
        return self._object(node, src, compact=True)

    def _object(self, node: Mapping[str, Any], src: str, compact: bool) -> str:
        """The multi-select dict ``node`` on ``src`` (null on null). Every value is
        computed, in order, before the dict is built, as the interpreter does; a repeated
        key keeps its first place and last value."""
        out = self.tmp()

        def build() -> None:
            pairs = self._pairs(node, src)
            if not compact:
                self.emit(f"{out} = {{{', '.join(f'{k}: {v}' for k, v in pairs)}}}")
                return
            self.emit(f"{out} = {{}}")
            for key, value in pairs:
                self.emit(f'if not ({value} is None or {value} == ""): {out}[{key}] = {value}')

        with self.block(f"if {src} is None:"):
            self.emit(f"{out} = None")
        with self.block("else:"):
            self._known_dict(src, build)
        return out

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
        if self._blocks + 2 >= _MAX_BLOCKS or self._indent + 6 >= _MAX_INDENT:
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
        if not _FAST_CALLS or not children or self._indent + len(children) + 8 >= _MAX_INDENT:
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


# Nodes whose code cannot raise or call anything (coalesce() may skip them, see _coalesce)
_PURE = frozenset(
    ("field", "current", "identity", "literal", "subexpression", "index_expression", "index")
)


def _pure(node: Mapping[str, Any]) -> bool:
    return node["type"] in _PURE and all(_pure(child) for child in node.get("children", ()))


@functools.lru_cache(maxsize=2048)
def _compile_source(source: str) -> types.CodeType:
    # Python's compile() is most of the cost of loading a rule set, and the source depends
    # only on the expression's shape (names and values are constants beside it), so
    # `customer.email` and `billing.phone`, or one template in four rules, share it.
    return compile(source, "<hookmap expression>", "exec")


def generate(parsed: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The Python source for ``parsed`` (a jmespath AST) and the constants it names.

    The source defines ``_x0(v, F)``, the whole expression, and the functions it needs
    (``&expr`` bodies, subtrees too deep to inline).
    """
    generator = _Generator()
    main = generator.function(parsed)
    assert main == "_x0", main
    source = "\n".join("\n".join(lines) for lines in generator.functions) + "\n"
    return source, generator.constants


def compile_ast(parsed: Mapping[str, Any]) -> Compiled:
    """A function ``(data, functions)`` giving what jmespath's interpreter gives."""
    try:
        source, constants = generate(parsed)
        code = _compile_source(source)
    except (RecursionError, SyntaxError, MemoryError):
        # an AST too deep to generate or compile (hundreds of levels: `a || a || ...`)
        # is left to the interpreter, which gives what it always gave
        return functools.partial(_interpret, parsed)
    namespace = {**_NAMESPACE, **constants}
    exec(code, namespace)
    compiled: Compiled = namespace["_x0"]
    return compiled


def _interpret(parsed: Any, data: Any, functions: jp_functions.Functions) -> Any:
    options = jp_visitor.Options(custom_functions=functions)
    return jp_visitor.TreeInterpreter(options).visit(parsed, data)
