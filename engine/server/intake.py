"""Intake decisions, before anything is stored: which source, is it signed, is it a repeat.

Kept apart from the HTTP plumbing in ``engine.server.app`` so each rule can be tested
without a socket, and so the ``hookmap`` commands that re-read stored webhooks can
share them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence

from engine.decoders import decode
from engine.errors import PayloadError, SecretError, ServeRefused
from engine.evaluate import EXPRESSION_ERRORS
from engine.rules.functions import EvalContext, make_options
from engine.rules.model import RuleSet
from engine.rules.schemes import CREDENTIAL_SCHEMES, SIGNS_BODY, covers_header
from engine.server.secrets import resolve_secrets
from engine.server.signatures import Verdict, verify
from engine.webhook import Webhook

DEFAULT_MAX_BODY = 1024 * 1024

#: WooCommerce pings a new webhook with the form body ``webhook_id=N``: unsigned, no topic.
_WC_PING = re.compile(rb"webhook_id=\d+")


@dataclasses.dataclass(frozen=True)
class Source:
    """A rule set ready to receive: its compiled rules and resolved secrets."""

    ruleset: RuleSet
    secrets: tuple[bytes, ...] = dataclasses.field(repr=False)
    max_body: int = DEFAULT_MAX_BODY
    #: the shop it serves ("" when the server serves one shop per rule set)
    shop: str = ""

    @property
    def name(self) -> str:
        return self.ruleset.name

    @property
    def label(self) -> str:
        """How messages name it: ``shopify``, or ``shopify/acme`` for a shop."""
        return f"{self.ruleset.name}/{self.shop}" if self.shop else self.ruleset.name

    def verify(self, body: bytes, headers: Mapping[str, str], now: float | None = None) -> Verdict:
        """The signature verdict; ``scheme: none`` always passes (declared explicitly)."""
        assert self.ruleset.verify is not None  # build_sources refuses the rest
        return verify(self.ruleset.verify, self.secrets, body, headers, now)

    def delivery_id(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """What a repeat is recognised by: the platform's delivery id, unless the scheme
        signs the body and the id is in a header it does not sign; else the digest of
        the topic and body (``sha256:...``).

        Shopify and WooCommerce sign the body, not their delivery-id headers: whoever
        captured a request can post it again with a fresh id and a signature that still
        verifies, so the signed body (and topic) is what repeats. Shopify sends one order
        body as both ``orders/create`` and ``orders/paid``: two deliveries, each sent
        once. A scheme that signs nothing (Basic, Bearer) keeps the declared id: a captured
        request carries the credential itself, so no key stops a forgery, and the id is
        what the platform keeps across its redeliveries.
        """
        rs = self.ruleset
        scheme = rs.verify.scheme if rs.verify is not None else "none"
        if rs.dedupe_header:
            trusted = covers_header(scheme, rs.dedupe_header) or scheme not in SIGNS_BODY
            found = _header(headers, rs.dedupe_header) if trusted else None
            return found or self._digest(body, headers)
        if rs.dedupe_expr is not None:
            return self._declared_id(body, headers) or self._digest(body, headers)
        return self._digest(body, headers)

    def _digest(self, body: bytes, headers: Mapping[str, str]) -> str:
        digest = hashlib.sha256()
        topic = self.ruleset.topic_header and _header(headers, self.ruleset.topic_header)
        if topic:
            digest.update(topic.encode("utf-8") + b"\0")
        digest.update(body)
        return "sha256:" + digest.hexdigest()

    def _declared_id(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        rs = self.ruleset
        assert rs.dedupe_expr is not None
        try:
            # the id sits in the decoded data (a JWT's claims, a Pub/Sub message)
            decoded = decode(Webhook(body, headers), rs.decode)
        except (PayloadError, RecursionError):  # undecodable: stored, reported later
            return None
        context = EvalContext(root=decoded.data, headers=headers, envelope=decoded.envelope)
        try:
            found = rs.dedupe_expr.search(decoded.data, make_options(context))
        except EXPRESSION_ERRORS:
            return None
        return None if found in (None, "") else str(found)

    def storable(self, headers: Mapping[str, str]) -> dict[str, str]:
        """``headers`` as the store keeps them: credentials never (a scheme's own shared
        credential, Basic or Bearer, and any Authorization or Cookie), signatures yes."""
        secret = set(_CREDENTIAL_HEADERS)
        verify = self.ruleset.verify
        if verify is not None and verify.scheme in CREDENTIAL_SCHEMES:
            secret.add(verify.header.lower())
        return {k: (REMOVED if k.lower() in secret else v) for k, v in headers.items()}


#: what a stored credential header holds instead of its value
REMOVED = "[removed: a credential]"
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    found = headers.get(name)
    if found is None:
        lowered = name.lower()
        found = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return found or None


def build_sources(
    rulesets: Sequence[RuleSet], env: Mapping[str, str], max_body: int = DEFAULT_MAX_BODY
) -> dict[str, Source]:
    """Every rule set as a Source; ``ServeRefused`` lists every one that cannot be served."""
    problems: list[str] = []
    sources: dict[str, Source] = {}
    for rs in rulesets:
        source = make_source(rs, env, max_body, problems)
        if source is not None:
            sources[rs.name] = source
    if problems:
        raise ServeRefused(problems)
    return sources


def make_source(
    rs: RuleSet,
    env: Mapping[str, str],
    max_body: int,
    problems: list[str],
    shop: str = "",
) -> Source | None:
    """``rs`` ready to receive, its secrets read from ``env``; None (with every reason in
    ``problems``) when it cannot be served."""
    label = f"rule set '{rs.name}'" + (f" for shop '{shop}'" if shop else "")
    if rs.verify is None:
        problems.append(
            f"{label} ({rs.files[0] if rs.files else '?'}) declares no "
            "`verify`: add its signature scheme, or `verify: {scheme: none}` to accept "
            "unsigned requests on purpose"
        )
        return None
    found = len(problems)
    for lookup in rs.lookups:
        if lookup.missing_env:
            problems.append(
                f"{label}: lookup '{lookup.name}' needs {', '.join(lookup.missing_env)} set"
            )
    try:
        secrets = tuple(resolve_secrets(rs.verify, env))
    except SecretError as exc:
        problems.append(f"{label}: {exc}")
        return None
    if len(problems) > found:
        return None
    return Source(rs, secrets, rs.max_body or max_body, shop)


def is_woocommerce_ping(headers: Mapping[str, str], body: bytes) -> bool:
    """The unsigned ``webhook_id=N`` form post WooCommerce sends when a webhook is created."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    return (
        content_type == "application/x-www-form-urlencoded"
        and "x-wc-webhook-topic" not in headers
        and _WC_PING.fullmatch(body.strip()) is not None
    )


def reason_label(verdict: Verdict) -> str:
    """A short, bounded label for metrics (the full reason goes to the log)."""
    return f"signature_{verdict.problem or 'invalid'}"
