"""Magento 2 / Adobe Commerce past orders from the REST API, as order-save events.

``GET /rest/V1/orders?searchCriteria[filter_groups][0][filters][0][field]=created_at
&...[condition_type]=gteq&...&searchCriteria[sortOrders][0][field]=entity_id
&searchCriteria[pageSize]=100&searchCriteria[currentPage]=1`` with an integration's
access token (``Authorization: Bearer``). Filter groups are AND-ed: created from
``--since`` (``gteq``), before ``--until`` (``lt``) and, for paging, ``entity_id``
from the one after the last read (``gteq``), always page 1 sorted by id. So where a run
got to is an id, a resume loses nothing whatever was deleted meanwhile, and Magento's
habit of answering a ``currentPage`` past the end with the last page again never comes
into play. ``created_at`` is UTC; ``total_count`` gives the total.

The shipped rule sets read an order save: ``magento`` (Adobe I/O Events) a CloudEvent
whose ``data.value`` is the order, ``magento-webhooks`` (Adobe Commerce Webhooks)
``{"eventName", "data": {"order"}}``; the topic says which (``com.adobe.commerce.…``
is the former). Either way the order is the REST one made to look like the saved order
an event carries: the shipping address from ``extension_attributes.shipping_assignments``
as ``shipping_address``, and ``_isNew: false`` with ``_origData.state`` the current state,
i.e. a save that changed nothing. The rules then send ``orderUpdated`` with the status
of the order's state, which creates an order the CDP does not know (a save moving it to
complete would be an ``orderDelivered``, ignored for an unknown order).

Magento itself sets no rate limit on REST; Adobe Commerce Cloud (Fastly) and hosts do,
with 429 or 503, waited out as they ask.
"""

from __future__ import annotations

import datetime
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
    by_min_id,
    delivery_id,
    order_body,
    site_url,
)

NAME = "magento"
#: the Adobe I/O Events code of an order save (rule set ``magento``)
TOPIC = "com.adobe.commerce.observer.sales_order_save_commit_after"
#: the same save as an Adobe Commerce Webhooks event (rule set ``magento-webhooks``)
WEBHOOKS_TOPIC = "sales_order_save_commit_after"
#: the rule sets named otherwise that read Magento orders, and the topic each reads
RULESETS = {"magento": TOPIC, "magento-webhooks": WEBHOOKS_TOPIC}
RATE = 4.0
PAGE_SIZE = 100
PATH = "/rest/V1/orders"
_CLOUDEVENT_PREFIX = "com.adobe.commerce."
VARIABLES = (
    Variable("MAGENTO_BASE_URL", "the store's base URL, e.g. https://shop.example.com"),
    Variable(
        "MAGENTO_ACCESS_TOKEN",
        "an integration's access token with the Sales → Orders resource (read)",
        secret=True,
    ),
)


