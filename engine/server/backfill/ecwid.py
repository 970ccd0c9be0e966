"""Ecwid's past orders from the REST API (v3), as ``order.updated`` webhooks.

``GET /api/v3/{storeId}/orders?createdFrom=<unix s>&createdTo=...&offset=N&limit=100`` with
the store's access token (``Authorization: Bearer``). The answer is ``{"total", "count",
"offset", "limit", "items": [...]}``: pages are offsets, and ``total`` feeds the progress
bar. An order deleted while a run goes on moves every later one a place forward, so a
resume starts one page before the one it stopped at (the orders read twice are stored
once), as for WooCommerce.

An Ecwid webhook names the order, not its content, and the shipped rule set fetches the
order (and the store profile, for the currency) itself (``lookups``), with the same
variables (``ECWID_ACCESS_TOKEN``, ``ECWID_API_BASE``): a backfilled order becomes the
webhook Ecwid would send, ``{"eventId", "eventCreated", "storeId", "entityId",
"eventType", "data": {"orderId"}}``, and the processor's lookups read the rest, as for a
live one. The topic is ``order.updated``: without ``data.old*``/``new*`` statuses (no
status moved) the rules make it ``orderUpdated`` with the order's current statuses,
which creates an order the CDP does not know.

Rate limit: 600 requests a minute per token, the rule set's lookups included; past it
Ecwid answers 429 with ``Retry-After``, which is waited out. No header says how much is
left, so a run keeps to ``RATE`` listing requests a second (a page of 100 orders then
makes 100 order lookups).
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

NAME = "ecwid"
TOPIC = "order.updated"
#: listing requests a second: the lookups of each page's orders share the token's 600/min
RATE = 2.0
PAGE_SIZE = 100
DEFAULT_API_BASE = "https://app.ecwid.com"
VARIABLES = (
    Variable("ECWID_STORE_ID", "the store id, as in /api/v3/{storeId}/ (a number)"),
    Variable(
        "ECWID_ACCESS_TOKEN",
        "the store's secret access token (read_orders; the rule set's lookups use it too)",
        secret=True,
    ),
    Variable("ECWID_API_BASE", f"leave unset ({DEFAULT_API_BASE})", False),
)


class Ecwid:
    """The orders of one Ecwid store in one window."""

    name = NAME

    def __init__(self, values: Mapping[str, str], window: Window, options: Options) -> None:
        self.store = values["ECWID_STORE_ID"].strip()
        if not self.store.isdigit():
            raise UsageError("ECWID_STORE_ID: a number (the store id in /api/v3/{storeId}/)")
        base = site_url(values.get("ECWID_API_BASE") or DEFAULT_API_BASE, "ECWID_API_BASE")
        self.window = window
        self.page_size = options.size(PAGE_SIZE, PAGE_SIZE)
        self.path = f"/api/v3/{self.store}/orders"
        token = values["ECWID_ACCESS_TOKEN"]
        self.client = options.client(
            NAME,
            base,
            {"Authorization": f"Bearer {token}", "Accept": "application/json"},
            rate=RATE,
            secrets=[token],
        )

    def close(self) -> None:
        self.client.close()

    def count(self) -> int | None:
        return None  # every page says it ("total"): no request of its own

    def pages(self, position: Position | None) -> Iterator[Page]:
        offset = int((position or {}).get("offset", 0))
        if position:  # one page back: an order deleted meanwhile moved the rest forward
            offset = max(0, offset - self.page_size)
        params = {"createdFrom": str(int(self.window.since.timestamp()))}
        if self.window.until is not None:
            params["createdTo"] = str(int(self.window.until.timestamp()))
        number = 0
        while True:
            query = {**params, "offset": str(offset), "limit": str(self.page_size)}
            total, orders = _listing(self.client.get(self.path, query), self.path)
            full = len(orders) >= self.page_size
            number += 1
            after = {"offset": offset + len(orders) if full else offset}
            yield Page(number, orders, after, {"offset": offset}, total)
            if not full or (total is not None and offset + len(orders) >= total):
                return
            offset += len(orders)

    def webhook(self, order: Mapping[str, Any], topic: str) -> Synthesized:
        order_id = order_key(order)
        delivery = delivery_id(NAME, order_id, topic)
        body = {
            "eventId": delivery,
            "eventCreated": order.get("updateTimestamp") or order.get("createTimestamp") or 0,
            "storeId": int(self.store),
            "entityId": order.get("internalId") or order.get("orderNumber") or 0,
            "eventType": topic,
            "data": {"orderId": order_id},
        }
        headers = {"Content-Type": "application/json", BACKFILL_HEADER: NAME}
        return Synthesized(order_id, headers, order_body(body), delivery)


def order_key(order: Mapping[str, Any]) -> str:
    """The order's id as the Get order endpoint takes it ("HM4Q7"; older orders have only
    ``vendorOrderNumber`` or ``orderNumber``)."""
    for name in ("id", "vendorOrderNumber", "orderNumber"):
        value = order.get(name)
        if value not in (None, ""):
            return str(value)
    raise PlatformApiError(NAME, "orders", "an order without id or number")


def _listing(
    answer: httpx.Response, target: str
) -> tuple[int | None, tuple[Mapping[str, Any], ...]]:
    try:
        data = answer.json()
    except ValueError as exc:
        raise PlatformApiError(NAME, target, "the answer is not JSON") from exc
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list) or not all(
        isinstance(o, dict) and any(o.get(k) for k in ("id", "vendorOrderNumber", "orderNumber"))
        for o in items
    ):
        raise PlatformApiError(NAME, target, 'the answer has no "items" list of orders with ids')
    total = data.get("total")
    return (total if isinstance(total, int) else None), tuple(items)
