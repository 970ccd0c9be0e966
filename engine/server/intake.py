"""Intake decisions, before anything is stored: which source, is it signed, is it a repeat.

Kept apart from the HTTP plumbing in ``engine.server.app`` so each rule can be tested
without a socket, and so the ``hookmap`` commands that re-read stored webhooks can
share them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

from engine.decoders import decode
from engine.errors import PayloadError, SecretError, ServeRefused
from engine.evaluate import EXPRESSION_ERRORS
from engine.rules.functions import EvalContext, make_options
from engine.rules.model import RuleSet
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
        """The platform's delivery id (header or body expression), or None."""
        rs = self.ruleset
        if rs.dedupe_header:
            return headers.get(rs.dedupe_header) or None
        if rs.dedupe_expr is None:
            return None
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
