"""Wix and commercetools end to end: the real server (``Service`` in a thread) on
loopback, verifying as each platform delivers, and the sandbox CDP receiving the events.

Wix posts a JWT signed with the app's key pair: the tests make a pair of their own, put
the public half where the rule set reads it (``WIX_PUBLIC_KEY``) and re-sign the bundled
examples' claims with the private half (fresh ``iat``/``exp``). commercetools arrives
as a Pub/Sub push (or as CloudEvents) carrying a shared bearer token. The sandbox is
strict about contacts, so every accepted order event also proves that its contact was
created first.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from engine.pipeline import process
from engine.rules import compiler
from engine.rules.model import RuleSet
from engine.rules.schemes import VerifySpec
from engine.sandbox.run import RunningSandbox, running
from engine.sandbox.settings import SandboxConfig
from engine.server.signing import make_jwt
from engine.webhook import Webhook
from tests.conftest import ROOT
from tests.helpers_server import (
    API_KEY,
    ServedService,
    example,
    param,
    serving,
    settled,
    signed,
    wait_until,
)

RULES = (str(ROOT / "rules" / "wix"), str(ROOT / "rules" / "commercetools"))
PUSH_TOKEN = "ct-push-token-for-tests-only"
EVENTS_TOKEN = "ct-events-token-for-tests-only"
BEARER = VerifySpec("bearer")
WIX_EXAMPLES = sorted(p.stem for p in (ROOT / "examples" / "wix").glob("*.txt"))


def _key_pair() -> tuple[bytes, str]:
    """(private PEM, public PEM) of a fresh 2048-bit RSA key, as Wix holds its app key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


@pytest.fixture(scope="module")
def wix_key() -> tuple[bytes, str]:
    return _key_pair()


@pytest.fixture
def env(wix_key: tuple[bytes, str]) -> dict[str, str]:
    """What the operator sets: the Wix public key, both tokens, the two vars."""
    return {
        "WIX_PUBLIC_KEY": wix_key[1],
        "COMMERCETOOLS_PUSH_TOKEN": PUSH_TOKEN,
        "COMMERCETOOLS_EVENTS_TOKEN": EVENTS_TOKEN,
        "COMMERCETOOLS_PHONE_COUNTRY_CODE": "44",
        "COMMERCETOOLS_PRODUCT_URL": "https://shop.example/p/{}",
    }


@pytest.fixture
def box() -> Iterator[RunningSandbox]:
    with running(SandboxConfig(api_key=API_KEY, strict_contacts=True)) as served:
        yield served


@pytest.fixture
def server(box: RunningSandbox, tmp_path: Path, env: dict[str, str]) -> Iterator[ServedService]:
    with serving(box.destination(), tmp_path / "data", rules=RULES, env=env) as served:
        yield served


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as c:
        yield c


def _rulesets(env: dict[str, str]) -> dict[str, RuleSet]:
    loaded = compiler.load(list(RULES), env)
    assert loaded.ok, [d.render() for d in loaded.diagnostics]
    return {r.name: r for r in loaded.rulesets}


# -- Wix: JWT bodies -------------------------------------------------------------------


def _claims(name: str) -> dict[str, Any]:
    """An example's JWT claims, read without its (throw-away) signature."""
    token = example(f"wix/{name}").body.decode()
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _wix_body(name: str, private_pem: bytes, ttl: int = 300, **inner: Any) -> bytes:
    """The example ``name`` re-signed with ``private_pem``, valid from now for ``ttl`` s.

    ``inner`` replaces fields of the innermost event (``id`` gives a new event id).
    """
    claims = _claims(name)
    if inner:
        middle = json.loads(claims["data"])
        event = json.loads(middle["data"])
        event.update(inner)
        middle["data"] = json.dumps(event)
        claims["data"] = json.dumps(middle)
    now = int(time.time())
    claims.update(iat=now, exp=now + ttl)
    return make_jwt(private_pem, claims).encode()


def _post_wix(client: httpx.Client, server: ServedService, body: bytes) -> httpx.Response:
    return client.post(server.hook("wix"), content=body, headers={"Content-Type": "text/plain"})


def _nothing_stored(server: ServedService) -> bool:
    return sum(server.store.counts()["webhooks"].values()) == 0


