"""BigCommerce, Ecwid and Stripe end to end: the real server (``Service`` in a thread) on
loopback, verifying each request as the platform signs it, fetching the order from a
local stand-in of the platform's API, and delivering to the sandbox CDP.

The three platforms send ids, not orders, so enrichment is the heart of these tests:
the stand-in serves the bundled API fixtures (``examples/<platform>/api/``) only to the
right credentials (BigCommerce's ``X-Auth-Token``, Ecwid's and Stripe's bearer token)
and records what it was asked. The rule sets read their API base and host from the
environment, which here points at the stand-in. The sandbox is strict about contacts:
every accepted order event also proves that its contact was created first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.lookups import MockFetcher
from engine.pipeline import process
from engine.rules import compiler
from engine.rules.model import RuleSet
from engine.rules.schemes import VerifySpec
from engine.sandbox.run import RunningSandbox, running
from engine.sandbox.settings import SandboxConfig
from engine.server.signing import sign
from engine.webhook import Webhook
from tests.conftest import ROOT
from tests.helpers_server import (
    API_KEY,
    ServedService,
    example,
    param,
    serving,
    settled,
    wait_until,
)
from tests.support.http_stub import Call, HttpStub, Reply

PLATFORMS = ("bigcommerce", "ecwid", "stripe")
RULES = tuple(str(ROOT / "rules" / name) for name in PLATFORMS)
EXAMPLES = ROOT / "examples"

BC_SECRET = "bc-client-secret-for-tests-only"
BC_TOKEN = "bc-access-token-for-tests-only"
ECWID_SECRET = "ecwid-client-secret-for-tests-only"
ECWID_TOKEN = "secret_ecwid-token-for-tests-only"
STRIPE_SECRET = "whsec_stripe-endpoint-secret-for-tests-only"
STRIPE_KEY = "rk_test_stripe-restricted-key-for-tests-only"

STANDARD_WEBHOOKS = VerifySpec("standard-webhooks")
ECWID = VerifySpec("ecwid")
STRIPE = VerifySpec("timestamped")

BC_STORE = "/stores/q7b2k9x4ma"
STRIPE_S1 = "cs_live_a1B2c3D4e5F6g7H8i9J0kLmNoPqRsTuVwXyZ0123456789abcdEFGHijkl01"
GUEST_CART = "6d2f7a1c-3e4b-4f5a-9c8d-7e6f5a4b3c21"


# -- a stand-in of the three platforms' APIs -----------------------------------------------


def _fixture(platform: str, name: str) -> Any:
    return json.loads((EXAMPLES / platform / "api" / name).read_text(encoding="utf-8"))


#: path → answer; the path prefix says which platform and so which credential it needs
ROUTES: dict[str, Any] = {
    f"{BC_STORE}/v2/orders/250": _fixture("bigcommerce", "order-250.json"),
    f"{BC_STORE}/v2/orders/250/products": _fixture("bigcommerce", "order-250-products.json"),
    f"{BC_STORE}/v2/orders/251": _fixture("bigcommerce", "order-251.json"),
    f"{BC_STORE}/v2/orders/251/products": _fixture("bigcommerce", "order-251-products.json"),
    f"{BC_STORE}/v3/carts/{GUEST_CART}": _fixture("bigcommerce", f"cart-{GUEST_CART}.json"),
    "/api/v3/1003456/orders/HM4Q7": _fixture("ecwid", "order-HM4Q7.json"),
    "/api/v3/1003456/orders/PX81B": _fixture("ecwid", "order-PX81B.json"),
    "/api/v3/1003456/profile": _fixture("ecwid", "profile-1003456.json"),
    f"/v1/checkout/sessions/{STRIPE_S1}/line_items": _fixture("stripe", "line-items-01.json"),
    "/v1/checkout/sessions": _fixture("stripe", "sessions-by-payment-intent-01.json"),
}
CREDENTIALS = {
    "/stores/": ("x-auth-token", BC_TOKEN),
    "/api/v3/": ("authorization", f"Bearer {ECWID_TOKEN}"),
    "/v1/": ("authorization", f"Bearer {STRIPE_KEY}"),
}


def _answer(call: Call) -> Reply:
    header, wanted = next(
        (cred for prefix, cred in CREDENTIALS.items() if call.path.startswith(prefix)),
        ("authorization", None),
    )
    if wanted is None or call.header(header) != wanted:
        return Reply(401, {"status": 401, "title": "Unauthorized"})
    if call.path in ROUTES:
        return Reply(200, ROUTES[call.path])
    return Reply(404, {"status": 404, "title": "Not Found"})


class _StandIn(HttpStub):
    """The three platforms' APIs on loopback: the fixture answers, behind their keys."""

    def __init__(self) -> None:
        super().__init__(_answer)

    @property
    def base(self) -> str:
        return self.url

    def paths(self) -> list[str]:
        return [c.path for c in self.calls]


