"""New customers: the dispatcher creates the contact through v1/contact before the first
event for it, once, and remembers it; the CDP's answers there decide the event's fate.

Events come from a small rule set with ``contact:`` declared, through the real pipeline,
into a real store file. The CDP is the sandbox in strict mode (it refuses an order event
for a contact it does not know), or ``httpx.MockTransport`` for answers the sandbox
does not give on demand (409, 500, 400). The last test runs the whole server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.events.contacts import contact_key
from engine.events.destination import Destination
from engine.pipeline import process
from engine.rules import compiler
from engine.rules.model import RuleSet
from engine.sandbox.run import RunningSandbox, running
from engine.sandbox.settings import SandboxConfig
from engine.server.dispatch import Dispatcher
from engine.server.processor import new_events
from engine.server.store.rows import AttemptRow, EventRow, NewEvent
from engine.server.store.sqlite import Store
from engine.webhook import Webhook
from tests.helpers_server import serving, wait_until

KEY = "contacts-test-key"
TINY = (0.01, 0.01, 0.01)
RULES = """\
name: shop
topic: {header: X-Topic}
verify: {scheme: none}
rules:
  - name: order
    topics: order.created
    events:
      - type: orderCreated
        key: email
        params:
          externalOrderId: to_string(id)
          externalCustomerId: to_string(customer_id)
          totalCost: total
          status: {const: INITIALIZED}
          date: created_at
          currency: currency
          email: email
        contact:
          email: email
          firstName: first_name
          externalCustomerId: to_string(customer_id)
"""


def order(order_id: int = 1001, email: str = "New.Customer@Example.com") -> dict[str, Any]:
    return {
        "id": order_id,
        "customer_id": 77,
        "total": "25.50",
        "created_at": "2024-05-01T10:00:00+00:00",
        "currency": "EUR",
        "email": email,
        "first_name": "Ada",
    }


def write_rules(folder: Path) -> Path:
    path = folder / "shop.yaml"
    path.write_text(RULES, encoding="utf-8")
    return path


@pytest.fixture
def ruleset(tmp_path: Path) -> RuleSet:
    loaded = compiler.load([str(write_rules(tmp_path))], {})
    assert loaded.ok, [d.render() for d in loaded.diagnostics]
    (only,) = loaded.rulesets
    return only


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "hookmap.sqlite3") as s:
        yield s


def queue(store: Store, ruleset: RuleSet, *orders: dict[str, Any]) -> None:
    """Store each order webhook and the events the rules make of it (as the server does)."""
    for data in orders:
        body = json.dumps(data).encode()
        headers = {"x-topic": "order.created"}
        wid = store.add_webhook("shop", headers, body, None).id
        result = process(ruleset, Webhook(body, headers))
        store.record_result(wid, result.topic, result.summary(), new_events(result))


def drain(store: Store, destination: Destination, **options: Any) -> Counter[str]:
    async def go() -> Counter[str]:
        async with Dispatcher(store, destination, schedule=TINY, **options) as dispatcher:
            return await dispatcher.drain(timeout=10)

    return asyncio.run(go())


def paths(box: RunningSandbox) -> list[str]:
    return [r["path"] for r in box.sandbox.requests()]


def events(store: Store) -> list[EventRow]:
    return sorted(store.list_events(limit=1000), key=lambda e: e.id)


def attempts(store: Store) -> list[AttemptRow]:
    out: list[AttemptRow] = []
    for webhook_id in sorted({e.webhook_id for e in events(store)}):
        detail = store.get_webhook(webhook_id)
        assert detail is not None
        out.extend(detail.attempts)
    return out


def remembered(store: Store) -> list[tuple[str, int | None]]:
    with sqlite3.connect(store.path) as db:
        rows = db.execute("SELECT key, contact_id FROM contacts ORDER BY key").fetchall()
    db.close()
    return [(str(k), v) for k, v in rows]


Handler = Callable[[httpx.Request], httpx.Response]


def cdp(contact: Handler) -> tuple[httpx.MockTransport, list[str]]:
    """A mock CDP: ``contact`` answers v1/contact, v1/event answers 200; paths seen."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path.endswith("/v1/contact"):
            return contact(request)
        return httpx.Response(200)

    return httpx.MockTransport(handler), seen


def answers(*responses: httpx.Response) -> Handler:
    """v1/contact answers these in turn, then 200 ``{"id": 1}``."""
    left = list(responses)
    return lambda _: left.pop(0) if left else httpx.Response(200, json={"id": 1})


MOCK = Destination("http://cdp.test/api", KEY)
NEW = "email:new.customer@example.com"


# -- with the sandbox in strict mode --------------------------------------------------------