def test_wix_order_signed_with_the_app_key_reaches_the_sandbox_after_its_contact(
    server: ServedService,
    box: RunningSandbox,
    client: httpx.Client,
    wix_key: tuple[bytes, str],
    env: dict[str, str],
) -> None:
    """A JWT the configured public key verifies → 200; contact created, then the event."""
    body = _wix_body("order-created", wix_key[0])
    response = _post_wix(client, server, body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"

    received = wait_until(box.sandbox.events, what="the Wix event in the sandbox")
    wait_until(lambda: settled(server.store), what="the store to settle")
    # what the rule set makes of the same claims, computed here without the server
    expected = process(_rulesets(env)["wix"], Webhook.make(body, {"content-type": "text/plain"}))
    assert [e["body"] for e in received] == expected.sent
    event = received[0]["body"]
    assert event["eventTypeKey"] == "orderCreated"
    assert param(event, "externalOrderId") == "3f9a2c4e-7b1d-4e8f-a2c6-9d0e1f2a3b4c"
    assert param(event, "status") == "IN_PROGRESS"
    # strict sandbox: the event was accepted only because the contact came first
    contacts = box.sandbox.contacts()
    assert [c["email"] for c in contacts] == [["lena.hoffmann@example.com"]]
    assert contacts[0]["externalCustomerId"] == "b7e2a1c4-5d6f-4a8b-9c0e-1f2a3b4c5d6e"


def test_every_wix_example_goes_through_the_server_as_the_rules_say(
    server: ServedService,
    box: RunningSandbox,
    client: httpx.Client,
    wix_key: tuple[bytes, str],
    env: dict[str, str],
) -> None:
    """All order topics, re-signed: what reaches the sandbox is what the rules produce."""
    wix = _rulesets(env)["wix"]
    expected: list[dict[str, Any]] = []
    for name in WIX_EXAMPLES:
        body = _wix_body(name, wix_key[0])
        assert _post_wix(client, server, body).status_code == 200, name
        expected.extend(process(wix, Webhook.make(body)).sent)
    # the POS sale (no buyer) is dropped, every other example gives one event
    assert len(expected) == len(WIX_EXAMPLES) - 1
    wait_until(lambda: len(box.sandbox.events()) >= len(expected), what="every Wix event")
    wait_until(lambda: settled(server.store), what="the store to settle")
    received = [e["body"] for e in box.sandbox.events()]
    key = json.dumps
    assert sorted(map(key, received)) == sorted(map(key, expected))
    kinds = {e["eventTypeKey"] for e in received}
    assert kinds == {"orderCreated", "orderUpdated", "orderDelivered", "orderCancelled"}
    assert server.store.counts()["events"]["invalid"] == 1


def test_wix_token_signed_by_another_key_is_refused_and_not_stored(
    server: ServedService, client: httpx.Client
) -> None:
    """A JWT from a key that is not the app's → 401, nothing stored."""
    stranger, _ = _key_pair()
    response = _post_wix(client, server, _wix_body("order-created", stranger))
    assert response.status_code == 401
    assert _nothing_stored(server)


def test_wix_claims_changed_after_signing_are_refused(
    server: ServedService, client: httpx.Client, wix_key: tuple[bytes, str]
) -> None:
    """The signed header and signature kept, the claims swapped for other ones → 401."""
    header, _, signature = _wix_body("order-created", wix_key[0]).split(b".")
    claims = _claims("order-created")
    claims["data"] = claims["data"].replace("106.6", "0.01")
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    response = _post_wix(client, server, b".".join([header, forged, signature]))
    assert response.status_code == 401
    assert _nothing_stored(server)


def test_an_expired_wix_token_is_refused(
    server: ServedService, client: httpx.Client, wix_key: tuple[bytes, str]
) -> None:
    """Signed by the right key but past its exp (beyond the leeway) → 401."""
    response = _post_wix(client, server, _wix_body("order-created", wix_key[0], ttl=-3600))
    assert response.status_code == 401
    assert _nothing_stored(server)


def test_a_wix_retry_of_one_event_is_acknowledged_as_a_duplicate(
    server: ServedService, client: httpx.Client, wix_key: tuple[bytes, str]
) -> None:
    """Wix re-signs a retried delivery: a new token, the same event id."""
    first = _post_wix(client, server, _wix_body("order-created", wix_key[0], ttl=300))
    again = _post_wix(client, server, _wix_body("order-created", wix_key[0], ttl=600))
    assert first.json()["status"] == "accepted"
    assert again.json()["status"] == "duplicate"


# -- commercetools: Pub/Sub push and CloudEvents ------------------------------------------


def _push(name: str, token: str = PUSH_TOKEN) -> tuple[bytes, dict[str, str]]:
    """An example push body and headers with ``Authorization: Bearer <token>``."""
    webhook = example(f"commercetools/{name}")
    return webhook.body, signed(webhook.body, webhook.headers, BEARER, token)


def test_commercetools_push_with_the_token_reaches_the_sandbox(
    server: ServedService,
    box: RunningSandbox,
    client: httpx.Client,
    env: dict[str, str],
) -> None:
    """OrderCreated pushes with the right bearer token → orderCreated, contacts first."""
    names = ["order-created", "order-created-phone-only"]
    for name in names:
        body, headers = _push(name)
        response = client.post(server.hook("commercetools"), content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "accepted"

    wait_until(lambda: len(box.sandbox.events()) == 2, what="both commercetools events")
    wait_until(lambda: settled(server.store), what="the store to settle")
    ct = _rulesets(env)["commercetools"]
    expected = [process(ct, example(f"commercetools/{n}")).sent[0] for n in names]
    received = {param(e["body"], "externalOrderId"): e["body"] for e in box.sandbox.events()}
    assert received == {param(e, "externalOrderId"): e for e in expected}
    first, phone_only = received["HM-100231"], received["HM-100233"]
    assert param(first, "totalCost") == "106.6"
    # COMMERCETOOLS_PRODUCT_URL gives each product line a URL from its slug
    assert [i.get("url") for i in json.loads(param(first, "items"))] == [
        "https://shop.example/p/merino-crew-sweater",
        "https://shop.example/p/canvas-tote-bag",
    ]
    # COMMERCETOOLS_PHONE_COUNTRY_CODE turns the national mobile number international
    assert phone_only["keyValue"] == "442079460456"
    assert sorted(c["sms"] for c in box.sandbox.contacts()) == [["442079460456"], ["4930901820"]]


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer not-{PUSH_TOKEN}", f"Bearer {EVENTS_TOKEN}", None, PUSH_TOKEN],
    ids=["wrong-token", "other-source-token", "missing", "not-bearer"],
)
def test_commercetools_push_without_the_right_token_is_refused(
    server: ServedService, client: httpx.Client, authorization: str | None
) -> None:
    """A wrong, foreign, missing or non-Bearer credential → 401, nothing stored."""
    body, headers = _push("order-created")
    del headers["authorization"]
    if authorization is not None:
        headers["authorization"] = authorization
    response = client.post(server.hook("commercetools"), content=body, headers=headers)
    assert response.status_code == 401
    assert _nothing_stored(server)


def test_a_pubsub_redelivery_is_acknowledged_as_a_duplicate(
    server: ServedService, box: RunningSandbox, client: httpx.Client
) -> None:
    """Pub/Sub redelivers with the same messageId: stored and sent once."""
    body, headers = _push("order-created")
    first = client.post(server.hook("commercetools"), content=body, headers=headers)
    again = client.post(server.hook("commercetools"), content=body, headers=headers)
    assert first.json()["status"] == "accepted"
    assert again.json() == {"status": "duplicate", "id": first.json()["id"]}
    wait_until(lambda: settled(server.store), what="the store to settle")
    wait_until(box.sandbox.events, what="the event")
    assert len(box.sandbox.events()) == 1


def test_commercetools_state_changes_are_acknowledged_without_events(
    server: ServedService, box: RunningSandbox, client: httpx.Client
) -> None:
    """State-change messages and the Subscription's test notification: 200, no event."""
    names = [
        "order-state-changed",
        "order-payment-state-changed",
        "order-shipment-state-changed",
        "subscription-test",
    ]
    for name in names:
        body, headers = _push(name)
        response = client.post(server.hook("commercetools"), content=body, headers=headers)
        assert response.status_code == 200, name
    wait_until(
        lambda: server.store.counts()["webhooks"]["processed"] == len(names),
        what="every push processed",
    )
    assert server.store.counts()["webhooks"].get("failed", 0) == 0
    assert box.sandbox.events() == []


@pytest.mark.parametrize("name", ["cloudevents-order-created", "cloudevents-order-created-binary"])
def test_commercetools_cloudevents_with_their_token_reach_the_sandbox(
    server: ServedService, box: RunningSandbox, client: httpx.Client, name: str
) -> None:
    """Structured and binary-mode CloudEvents with the events token → orderCreated."""
    body, headers = _push(name, EVENTS_TOKEN)
    response = client.post(server.hook("commercetools-events"), content=body, headers=headers)
    assert response.status_code == 200, response.text
    received = wait_until(box.sandbox.events, what="the CloudEvents order in the sandbox")
    assert [e["body"]["eventTypeKey"] for e in received] == ["orderCreated"]
    # the Pub/Sub token does not open the CloudEvents source
    body, headers = _push(name, PUSH_TOKEN)
    response = client.post(server.hook("commercetools-events"), content=body, headers=headers)
    assert response.status_code == 401


# -- the examples themselves ------------------------------------------------------------


@pytest.mark.parametrize("name", WIX_EXAMPLES)
def test_wix_examples_are_rs256_tokens_with_the_documented_nesting(name: str) -> None:
    """Claims {data, iat, exp} → data {eventType, instanceId, data, identity} → event."""
    token = example(f"wix/{name}").body.decode()
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = _claims(name)
    assert set(claims) == {"data", "iat", "exp"}
    middle = json.loads(claims["data"])
    assert set(middle) == {"eventType", "instanceId", "data", "identity"}
    event = json.loads(middle["data"])
    assert middle["eventType"] == f"wix.ecom.v1.order_{event['slug']}"
    assert event["entityFqdn"] == "wix.ecom.v1.order"
    order = (
        event.get("createdEvent", {}).get("entity")
        or event.get("updatedEvent", {}).get("currentEntity")
        or event["actionEvent"]["body"]["order"]
    )
    assert order["id"] == event["entityId"]
    assert isinstance(json.loads(middle["identity"]), dict)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("order-created", "cloudevents-order-created"),
        ("order-created-anonymous", "cloudevents-order-created-binary"),
        ("order-created-jpy", "order-created-as-cloudevent"),
    ],
)
def test_one_message_in_any_format_becomes_the_same_event(first: str, second: str) -> None:
    """Pub/Sub platform format, CloudEvents over HTTP or through Pub/Sub: one mapping."""
    rulesets = _rulesets({})
    produced = []
    for name in (first, second):
        source = "commercetools-events" if name.startswith("cloudevents-") else "commercetools"
        result = process(rulesets[source], example(f"commercetools/{name}"))
        assert len(result.sent) == 1, result.summary()
        produced.append(result.sent[0])
    assert produced[0] == produced[1]


