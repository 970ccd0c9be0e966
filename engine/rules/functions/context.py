"""Context functions: ``root()``, ``header()``, ``topic()``, ``var()``, ``lookup()``,
``fetched()``, ``envelope()``.

They read the ``EvalContext`` the engine builds per webhook: this is how an expression
inside a projection reaches the document root, which plain JMESPath cannot do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

from engine.errors import UnknownLookupValue
from engine.records import fast_init
from engine.rules.functions.registry import Example, function, signature


class Lookup(Protocol):
    """What ``lookup()`` needs of a named table (``engine.rules.model.Table``)."""

    def get(self, value: Any) -> Any: ...


@fast_init
@dataclasses.dataclass(frozen=True)
class EvalContext:
    """What an expression can reach besides its current node."""

    root: Any = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)  # lower-cased names
    topic: str | None = None
    vars: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tables: Mapping[str, Lookup] = dataclasses.field(default_factory=dict)
    #: answers of the rule set's lookups, fetched before evaluation
    fetched: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: the document around the decoded body (JWT claims, Pub/Sub or CloudEvents envelope)
    envelope: Any = None


class ContextFunctions:
    """The functions that read the webhook's context rather than their arguments."""

    context: EvalContext

    @function(
        "root()",
        "The webhook body, from anywhere, also inside a projection or `for_each`.",
        Example(
            "line_items[].{sku: sku, order: root().id}",
            [{"sku": "A", "order": 7}],
            {"id": 7, "line_items": [{"sku": "A"}]},
        ),
    )
    @signature()
    def _func_root(self) -> Any:
        return self.context.root

    @function(
        "header(name)",
        "A request header by name (case-insensitive), or null.",
        Example("header('X-Shopify-Topic')", "orders/create"),
    )
    @signature({"types": ["string"]})
    def _func_header(self, name: str) -> Any:
        return self.context.headers.get(name.lower())

    @function(
        "topic()",
        "The webhook's topic as the rule set found it.",
        Example("topic()", "orders/create"),
    )
    @signature()
    def _func_topic(self) -> Any:
        return self.context.topic

    @function(
        "var(name)",
        "A named var of the rule set (after `${ENV}` interpolation).",
        Example("var('shop_url')", "https://shop.example"),
        literal_args={0: "var"},
    )
    @signature({"types": ["string"]})
    def _func_var(self, name: str) -> Any:
        return self.context.vars.get(name)

    @function(
        "lookup(table, value)",
        "The entry for `value` in a named table; its `default` when absent; a problem if strict.",
        Example("lookup('status', 'completed')", "DELIVERED"),
        Example("lookup('status', 'nope')", "INITIALIZED"),
        literal_args={0: "table"},
    )
    @signature({"types": ["string"]}, {"types": []})
    def _func_lookup(self, table: str, value: Any) -> Any:
        found = self.context.tables.get(table)
        if found is None:  # the loader rejects this; reached only by hand-built contexts
            raise UnknownLookupValue(table, value)
        return found.get(value)

    @function(
        "fetched(name)",
        "The JSON answer of a lookup declared in the rule set (fetched before evaluation).",
        Example("fetched('order').total_inc_tax", "88.10"),
        literal_args={0: "lookup"},
    )
    @signature({"types": ["string"]})
    def _func_fetched(self, name: str) -> Any:
        return self.context.fetched.get(name)

    @function(
        "envelope()",
        "The document around the decoded body: JWT claims, Pub/Sub push or CloudEvents "
        "envelope; the body itself for plain JSON.",
        Example("envelope().type", "com.commercetools.order.message.OrderCreated"),
    )
    @signature()
    def _func_envelope(self) -> Any:
        return self.context.envelope
