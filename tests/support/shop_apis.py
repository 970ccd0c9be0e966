"""Local stand-ins of the shop platforms' order listings, for the backfill tests.

Each is ``HttpStub`` with an ``answer`` that does what the platform's API does for the
requests a backfill makes: its authentication, its filters, its pagination (Shopify's
``Link`` with an opaque ``page_info``, WooCommerce's numbered pages with ``X-WP-Total``,
BigCommerce's ``min_id`` and ``204 No Content``) and its rate-limit headers. Faults are
set per page of the window's listing: ``once[page] = (status, headers)`` answers the first
request for that page so, ``broken_from = N`` answers every request for page N or later
with 500 (until set back to None).
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import json
import threading
from collections.abc import Mapping
from typing import Any

from tests.conftest import ROOT
from tests.support.http_stub import Call, HttpStub, Reply

EXAMPLES = ROOT / "examples"
#: the first order's creation time; each next order one day later
FIRST = datetime.datetime(2026, 10, 1, 9, 0, tzinfo=datetime.UTC)


def _example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return data


class ShopApi(HttpStub):
    """What the three stand-ins share: the orders, the faults, the page of a request."""

    def __init__(self, orders: list[dict[str, Any]]) -> None:
        self.orders = orders
        self.once: dict[int, tuple[int, dict[str, str]]] = {}
        self.broken_from: int | None = None
        self._faults = threading.Lock()
        super().__init__(self._answer)

    def _answer(self, call: Call) -> Reply:
        raise NotImplementedError

    def fault(self, page: int) -> Reply | None:
        """The fault set for ``page``, if any (a ``once`` fault is used up)."""
        with self._faults:
            if self.broken_from is not None and page >= self.broken_from:
                return Reply(500, {"errors": "Internal Server Error"})
            if page in self.once:
                status, headers = self.once.pop(page)
                return Reply(status, {"errors": f"HTTP {status}"}, headers=headers)
        return None

    def requests(self, path: str) -> list[tuple[dict[str, str], int]]:
        """(query, status) of each request for ``path``, in order."""
        return [
            ({k: v[0] for k, v in c.query.items()}, c.status) for c in self.calls if c.path == path
        ]


class ShopifyAdmin(ShopApi):
    """Shopify's REST Admin API: ``orders.json`` and ``orders/count.json``."""

    VERSION = "2026-10"

    def __init__(self, count: int, token: str = "shpat_test_token", size: int = 40) -> None:
        self.token = token
        self.bucket = size
        super().__init__([self.order(i) for i in range(count)])

    @staticmethod
    def order(i: int) -> dict[str, Any]:
        order = _example("shopify/orders-create.json")
        order["id"] = 7_000_000_000_000 + i
        order["name"] = f"#{1001 + i}"
        moment = (FIRST + datetime.timedelta(days=i)).astimezone(
            datetime.timezone(datetime.timedelta(hours=-4))
        )
        order["created_at"] = moment.isoformat()
        email = f"buyer{i}@example.com"
        order["email"] = order["contact_email"] = email
        order["customer"] = {**order["customer"], "email": email, "id": 900 + i}
        return order

    def _answer(self, call: Call) -> Reply:
        if call.header("X-Shopify-Access-Token") != self.token:
            return Reply(401, {"errors": "[API] Invalid API key or access token"})
        base = f"/admin/api/{self.VERSION}/orders"
        query = {k: v[0] for k, v in call.query.items()}
        if "page_info" in query:
            query = {**json.loads(base64.urlsafe_b64decode(query["page_info"])), **query}
        window = [o for o in self.orders if _in_window(o["created_at"], query)]
        if call.path == f"{base}/count.json":
            return Reply(200, {"count": len(window)}, headers=self._limit())
        if call.path != f"{base}.json":
            return Reply(404, {"errors": "Not Found"})
        limit = int(query.get("limit", 50))
        after = int(query.get("after_id", query.get("since_id", 0)))
        rest = [o for o in window if o["id"] > after]
        page = (len(window) - len(rest)) // limit + 1
        fault = self.fault(page)
        if fault is not None:
            return fault
        chosen = rest[:limit]
        headers = self._limit()
        if len(rest) > limit:
            token = {k: v for k, v in query.items() if k not in ("page_info", "limit")}
            token["after_id"] = str(chosen[-1]["id"])
            info = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            headers["Link"] = f'<{self.url}{base}.json?limit={limit}&page_info={info}>; rel="next"'
        return Reply(200, {"orders": chosen}, headers=headers)

    def _limit(self) -> dict[str, str]:
        used = min(len(self.calls) + 1, self.bucket)
        return {"X-Shopify-Shop-Api-Call-Limit": f"{used}/{self.bucket}"}


