"""How a function is declared: its jmespath signature, and its documentation with examples.

Each function is a ``_func_<name>`` method (jmespath's registry picks it up by that
prefix and its ``@signature``) under a ``@function(usage, summary, *examples)`` that
records its documentation beside it: ``tests/test_functions.py`` runs every example and
``docs/rules.md`` prints them, so the docs cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NotRequired, TypedDict, TypeVar

from jmespath import functions as jp_functions

_F = TypeVar("_F", bound=Callable[..., Any])


class ArgSpec(TypedDict):
    """One argument of a signature: jmespath's keys plus hookmap's ``optional``."""

    types: list[str]
    variadic: NotRequired[bool]
    #: a trailing argument that may be left out (``phone(s)`` and ``phone(s, cc)``)
    optional: NotRequired[bool]


def signature(*arguments: ArgSpec) -> Callable[[_F], _F]:
    """jmespath's ``@signature``, typed to accept the ``optional`` key too."""
    return jp_functions.signature(*arguments)


def signature_arity(arguments: Sequence[ArgSpec]) -> tuple[int, int | None]:
    """(min, max) argument count a signature allows; max None when variadic."""
    low = sum(1 for argument in arguments if not argument.get("optional"))
    high = None if arguments and arguments[-1].get("variadic") else len(arguments)
    return low, high


@dataclasses.dataclass(frozen=True)
class Example:
    """``expression`` evaluated on ``data`` gives ``result`` (run by the tests); ``dropped``
    is the reason of the W106 warning it gives, when the function drops the value."""

    expression: str
    result: Any
    data: Any = None
    dropped: str | None = None


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    name: str
    usage: str
    summary: str
    examples: tuple[Example, ...]
    #: names of arguments that must be literal strings naming a table / var
    literal_args: Mapping[int, str] = dataclasses.field(default_factory=dict)


#: Every function's documentation, by name, as its ``@function`` declared it.
SPECS: dict[str, FunctionSpec] = {}


def function(
    usage: str,
    summary: str,
    *examples: Example,
    literal_args: Mapping[int, str] | None = None,
) -> Callable[[_F], _F]:
    """Declare the function below: ``usage`` (``name(arg, ...)``), a one-line summary,
    runnable examples, and which arguments must be literal names (``{0: "table"}``)."""
    name = usage.split("(", 1)[0]

    def register(method: _F) -> _F:
        if method.__name__ != f"_func_{name}":
            raise TypeError(f"@function({usage!r}) is on {method.__name__}")
        SPECS[name] = FunctionSpec(name, usage, summary, examples, dict(literal_args or {}))
        return method

    return register
