"""The functions rule expressions can call, beyond JMESPath's built-ins.

One module per family (``context``, ``text``, ``values``, ``numbers``, ``dates``,
``contacts``); each function is declared with its documentation and runnable examples
beside it (``registry.function``), and ``EngineFunctions`` puts the families together
with jmespath's built-ins.

The value functions follow two conventions, because webhooks leave fields out:

* **null in, null out.** ``lower(customer.email)`` is null for a guest, not an error;
  the event validator then reports a missing param where one is required. A value of
  the wrong JSON type (``lower(`5`)``) is still a type error, through the signature.
* **An empty string is no value** where the input is data, not text: ``number("")``,
  ``phone("")``, ``coalesce()`` and ``default()`` treat it as null, since shops send
  ``""`` for a field the customer left blank (Shopify's ``email`` on POS orders).
* **A value that is there but unusable is dropped out loud.** ``phone('(555) 555-5555',
  'US')`` is no number at all: the function gives null, as for an absent value, and
  notes a ``Dropped`` on the functions object's ``dropped`` list, which the evaluate
  stage turns into a W106 warning on the param. A wrong number is worse than none.

A value of the right type that a function still cannot use (a template with
``{0.attr}``, a string that is not JSON, an unreadable date) raises ``InvalidArgument``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jmespath
from jmespath import exceptions as jp_exceptions
from jmespath import functions as jp_functions

from engine.rules.functions.common import Dropped
from engine.rules.functions.contacts import ContactFunctions
from engine.rules.functions.context import ContextFunctions, EvalContext
from engine.rules.functions.dates import DateFunctions
from engine.rules.functions.numbers import NumberFunctions
from engine.rules.functions.registry import SPECS, ArgSpec, Example, signature_arity
from engine.rules.functions.text import TextFunctions
from engine.rules.functions.values import ValueFunctions
from engine.rules.model import Table

__all__ = [
    "EXAMPLE_CONTEXT",
    "SPECS",
    "Dropped",
    "EngineFunctions",
    "EvalContext",
    "Example",
    "arity",
    "function_table",
    "make_options",
    "signature_arity",
]


class EngineFunctions(
    ContextFunctions,
    TextFunctions,
    ValueFunctions,
    NumberFunctions,
    DateFunctions,
    ContactFunctions,
    jp_functions.Functions,
):
    """JMESPath built-ins plus hookmap's functions, bound to one ``EvalContext``."""

    def __init__(self, context: EvalContext | None = None) -> None:
        self.context = context or EvalContext()
        # one list per evaluation: what functions dropped, read by the evaluate stage
        self.dropped: list[Dropped] = []

    if TYPE_CHECKING:  # jmespath's own type check, which its stubs leave out

        def _type_check_single(
            self, current: Any, types: list[str], function_name: str
        ) -> None: ...

    # jmespath checks arity exactly (or "at least" when variadic) and the types of the
    # declared positions only. hookmap also needs optional trailing arguments, and a type
    # check on every variadic argument: concat() must refuse an object in fourth place as
    # it does in first. jmespath calls this hook for every function, built-ins included.
    def _validate_arguments(
        self, args: Sequence[Any], arguments: Sequence[ArgSpec], function_name: str
    ) -> None:
        low, high = signature_arity(arguments)
        if len(args) < low:
            error = jp_exceptions.ArityError if high == low else jp_exceptions.VariadictArityError
            raise error(low, len(args), function_name)
        if high is not None and len(args) > high:
            raise jp_exceptions.ArityError(high, len(args), function_name)
        for position, arg in enumerate(args):
            types = arguments[min(position, len(arguments) - 1)]["types"]
            if types:
                self._type_check_single(arg, types, function_name)


#: The context the examples run in (tests and docs use it).
EXAMPLE_CONTEXT = EvalContext(
    root={"id": 7, "line_items": [{"sku": "A"}]},
    headers={"x-shopify-topic": "orders/create"},
    topic="orders/create",
    vars={"shop_url": "https://shop.example"},
    fetched={"order": {"id": 250, "total_inc_tax": "88.10"}},
    envelope={"type": "com.commercetools.order.message.OrderCreated"},
    tables={
        "status": Table(
            "status", {"completed": "DELIVERED"}, default="INITIALIZED", has_default=True
        )
    },
)


def function_table() -> Mapping[str, Any]:
    """Name → jmespath's ``{'function', 'signature'}`` for every callable function."""
    return EngineFunctions.FUNCTION_TABLE  # type: ignore[no-any-return]


def arity(name: str) -> tuple[int, int | None] | None:
    """(min, max) argument count of a function; max None when variadic; None if unknown."""
    entry = function_table().get(name)
    if entry is None:
        return None
    return signature_arity(entry["signature"])


def make_options(context: EvalContext) -> jmespath.Options:
    """jmespath options that evaluate with hookmap's functions bound to ``context``."""
    return jmespath.Options(custom_functions=EngineFunctions(context))
