"""What compiled expressions call at run time: the interpreter's semantics, as functions.

The code ``engine.rules.codegen`` generates reads fields, compares and tests truth
through these helpers (bound into each compiled function's namespace), so each node
does what ``jmespath.visitor.TreeInterpreter`` does, in the same order, with the same
Python operations. A leaf module: nothing from the engine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from numbers import Number
from typing import Any

from jmespath import functions as jp_functions
from jmespath import visitor as jp_visitor

#: what an expression compiled to Python is (engine.rules.model.Compiled)
_Compiled = Any


class _Expression:
    """What ``&expr`` evaluates to: jmespath's ``_Expression``, backed by compiled code.

    The built-ins (``sort_by``, ``max_by``, ``min_by``, ``map``) call
    ``expref.visit(expref.expression, element)`` and their type check looks for the
    class *name* ``_Expression``, so the name and both attributes are kept.
    """

    __slots__ = ("_compiled", "_functions", "expression")

    def __init__(
        self, expression: Mapping[str, Any], compiled: _Compiled, functions: jp_functions.Functions
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

MISSING = object()


def field(value: Any, key: str) -> Any:
    """``visit_field`` for anything but a plain dict (the generated code's fast path)."""
    if value is None:
        return None
    try:
        return value.get(key)
    except AttributeError:
        return None


def values(value: Any) -> Any:
    """``base.values()`` as ``visit_value_projection`` tries it; ``MISSING`` if absent."""
    try:
        return value.values()
    except AttributeError:
        return MISSING


def is_actual_number(value: Any) -> bool:
    # bool is an int to Python, not a number to JMESPath
    return not isinstance(value, bool) and isinstance(value, Number)


def equals(x: Any, y: Any) -> Any:
    """``==`` as JMESPath means it: ``0`` and ``1`` never equal ``false`` and ``true``."""
    # jmespath.visitor._equals / _is_special_number_case, step for step
    if is_actual_number(x) and x in (0, 1):
        if isinstance(y, bool):
            return False
    elif is_actual_number(y) and y in (0, 1) and isinstance(x, bool):
        return False
    return x == y


def is_false(value: Any) -> bool:
    """``TreeInterpreter._is_false``: JMESPath's false values."""
    return value == "" or value == [] or value == {} or value is None or value is False


def comparable(value: Any) -> bool:
    """Ordering operators apply to numbers and strings; anything else gives null."""
    return is_actual_number(value) or isinstance(value, str)


def not_(value: Any) -> bool:
    if is_actual_number(value) and value == 0:
        return False  # !0 is false: 0 is not a false value in JMESPath
    return not value


def each(values: list[Any], allowed: frozenset[type]) -> bool:
    """Every element is of an ``allowed`` type (the array-number / array-string check)."""
    for value in values:  # noqa: SIM110 (a loop: all() over a generator is slower here)
        if type(value) not in allowed:
            return False
    return True


def to_string(functions: Any, value: Any) -> Any:
    """jmespath's ``to_string``, without ``json.dumps`` for the text and integers it gets."""
    if isinstance(value, str):
        return value
    if type(value) is int:
        return int.__repr__(value)  # what json.dumps writes for an int
    return json.dumps(value, separators=(",", ":"), default=str)


def to_number(functions: Any, value: Any) -> Any:
    """jmespath's ``to_number``, without the ValueError it raises and catches for "7.95"."""
    if type(value) is str and "." in value:
        # int() refuses any text with a dot, so jmespath's answer is float()'s
        try:
            return float(value)
        except ValueError:
            return None
    return JMESPATH_TO_NUMBER(functions, value)


JMESPATH_TO_NUMBER = vars(jp_functions.Functions)["_func_to_number"]


def unknown_node(node_type: str) -> Any:
    raise NotImplementedError(node_type)  # what TreeInterpreter.default_visit raises