def test_a_new_customers_order_is_accepted_because_the_contact_is_created_first(
    store: Store, ruleset: RuleSet
) -> None:
    queue(store, ruleset, order())
    (event,) = events(store)
    assert event.contact == {
        "channels": [{"type": "email", "value": "New.Customer@Example.com"}],
        "firstName": "Ada",
        "externalCustomerId": "77",
    }
    with running(SandboxConfig(api_key=KEY, strict_contacts=True)) as box:
        assert drain(store, box.destination()) == {"sent": 1}
        assert paths(box) == ["/api/v1/contact", "/api/v1/event"]
        assert [r["status"] for r in box.sandbox.requests()] == [200, 200]
        (contact,) = box.sandbox.contacts()
        assert contact["email"] == ["New.Customer@Example.com"]
        assert len(box.sandbox.events()) == 1
    assert [e.state for e in events(store)] == ["sent"]
    assert remembered(store) == [(NEW, contact["id"])]


def test_without_the_contact_step_strict_mode_refuses_the_order(
    store: Store, ruleset: RuleSet
) -> None:
    """The control for the test above: the same event, its contact request left out."""
    body = json.dumps(order()).encode()
    (made,) = new_events(process(ruleset, Webhook(body, {"x-topic": "order.created"})))
    wid = store.add_webhook("shop", {}, body, None).id
    store.record_result(wid, "t", "s", [dataclasses.replace(made, contact=None)])
    with running(SandboxConfig(api_key=KEY, strict_contacts=True)) as box:
        assert drain(store, box.destination()) == {"dead": 1}
        (refused,) = box.sandbox.requests()
        assert (refused["path"], refused["status"]) == ("/api/v1/event", 400)
        assert "Contact not found" in refused["reason"]


def test_two_events_for_one_new_contact_create_it_once(store: Store, ruleset: RuleSet) -> None:
    # one customer, two orders; the email spelt in two cases is still one contact
    queue(store, ruleset, order(1001), order(1002, email="new.customer@example.COM"))
    with running(SandboxConfig(api_key=KEY, strict_contacts=True)) as box:
        assert drain(store, box.destination(), concurrency=8) == {"sent": 2}
        assert paths(box) == ["/api/v1/contact", "/api/v1/event", "/api/v1/event"]
        assert len(box.sandbox.contacts()) == 1
    assert [key for key, _ in remembered(store)] == [NEW]


def test_a_contact_already_remembered_is_not_created_again(
    tmp_path: Path, store: Store, ruleset: RuleSet
) -> None:
    """Remembered in the store file: a restarted dispatcher (a new process) knows it too."""
    queue(store, ruleset, order(1001))
    with running(SandboxConfig(api_key=KEY, strict_contacts=True)) as box:
        drain(store, box.destination())
        with Store(store.path) as reopened:
            queue(reopened, ruleset, order(1002))
            assert drain(reopened, box.destination()) == {"sent": 1}
        assert paths(box) == ["/api/v1/contact", "/api/v1/event", "/api/v1/event"]


def test_an_event_without_a_contact_request_makes_no_contact_call(store: Store) -> None:
    wid = store.add_webhook("shop", {}, b"{}", None).id
    body = {"eventTypeKey": "pageViewed", "keyValue": "a@b.c", "params": []}
    store.record_result(wid, "t", "s", [NewEvent("r", 0, "pageViewed", "v1", body)])
    with running(SandboxConfig(api_key=KEY, strict_contacts=True)) as box:
        assert drain(store, box.destination()) == {"sent": 1}
        assert paths(box) == ["/api/v1/event"]
    assert remembered(store) == []


# -- the CDP's other answers (mock transport) -------------------------------------------


def test_409_for_a_repeat_counts_as_created(store: Store, ruleset: RuleSet) -> None:
    transport, seen = cdp(answers(httpx.Response(409, text="Conflict")))
    queue(store, ruleset, order())
    assert drain(store, MOCK, transport=transport) == {"sent": 1}
    assert seen == ["/api/v1/contact", "/api/v1/event"]
    assert remembered(store) == [(NEW, None)]  # 409 says no id


def test_the_contact_request_is_the_declared_body_with_the_api_key(
    store: Store, ruleset: RuleSet
) -> None:
    bodies: list[Any] = []

    def contact(request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        assert request.headers["authorization"] == MOCK.headers()["Authorization"]
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"id": 42})

    transport, _ = cdp(contact)
    queue(store, ruleset, order())
    drain(store, MOCK, transport=transport)
    assert bodies == [events(store)[0].contact]
    assert remembered(store) == [(NEW, 42)]


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, text="Internal Server Error"),
        httpx.Response(503, text="Service Unavailable"),
        httpx.Response(429, text="Too many requests"),
        httpx.Response(408),
    ],
    ids=["500", "503", "429", "408"],
)
def test_a_contact_call_failing_for_now_retries_the_event_later_then_sends_it(
    store: Store, ruleset: RuleSet, failure: httpx.Response
) -> None:
    transport, seen = cdp(answers(failure))
    queue(store, ruleset, order())
    assert drain(store, MOCK, transport=transport) == {"retry": 1, "sent": 1}
    # no event request while the contact was not there
    assert seen == ["/api/v1/contact", "/api/v1/contact", "/api/v1/event"]
    first, second = attempts(store)
    assert first.outcome == "retry"
    assert first.error is not None
    assert first.error.startswith(f"contact: HTTP {failure.status_code}")
    # the attempt's status is the event request's: none was made (show prints the error)
    assert first.status is None
    assert (second.outcome, second.status) == ("sent", 200)
    (event,) = events(store)
    assert (event.state, event.attempts, event.last_error) == ("sent", 2, None)


