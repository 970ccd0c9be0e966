"""Shopify's past orders from the REST Admin API, as ``orders/updated`` webhooks.

``GET /admin/api/{version}/orders.json?status=any&created_at_min=...&since_id=N&limit=250``
with the ``X-Shopify-Access-Token`` header, then the ``Link: <...>; rel="next"`` URL of each
answer (cursor pagination: ``page_info`` carries the filters). ``since_id`` makes the pages
come in ascending id order, so where a run got to is the last id it stored: a resume asks
again with ``since_id`` and needs no ``page_info`` that may have expired meanwhile.
``orders/count.json`` gives the total for the progress bar.

Rate limit: a leaky bucket per app and store (40 calls, leaking 2 a second on standard
plans, 4 on Advanced, 20 on Plus: ``--api-rate``). Every answer says how full it is
(``X-Shopify-Shop-Api-Call-Limit: 32/40``); when fewer than ``BUCKET_MARGIN`` calls are
left the next request waits for the bucket to drain that far, so a run leaves room for
the app's other callers and is not refused; a 429 is still waited out (``Retry-After``).

The topic is ``orders/updated``: the shipped rules make it ``orderUpdated`` with the
order's current status (cancelled, refunded, fulfilled ...), which the CDP applies to an
order it does not know by creating it. ``orders/create`` would send ``orderCreated``,
which starts the account's "new order" workflows for orders months old, and twice for an
order a live ``orders/create`` webhook brought already. Orders older than 60 days are
listed only with the ``read_all_orders`` scope (Shopify silently leaves them out
otherwise).
"""

from __future__ import annotations

import re
import urllib.parse
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

NAME = "shopify"
#: the topic each order is fed through unless ``--topic`` names another
TOPIC = "orders/updated"
#: the Admin API version asked for unless ``SHOPIFY_API_VERSION`` says (the examples')
API_VERSION = "2026-10"
#: requests a second: the standard plans' leak rate
RATE = 2.0
PAGE_SIZE = 250
#: calls left in the bucket below which a run waits (room for the app's other callers)
BUCKET_MARGIN = 4
VARIABLES = (
    Variable("SHOPIFY_SHOP", "the shop's myshopify.com domain, or its https:// URL"),
    Variable(
        "SHOPIFY_ADMIN_TOKEN",
        "an Admin API access token with read_orders (and read_all_orders past 60 days)",
        secret=True,
    ),
    Variable("SHOPIFY_API_VERSION", f"the Admin API version (default {API_VERSION})", False),
)
_VERSION = re.compile(r"^(\d{4}-\d{2}|unstable)$")
_CALL_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class Shopify:
    """The orders of one Shopify shop in one window."""

    name = NAME

    def __init__(self, values: Mapping[str, str], window: Window, options: Options) -> None:
        self.base_url = site_url(values["SHOPIFY_SHOP"], "SHOPIFY_SHOP")
        self.domain = urllib.parse.urlsplit(self.base_url).netloc
        self.version = values.get("SHOPIFY_API_VERSION") or API_VERSION
        if not _VERSION.match(self.version):
            raise UsageError(
                f"SHOPIFY_API_VERSION: {self.version!r} is not a version (2026-10, unstable)"
            )
        self.window = window
        self.page_size = options.size(PAGE_SIZE, PAGE_SIZE)
        token = values["SHOPIFY_ADMIN_TOKEN"]
        self._rate = options.rate or RATE
        self.client = options.client(
            NAME,
            self.base_url,
            {"X-Shopify-Access-Token": token, "Accept": "application/json"},
            rate=RATE,
            pace=self._pace,
            secrets=[token],
        )

    def _filters(self) -> dict[str, str]:
        out = {"status": "any", "created_at_min": self.window.since.isoformat()}
        if self.window.until is not None:
            out["created_at_max"] = self.window.until.isoformat()
        return out

    def _pace(self, headers: httpx.Headers) -> float:
        """Seconds until the bucket has ``BUCKET_MARGIN`` calls of room again."""
        match = _CALL_LIMIT.match(headers.get("x-shopify-shop-api-call-limit", ""))
        if match is None:
            return 0.0
        used, size = int(match[1]), int(match[2])
        short = BUCKET_MARGIN - (size - used)
        return 0.0 if short < 0 else (short + 1) / self._rate

    def close(self) -> None:
        self.client.close()

    def count(self) -> int | None:
        path = f"/admin/api/{self.version}/orders/count.json"
        answer = self.client.get(path, self._filters())
        count = _json(answer, path).get("count") if answer.content else None
        return count if isinstance(count, int) else None

    def pages(self, position: Position | None) -> Iterator[Page]:
        since_id = int((position or {}).get("since_id", 0))
        target = f"/admin/api/{self.version}/orders.json"
        params: dict[str, str] | None = {
            **self._filters(),
            "since_id": str(since_id),
            "limit": str(self.page_size),
        }
        number = 0
        while True:
            answer = self.client.get(target, params)
            orders = _orders(answer, target)
            before = since_id
            since_id = max([since_id, *(int(o["id"]) for o in orders)])
            number += 1
            yield Page(number, orders, {"since_id": since_id}, {"since_id": before})
            link = answer.links.get("next", {}).get("url")
            if not orders or not link:
                return
            target, params = link, None  # page_info carries the filters

    def webhook(self, order: Mapping[str, Any], topic: str) -> Synthesized:
        order_id = str(order["id"])
        delivery = delivery_id(NAME, order_id, topic)
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": self.domain,
            "X-Shopify-API-Version": self.version,
            "X-Shopify-Order-Id": order_id,
            "X-Shopify-Webhook-Id": delivery,
            BACKFILL_HEADER: NAME,
        }
        return Synthesized(order_id, headers, order_body(order), delivery)


def _json(answer: httpx.Response, target: str) -> dict[str, Any]:
    try:
        data = answer.json()
    except ValueError as exc:
        raise PlatformApiError(NAME, target, "the answer is not JSON") from exc
    if not isinstance(data, dict):
        raise PlatformApiError(NAME, target, "the answer is not a JSON object")
    return data


def _orders(answer: httpx.Response, target: str) -> tuple[Mapping[str, Any], ...]:
    orders = _json(answer, target).get("orders")
    if not isinstance(orders, list) or not all(
        isinstance(o, dict) and isinstance(o.get("id"), int) for o in orders
    ):
        raise PlatformApiError(NAME, target, 'the answer has no "orders" list of orders with ids')
    return tuple(orders)
