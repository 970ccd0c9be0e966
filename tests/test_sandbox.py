"""The sandbox CDP, served for real on loopback and spoken to with httpx (no mocks)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from engine.events.encode import body_bytes, request_body
from engine.sandbox.run import RunningSandbox, running
from engine.sandbox.settings import SandboxConfig

KEY = "sandbox-test-key"
EMAIL = "ann@example.com"
ITEMS = [
    {
        "externalItemId": "200600",
        "name": "Super Device",
        "quantity": 1,
        "cost": 258.0,
        "url": "https://example.com/item/200600",
        "imageUrl": "https://example.com/item/200600.png",
    }
]
ORDER: dict[str, Any] = {
    "externalOrderId": "12345679",
    "externalCustomerId": "AV13760",
    "email": EMAIL,
    "totalCost": "258.0",
    "status": "INITIALIZED",
    "date": "2020-05-14T10:11:00",
    "currency": "USD",
    "items": json.dumps(ITEMS),  # v1: a JSON string, as the source page sends it
}


def order_event(version: str = "v1", drop: str = "", **params: Any) -> dict[str, Any]:
    """An orderCreated body, less the param ``drop``, with ``params`` changed."""
    values = {k: v for k, v in {**ORDER, **params}.items() if k != drop}
    return {
        "eventTypeKey": "orderCreated",
        "keyValue": EMAIL,
        "params": [{"name": k, "value": v} for k, v in values.items()],
    }


@pytest.fixture(scope="module")
def box() -> Iterator[RunningSandbox]:
    # One server for the module keeps the suite fast; each test starts from a reset.
    with running(SandboxConfig(api_key=KEY, seed=1)) as served:
        yield served


@pytest.fixture
def api(box: RunningSandbox) -> Iterator[httpx.Client]:
    box.sandbox.reset()
    box.sandbox.configure(
        rate_limit=350, fail_rate=0.0, throttle_rate=0.0, delay_seconds=0.0, strict_contacts=False
    )
    with httpx.Client(base_url=box.url, auth=("any-user", KEY), trust_env=False) as client:
        yield client


@pytest.fixture
def control(box: RunningSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=box.root, trust_env=False) as client:
        yield client


def test_accepted_v1_order_event_is_listed_by_sandbox_events(
    api: httpx.Client, control: httpx.Client
) -> None:
    response = api.post("/v1/event", json=order_event())
    assert response.status_code == 200, response.text
    assert response.content == b""
    events = control.get("/sandbox/events").json()
    assert [e["version"] for e in events] == ["v1"]
    assert events[0]["body"] == order_event()
    assert events[0]["received"]


def test_what_hookmap_encodes_for_v1_is_accepted(api: httpx.Client) -> None:
    params = [(k, v) for k, v in ORDER.items() if k != "items"] + [("items", ITEMS)]
    body = request_body("orderCreated", EMAIL, params, "v1")
    response = api.post(
        "/v1/event", content=body_bytes(body), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "auth", [None, ("user", "wrong-key"), ("", "")], ids=["missing", "wrong key", "empty"]
)
def test_missing_or_wrong_basic_auth_is_401_with_a_text_body(
    box: RunningSandbox, auth: tuple[str, str] | None
) -> None:
    box.sandbox.reset()
    with httpx.Client(base_url=box.url, auth=auth, trust_env=False) as client:
        response = client.post("/v1/event", json=order_event())
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/plain")
    assert KEY not in response.text
    assert box.sandbox.events() == []


def test_v1_non_string_value_is_400_with_a_reason(api: httpx.Client) -> None:
    response = api.post("/v1/event", json=order_event(totalCost=258.0))
    assert response.status_code == 400
    assert "totalCost" in response.text and "string" in response.text


def test_v2_object_value_is_accepted(api: httpx.Client) -> None:
    body = {
        "eventTypeKey": "productViewed",
        "keyValue": EMAIL,
        "params": [{"name": "product", "value": {"productId": "p1", "price": "9.5"}}],
    }
    assert api.post("/v2/event", json=body).status_code == 200


def test_v2_number_value_is_400_as_the_reference_documents(api: httpx.Client) -> None:
    # The reference allows a string or a JSON object/array in v2, nothing else.
    response = api.post("/v2/event", json=order_event("v2", totalCost=258.0))
    assert response.status_code == 400
    assert "totalCost" in response.text and "number" in response.text


def test_v2_order_with_items_as_a_list_is_accepted(api: httpx.Client) -> None:
    assert api.post("/v2/event", json=order_event("v2", items=ITEMS)).status_code == 200


def test_order_missing_total_cost_is_400_naming_it(api: httpx.Client) -> None:
    response = api.post("/v1/event", json=order_event(drop="totalCost"))
    assert response.status_code == 400
    assert "totalCost" in response.text and "V101" in response.text


def test_forbidden_character_in_key_value_is_400(api: httpx.Client) -> None:
    body = {**order_event(), "keyValue": "ann/example.com"}
    response = api.post("/v1/event", json=body)
    assert response.status_code == 400
    assert "keyValue" in response.text


def test_custom_event_with_forbidden_character_in_event_type_is_400(api: httpx.Client) -> None:
    response = api.post("/v1/event", json={"eventTypeKey": "bad?key", "params": []})
    assert response.status_code == 400
    assert "eventTypeKey" in response.text


def test_duplicate_param_names_are_400(api: httpx.Client) -> None:
    body = {
        "eventTypeKey": "custom",
        "keyValue": EMAIL,
        "params": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}],
    }
    response = api.post("/v1/event", json=body)
    assert response.status_code == 400
    assert "'a'" in response.text


def test_body_over_20_kb_is_413(api: httpx.Client) -> None:
    body = {
        "eventTypeKey": "custom",
        "keyValue": EMAIL,
        "params": [{"name": "x", "value": "y" * 21_000}],
    }
    response = api.post("/v1/event", json=body)
    assert response.status_code == 413
    assert "Payload Too Large" in response.text


def test_body_that_is_not_json_is_400(api: httpx.Client) -> None:
    response = api.post("/v1/event", content=b"{not json")
    assert response.status_code == 400
    assert "JSON" in response.text


def test_requests_over_the_rate_limit_are_429(api: httpx.Client, control: httpx.Client) -> None:
    assert control.post("/sandbox/config", json={"rate_limit": 5}).status_code == 200
    statuses = [api.post("/v1/event", json=order_event()).status_code for _ in range(20)]
    assert statuses[:5] == [200] * 5
    assert 429 in statuses
    refused = [r for r in control.get("/sandbox/requests").json() if r["status"] == 429]
    assert refused and refused[0]["reason"] == "Too many requests"


def test_fail_rate_one_gives_500_until_config_heals_it(
    api: httpx.Client, control: httpx.Client
) -> None:
    control.post("/sandbox/config", json={"fail_rate": 1})
    assert api.post("/v1/event", json=order_event()).status_code == 500
    healed = control.post("/sandbox/config", json={"fail_rate": 0})
    assert healed.json()["fail_rate"] == 0
    assert api.post("/v1/event", json=order_event()).status_code == 200


def test_throttle_rate_one_gives_429(api: httpx.Client, control: httpx.Client) -> None:
    control.post("/sandbox/config", json={"throttle_rate": 1.0})
    response = api.post("/v2/event", json=order_event("v2"))
    assert response.status_code == 429
    assert response.text == "Too many requests"


@pytest.mark.parametrize(
    "change", [{"fail_rate": 2}, {"rate_limit": True}, {"api_key": "x"}, {"seed": 3}]
)
def test_bad_config_change_is_400_and_changes_nothing(
    control: httpx.Client, api: httpx.Client, change: dict[str, Any]
) -> None:
    assert control.post("/sandbox/config", json=change).status_code == 400
    assert control.get("/sandbox/config").json()["fail_rate"] == 0


def test_strict_contacts_refuses_an_order_for_an_unknown_contact_until_it_is_created(
    api: httpx.Client, control: httpx.Client
) -> None:
    control.post("/sandbox/config", json={"strict_contacts": True})
    refused = api.post("/v1/event", json=order_event())
    assert refused.status_code == 400
    assert "contact" in refused.text.lower()
    created = api.post("/v1/contact", json={"channels": [{"type": "email", "value": EMAIL}]})
    assert created.status_code == 200
    assert created.json()["id"] == 1
    assert api.post("/v1/event", json=order_event()).status_code == 200


def test_strict_contacts_knows_contacts_from_the_batch_and_orders_resources(
    api: httpx.Client, control: httpx.Client
) -> None:
    control.post("/sandbox/config", json={"strict_contacts": True})
    batch = {"contacts": [{"channels": [{"type": "sms", "value": "+380501234567"}]}]}
    response = api.post("/v1/contacts", json=batch)
    assert response.status_code == 200 and response.json()["asyncSessionId"]
    by_phone = order_event(drop="email", phone="380501234567", externalCustomerId="other")
    assert api.post("/v1/event", json={**by_phone, "keyValue": None}).status_code == 200
    order = {k: v for k, v in ORDER.items() if k not in ("items", "email")}
    assert api.post("/v1/orders", json={"orders": [order]}).json() == {"failedOrders": []}
    by_id = order_event(drop="email")
    assert api.post("/v1/event", json={**by_id, "keyValue": None}).status_code == 200


def test_orders_missing_required_fields_are_listed_as_failed(api: httpx.Client) -> None:
    incomplete = {"externalOrderId": "9", "status": "DELIVERED", "date": "2020-05-14T10:11:00"}
    response = api.post("/v1/orders", json={"orders": [incomplete, dict(ORDER)]})
    assert response.status_code == 200
    failed = response.json()["failedOrders"]
    assert [f["order"]["externalOrderId"] for f in failed] == ["9"]
    assert "totalCost" in failed[0]["error"]


def test_repeated_identical_contact_request_within_60_s_is_409(api: httpx.Client) -> None:
    contact = {"channels": [{"type": "email", "value": EMAIL}], "firstName": "Ann"}
    assert api.post("/v1/contact", json=contact).status_code == 200
    assert api.post("/v1/contact", json=contact).status_code == 409
    changed = api.post("/v1/contact", json={**contact, "firstName": "Anna"})
    assert changed.json() == {"id": 1}  # same email: the same contact, updated


def test_delete_sandbox_events_resets_all_state(api: httpx.Client, control: httpx.Client) -> None:
    api.post("/v1/contact", json={"channels": [{"type": "email", "value": EMAIL}]})
    api.post("/v1/event", json=order_event())
    assert control.delete("/sandbox/events").status_code == 200
    for what in ("events", "contacts", "orders", "requests"):
        assert control.get(f"/sandbox/{what}").json() == []


def test_unknown_path_is_404_and_health_needs_no_auth(
    api: httpx.Client, control: httpx.Client
) -> None:
    assert api.post("/v1/nothing", json={}).status_code == 404
    assert control.get("/sandbox/health").json() == {"status": "ok"}


def test_requests_log_holds_refused_requests_with_their_status(
    api: httpx.Client, control: httpx.Client
) -> None:
    api.post("/v1/event", json=order_event(drop="status"))
    api.post("/v1/event", json=order_event())
    logged = control.get("/sandbox/requests").json()
    assert [(r["path"], r["status"]) for r in logged] == [
        ("/api/v1/event", 400),
        ("/api/v1/event", 200),
    ]
    assert "status" in logged[0]["reason"]


def test_accepted_events_are_printed_without_the_api_key() -> None:
    lines: list[str] = []
    with (
        running(SandboxConfig(api_key=KEY), printer=lines.append) as served,
        httpx.Client(base_url=served.url, auth=("u", KEY), trust_env=False) as client,
    ):
        client.post("/v1/event", json=order_event())
        client.post("/v1/event", json=order_event(drop="date"))  # refused: not printed
    assert len(lines) == 1
    assert lines[0].endswith(f" v1 orderCreated {EMAIL} {len(ORDER)} params")
    assert KEY not in lines[0]