def test_a_network_error_on_the_contact_call_retries_the_event(
    store: Store, ruleset: RuleSet
) -> None:
    calls = 0

    def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"id": 3})

    transport, _ = cdp(flaky)
    queue(store, ruleset, order())
    assert drain(store, MOCK, transport=transport) == {"retry": 1, "sent": 1}
    assert attempts(store)[0].error == "contact: ConnectError: connection refused"


def test_contact_calls_failing_until_the_schedule_is_used_up_kill_the_event(
    store: Store, ruleset: RuleSet
) -> None:
    transport, seen = cdp(lambda _: httpx.Response(503, text="down"))
    queue(store, ruleset, order())
    assert drain(store, MOCK, transport=transport) == {"retry": 3, "dead": 1}
    assert "/api/v1/event" not in seen
    (event,) = events(store)
    assert (event.state, event.last_error) == ("dead", "contact: HTTP 503: down")


def test_a_contact_rejected_by_the_cdp_kills_the_event_with_the_reason(
    store: Store, ruleset: RuleSet
) -> None:
    reason = "channels must be a list of {type, value} with string type and value"
    transport, seen = cdp(answers(httpx.Response(400, text=reason)))
    queue(store, ruleset, order())
    assert drain(store, MOCK, transport=transport) == {"dead": 1}
    assert seen == ["/api/v1/contact"]
    (event,) = events(store)
    assert (event.state, event.last_error) == ("dead", f"contact rejected: HTTP 400: {reason}")
    assert remembered(store) == []


def test_events_waiting_for_a_failing_contact_call_share_its_answer(
    store: Store, ruleset: RuleSet
) -> None:
    """A CDP that is down costs one contact call per round, not one per waiting event."""
    transport, seen = cdp(answers(httpx.Response(503, text="down")))
    queue(store, ruleset, order(1001), order(1002), order(1003))
    assert drain(store, MOCK, transport=transport, concurrency=8) == {"retry": 3, "sent": 3}
    # round one: one call, three retries; round two: created once, three events
    assert seen.count("/api/v1/contact") == 2
    assert seen.count("/api/v1/event") == 3


@pytest.mark.parametrize(
    ("contact", "key"),
    [
        ({"channels": [{"type": "email", "value": " Ada@Shop.TEST "}]}, "email:ada@shop.test"),
        (
            {
                "channels": [
                    {"type": "sms", "value": "+380 50 123-45-67"},
                    {"type": "email", "value": "a@b.c"},
                ]
            },
            "email:a@b.c",
        ),
        ({"channels": [{"type": "sms", "value": "+380 (50) 123-45-67"}]}, "sms:380501234567"),
        ({"channels": [], "externalCustomerId": "c-77"}, "ext:c-77"),
        ({"channels": [{"type": "sms", "value": "n/a"}], "externalCustomerId": 7}, "ext:7"),
        ({"channels": []}, None),
    ],
    ids=["email lower-cased", "email first", "phone digits", "external id", "no digits", "none"],
)
def test_contact_key_prefers_email_then_phone_then_external_id(
    contact: dict[str, Any], key: str | None
) -> None:
    assert contact_key(contact) == key


# -- through the server -----------------------------------------------------------------


def test_the_server_creates_a_new_customer_before_the_order_event(tmp_path: Path) -> None:
    """End to end: webhook in, contact created, order event accepted by a strict CDP."""
    with (
        running(SandboxConfig(api_key=KEY, strict_contacts=True)) as box,
        serving(
            box.destination(), tmp_path / "data", rules=(str(write_rules(tmp_path)),), env={}
        ) as served,
        httpx.Client(trust_env=False, timeout=5) as client,
    ):
        posted = client.post(
            served.hook("shop"),
            content=json.dumps(order()).encode(),
            headers={"X-Topic": "order.created", "Content-Type": "application/json"},
        )
        assert posted.status_code == 200, posted.text
        wait_until(lambda: box.sandbox.events(), what="the order event at the sandbox")
        assert paths(box) == ["/api/v1/contact", "/api/v1/event"]
        assert [r["status"] for r in box.sandbox.requests()] == [200, 200]
        wait_until(lambda: [e.state for e in events(served.store)] == ["sent"], what="sent")
        assert served.store.contact_known(NEW)


def test_the_per_contact_locks_go_once_no_event_needs_them(store: Store, ruleset: RuleSet) -> None:
    """A long-running dispatcher does not keep a lock for every customer it ever saw."""
    transport, _ = cdp(answers())
    queue(store, ruleset, order(1), order(2, email="other@example.com"), order(3))

    async def go() -> dict[str, Any]:
        async with Dispatcher(store, MOCK, transport=transport, schedule=TINY) as dispatcher:
            await dispatcher.drain(timeout=10)
            return dict(dispatcher._contacts._locks)

    assert asyncio.run(go()) == {}
    assert [key for key, _ in remembered(store)] == [NEW, "email:other@example.com"]
