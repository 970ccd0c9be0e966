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

import functools
import itertools
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from jmespath import functions as jp_functions
from jmespath import visitor as jp_visitor

from engine.rules import codegen_runtime as rt
from engine.rules.codegen_calls import MAX_BLOCKS, MAX_INDENT, CallEmitter
from engine.rules.functions import EngineFunctions
from engine.rules.model import Compiled, Evaluator

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
    "_Expression": rt._Expression,
    "_MISSING": rt.MISSING,
    "_field": rt.field,
    "_values": rt.values,
    "_equals": rt.equals,
    "_comparable": rt.comparable,
    "_not": rt.not_,
    "_unknown_node": rt.unknown_node,
    "_each": rt.each,
    "_is_false": rt.is_false,
    "_EMPTYABLE": frozenset((str, list, dict)),
}

# literal values for which JMESPath's == is Python's == (no 0/1 versus true/false case)
_PLAIN_EQ = (str, type(None), list, dict)
# literal values that are always comparable (ordering operators)
_ORDERABLE = (int, float, str)


class _Generator(CallEmitter):
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
        if self._indent + 1 >= MAX_INDENT:
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
        if self._blocks >= MAX_BLOCKS or self._indent >= MAX_INDENT:
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


#: Rule expressions compiled to Python (the default).
COMPILED = Evaluator("compiled", compile_ast, reads_in_part=True)
#: jmespath's own interpreter walks each expression on every webhook: the reference.
INTERPRETER = Evaluator("interpreter")