@pytest.fixture
def api() -> Iterator[_StandIn]:
    with _StandIn() as stand_in:
        yield stand_in


def _env(api: _StandIn, **override: str) -> dict[str, str]:
    """What the operator sets: secrets, API credentials, and the API pointed at the stand-in."""
    env = {
        "BIGCOMMERCE_CLIENT_SECRET": BC_SECRET,
        "BIGCOMMERCE_ACCESS_TOKEN": BC_TOKEN,
        "ECWID_CLIENT_SECRET": ECWID_SECRET,
        "ECWID_ACCESS_TOKEN": ECWID_TOKEN,
        "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "STRIPE_SECRET_KEY": STRIPE_KEY,
    }
    for platform in ("BIGCOMMERCE", "ECWID", "STRIPE"):
        env[f"{platform}_API_BASE"] = api.base
        env[f"{platform}_API_HOST"] = "127.0.0.1"
    env.update(override)
    return env


@pytest.fixture
def box() -> Iterator[RunningSandbox]:
    with running(SandboxConfig(api_key=API_KEY, strict_contacts=True)) as served:
        yield served


@pytest.fixture
def server(box: RunningSandbox, tmp_path: Path, api: _StandIn) -> Iterator[ServedService]:
    with serving(box.destination(), tmp_path / "data", rules=RULES, env=_env(api)) as served:
        yield served


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as c:
        yield c


# -- helpers -----------------------------------------------------------------------------


def _ruleset(name: str, env: Mapping[str, str]) -> RuleSet:
    loaded = compiler.load(list(RULES), env)
    assert loaded.ok, [d.render() for d in loaded.diagnostics]
    found = loaded.get(name)
    assert found is not None
    return found


def _signed(
    spec: VerifySpec, secret: str, webhook: Webhook, body: bytes | None = None, **sign_args: Any
) -> tuple[bytes, dict[str, str]]:
    """The example's body (or ``body``) and headers, placeholders replaced by a signature."""
    raw = webhook.body if body is None else body
    headers = {k: v for k, v in webhook.headers.items() if v != "PLACEHOLDER"}
    headers.update({k.lower(): v for k, v in sign(spec, secret.encode(), raw, **sign_args).items()})
    return raw, headers


def _bigcommerce(name: str, **sign_args: Any) -> tuple[bytes, dict[str, str]]:
    webhook = example(f"bigcommerce/{name}")
    # the example's webhook-id is the delivery id the rule set dedupes on: keep it signed
    sign_args.setdefault("msg_id", webhook.headers["webhook-id"])
    return _signed(STANDARD_WEBHOOKS, BC_SECRET, webhook, **sign_args)


def _sent(box: RunningSandbox, count: int) -> list[dict[str, Any]]:
    """The bodies of the first ``count`` events the sandbox accepted (waits for them)."""

    def enough() -> list[dict[str, Any]]:
        received = box.sandbox.events()
        return received if len(received) >= count else []  # [] keeps waiting

    return [e["body"] for e in wait_until(enough, what=f"{count} event(s) in the sandbox")]


def _nothing_stored(server: ServedService) -> bool:
    return sum(server.store.counts()["webhooks"].values()) == 0


