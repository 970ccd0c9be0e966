"""BigCommerce's past orders from the V2 Orders API, as ``store/order/updated`` callbacks.

``GET /stores/{store_hash}/v2/orders?min_date_created=...&sort=id:asc&min_id=N&limit=250``
with the ``X-Auth-Token`` header; ``/v2/orders/count`` gives the total. Each request asks
for the ids from the last one read on (``min_id``), so where a run got to is an id and a
resume loses nothing whatever was deleted meanwhile. An empty answer is ``204 No
Content``.

A BigCommerce callback carries only the order's id, and the shipped rule set fetches the
order and its lines itself (``lookups``): a backfilled order becomes the callback
BigCommerce would send, ``{"scope": ..., "data": {"type": "order", "id": N}, "producer":
"stores/{hash}"}``, and the processor's lookups read the rest, with the same variables
(``BIGCOMMERCE_ACCESS_TOKEN``, ``BIGCOMMERCE_API_BASE``). The topic is
``store/order/updated``: ``orderUpdated`` with the current status, which creates an order
the CDP does not know.

Rate limit: a quota per window, said by every answer (``X-Rate-Limit-Requests-Left``,
``X-Rate-Limit-Time-Reset-Ms``); when a single request is left the next waits for the
window to reset, and a 429 waits what ``X-Rate-Limit-Time-Reset-Ms`` says.
"""

from __future__ import annotations

import email.utils
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
    by_min_id,
    delivery_id,
    order_body,
    site_url,
)

NAME = "bigcommerce"
TOPIC = "store/order/updated"
#: requests a second: the Standard plan's 150 per 30 s
RATE = 5.0
PAGE_SIZE = 250
DEFAULT_API_BASE = "https://api.bigcommerce.com"
VARIABLES = (
    Variable("BIGCOMMERCE_STORE_HASH", "the store hash, as in /stores/{hash}/ of the API"),
    Variable(
        "BIGCOMMERCE_ACCESS_TOKEN", "an API account's access token (Orders read-only)", secret=True
    ),
    Variable("BIGCOMMERCE_API_BASE", f"leave unset ({DEFAULT_API_BASE})", False),
)


class BigCommerce:
    """The orders of one BigCommerce store in one window."""

    name = NAME

    def __init__(self, values: Mapping[str, str], window: Window, options: Options) -> None:
        self.store = values["BIGCOMMERCE_STORE_HASH"].strip()
        if not self.store.isalnum():
            raise UsageError("BIGCOMMERCE_STORE_HASH: letters and digits only (from /stores/…/)")
        base = site_url(values.get("BIGCOMMERCE_API_BASE") or DEFAULT_API_BASE, "API base")
        self.window = window
        self.page_size = options.size(PAGE_SIZE, PAGE_SIZE)
        token = values["BIGCOMMERCE_ACCESS_TOKEN"]
        self.client = options.client(
            NAME,
            f"{base}/stores/{self.store}/v2",
            {"X-Auth-Token": token, "Accept": "application/json"},
            rate=RATE,
            pace=_pace,
            secrets=[token],
        )

    def _filters(self) -> dict[str, str]:
        out = {"min_date_created": self.window.since.isoformat()}
        if self.window.until is not None:
            out["max_date_created"] = self.window.until.isoformat()
        return out

    def close(self) -> None:
        self.client.close()

    def count(self) -> int | None:
        answer = self.client.get("/orders/count", self._filters())
        data = _json(answer, "/orders/count")
        count = data.get("count") if isinstance(data, dict) else None
        return count if isinstance(count, int) else None

    def pages(self, position: Position | None) -> Iterator[Page]:
        return by_min_id(position, self.page_size, self._orders_from)

    def _orders_from(self, min_id: int) -> tuple[Mapping[str, Any], ...]:
        params = {
            **self._filters(),
            "sort": "id:asc",
            "min_id": str(min_id),
            "limit": str(self.page_size),
            "page": "1",
        }
        return _orders(self.client.get("/orders", params))

    def webhook(self, order: Mapping[str, Any], topic: str) -> Synthesized:
        order_id = str(order["id"])
        delivery = delivery_id(NAME, order_id, topic)
        body = {
            "scope": topic,
            "store_id": str(order.get("store_id") or ""),
            "data": {"type": "order", "id": int(order["id"])},
            "hash": "",
            "created_at": _timestamp(order.get("date_created")),
            "producer": f"stores/{self.store}",
        }
        headers = {
            "Content-Type": "application/json",
            "webhook-id": delivery,
            BACKFILL_HEADER: NAME,
        }
        return Synthesized(order_id, headers, order_body(body), delivery)


def _pace(headers: httpx.Headers) -> float:
    """Wait for the window to reset when one request (or none) is left in it."""
    left = headers.get("x-rate-limit-requests-left", "").strip()
    reset = headers.get("x-rate-limit-time-reset-ms", "").strip()
    if not left.lstrip("-").isdigit() or int(left) > 1 or not reset.isdigit():
        return 0.0
    return int(reset) / 1000.0


def _timestamp(value: Any) -> int:
    """An order's ``date_created`` (RFC 2822 in V2) as Unix seconds; 0 when unreadable."""
    try:
        return int(email.utils.parsedate_to_datetime(str(value)).timestamp())
    except (TypeError, ValueError):
        return 0


def _json(answer: httpx.Response, target: str) -> Any:
    if answer.status_code == 204 or not answer.content:
        return None
    try:
        return answer.json()
    except ValueError as exc:
        raise PlatformApiError(NAME, target, "the answer is not JSON") from exc


def _orders(answer: httpx.Response) -> tuple[Mapping[str, Any], ...]:
    orders = _json(answer, "/orders")
    if orders is None:
        return ()
    if not isinstance(orders, list) or not all(
        isinstance(o, dict) and isinstance(o.get("id"), int) for o in orders
    ):
        raise PlatformApiError(NAME, "/orders", "the answer is not a list of orders with ids")
    return tuple(orders)
