"""The shops file, declared once: which shops one deployment serves, and each one's settings.

An integrator serving many shops keeps one rule set per platform and lists the shops
here: the rule set each uses, the environment variables holding its signing secret and
its CDP API key, and what differs per shop (vars, API version, the CDP's URL, the
variables its rule set reads, such as a BigCommerce store hash and token). The loader
reads it against this declaration (located errors, as for rule files); ``hookmap schema
--shops`` prints it as a JSON Schema and ``docs/rules.md`` documents it.
"""

from __future__ import annotations

from engine.rules.model import API_VERSIONS
from engine.rules.schema_types import Enum, Field, ListOf, MapOf, Obj, Scalar, Str

#: a shop id: the last segment of its webhook URL, ``/hooks/{source}/{shop}``
SHOP_ID = r"^[a-z0-9][a-z0-9_-]*$"
#: an environment variable's name
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

SHOP = Obj(
    title="Shop",
    doc=(
        "One shop: its webhooks arrive at `/hooks/{rule set}/{shop id}`, are checked with "
        "its own secret, and its events go to its own CDP account with its own key."
    ),
    fields=(
        Field(
            "ruleset",
            Str(),
            "The name of the rule set the shop's webhooks go through.",
            required=True,
            example="shopify",
        ),
        Field(
            "api_key_env",
            Str(pattern=ENV_NAME),
            "Environment variable holding the shop's CDP API key (never the key itself).",
            required=True,
            example="ACME_ESPUTNIK_KEY",
        ),
        Field(
            "api_url",
            Str(),
            "The CDP's base URL for this shop (default: `HOOKMAP_API_URL`, else the vendor's).",
            example="https://yespo.io/api",
        ),
        Field(
            "secret_env",
            ListOf(item=Str(pattern=ENV_NAME), single_ok=True),
            "Environment variable(s) holding the shop's signing secret, replacing the rule "
            "set's `verify.secret_env` (several: a rotation, any may match).",
            example="ACME_SHOPIFY_SECRET",
        ),
        Field(
            "public_key_env",
            ListOf(item=Str(pattern=ENV_NAME), single_ok=True),
            "For `rsa-sha256` and `jwt` rule sets: the variable(s) holding the platform's "
            "public key for this shop, replacing the rule set's `verify.public_key_env`.",
        ),
        Field(
            "api_version",
            Enum(values=API_VERSIONS),
            "The Generate event version for this shop, replacing the rule set's.",
        ),
        Field(
            "vars",
            MapOf(value=Scalar(), key_doc="var name"),
            "Values replacing the rule set's vars for this shop (`${ENV}` allowed), such as "
            "`phone_country`.",
        ),
        Field(
            "env",
            MapOf(value=Str(pattern=ENV_NAME), key_doc="variable the rule set reads"),
            "For this shop, read each variable the rule set names (`${NAME}` in its hosts, "
            "lookups and vars) from another variable: `BC_STORE_HASH: ACME_BC_STORE_HASH`.",
        ),
        Field("doc", Str(), "A note for readers; ignored by the engine."),
    ),
)

SHOPS_FILE = Obj(
    title="ShopsFile",
    doc="The shops one deployment serves (`hookmap serve --shops FILE`).",
    fields=(
        Field(
            "shops",
            MapOf(value=SHOP, key_doc="shop id"),
            "Shop id → its settings. The id is the last segment of the shop's webhook URL.",
            required=True,
        ),
    ),
)

OBJECTS = (SHOPS_FILE, SHOP)
