"""The rule-file format, declared once.

Every key a rule file may hold is declared here with its type, default and doc.
This one declaration drives:

* loading and the linter (``engine.rules.loader`` walks YAML nodes against it),
* ``hookmap schema`` (``json_schema()``: a JSON Schema for editors),
* ``docs/rules.md`` (``engine.rules.docs`` renders the tables from it).

Benthos declares each config field once in the same spirit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.rules.model import (
    API_VERSIONS,
    DEFAULT_API_VERSION,
    DEFAULT_CHANGES_EXPIRE,
    DEFAULT_MATCH,
    DEFAULT_ON_EMPTY,
    DEFAULT_ON_NULL,
    DURATION,
    MATCHES,
    ON_EMPTY,
    ON_NULL,
)
from engine.rules.schema_intake import DECODE, DEDUPE, LOOKUP, VERIFY
from engine.rules.schema_shops import SHOP, SHOPS_FILE
from engine.rules.schema_types import (
    AnyValue,
    Bool,
    Enum,
    Expr,
    Field,
    Int,
    ListOf,
    MapOf,
    Obj,
    OneOf,
    Scalar,
    Str,
)

# -- the format ---------------------------------------------------------------------

PARAM = Obj(
    title="Param",
    doc=(
        "One param of an event. Written as a bare string it is a JMESPath expression; a bare "
        "number or boolean is a constant; the mapping form sets the options below."
    ),
    fields=(
        Field("expr", Expr(), "JMESPath expression giving the value.", example="total_price"),
        Field(
            "const", AnyValue(), "A constant value instead of an expression.", example="INITIALIZED"
        ),
        Field(
            "required",
            Bool(),
            "A null/missing value is a problem (the event is not sent).",
            default=False,
        ),
        Field("default", AnyValue(), "Value used when the expression gives null."),
        Field(
            "on_null",
            Enum(values=ON_NULL),
            "What a null or missing value does: leave the param out, or make it a problem.",
            default=DEFAULT_ON_NULL,
        ),
        Field(
            "on_empty",
            Enum(values=ON_EMPTY),
            "What an empty string does: send it, leave the param out, or make it a problem.",
            default=DEFAULT_ON_EMPTY,
        ),
        Field("doc", Str(), "A note for readers; ignored by the engine."),
    ),
    exclusive=(("expr", "const"),),
    one_of=(("expr", "const"),),
)

PARAM_VALUE = OneOf(label="param", options=(Expr(), Scalar(), PARAM))

CONTACT = Obj(
    title="Contact",
    doc=(
        "How to create or update the contact before the event is sent (the CDP accepts "
        "events only for contacts it knows). The dispatcher posts it to `v1/contact` once "
        "per contact, before the first event for it; a 409 for a repeat counts as done."
    ),
    fields=(
        Field("email", Expr(), "The contact's email.", example="customer.email"),
        Field("phone", Expr(), "The phone, international digits.", example="phone(billing.phone)"),
        Field("firstName", Expr(), "First name."),
        Field("lastName", Expr(), "Last name."),
        Field("externalCustomerId", Expr(), "The shop's customer id."),
    ),
)

CHANGES = Obj(
    title="Changes",
    doc=(
        "Emit the event only when these values differ from the last ones sent for the "
        "same entity (a cart, an order): a storm of updates that change nothing sends "
        "nothing. The server remembers the last values per shop and entity for `expire`; "
        "dry-run and `--explain` say when an event is held back and why."
    ),
    fields=(
        Field(
            "values",
            ListOf(item=Expr(), single_ok=True),
            "Expressions whose values, together, are what must change (on the body, or on "
            "the element with `for_each`).",
            required=True,
            example="[line_items[].[variant_id, quantity, price], email]",
        ),
        Field(
            "key",
            Expr(),
            "The entity the values belong to (default: the event's `key`, its keyValue).",
            example="cart_token",
        ),
        Field(
            "expire",
            Str(pattern=DURATION),
            "How long the last values are remembered: `30d`, `12h`, `45m`, `90s`.",
            default=DEFAULT_CHANGES_EXPIRE,
        ),
    ),
)

EVENT_FIELDS = (
    Field(
        "type",
        Str(),
        "The eventTypeKey (a standard type from the catalogue or your own).",
        required=True,
        example="orderCreated",
    ),
    Field(
        "extends",
        Str(),
        "Name of a template whose key/params/identify_by this event "
        "starts from; its own entries override the template's.",
    ),
    Field("when", Expr(), "Emit the event only when this expression is truthy."),
    Field(
        "for_each",
        Expr(),
        "Emit one event per element of this array; inside, `@` is the "
        "element and `root()` the webhook body.",
        example="line_items",
    ),
    Field(
        "key",
        Expr(),
        "The keyValue (contact key). Optional when a param identifies the contact.",
        example="coalesce(email, phone)",
    ),
    Field(
        "identify_by",
        ListOf(item=Str(), single_ok=True),
        "Extra param names that identify "
        "the contact for this event type (the account's own identification parameter).",
    ),
    Field("params", MapOf(value=PARAM_VALUE, key_doc="param name"), "Param name → value."),
    Field("contact", CONTACT, "Create or update the contact first (new customers)."),
    Field(
        "changes",
        OneOf(label="changes", options=(ListOf(item=Expr()), CHANGES)),
        "Emit only when these values changed since the last event sent for the same "
        "entity: a list of expressions, or the mapping below (with `key` and `expire`).",
        example="[line_items[].[variant_id, quantity], total_price]",
    ),
    Field("doc", Str(), "A note for readers; ignored by the engine."),
)

EVENT = Obj(
    title="Event",
    doc="One event a rule emits: its type, contact key and params.",
    fields=EVENT_FIELDS,
)

TEMPLATE = Obj(
    title="Template",
    doc="Shared parts of events, used by `extends`.",
    fields=tuple(
        f for f in EVENT_FIELDS if f.name in ("key", "identify_by", "params", "contact", "doc")
    ),
)

RULE = Obj(
    title="Rule",
    doc="Selects webhooks by topic (and a condition) and says which events they become.",
    fields=(
        Field("name", Str(), "Unique within the rule set; shown in reports.", required=True),
        Field(
            "topics",
            ListOf(item=Str(), single_ok=True),
            "Topic names or glob patterns (`orders/*`); the rule applies when any matches.",
            required=True,
            example="[orders/updated, orders/paid]",
        ),
        Field("when", Expr(), "Apply the rule only when this expression is truthy."),
        Field("events", ListOf(item=EVENT), "The events the rule emits."),
        Field(
            "ignore",
            Str(),
            "Acknowledge matching webhooks and emit nothing; the text says why (shown by dry-run).",
        ),
        Field("doc", Str(), "A note for readers; ignored by the engine."),
    ),
    exclusive=(("events", "ignore"),),
    one_of=(("events", "ignore"),),
)

TABLE = Obj(
    title="Table",
    doc="A named lookup table used by `lookup('name', value)`.",
    fields=(
        Field(
            "map",
            MapOf(value=AnyValue(), key_doc="input value"),
            "Input value → output value. Keys are compared as strings (`3` finds `'3'`).",
            required=True,
        ),
        Field("default", AnyValue(), "Value for inputs not in `map` (otherwise null)."),
        Field(
            "strict",
            Bool(),
            "An input not in `map` is a problem and the event is not sent.",
            default=False,
        ),
        Field("doc", Str(), "A note for readers; ignored by the engine."),
    ),
    exclusive=(("default", "strict"),),
)

TOPIC = Obj(
    title="Topic",
    doc="Where the webhook's topic comes from: a request header or an expression over the body.",
    fields=(
        Field(
            "header",
            Str(),
            "Request header holding the topic (case-insensitive).",
            example="X-Shopify-Topic",
        ),
        Field("expression", Expr(), "Expression over the body giving the topic.", example="scope"),
    ),
    one_of=(("header", "expression"),),
)

_WARNINGS_DOC = (
    "Warnings the events sent must carry: `[code or {code, param}]`, each on one of them "
    "(others allowed); `[]`: none."
)
EXPECT = Obj(
    title="Expect",
    doc="What a rule test expects.",
    fields=(
        Field(
            "events",
            ListOf(item=AnyValue()),
            "The request bodies expected, in order. Param "
            "values may be written as native YAML even when v1 sends them JSON-encoded.",
        ),
        Field(
            "match",
            Enum(values=MATCHES),
            "`exact`: bodies equal. `subset`: "
            "each expected event's keys and params are found in the produced one (extra params "
            "allowed); counts still equal.",
            default=DEFAULT_MATCH,
        ),
        Field(
            "dropped",
            ListOf(item=AnyValue()),
            "Events expected to be dropped: "
            "`{eventTypeKey, rule, problems: [code or {code, param}]}` (subset match).",
        ),
        Field("warnings", ListOf(item=AnyValue()), _WARNINGS_DOC),
        Field(
            "held",
            ListOf(item=AnyValue()),
            "Events expected held back because nothing changed (`changes:`): "
            "`{eventTypeKey, rule}` (subset match).",
        ),
        Field("unmatched", Bool(), "Expect that no rule matches the webhook."),
        Field("ignored", Bool(), "Expect that a rule with `ignore` takes the webhook."),
    ),
)

TEST = Obj(
    title="Test",
    doc="A rule test: a webhook and what it must become.",
    fields=(
        Field("name", Str(), "Unique name of the test.", required=True),
        Field(
            "webhook",
            Str(),
            "Path of a webhook body file, relative to this rule file; a "
            "`.headers` file beside it supplies headers.",
            example="../examples/shopify/orders-create.json",
        ),
        Field("body", AnyValue(), "The webhook body inline instead of a file."),
        Field("topic", Str(), "Topic to use instead of the one found in the webhook."),
        Field(
            "headers",
            MapOf(value=Str(), key_doc="header name"),
            "Headers (added to / overriding the `.headers` file).",
        ),
        Field(
            "mocks",
            MapOf(value=AnyValue(), key_doc="lookup name"),
            "Answers for lookups "
            "instead of the network: a JSON file path (relative to this file) or inline.",
        ),
        Field(
            "before",
            ListOf(item=Str(), single_ok=True),
            "Webhook files processed first, in order (with this test's headers and mocks): "
            "the events they send count as sent, for `changes:`.",
            example="../examples/shopify/checkouts-create.json",
        ),
        Field("expect", EXPECT, "What must come out.", required=True),
    ),
    exclusive=(("webhook", "body"),),
    one_of=(("webhook", "body"),),
)

RULE_SET = Obj(
    title="RuleSet",
    doc=(
        "A rule set: a file, or a folder whose `ruleset.yaml` holds these keys and whose other "
        "`.yaml` files add rules, tables, vars, templates and tests."
    ),
    fields=(
        Field(
            "name",
            Str(pattern=r"^[a-z0-9][a-z0-9_-]*$"),
            "Source name: the webhook URL is "
            "`/hooks/{name}`. Defaults to the folder name in the folder form.",
            example="shopify",
        ),
        Field("description", Str(), "What this rule set is for."),
        Field(
            "api_version",
            Enum(values=API_VERSIONS),
            "`v1`: every param value a string, "
            "objects and arrays JSON-encoded. `v2`: objects and arrays as native JSON, "
            "scalars as strings (the v2 spec allows only those).",
            default=DEFAULT_API_VERSION,
        ),
        Field(
            "topic",
            TOPIC,
            "How the topic is found. Required (in the single file, or in "
            "the folder's `ruleset.yaml`).",
        ),
        Field("verify", VERIFY, "How the server verifies requests (signatures)."),
        Field("decode", DECODE, "How bodies are decoded (default: JSON)."),
        Field(
            "hosts",
            ListOf(item=Str(), single_ok=True),
            "The only hosts lookups may call (`${ENV}` allowed, e.g. "
            "to point a test at a local stand-in).",
        ),
        Field("lookups", MapOf(value=LOOKUP, key_doc="lookup name"), "Named HTTP lookups."),
        Field("dedupe", DEDUPE, "Where the delivery id is, to acknowledge repeats once."),
        Field(
            "max_body",
            Int(minimum=1),
            "Largest accepted body in bytes (the server's `--max-body`, 1 MiB, when absent).",
        ),
        Field(
            "vars",
            MapOf(value=Scalar(), key_doc="var name"),
            "Named constants, read with "
            "`var('name')`; strings may use `${ENV}` and `${ENV:-default}`.",
        ),
        Field("tables", MapOf(value=TABLE, key_doc="table name"), "Named lookup tables."),
        Field("templates", MapOf(value=TEMPLATE, key_doc="template name"), "Shared event parts."),
        Field(
            "rules",
            ListOf(item=RULE),
            "The rules, applied in order; every matching rule emits its events.",
        ),
        Field("tests", ListOf(item=TEST), "Rule tests, run by `hookmap test`."),
    ),
)

#: Keys of RULE_SET that only the folder's ``ruleset.yaml`` (or a single file) may hold.
HEADER_KEYS = (
    "name",
    "description",
    "api_version",
    "topic",
    "verify",
    "dedupe",
    "max_body",
    "decode",
    "hosts",
)

OBJECTS: Sequence[Obj] = (
    RULE_SET,
    TOPIC,
    VERIFY,
    DEDUPE,
    DECODE,
    LOOKUP,
    TABLE,
    TEMPLATE,
    RULE,
    EVENT,
    CHANGES,
    PARAM,
    CONTACT,
    TEST,
    EXPECT,
)


def shops_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a shops file, for editors."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://hookmap.dev/schema/shops.json",
        "title": "hookmap shops file",
        **SHOPS_FILE.definition(),
        "$defs": {SHOP.title: SHOP.definition()},
    }


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a rule file, for editors."""
    root = RULE_SET.definition()
    # in the folder form a file may hold only rules/tests: nothing is required at the top
    root = {k: v for k, v in root.items() if k != "required"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://hookmap.dev/schema/rules.json",
        "title": "hookmap rule file",
        **root,
        "$defs": {o.title: o.definition() for o in OBJECTS if o is not RULE_SET},
    }
