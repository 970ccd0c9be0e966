"""Signature schemes: the names a rule set's ``verify:`` uses, and the spec it compiles to.

Declared once here: the schema takes its enums and defaults from these names,
``engine.rules.verify`` checks a ``verify:`` mapping against them and builds the
``VerifySpec``, and ``engine.server.signatures`` judges requests with it.
Facts per platform: ``shared/webhooks/README.md``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, get_args

Scheme = Literal[
    "shopify",
    "woocommerce",
    "hmac",
    "timestamped",
    "standard-webhooks",
    "ecwid",
    "rsa-sha256",
    "jwt",
    "bearer",
    "basic",
    "none",
]
Algorithm = Literal["sha1", "sha256", "sha512"]
Encoding = Literal["hex", "base64"]
Signed = Literal["body", "base64-body"]

SCHEMES: tuple[Scheme, ...] = get_args(Scheme)
ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)
ENCODINGS: tuple[Encoding, ...] = get_args(Encoding)
SIGNED: tuple[Signed, ...] = get_args(Signed)

DEFAULT_ALGORITHM: Algorithm = "sha256"
#: seconds a signed timestamp may differ from now, past or future
DEFAULT_TOLERANCE = 300
DEFAULT_SIGNED: Signed = "base64-body"

#: schemes checked with the platform's PEM public key instead of a shared secret
PUBLIC_KEY_SCHEMES = frozenset({"rsa-sha256", "jwt"})

#: schemes whose signature covers the body (a delivery id read from it is as good as it)
#: or, for ``ecwid``, the event id the body carries
SIGNS_BODY = frozenset(
    {"shopify", "woocommerce", "hmac", "timestamped", "standard-webhooks", "ecwid"}
    | {"rsa-sha256", "jwt"}
)
#: schemes that check a shared credential and sign nothing of the request
CREDENTIAL_SCHEMES = frozenset({"basic", "bearer"})


def covers_header(scheme: str, header: str) -> bool:
    """Whether ``scheme``'s signature covers the request header ``header`` (only Standard
    Webhooks signs its id header; every other scheme signs the body, or nothing)."""
    return scheme == "standard-webhooks" and header.lower() in ("webhook-id", "svix-id")


#: Which keys of ``verify:`` each scheme reads; any other is a mistake worth reporting.
APPLIES: dict[str, frozenset[str]] = {
    "none": frozenset({"scheme"}),
    "shopify": frozenset({"scheme", "secret_env", "header"}),
    # WooCommerce lets a site filter the algorithm (woocommerce_webhook_hash_algorithm).
    "woocommerce": frozenset({"scheme", "secret_env", "header", "algorithm"}),
    "hmac": frozenset({"scheme", "secret_env", "header", "algorithm", "encoding", "prefix"}),
    "timestamped": frozenset(
        {"scheme", "secret_env", "header", "algorithm", "encoding", "tolerance"}
    ),
    "standard-webhooks": frozenset({"scheme", "secret_env", "tolerance"}),
    "ecwid": frozenset({"scheme", "secret_env", "header"}),
    "rsa-sha256": frozenset({"scheme", "public_key_env", "header", "signed"}),
    "jwt": frozenset({"scheme", "public_key_env"}),
    "bearer": frozenset({"scheme", "secret_env", "header"}),
    "basic": frozenset({"scheme", "secret_env", "header"}),
}

#: (header, encoding) a scheme uses when the spec leaves them empty.
SCHEME_DEFAULTS: dict[str, tuple[str, Encoding]] = {
    "shopify": ("X-Shopify-Hmac-Sha256", "base64"),
    "woocommerce": ("X-WC-Webhook-Signature", "base64"),
    "hmac": ("", "hex"),
    "timestamped": ("Stripe-Signature", "hex"),  # Stripe writes v1 as hex
    "standard-webhooks": ("webhook-signature", "base64"),
    "ecwid": ("X-Ecwid-Webhook-Signature", "base64"),
    "rsa-sha256": ("x-adobe-commerce-webhook-signature", "base64"),
    # The encodings below are fixed by the scheme, not read from the spec.
    "jwt": ("", "base64"),
    "bearer": ("Authorization", "base64"),
    "basic": ("Authorization", "base64"),
    "none": ("", "hex"),
}


@dataclasses.dataclass(frozen=True)
class VerifySpec:
    """How one rule set's requests are signed. Empty header/encoding = the scheme's default."""

    scheme: Scheme
    secret_envs: tuple[str, ...] = ()
    header: str = ""
    algorithm: Algorithm = DEFAULT_ALGORITHM
    encoding: Encoding | Literal[""] = ""
    prefix: str = ""
    tolerance_seconds: int = DEFAULT_TOLERANCE
    #: what a ``timestamped`` signature covers; ``{t}`` is the header's t= value verbatim
    signed_payload: str = "{t}.{body}"
    #: ``rsa-sha256``/``jwt``: variables holding PEM public keys (or ``@path``)
    public_key_envs: tuple[str, ...] = ()
    #: what an ``rsa-sha256`` signature covers
    signed: Signed = DEFAULT_SIGNED
    #: ``rsa-sha256``: more headers that may carry a signature (Adobe I/O sends two)
    alt_headers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES or self.algorithm not in ALGORITHMS:
            raise ValueError(f"bad scheme or algorithm: {self.scheme!r}, {self.algorithm!r}")
        if "{body}" not in self.signed_payload:
            raise ValueError("signed_payload must contain {body}")
        if self.signed not in SIGNED:
            raise ValueError(f"bad signed: {self.signed!r}")
        header, encoding = SCHEME_DEFAULTS[self.scheme]
        object.__setattr__(self, "header", self.header or header)
        object.__setattr__(self, "encoding", self.encoding or encoding)

    @property
    def env_names(self) -> tuple[str, ...]:
        """The variables the server reads: public keys or secrets, per scheme."""
        return self.public_key_envs if self.scheme in PUBLIC_KEY_SCHEMES else self.secret_envs