def _contact_emails(box: RunningSandbox) -> set[str]:
    return {email for c in box.sandbox.contacts() for email in c["email"]}


# -- BigCommerce: Standard Webhooks, V2 orders and V3 carts ---------------------------------


def test_bigcommerce_order_is_fetched_and_its_contact_created_before_the_event(
    server: ServedService, box: RunningSandbox, client: httpx.Client, api: _StandIn
) -> None:
    """A signed store/order/created: order and lines from the API, contact, then the event."""
    body, headers = _bigcommerce("store-order-created")
    response = client.post(server.hook("bigcommerce"), content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "accepted", "id": 1}

    [event] = _sent(box, 1)
    wait_until(lambda: settled(server.store), what="the store to settle")
    assert api.paths() == [f"{BC_STORE}/v2/orders/250", f"{BC_STORE}/v2/orders/250/products"]
    assert api.calls[1].query == {"limit": ["250"]}
    # what the server sent is what the rule tests (fixtures as mocks) say it is
    mocks = {
        "order": _fixture("bigcommerce", "order-250.json"),
        "order_products": _fixture("bigcommerce", "order-250-products.json"),
    }
    ruleset = _ruleset("bigcommerce", _env(api))
    webhook = Webhook(body, headers, None, "test")
    assert [event] == process(ruleset, webhook, fetcher=MockFetcher(mocks)).sent
    assert (event["eventTypeKey"], event["keyValue"]) == ("orderCreated", "marcus.reed@example.com")
    assert param(event, "status") == "IN_PROGRESS"
    # the strict sandbox took the event, so the contact existed; hookmap created it
    [contact] = box.sandbox.contacts()
    assert contact["email"] == ["marcus.reed@example.com"]
    assert contact["externalCustomerId"] == "11"

    again = client.post(server.hook("bigcommerce"), content=body, headers=headers)
    assert again.json() == {"status": "duplicate", "id": 1}


def test_bigcommerce_guest_order_creates_a_new_contact_from_the_billing_address(
    server: ServedService, box: RunningSandbox, client: httpx.Client
) -> None:
    """A guest (customer_id 0) is a contact eSputnik has never seen: made from the order."""
    body, headers = _bigcommerce("store-order-created-guest")
    assert client.post(server.hook("bigcommerce"), content=body, headers=headers).status_code == 200
    [event] = _sent(box, 1)
    assert param(event, "currency") == "EUR"
    assert param(event, "externalCustomerId") is None
    [contact] = box.sandbox.contacts()
    assert contact["email"] == ["jurgen.weiss@example.net"]
    assert contact["sms"] == ["4930901820"]


def test_bigcommerce_cart_is_fetched_from_the_v3_carts_api(
    server: ServedService, box: RunningSandbox, client: httpx.Client, api: _StandIn
) -> None:
    """store/cart/updated: the cart (physical, digital and custom lines) becomes cartUpdated."""
    body, headers = _bigcommerce("store-cart-updated")
    assert client.post(server.hook("bigcommerce"), content=body, headers=headers).status_code == 200
    [event] = _sent(box, 1)
    assert api.paths() == [f"{BC_STORE}/v3/carts/{GUEST_CART}"]
    assert event["eventTypeKey"] == "cartUpdated"
    assert param(event, "recycleStateId") == GUEST_CART
    products = json.loads(param(event, "products"))
    assert [p["productId"] for p in products] == ["112", "160", "ENGRAVE"]


def test_bigcommerce_tampered_stale_or_unsigned_requests_are_refused(
    server: ServedService, box: RunningSandbox, client: httpx.Client, api: _StandIn
) -> None:
    """401 for a changed body, an old timestamp or no signature; nothing stored or fetched."""
    body, headers = _bigcommerce("store-order-created")
    tampered = body.replace(b'"id": 250', b'"id": 251')
    assert tampered != body
    stale_body, stale = _bigcommerce("store-order-created", now=time.time() - 600)
    unsigned = {k: v for k, v in headers.items() if k != "webhook-signature"}
    for raw, hdrs in ((tampered, headers), (stale_body, stale), (body, unsigned)):
        response = client.post(server.hook("bigcommerce"), content=raw, headers=hdrs)
        assert response.status_code == 401, response.text
    assert _nothing_stored(server)
    assert api.calls == []
    assert box.sandbox.events() == []


