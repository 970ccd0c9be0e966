"""The rule-file format, the keys about receiving: ``verify``, ``dedupe``, ``decode``,
``lookups``.

How the server checks a request, recognises a repeat, reads the body and fetches what
the webhook only names. Part of the one declaration in ``engine.rules.schema``.
"""

from __future__ import annotations

from engine.rules.model import (
    DEFAULT_CACHE_TTL,
    DEFAULT_FORMAT,
    DEFAULT_NOT_FOUND,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    FORMATS,
    NOT_FOUND,
)
from engine.rules.schema_types import AnyValue, Enum, Expr, Field, Int, ListOf, MapOf, Obj, Str
from engine.rules.schemes import (
    ALGORITHMS,
    DEFAULT_SIGNED,
    DEFAULT_TOLERANCE,
    ENCODINGS,
    SCHEMES,
    SIGNED,
)

VERIFY = Obj(
    title="Verify",
    doc=(
        "How the server checks that a request comes from the platform. A rule set with no "
        "`verify` cannot be served; `scheme: none` says so explicitly."
    ),
    fields=(
        Field(
            "scheme",
            Enum(values=SCHEMES),
            "How requests are signed: " + ", ".join(SCHEMES) + ".",
            required=True,
            example="shopify",
        ),
        Field(
            "secret_env",
            ListOf(item=Str(), single_ok=True),
            "Environment variable(s) holding the secret; several = rotation, any may match.",
            example="SHOPIFY_WEBHOOK_SECRET",
        ),
        Field(
            "public_key_env",
            ListOf(item=Str(), single_ok=True),
            "For `rsa-sha256` and `jwt`: environment variable(s) holding the platform's PEM "
            "public key, or `@/path/to/key.pem`; several = rotation, any may match.",
            example="WIX_PUBLIC_KEY",
        ),
        Field(
            "header",
            ListOf(item=Str(), single_ok=True),
            "Header carrying the signature or token (required for `hmac`); for `rsa-sha256` "
            "a list, any of which may carry a valid signature.",
        ),
        Field(
            "algorithm",
            Enum(values=ALGORITHMS),
            "HMAC hash: sha1, sha256 or sha512 (default sha256).",
        ),
        Field(
            "encoding",
            Enum(values=ENCODINGS),
            "How the signature is written: hex or base64 (`hmac` default hex).",
        ),
        Field(
            "prefix",
            Str(),
            "Text before the signature in the header, e.g. `sha256=` (GitHub style).",
        ),
        Field(
            "tolerance",
            Int(minimum=1),
            "Seconds a signed timestamp may differ from now, past or future (default 300).",
            default=DEFAULT_TOLERANCE,
        ),
        Field(
            "signed",
            Enum(values=SIGNED),
            "What an `rsa-sha256` signature covers: `base64-body` (Adobe Commerce webhooks, "
            "the default) or the raw `body` (Adobe I/O Events).",
            default=DEFAULT_SIGNED,
        ),
    ),
    # which keys apply, and which are required, depend on the scheme
    checker="engine.rules.verify",
)

DEDUPE = Obj(
    title="Dedupe",
    doc=(
        "Where the platform's delivery id is: a repeated id is acknowledged, not processed "
        "twice. A header the signature does not cover is not trusted (W501): repeats are "
        "then recognised by the digest of the topic and signed body, as when no id is "
        'declared (docs/server.md, "Repeats and replayed requests").'
    ),
    fields=(
        Field(
            "header",
            Str(),
            "Request header holding the delivery id.",
            example="X-Shopify-Webhook-Id",
        ),
        Field("expression", Expr(), "Expression over the body giving the id.", example="eventId"),
    ),
    one_of=(("header", "expression"),),
)

DECODE = Obj(
    title="Decode",
    doc="How request bodies are decoded before the rules read them.",
    fields=(
        Field(
            "format",
            Enum(values=FORMATS),
            "`auto`: JSON, or form fields for a form body. "
            "`jwt`: the body is a JWT, its claims are the data (the signature is checked "
            "by `verify`). `pubsub`: a Pub/Sub push, the data is the JSON in base64 "
            "`message.data`. `cloudevents`: the data is the event's `data`. The outer "
            "document is `envelope()`.",
            default=DEFAULT_FORMAT,
        ),
        Field(
            "unwrap",
            ListOf(item=Str(), single_ok=True),
            "Dotted paths of JSON-encoded strings to parse in place, in order.",
            example="[data, data.data]",
        ),
    ),
)

LOOKUP = Obj(
    title="Lookup",
    doc=(
        "A named HTTP GET whose JSON answer expressions read with `fetched('name')`, for "
        "platforms whose webhooks carry only ids. The host must be in `hosts`."
    ),
    fields=(
        Field(
            "url",
            Str(),
            "URL template: `{arg}` is filled from `args`, percent-encoded; "
            "`${ENV}` is read at load.",
            required=True,
            example="https://api.bigcommerce.com/stores/${BC_STORE}/v2/orders/{id}",
        ),
        Field(
            "args",
            MapOf(value=Expr(), key_doc="placeholder"),
            "Placeholder → expression "
            "over the body (may use `fetched()` of a lookup declared before). An argument "
            'null or `""` on a webhook: the lookup is not made and `fetched()` gives null '
            "(see *Lookups that cannot apply*).",
        ),
        Field(
            "headers",
            MapOf(value=Str(), key_doc="header"),
            "Request headers; `${ENV}` is read at load (tokens stay out of rule files).",
        ),
        Field("timeout", AnyValue(), "Seconds per attempt.", default=DEFAULT_TIMEOUT),
        Field(
            "retries",
            Int(minimum=0),
            "Attempts after the first on errors, 429, 5xx.",
            default=DEFAULT_RETRIES,
        ),
        Field(
            "cache_ttl",
            Int(minimum=0),
            "Seconds an answer is reused for the same URL.",
            default=DEFAULT_CACHE_TTL,
        ),
        Field(
            "not_found",
            Enum(values=NOT_FOUND),
            "What a 404 means: `retry` (keep the webhook, try later) or `null` (the "
            "resource is gone: `fetched()` gives null).",
            default=DEFAULT_NOT_FOUND,
        ),
        Field("doc", Str(), "A note for readers; ignored by the engine."),
    ),
)