class WooCommerceRest(ShopApi):
    """WooCommerce's REST API v3: ``/wp-json/wc/v3/orders``, Basic auth."""

    def __init__(self, count: int, key: str = "ck_test", secret: str = "cs_test") -> None:
        self.auth = "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()
        super().__init__([self.order(i) for i in range(count)])

    @staticmethod
    def order(i: int) -> dict[str, Any]:
        order = _example("woocommerce/order-created.json")
        order["id"] = 5000 + i
        moment = FIRST + datetime.timedelta(days=i)
        order["date_created_gmt"] = moment.replace(tzinfo=None).isoformat()
        order["date_created"] = (
            (moment + datetime.timedelta(hours=1)).replace(tzinfo=None).isoformat()
        )
        order["status"] = "completed" if i % 2 else "processing"
        order["billing"] = {**order["billing"], "email": f"wbuyer{i}@example.com"}
        return order

    def _answer(self, call: Call) -> Reply:
        if call.header("Authorization") != self.auth:
            return Reply(401, {"code": "woocommerce_rest_cannot_view", "data": {"status": 401}})
        if call.path != "/wp-json/wc/v3/orders":
            return Reply(404, {"code": "rest_no_route"})
        query = {k: v[0] for k, v in call.query.items()}
        if query.get("dates_are_gmt") != "true" or query.get("orderby") != "id":
            return Reply(400, {"code": "the backfill asks in UTC, by id"})
        after = datetime.datetime.fromisoformat(query["after"])
        window = [
            o for o in self.orders if datetime.datetime.fromisoformat(o["date_created_gmt"]) > after
        ]
        size, page = int(query["per_page"]), int(query["page"])
        fault = self.fault(page)
        if fault is not None:
            return fault
        pages = max(1, -(-len(window) // size))
        headers = {"X-WP-Total": str(len(window)), "X-WP-TotalPages": str(pages)}
        return Reply(200, window[(page - 1) * size : page * size], headers=headers)


class BigCommerceApi(ShopApi):
    """BigCommerce's V2 Orders API: the listing, the count, and what the lookups fetch."""

    def __init__(self, store: str = "q7b2k9x4ma", token: str = "bc-test-token") -> None:
        self.store, self.token = store, token
        orders = [_example(f"bigcommerce/api/order-{n}.json") for n in (250, 251, 252)]
        self.products = {
            o["id"]: _example(f"bigcommerce/api/order-{o['id']}-products.json") for o in orders
        }
        super().__init__(orders)

    def _answer(self, call: Call) -> Reply:
        if call.header("X-Auth-Token") != self.token:
            return Reply(401, [{"status": 401, "message": "You have not been authenticated"}])
        prefix = f"/stores/{self.store}/v2/orders"
        headers = {"X-Rate-Limit-Requests-Left": "149", "X-Rate-Limit-Time-Reset-Ms": "30000"}
        query = {k: v[0] for k, v in call.query.items()}
        since = query.get("min_date_created")
        window = [
            o
            for o in self.orders
            if not since or _created(o) >= datetime.datetime.fromisoformat(since)
        ]
        if call.path == f"{prefix}/count":
            return Reply(200, {"count": len(window), "statuses": []}, headers=headers)
        if call.path == prefix:
            if query.get("sort") != "id:asc":
                return Reply(400, [{"message": "the backfill sorts by id"}])
            rest = [o for o in window if o["id"] >= int(query.get("min_id", 1))]
            page = (len(window) - len(rest)) // int(query["limit"]) + 1
            fault = self.fault(page)
            if fault is not None:
                return fault
            chosen = rest[: int(query["limit"])]
            return Reply(200, chosen, headers=headers) if chosen else Reply(204, b"")
        for order in self.orders:
            if call.path == f"{prefix}/{order['id']}":
                return Reply(200, order, headers=headers)
            if call.path == f"{prefix}/{order['id']}/products":
                return Reply(200, self.products[order["id"]], headers=headers)
        return Reply(404, [{"status": 404, "message": "not found"}])


def _in_window(created: str, query: Mapping[str, str]) -> bool:
    moment = datetime.datetime.fromisoformat(created)
    low, high = query.get("created_at_min"), query.get("created_at_max")
    if low and moment < datetime.datetime.fromisoformat(low):
        return False
    return not (high and moment > datetime.datetime.fromisoformat(high))


def _created(order: Mapping[str, Any]) -> datetime.datetime:
    """A V2 order's ``date_created`` (RFC 2822)."""
    return email.utils.parsedate_to_datetime(order["date_created"])