def test_a_lookup_the_api_refuses_keeps_the_webhook_and_sends_nothing(
    box: RunningSandbox, client: httpx.Client, api: _StandIn, tmp_path: Path
) -> None:
    """A wrong access token: the webhook is accepted and put off with the API's answer."""
    env = _env(api, BIGCOMMERCE_ACCESS_TOKEN="revoked-token")
    with serving(box.destination(), tmp_path / "data", rules=RULES, env=env) as srv:
        body, headers = _bigcommerce("store-order-created")
        response = client.post(srv.hook("bigcommerce"), content=body, headers=headers)
        assert response.json() == {"status": "accepted", "id": 1}

        def put_off() -> Any:
            detail = srv.store.get_webhook(1)
            return detail if detail and detail.webhook.process_attempts else None

        detail = wait_until(put_off, what="the webhook put off")
    assert detail.webhook.state == "received"
    assert detail.webhook.error is not None
    assert "lookup 'order'" in detail.webhook.error and "HTTP 401" in detail.webhook.error
    assert "revoked-token" not in detail.webhook.error
    assert detail.events == []
    assert [c.status for c in api.calls] == [401]
    assert box.sandbox.events() == []


# -- Ecwid: HMAC over eventCreated.eventId, REST orders and the store profile ---------------


def _ecwid(name: str, **changes: Any) -> tuple[bytes, dict[str, str]]:
    webhook = example(f"ecwid/{name}")
    body = json.loads(webhook.body)
    body.update(changes)
    return _signed(ECWID, ECWID_SECRET, webhook, json.dumps(body).encode())


def test_ecwid_orders_are_fetched_with_the_token_and_the_profile_is_cached(
    server: ServedService, box: RunningSandbox, client: httpx.Client, api: _StandIn
) -> None:
    """order.created then order.updated (shipped): two events, one profile fetch (cache)."""
    for name in ("order-created", "order-updated-shipped"):
        body, headers = _ecwid(name)
        response = client.post(server.hook("ecwid"), content=body, headers=headers)
        assert response.json()["status"] == "accepted"
    created, delivered = _sent(box, 2)
    assert (created["eventTypeKey"], delivered["eventTypeKey"]) == (
        "orderCreated",
        "orderDelivered",
    )
    assert param(created, "currency") == "USD"  # from the store profile
    assert param(delivered, "status") == "DELIVERED"
    assert sorted(api.paths()) == [
        "/api/v3/1003456/orders/HM4Q7",
        "/api/v3/1003456/orders/HM4Q7",
        "/api/v3/1003456/profile",
    ]
    assert "ava.thompson@example.com" in _contact_emails(box)

    body, headers = _ecwid("order-created")
    assert client.post(server.hook("ecwid"), content=body, headers=headers).json() == {
        "status": "duplicate",
        "id": 1,
    }


def test_ecwid_signature_covers_the_event_id_and_time(
    server: ServedService, box: RunningSandbox, client: httpx.Client, api: _StandIn
) -> None:
    """Ecwid signs "{eventCreated}.{eventId}": changing either after signing is refused."""
    body, headers = _ecwid("order-created")
    for field, value in (("eventId", "0b7c3f4e-0000-0000-0000-000000000000"), ("eventCreated", 1)):
        data = json.loads(body)
        data[field] = value
        response = client.post(server.hook("ecwid"), content=json.dumps(data), headers=headers)
        assert response.status_code == 401, response.text
    missing = {k: v for k, v in headers.items() if k != "x-ecwid-webhook-signature"}
    assert client.post(server.hook("ecwid"), content=body, headers=missing).status_code == 401
    assert _nothing_stored(server)
    assert api.calls == []


# -- Stripe: t=,v1= signatures, line items and refunds ---------------------------------------


def _stripe(name: str, **sign_args: Any) -> tuple[bytes, dict[str, str]]:
    return _signed(STRIPE, STRIPE_SECRET, example(f"stripe/{name}"), **sign_args)


