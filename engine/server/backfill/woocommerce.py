"""WooCommerce's past orders from the REST API (v3), as ``order.created`` webhooks.

``GET /wp-json/wc/v3/orders?status=any&after=...&dates_are_gmt=true&orderby=id&order=asc
&per_page=100&page=N`` with HTTP Basic auth (the REST API key's consumer key and secret;
over HTTPS only, as WooCommerce itself requires). Pages are numbered; ``X-WP-Total`` and
``X-WP-TotalPages`` give the totals. Ascending ids put orders placed during a run at the
end, so the pages already read do not move; a resume starts one page before the one it
stopped at, since an order trashed or deleted meanwhile moves every later order one
place forward (the orders read twice are stored once).

WooCommerce itself sets no rate limit on its REST API; hosts and firewalls do, with 429
or 503 and often ``Retry-After``. A run makes at most ``RATE`` requests a second
(``--api-rate``) and waits out what the host asks.

The topic is ``order.created``, not ``order.updated``: the shipped rules turn an updated
completed or cancelled order into ``orderDelivered`` or ``orderCancelled``, which the CDP
ignores for an order it does not know, so most of a shop's history would be lost.
``order.created`` sends ``orderCreated`` with the order's current status (completed:
DELIVERED, refunded: CANCELLED ...). Dates are compared in UTC (``dates_are_gmt``,
WooCommerce 5.x and later; older versions read ``after`` in the site's time zone).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from engine.errors import PlatformApiError
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

NAME = "woocommerce"
TOPIC = "order.created"
RATE = 4.0
PAGE_SIZE = 100
PATH = "/wp-json/wc/v3/orders"
VARIABLES = (
    Variable("WOOCOMMERCE_URL", "the shop's site URL, e.g. https://shop.example"),
    Variable(
        "WOOCOMMERCE_CONSUMER_KEY", "a REST API key's consumer key (Read access)", secret=True
    ),
    Variable("WOOCOMMERCE_CONSUMER_SECRET", "that key's consumer secret", secret=True),
)


class WooCommerce:
    """The orders of one WooCommerce shop in one window."""

    name = NAME

    def __init__(self, values: Mapping[str, str], window: Window, options: Options) -> None:
        self.base_url = site_url(values["WOOCOMMERCE_URL"], "WOOCOMMERCE_URL")
        self.window = window
        self.page_size = options.size(PAGE_SIZE, PAGE_SIZE)
        key, secret = values["WOOCOMMERCE_CONSUMER_KEY"], values["WOOCOMMERCE_CONSUMER_SECRET"]
        token = base64.b64encode(f"{key}:{secret}".encode()).decode("ascii")
        self.client = options.client(
            NAME,
            self.base_url,
            {"Authorization": f"Basic {token}", "Accept": "application/json"},
            rate=RATE,
            secrets=[key, secret, token],
        )

    def close(self) -> None:
        self.client.close()

    def count(self) -> int | None:
        return None  # every page says it (X-WP-Total): no request of its own

    def pages(self, position: Position | None) -> Iterator[Page]:
        page = max(1, int((position or {}).get("page", 1)) - (1 if position else 0))
        params = {
            "status": "any",
            "after": self.window.utc(self.window.since),
            "dates_are_gmt": "true",
            "orderby": "id",
            "order": "asc",
            "per_page": str(self.page_size),
        }
        if self.window.until is not None:
            params["before"] = self.window.utc(self.window.until)
        number = 0
        while True:
            answer = self.client.get(PATH, {**params, "page": str(page)})
            orders = _orders(answer)
            total, last = _header_int(answer, "x-wp-total"), _header_int(answer, "x-wp-totalpages")
            full = len(orders) >= self.page_size
            number += 1
            after = {"page": page + 1 if full else page}
            yield Page(number, orders, after, {"page": page}, total)
            if not full or (last is not None and page >= last):
                return
            page += 1

    def webhook(self, order: Mapping[str, Any], topic: str) -> Synthesized:
        order_id = str(order["id"])
        delivery = delivery_id(NAME, order_id, topic)
        resource, _, event = topic.partition(".")
        headers = {
            "Content-Type": "application/json",
            "X-WC-Webhook-Source": self.base_url + "/",
            "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Resource": resource,
            "X-WC-Webhook-Event": event,
            "X-WC-Webhook-Delivery-ID": delivery,
            BACKFILL_HEADER: NAME,
        }
        return Synthesized(order_id, headers, order_body(order), delivery)


def _header_int(answer: httpx.Response, name: str) -> int | None:
    value = answer.headers.get(name, "").strip()
    return int(value) if value.isdigit() else None


def _orders(answer: httpx.Response) -> tuple[Mapping[str, Any], ...]:
    try:
        orders = answer.json()
    except ValueError as exc:
        raise PlatformApiError(NAME, PATH, "the answer is not JSON") from exc
    if not isinstance(orders, list) or not all(
        isinstance(o, dict) and isinstance(o.get("id"), int) for o in orders
    ):
        raise PlatformApiError(NAME, PATH, "the answer is not a list of orders with ids")
    return tuple(orders)
