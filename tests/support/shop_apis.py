"""Local stand-ins of the shop platforms' order listings, for the backfill tests.

Each is ``HttpStub`` with an ``answer`` that does what the platform's API does for the
requests a backfill makes: its authentication, its filters, its pagination (Shopify's
``Link`` with an opaque ``page_info``, WooCommerce's numbered pages with ``X-WP-Total``,
BigCommerce's ``min_id`` and ``204 No Content``, Ecwid's offsets with ``total``,
PrestaShop's filter intervals and ``[]`` for nothing found, Magento's ``searchCriteria``,
Stripe's newest-first lists with ``starting_after`` / ``ending_before``) and its
rate-limit headers. Faults are
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
import zoneinfo
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


class EcwidApi(ShopApi):
    """Ecwid's REST API v3: the order search, and the order and profile the lookups fetch."""

    def __init__(self, count: int, store: int = 1003456, token: str = "secret_ecwid_test") -> None:
        self.store, self.token = store, token
        self.profile = _example(f"ecwid/api/profile-{store}.json")
        super().__init__([self.order(i) for i in range(count)])

    @staticmethod
    def order(i: int) -> dict[str, Any]:
        order = _example("ecwid/api/order-HM4Q7.json")
        order["id"] = order["vendorOrderNumber"] = f"BF{i:03d}"
        order["internalId"] = order["orderNumber"] = 700_000 + i
        moment = FIRST + datetime.timedelta(days=i)
        order["createTimestamp"] = order["updateTimestamp"] = int(moment.timestamp())
        order["createDate"] = moment.strftime("%Y-%m-%d %H:%M:%S +0000")
        order["email"] = f"ebuyer{i}@example.com"
        order["fulfillmentStatus"] = "SHIPPED" if i % 2 else "AWAITING_PROCESSING"
        return order

    def _answer(self, call: Call) -> Reply:
        if call.header("Authorization") != f"Bearer {self.token}":
            return Reply(403, {"errorMessage": "Invalid access token"})
        prefix = f"/api/v3/{self.store}"
        if call.path == f"{prefix}/profile":
            return Reply(200, self.profile)
        for order in self.orders:
            if call.path == f"{prefix}/orders/{order['id']}":
                return Reply(200, order)
        if call.path != f"{prefix}/orders":
            return Reply(404, {"errorMessage": "Not found"})
        query = {k: v[0] for k, v in call.query.items()}
        low, high = int(query.get("createdFrom", 0)), int(query.get("createdTo", 2**40))
        window = [o for o in self.orders if low <= o["createTimestamp"] <= high]
        offset, limit = int(query.get("offset", 0)), min(int(query.get("limit", 100)), 100)
        fault = self.fault(offset // limit + 1)
        if fault is not None:
            return fault
        chosen = window[offset : offset + limit]
        body = {"total": len(window), "count": len(chosen), "offset": offset, "limit": limit}
        return Reply(200, {**body, "items": chosen})


class PrestaShopWebservice(ShopApi):
    """PrestaShop's webservice: the order list (filter intervals on ``date_add`` and ``id``,
    ``sort=[id_ASC]``, ``limit``), and the order, customer, address, country and currency
    the lookups fetch (the example files), behind the Basic key."""

    ZONE = zoneinfo.ZoneInfo("Europe/Paris")
    #: order state ids in turn: Payment accepted, Delivered, Canceled
    STATES = ("2", "5", "6")

    def __init__(self, count: int, auth: str = "V1NLRVlURVNUOg==") -> None:
        self.auth = auth
        super().__init__([self.order(i) for i in range(count)])

    @classmethod
    def order(cls, i: int) -> dict[str, Any]:
        order: dict[str, Any] = _example("prestashop/api/orders-24.json")["order"]
        order["id"] = 100 + i
        moment = (FIRST + datetime.timedelta(days=i)).astimezone(cls.ZONE)
        order["date_add"] = order["date_upd"] = moment.strftime("%Y-%m-%d %H:%M:%S")
        order["current_state"] = cls.STATES[i % len(cls.STATES)]
        order["reference"] = f"BFREF{i:04d}"
        return order

    def _answer(self, call: Call) -> Reply:
        if call.header("Authorization") != f"Basic {self.auth}":
            return Reply(401, {"errors": [{"code": 17, "message": "Authentication key is empty"}]})
        query = {k: v[0] for k, v in call.query.items()}
        if query.get("output_format") != "JSON":
            return Reply(400, {"errors": [{"code": 0, "message": "XML, not asked for"}]})
        parts = call.path.strip("/").split("/")  # api, resource[, id]
        if parts[:2] == ["api", "orders"] and len(parts) == 3:
            found = [o for o in self.orders if str(o["id"]) == parts[2]]
            return Reply(200, {"order": found[0]}) if found else Reply(404, {"errors": []})
        if parts == ["api", "orders"]:
            return self._list(query)
        if len(parts) == 3:
            name = f"{parts[1]}-{parts[2]}.json"
        else:  # a list filtered by id: ?filter[id]=[7]
            name = f"{parts[1]}-{query.get('filter[id]', '[]').strip('[]')}.json"
        path = EXAMPLES / "prestashop" / "api" / name
        if not path.is_file():
            return Reply(200, []) if len(parts) == 2 else Reply(404, {"errors": [{"code": 0}]})
        return Reply(200, json.loads(path.read_text(encoding="utf-8")))

    def _list(self, query: Mapping[str, str]) -> Reply:
        if (query.get("display"), query.get("sort"), query.get("date")) != (
            "full",
            "[id_ASC]",
            "1",
        ):
            return Reply(400, {"errors": [{"message": "the backfill asks in full, by id, dates"}]})
        low, high = query["filter[date_add]"].strip("[]").split(",")
        first, last = (int(n) for n in query["filter[id]"].strip("[]").split(","))
        window = [o for o in self.orders if low <= o["date_add"] <= high]
        rest = [o for o in window if first <= o["id"] <= last]
        size = int(query["limit"].split(",")[-1])
        fault = self.fault((len(window) - len(rest)) // size + 1)
        if fault is not None:
            return fault
        chosen = rest[:size]
        return Reply(200, {"orders": chosen} if chosen else [])


class MagentoRest(ShopApi):
    """Magento's REST API: ``GET /rest/V1/orders`` with ``searchCriteria`` filter groups
    (AND-ed), sorted by ``entity_id``, with Magento's own quirk: a ``currentPage`` past the
    end answers the last page again."""

    #: order states in turn, with their default statuses
    STATES = ("processing", "complete", "canceled")

    def __init__(self, count: int, token: str = "magento-integration-token") -> None:
        self.token = token
        super().__init__([self.order(i) for i in range(count)])

    @classmethod
    def order(cls, i: int) -> dict[str, Any]:
        """The example order save's order as the REST API gives it."""
        value = _example("magento/io-order-save-complete.json")["data"]["value"]
        addresses = {a["address_type"]: a for a in value.pop("addresses")}
        for name in ("_isNew", "_origData", "status_histories"):
            value.pop(name, None)
        for address in addresses.values():
            address["street"] = address["street"].split("\n")  # REST gives a list of lines
        moment = FIRST + datetime.timedelta(days=i)
        value.update(
            entity_id=1500 + i,
            increment_id=f"{100001500 + i:09d}",
            state=cls.STATES[i % len(cls.STATES)],
            status=cls.STATES[i % len(cls.STATES)],
            customer_email=f"mbuyer{i}@example.com",
            created_at=moment.strftime("%Y-%m-%d %H:%M:%S"),
            updated_at=moment.strftime("%Y-%m-%d %H:%M:%S"),
            billing_address=addresses["billing"],
            extension_attributes={
                "shipping_assignments": [{"shipping": {"address": addresses["shipping"]}}]
            },
        )
        return dict(value)

    def _answer(self, call: Call) -> Reply:
        if call.header("Authorization") != f"Bearer {self.token}":
            return Reply(401, {"message": "The consumer isn't authorized to access %resources."})
        if call.path != "/rest/V1/orders":
            return Reply(404, {"message": "Request does not match any route."})
        query = {k: v[0] for k, v in call.query.items()}
        if query.get("searchCriteria[sortOrders][0][field]") != "entity_id":
            return Reply(400, {"message": "the backfill sorts by entity_id"})
        window, rest = self.orders, self.orders  # the window: the created_at groups alone
        n = 0
        while f"searchCriteria[filter_groups][{n}][filters][0][field]" in query:
            at = f"searchCriteria[filter_groups][{n}][filters][0]"
            field, text = query[f"{at}[field]"], query[f"{at}[value]"]
            value: Any = int(text) if field == "entity_id" else text
            test = _CONDITIONS[query[f"{at}[condition_type]"]]
            rest = [o for o in rest if test(o[field], value)]
            if field == "created_at":
                window = [o for o in window if test(o[field], value)]
            n += 1
        size, page = (
            int(query["searchCriteria[pageSize]"]),
            int(query["searchCriteria[currentPage]"]),
        )
        paging = "entity_id" in {
            v for k, v in query.items() if k.startswith("searchCriteria[filter_groups]")
        }
        fault = self.fault((len(window) - len(rest)) // size + 1) if paging else None
        if fault is not None:  # the count (no entity_id group) is never failed
            return fault
        last = max(1, -(-len(rest) // size))
        chosen = rest[(min(page, last) - 1) * size : min(page, last) * size]
        return Reply(200, {"items": chosen, "search_criteria": {}, "total_count": len(rest)})


class StripeApi(ShopApi):
    """Stripe's Checkout sessions list (newest first, ``starting_after``, ``ending_before``,
    ``has_more``), and the line items the lookup fetches. A fault's page is counted from the
    newest session of the window."""

    def __init__(self, count: int, key: str = "rk_test_backfill") -> None:
        self.key = key
        super().__init__([self.session(i) for i in range(count)])

    @staticmethod
    def session(i: int) -> dict[str, Any]:
        session: dict[str, Any] = _example("stripe/checkout-session-completed.json")["data"][
            "object"
        ]
        session["id"] = f"cs_test_bf{i:03d}"
        session["created"] = int((FIRST + datetime.timedelta(days=i)).timestamp())
        session["payment_status"] = "unpaid" if i % 3 == 2 else "paid"
        session["customer_details"] = {
            **session["customer_details"],
            "email": f"sbuyer{i}@example.com",
        }
        return session

    def add(self, count: int) -> None:
        """``count`` sessions more, completed after the others."""
        start = len(self.orders)
        self.orders.extend(self.session(start + i) for i in range(count))

    def _answer(self, call: Call) -> Reply:
        if call.header("Authorization") != f"Bearer {self.key}":
            return Reply(401, {"error": {"type": "invalid_request_error", "message": "bad key"}})
        for session in self.orders:
            if call.path == f"/v1/checkout/sessions/{session['id']}/line_items":
                return Reply(200, _example("stripe/api/line-items-01.json"))
        if call.path != "/v1/checkout/sessions":
            return Reply(404, {"error": {"type": "invalid_request_error"}})
        query = {k: v[0] for k, v in call.query.items()}
        low, high = int(query["created[gte]"]), int(query.get("created[lt]", 2**40))
        newest_first = sorted(
            (s for s in self.orders if low <= s["created"] < high and s["status"] == "complete"),
            key=lambda s: s["created"],
            reverse=True,
        )
        ids = [s["id"] for s in newest_first]
        limit = int(query.get("limit", 10))
        if "ending_before" in query:  # the page just newer than it, still newest first
            end = ids.index(query["ending_before"])
            chosen, more = newest_first[max(0, end - limit) : end], end - limit > 0
            start = max(0, end - limit)
        else:
            start = ids.index(query["starting_after"]) + 1 if "starting_after" in query else 0
            chosen = newest_first[start : start + limit]
            more = start + limit < len(ids)
        fault = self.fault(start // limit + 1)
        if fault is not None:
            return fault
        return Reply(200, {"object": "list", "url": call.path, "has_more": more, "data": chosen})


_CONDITIONS: dict[str, Any] = {
    "gteq": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
}


def _in_window(created: str, query: Mapping[str, str]) -> bool:
    moment = datetime.datetime.fromisoformat(created)
    low, high = query.get("created_at_min"), query.get("created_at_max")
    if low and moment < datetime.datetime.fromisoformat(low):
        return False
    return not (high and moment > datetime.datetime.fromisoformat(high))


def _created(order: Mapping[str, Any]) -> datetime.datetime:
    """A V2 order's ``date_created`` (RFC 2822)."""
    return email.utils.parsedate_to_datetime(order["date_created"])