class Magento:
    """The orders of one Magento store in one window."""

    name = NAME

    def __init__(self, values: Mapping[str, str], window: Window, options: Options) -> None:
        self.base_url = site_url(values["MAGENTO_BASE_URL"], "MAGENTO_BASE_URL")
        self.window = window
        self.page_size = options.size(PAGE_SIZE, PAGE_SIZE)
        token = values["MAGENTO_ACCESS_TOKEN"]
        self.client = options.client(
            NAME,
            self.base_url,
            {"Authorization": f"Bearer {token}", "Accept": "application/json"},
            rate=RATE,
            secrets=[token],
        )

    def _criteria(self, min_id: int | None, size: int) -> dict[str, str]:
        groups = [("created_at", "gteq", self._utc(self.window.since))]
        if self.window.until is not None:
            groups.append(("created_at", "lt", self._utc(self.window.until)))
        if min_id is not None:
            groups.append(("entity_id", "gteq", str(min_id)))
        out: dict[str, str] = {}
        for n, (field, condition, value) in enumerate(groups):
            at = f"searchCriteria[filter_groups][{n}][filters][0]"
            out.update(
                {f"{at}[field]": field, f"{at}[value]": value, f"{at}[condition_type]": condition}
            )
        out["searchCriteria[sortOrders][0][field]"] = "entity_id"
        out["searchCriteria[sortOrders][0][direction]"] = "ASC"
        out["searchCriteria[pageSize]"] = str(size)
        out["searchCriteria[currentPage]"] = "1"
        return out

    @staticmethod
    def _utc(moment: datetime.datetime) -> str:
        return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")

    def close(self) -> None:
        self.client.close()

    def count(self) -> int | None:
        total, _ = _listing(self.client.get(PATH, self._criteria(None, 1)))
        return total

    def pages(self, position: Position | None) -> Iterator[Page]:
        return by_min_id(position, self.page_size, self._orders_from, "entity_id")

    def _orders_from(self, min_id: int) -> tuple[Mapping[str, Any], ...]:
        return _listing(self.client.get(PATH, self._criteria(min_id, self.page_size)))[1]

    def webhook(self, order: Mapping[str, Any], topic: str) -> Synthesized:
        order_id = str(order["entity_id"])
        delivery = delivery_id(NAME, order_id, topic)
        saved = as_saved(order)
        headers = {"Content-Type": "application/json", BACKFILL_HEADER: NAME}
        if topic.startswith(_CLOUDEVENT_PREFIX):
            body: dict[str, Any] = {
                "specversion": "1.0",
                "id": delivery,
                "source": "urn:hookmap:backfill",
                "type": topic,
                "datacontenttype": "application/json",
                "time": _event_time(order),
                "event_id": delivery,
                "data": {"key": delivery, "value": saved, "source": "hookmap.backfill"},
            }
            headers.update({"x-adobe-event-code": topic, "x-adobe-event-id": delivery})
        else:
            body = {"eventName": topic, "data": {"order": saved}}
        return Synthesized(order_id, headers, order_body(body), delivery)


def as_saved(order: Mapping[str, Any]) -> dict[str, Any]:
    """A REST order as an order-save event carries it: its shipping address at the top,
    and a save that changed nothing (not new, the state as it was)."""
    saved = dict(order)
    if not saved.get("shipping_address"):
        assignments = (saved.get("extension_attributes") or {}).get("shipping_assignments")
        if isinstance(assignments, list) and assignments and isinstance(assignments[0], dict):
            address = (assignments[0].get("shipping") or {}).get("address")
            if isinstance(address, dict):
                saved["shipping_address"] = {"address_type": "shipping", **address}
    saved["_isNew"] = False
    saved["_origData"] = {"state": order.get("state"), "status": order.get("status")}
    return saved


def _event_time(order: Mapping[str, Any]) -> str:
    """The order's ``updated_at`` (UTC, ``YYYY-MM-DD HH:MM:SS``) as an RFC 3339 time."""
    text = str(order.get("updated_at") or order.get("created_at") or "")
    try:
        moment = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return ""
    return moment.replace(tzinfo=datetime.UTC).isoformat().replace("+00:00", "Z")


def _listing(answer: httpx.Response) -> tuple[int | None, tuple[Mapping[str, Any], ...]]:
    try:
        data = answer.json()
    except ValueError as exc:
        raise PlatformApiError(NAME, PATH, "the answer is not JSON") from exc
    items = data.get("items") if isinstance(data, dict) else None
    if items is None and isinstance(data, dict) and "total_count" in data:
        items = []  # a total and no "items": read as an empty page
    if not isinstance(items, list) or not all(
        isinstance(o, dict) and str(o.get("entity_id", "")).isdigit() for o in items
    ):
        raise PlatformApiError(NAME, PATH, 'the answer has no "items" list of orders with ids')
    total = data.get("total_count")
    return (total if isinstance(total, int) else None), tuple(items)