def test_stripe_checkout_and_its_refund_reach_the_sandbox(
    server: ServedService, box: RunningSandbox, client: httpx.Client, api: _StandIn
) -> None:
    """checkout.session.completed → orderCreated with fetched lines; charge.refunded → cancel."""
    body, headers = _stripe("checkout-session-completed")
    assert client.post(server.hook("stripe"), content=body, headers=headers).status_code == 200
    [created] = _sent(box, 1)
    # Stripe's retry of the same event (same evt_ id, a fresh signature) is a repeat
    body, headers = _stripe("checkout-session-completed")
    again = client.post(server.hook("stripe"), content=body, headers=headers)
    assert again.json() == {"status": "duplicate", "id": 1}
    assert param(created, "totalCost") == "86"  # every amount in its shortest form
    items = json.loads(param(created, "items"))
    assert [i["name"] for i in items] == ["Canvas Weekender Bag", "Leather Luggage Tag"]
    line_items = api.calls[0]
    assert line_items.path == f"/v1/checkout/sessions/{STRIPE_S1}/line_items"
    assert line_items.query == {"limit": ["100"], "expand[]": ["data.price.product"]}

    body, headers = _stripe("charge-refunded")
    assert client.post(server.hook("stripe"), content=body, headers=headers).status_code == 200
    _, cancelled = _sent(box, 2)
    wait_until(lambda: settled(server.store), what="the store to settle")
    assert (cancelled["eventTypeKey"], param(cancelled, "status")) == (
        "orderCancelled",
        "CANCELLED",
    )
    assert param(cancelled, "externalOrderId") == STRIPE_S1
    assert api.calls[1].query == {"payment_intent": ["pi_3QcDeF4gHiJkLmNo1AbCdEf1"], "limit": ["1"]}
    # one contact, created once, although two events were sent for it
    assert [c["email"] for c in box.sandbox.contacts()] == [["emma.lawson@example.com"]]


def test_stripe_tampered_or_replayed_events_are_refused(
    server: ServedService, client: httpx.Client, api: _StandIn
) -> None:
    """A changed body, or a signature older than the 300 s tolerance, gets 401."""
    body, headers = _stripe("checkout-session-completed")
    tampered = body.replace(b'"amount_total": 8600', b'"amount_total": 1')
    assert tampered != body
    old_body, old = _stripe("checkout-session-completed", now=time.time() - 3600)
    for raw, hdrs in ((tampered, headers), (old_body, old)):
        response = client.post(server.hook("stripe"), content=raw, headers=hdrs)
        assert response.status_code == 401, response.text
    assert _nothing_stored(server)
    assert api.calls == []


# -- the bundled examples ------------------------------------------------------------------


@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_example_is_covered_by_a_rule_test(platform: str) -> None:
    """No bundled webhook example is left without a rule test of what it becomes."""
    loaded = compiler.load([ROOT / "rules" / platform])
    assert [d.render() for d in loaded.diagnostics] == []
    [ruleset] = loaded.rulesets
    used = {Path(c.body_file).name for c in ruleset.tests if c.body_file}
    examples = {p.name for p in (EXAMPLES / platform).glob("*.json")}
    assert examples - used == set()
    for path in (EXAMPLES / platform).glob("*.json"):
        assert path.with_suffix(".headers").is_file(), f"{path.name} has no .headers file"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_credentials_unset_load_clean_and_default_to_the_real_api(platform: str) -> None:
    """Without any environment the rule set loads clean and calls only the platform's host."""
    loaded = compiler.load([ROOT / "rules" / platform], {})
    assert [d.render() for d in loaded.diagnostics] == []
    [ruleset] = loaded.rulesets
    hosts = {"bigcommerce": "api.bigcommerce.com", "ecwid": "app.ecwid.com"}
    assert ruleset.hosts == {hosts.get(platform, "api.stripe.com")}
    # a credential without a default would make `hookmap serve` refuse to start (W303)
    assert [s.name for s in ruleset.lookups if s.missing_env] == []
