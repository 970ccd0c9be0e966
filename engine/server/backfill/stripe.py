"""Stripe's past Checkout sessions, as ``checkout.session.completed`` events.

``GET /v1/checkout/sessions?created[gte]=<unix s>&created[lt]=...&status=complete
&limit=100&starting_after=cs_...`` with the secret (or a restricted) key as a Bearer
token, the rule set's lookups' own ``STRIPE_SECRET_KEY``. Stripe lists newest first and
pages with object ids: ``starting_after`` the last session of a page gives the older
ones, ``has_more`` says whether there are. So where a run got to is the last session id
stored, and the newest one seen is kept beside it: once the listing is read to its end
the cursor becomes ``ending_before`` that newest session, and a run again reads only
the sessions completed since, page by page towards the present (``ending_before`` the
newest of each page). Only complete sessions are asked for: an open or expired one is
no order.

A Stripe event carries the whole session (``data.object``) and the shipped rule set
fetches its line items (``lookups``): a backfilled session becomes the event Stripe
sends, ``{"id", "object": "event", "type", "created", "data": {"object": <session>}}``.
The topic is ``checkout.session.completed``, the one event every completed session
has, which the rules make ``orderCreated`` with the session's current payment status
(paid, or ``INITIALIZED`` while an asynchronous payment is pending or after it failed)
and which they ignore for a setup-mode session. The rule set has no update event that
every session would have had (``async_payment_succeeded`` is only for asynchronous
methods).

Rate limit: 100 read requests a second in live mode, 25 in test mode, the lookups
included; a 429 is retried with backoff (Stripe sends ``Stripe-Should-Retry``, not
``Retry-After``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from engine.errors import PlatformApiError, UsageError
from engine.server.backfill.api import Options
from engine.server.backfill.source import (
    BACKFILL_HEADER,
    Page,
    Position,
    Synthesized,
    Variable,
    Window,
    delivery_id,
    order_body,
    site_url,
)

NAME = "stripe"
TOPIC = "checkout.session.completed"
#: listing requests a second: each page's sessions make as many line-item lookups
RATE = 5.0
PAGE_SIZE = 100
PATH = "/v1/checkout/sessions"
DEFAULT_API_BASE = "https://api.stripe.com"
VARIABLES = (
    Variable(
        "STRIPE_SECRET_KEY",
        "a restricted key with Checkout Sessions read access, or the secret key "
        "(the rule set's lookups use it too)",
        secret=True,
    ),
    Variable("STRIPE_API_BASE", f"leave unset ({DEFAULT_API_BASE})", False),
)


class Stripe:
    """The complete Checkout sessions of one Stripe account in one window."""

    name = NAME

    def __init__(self, values: Mapping[str, str], window: Window, options: Options) -> None:
        base = site_url(values.get("STRIPE_API_BASE") or DEFAULT_API_BASE, "STRIPE_API_BASE")
        key = values["STRIPE_SECRET_KEY"].strip()
        if not key.startswith(("sk_", "rk_")):
            raise UsageError("STRIPE_SECRET_KEY: a secret (sk_…) or restricted (rk_…) key")
        self.window = window
        self.page_size = options.size(PAGE_SIZE, PAGE_SIZE)
        self.client = options.client(
            NAME,
            base,
            {"Authorization": f"Bearer {key}", "Accept": "application/json"},
            rate=RATE,
            secrets=[key],
        )

    def close(self) -> None:
        self.client.close()

    def count(self) -> int | None:
        return None  # a list says has_more, never how many

    def _params(self) -> dict[str, str]:
        out = {
            "created[gte]": str(int(self.window.since.timestamp())),
            "status": "complete",
            "limit": str(self.page_size),
        }
        if self.window.until is not None:
            out["created[lt]"] = str(int(self.window.until.timestamp()))
        return out

    def pages(self, position: Position | None) -> Iterator[Page]:
        if position and position.get("ending_before"):
            yield from self._newer(str(position["ending_before"]))
            return
        after = (position or {}).get("starting_after")
        newest = (position or {}).get("newest")
        number = 0
        while True:
            params = self._params()
            if after:
                params["starting_after"] = str(after)
            more, sessions = _listing(self.client.get(PATH, params))
            newest = newest or (sessions[0]["id"] if sessions else None)
            number += 1
            again = {"starting_after": after, "newest": newest}
            if not more:  # read to the end: a run again reads only what is newer
                done = {"ending_before": newest} if newest else {}
                yield Page(number, sessions, done, again)
                return
            after = sessions[-1]["id"]
            yield Page(number, sessions, {"starting_after": after, "newest": newest}, again)

    def _newer(self, before: str) -> Iterator[Page]:
        """The sessions newer than ``before``, the oldest page first."""
        number = 0
        while True:
            more, sessions = _listing(
                self.client.get(PATH, {**self._params(), "ending_before": before})
            )
            number += 1
            again = {"ending_before": before}
            before = sessions[0]["id"] if sessions else before
            yield Page(number, sessions, {"ending_before": before}, again)
            if not more or not sessions:
                return

    def webhook(self, order: Mapping[str, Any], topic: str) -> Synthesized:
        session_id = str(order["id"])
        delivery = delivery_id(NAME, session_id, topic)
        body = {
            "id": delivery,
            "object": "event",
            "api_version": None,
            "created": order.get("created") or 0,
            "type": topic,
            "livemode": bool(order.get("livemode")),
            "pending_webhooks": 0,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": order},
        }
        headers = {"Content-Type": "application/json", BACKFILL_HEADER: NAME}
        return Synthesized(session_id, headers, order_body(body), delivery)


def _listing(answer: httpx.Response) -> tuple[bool, tuple[Mapping[str, Any], ...]]:
    try:
        data = answer.json()
    except ValueError as exc:
        raise PlatformApiError(NAME, PATH, "the answer is not JSON") from exc
    sessions = data.get("data") if isinstance(data, dict) else None
    if not isinstance(sessions, list) or not all(
        isinstance(s, dict) and str(s.get("id", "")).startswith("cs_") for s in sessions
    ):
        raise PlatformApiError(NAME, PATH, 'the answer has no "data" list of sessions')
    return bool(data.get("has_more")), tuple(sessions)