@pytest.mark.parametrize(
    ("folder", "sources"),
    [("wix", ["wix"]), ("commercetools", ["commercetools", "commercetools-events"])],
)
def test_every_example_is_covered_by_a_rule_test(folder: str, sources: list[str]) -> None:
    """No bundled example is left without a rule test of what it becomes."""
    rulesets = _rulesets({})
    used = {Path(c.body_file).name for s in sources for c in rulesets[s].tests if c.body_file}
    bodies = {p.name for p in (ROOT / "examples" / folder).iterdir() if p.suffix != ".headers"}
    assert bodies - used == set()


def test_hookmap_post_signs_a_saved_wix_token_again_with_a_test_key(
    server: ServedService, wix_key: tuple[bytes, str], env: dict[str, str]
) -> None:
    """A saved Wix body (a token signed by Wix) is signed again with the test key and
    fresh times by `hookmap post --private-key-env`, and the server accepts it."""
    from click.testing import CliRunner

    from engine.cli import main

    payload = str(ROOT / "examples" / "wix" / f"{WIX_EXAMPLES[0]}.txt")
    args = ["post", "--rules", RULES[0], "--url", server.url, "--source", "wix"]
    cli_env = {**env, "WIX_TEST_KEY": wix_key[0].decode()}
    result = CliRunner().invoke(main, [*args, payload], env=cli_env)
    assert result.exit_code == 2 and "--private-key-env" in result.output
    result = CliRunner().invoke(
        main, [*args, "--private-key-env", "WIX_TEST_KEY", payload], env=cli_env
    )
    assert result.exit_code == 0, result.output
    assert "PRIVATE KEY" not in result.output
    stored = server.store.list_webhooks(source="wix")
    assert len(stored) == 1
    claims = jwt.decode(stored[0].body, wix_key[1], algorithms=["RS256"])
    assert abs(claims.get("iat", time.time()) - time.time()) < 60
