"""PrestaShop's past orders from the webservice, as the ``Order.add`` webhooks of the
ps_webhooks module.

``GET /api/orders?display=full&filter[date_add]=[from,to]&date=1&filter[id]=[N,max]
&sort=[id_ASC]&limit=100&output_format=JSON`` with the webservice key as HTTP Basic user
(``PRESTASHOP_WS_AUTH``, ``base64("<key>:")``, the rule set's lookups' own variable).
Dates are the shop's local time without an offset (``PRESTASHOP_TIMEZONE``, as the rule
set reads them) and both ends of an interval are inclusive. Each request asks for the
ids from the one after the last read on (an interval on ``id``, AND-ed with the dates),
so where a run got to is an id and a resume loses nothing whatever was deleted
meanwhile; an offset (``limit=offset,n``) would shift. A list that found nothing is
``[]``, not ``{"orders": []}``.

ps_webhooks posts ``{"action": "add", "entity": "Order", "data": <the Order object>}``
and the shipped rule set reads the totals and ids from ``data`` and fetches the lines,
the customer, the address, its country and the currency (``lookups``): a backfilled
order becomes that body, ``data`` being the webservice's order without its
``associations`` (the lines, which the lookup fetches as for a live webhook). The topic
is ``Order.add``: the rules turn an ``Order.update`` of a shipped or cancelled order into
``orderDelivered`` / ``orderCancelled``, which the CDP ignores for an order it does not
know, while ``Order.add`` sends ``orderCreated`` with the order's current state.

PrestaShop sets no rate limit on its webservice; hosts and firewalls do (429 or 503,
often with ``Retry-After``), which is waited out.
"""

from __future__ import annotations

import datetime
import zoneinfo
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

NAME = "prestashop"
TOPIC = "Order.add"
RATE = 4.0
PAGE_SIZE = 100
PATH = "/api/orders"
#: the interval's upper end on ids (PrestaShop's ids are unsigned 32-bit integers)
MAX_ID = 4294967295
#: the interval's upper end on dates when the window has none
NO_END = "9999-12-31 23:59:59"
DEFAULT_TIMEZONE = "Europe/Paris"
VARIABLES = (
    Variable("PRESTASHOP_BASE_URL", "the shop's address, e.g. https://shop.example.com"),
    Variable(
        "PRESTASHOP_WS_AUTH",
        'base64 of "<webservice key>:" (a key with GET on orders; the lookups use it too)',
        secret=True,
    ),
    Variable("PRESTASHOP_TIMEZONE", f"the shop's time zone (default {DEFAULT_TIMEZONE})", False),
)


class PrestaShop:
    """The orders of one PrestaShop shop in one window."""

    name = NAME

    def __init__(self, values: Mapping[str, str], window: Window, options: Options) -> None:
        self.base_url = site_url(values["PRESTASHOP_BASE_URL"], "PRESTASHOP_BASE_URL")
        name = values.get("PRESTASHOP_TIMEZONE") or DEFAULT_TIMEZONE
        try:
            self.zone = zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise UsageError(f"PRESTASHOP_TIMEZONE: {name!r} is no time zone") from exc
        self.window = window
        self.page_size = options.size(PAGE_SIZE, PAGE_SIZE)
        auth = values["PRESTASHOP_WS_AUTH"].strip()
        self.client = options.client(
            NAME,
            self.base_url,
            {"Authorization": f"Basic {auth}", "Accept": "application/json"},
            rate=RATE,
            secrets=[auth],
        )

    def _local(self, moment: datetime.datetime) -> str:
        return moment.astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S")

    def _dates(self) -> str:
        """The window as an inclusive interval of shop-local times."""
        until = self.window.until
        end = self._local(until - datetime.timedelta(seconds=1)) if until else NO_END
        return f"[{self._local(self.window.since)},{end}]"

    def close(self) -> None:
        self.client.close()

    def count(self) -> int | None:
        return None  # the webservice gives no total without listing every id

    def pages(self, position: Position | None) -> Iterator[Page]:
        return by_min_id(position, self.page_size, self._orders_from)

    def _orders_from(self, min_id: int) -> tuple[Mapping[str, Any], ...]:
        params = {
            "display": "full",
            "filter[date_add]": self._dates(),
            "date": "1",
            "filter[id]": f"[{min_id},{MAX_ID}]",
            "sort": "[id_ASC]",
            "limit": str(self.page_size),
            "output_format": "JSON",
        }
        return _orders(self.client.get(PATH, params))

    def webhook(self, order: Mapping[str, Any], topic: str) -> Synthesized:
        order_id = str(order["id"])
        delivery = delivery_id(NAME, order_id, topic)
        entity, _, action = topic.partition(".")
        data = {k: v for k, v in order.items() if k != "associations"}
        body = {"action": action, "entity": entity, "data": data}
        headers = {"Content-Type": "application/json", BACKFILL_HEADER: NAME}
        return Synthesized(order_id, headers, order_body(body), delivery)


def _orders(answer: httpx.Response) -> tuple[Mapping[str, Any], ...]:
    try:
        data = answer.json()
    except ValueError as exc:
        raise PlatformApiError(
            NAME, PATH, "the answer is not JSON (is the webservice enabled?)"
        ) from exc
    if data == []:  # what the webservice answers for a list that found nothing
        return ()
    orders = data.get("orders") if isinstance(data, dict) else None
    if not isinstance(orders, list) or not all(
        isinstance(o, dict) and str(o.get("id", "")).isdigit() for o in orders
    ):
        raise PlatformApiError(NAME, PATH, 'the answer has no "orders" list of orders with ids')
    return tuple(orders)
