"""Magento (Adobe Commerce) and PrestaShop through the real server, end to end.

``engine.server.service.Service`` runs in a background thread on loopback and delivers to the
sandbox CDP, told to refuse order events for unknown contacts, so each new customer
must be created first. Magento requests are signed here with RSA key pairs made for
the test, once per Adobe scheme (I/O Events: the raw body; Commerce webhooks: the base64
of the body); PrestaShop's webservice is a small threaded HTTP server on 127.0.0.1
serving the fixtures in examples/prestashop/api/ and checking the Basic key. Every
wait is bounded.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from engine.rules import compiler
from engine.sandbox.run import RunningSandbox, running
from engine.sandbox.settings import SandboxConfig
from engine.webhook import read_webhook_file
from tests.conftest import ROOT
from tests.helpers_server import API_KEY, ServedService, param, serving, settled, wait_until
from tests.support.http_stub import Call, HttpStub, Reply

EXAMPLES = ROOT / "examples"
MAGENTO_RULES = str(ROOT / "rules" / "magento")
PRESTASHOP_RULES = str(ROOT / "rules" / "prestashop")
FIXTURES = EXAMPLES / "prestashop" / "api"

WS_KEY = "ZQ88PRJX5VWQHCWE4EE7SQ7HPNX00RAJ"  # a made-up webservice key
#: the key as the Basic user with an empty password: PRESTASHOP_WS_AUTH
WS_AUTH = base64.b64encode(f"{WS_KEY}:".encode()).decode()
WEBHOOK_CREDENTIALS = "hookmap:ps-webhook-password-do-not-log"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as c:
        yield c


@pytest.fixture
def box() -> Iterator[RunningSandbox]:
    """The CDP stand-in, strict: an order event for a contact it does not know is a 400."""
    with running(SandboxConfig(api_key=API_KEY, strict_contacts=True)) as served:
        yield served


def sent_events(box: RunningSandbox) -> list[dict[str, Any]]:
    return [e["body"] for e in box.sandbox.events()]


def contact_emails(box: RunningSandbox) -> list[str]:
    return [email for c in box.sandbox.contacts() for email in c["email"]]


def example(name: str) -> tuple[bytes, dict[str, str]]:
    """An example's body and headers, the PLACEHOLDER signature headers left out."""
    webhook = read_webhook_file(EXAMPLES / f"{name}.json")
    headers = {k: v for k, v in webhook.headers.items() if v != "PLACEHOLDER"}
    return webhook.body, headers


def nothing_stored(served: ServedService) -> bool:
    return served.store.list_webhooks() == []


# -- the shipped files -------------------------------------------------------------------


def test_both_rule_folders_load_without_any_diagnostic() -> None:
    """rules/magento (two rule sets) and rules/prestashop: no error and no warning."""
    loaded = compiler.load([MAGENTO_RULES, PRESTASHOP_RULES])
    assert [d.render() for d in loaded.diagnostics] == []
    assert {r.name for r in loaded.rulesets} == {"magento", "magento-webhooks", "prestashop"}


def test_the_two_magento_order_templates_are_the_same_file() -> None:
    """I/O Events and Commerce webhooks must turn one order into the same events."""
    folder = Path(MAGENTO_RULES)
    io_events = (folder / "io-events" / "order-template.yaml").read_bytes()
    assert io_events == (folder / "webhooks" / "order-template.yaml").read_bytes()


@pytest.mark.parametrize("platform", ["magento", "prestashop"])
def test_every_example_webhook_is_covered_by_a_rule_test(platform: str) -> None:
    """No bundled example is left without a rule test of what it becomes."""
    loaded = compiler.load([MAGENTO_RULES, PRESTASHOP_RULES])
    used = {Path(c.body_file).name for rs in loaded.rulesets for c in rs.tests if c.body_file}
    examples = {p.name for p in (EXAMPLES / platform).glob("*.json")}
    assert examples - used == set()


# -- Magento ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KeyPair:
    private: rsa.RSAPrivateKey

    @property
    def public_pem(self) -> str:
        public = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return public.decode()

    def sign(self, message: bytes) -> str:
        """Base64 RSA-SHA256 (PKCS#1 v1.5) as Adobe signs, made here rather than by hookmap."""
        signature = self.private.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()


@dataclasses.dataclass(frozen=True)
class AdobeKeys:
    io_1: KeyPair  # Adobe I/O Events signs twice: x-adobe-digital-signature-1 ...
    io_2: KeyPair  # ... and -2, with another key
    commerce: KeyPair  # the pair generated in the Commerce Admin for webhooks


def new_key() -> KeyPair:
    return KeyPair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def keys() -> AdobeKeys:
    return AdobeKeys(new_key(), new_key(), new_key())


@pytest.fixture
def magento(keys: AdobeKeys, box: RunningSandbox, tmp_path: Path) -> Iterator[ServedService]:
    env = {
        "MAGENTO_IO_EVENTS_PUBLIC_KEY_1": keys.io_1.public_pem,
        # a PEM kept on one line with \n escapes (.env files, CI settings) reads as well
        "MAGENTO_IO_EVENTS_PUBLIC_KEY_2": keys.io_2.public_pem.replace("\n", "\\n"),
        "MAGENTO_WEBHOOK_PUBLIC_KEY": keys.commerce.public_pem,
    }
    with serving(box.destination(), tmp_path / "data", rules=(MAGENTO_RULES,), env=env) as served:
        yield served


def io_event(
    keys: AdobeKeys, name: str = "magento/io-order-save-new"
) -> tuple[bytes, dict[str, str]]:
    """An I/O Events example signed as Adobe I/O signs: the raw body, once per key."""
    body, headers = example(name)
    headers["x-adobe-digital-signature-1"] = keys.io_1.sign(body)
    headers["x-adobe-digital-signature-2"] = keys.io_2.sign(body)
    return body, headers


def commerce_webhook(
    keys: AdobeKeys, name: str = "magento/webhook-order-save-after-new"
) -> tuple[bytes, dict[str, str]]:
    """A Commerce webhook example signed as Commerce signs: the base64 of the body."""
    body, headers = example(name)
    headers["x-adobe-commerce-webhook-signature"] = keys.commerce.sign(base64.b64encode(body))
    return body, headers


def test_magento_io_event_signed_over_the_raw_body_is_delivered_after_its_new_contact(
    magento: ServedService, box: RunningSandbox, client: httpx.Client, keys: AdobeKeys
) -> None:
    body, headers = io_event(keys)
    response = client.post(magento.hook("magento"), content=body, headers=headers)
    assert (response.status_code, response.json()["status"]) == (200, "accepted")

    (event,) = wait_until(lambda: sent_events(box), what="the orderCreated in the sandbox")
    assert event["eventTypeKey"] == "orderCreated"
    assert event["keyValue"] == "olivia.bennett@example.com"
    assert (param(event, "externalOrderId"), param(event, "status")) == ("000001187", "INITIALIZED")
    # the configurable hoodie counts once (its parent row), the duffle bag once
    items = json.loads(param(event, "items"))
    assert [(i["externalItemId"], i["quantity"]) for i in items] == [("1812", 1), ("14", 2)]
    # the strict sandbox took the event only because the contact was created before it
    assert contact_emails(box) == ["olivia.bennett@example.com"]
    wait_until(lambda: settled(magento.store), what="the store to settle")
    detail = magento.store.get_webhook(1)
    assert detail is not None
    assert detail.webhook.delivery_id == headers["x-adobe-event-id"]


def test_magento_io_event_verifies_by_either_signature(
    magento: ServedService, box: RunningSandbox, client: httpx.Client, keys: AdobeKeys
) -> None:
    """Adobe signs with two keys; one good signature is enough (a key being rotated)."""
    body, headers = io_event(keys, "magento/io-order-save-complete")
    headers["x-adobe-digital-signature-1"] = new_key().sign(body)  # a key nobody configured
    response = client.post(magento.hook("magento"), content=body, headers=headers)
    assert response.status_code == 200
    (event,) = wait_until(lambda: sent_events(box), what="the orderDelivered in the sandbox")
    assert (event["eventTypeKey"], param(event, "status")) == ("orderDelivered", "DELIVERED")


def test_magento_io_event_tampered_or_signed_over_base64_is_401_and_not_stored(
    magento: ServedService, box: RunningSandbox, client: httpx.Client, keys: AdobeKeys
) -> None:
    body, headers = io_event(keys)
    hook = magento.hook("magento")
    tampered = body.replace(b'"grand_total": 129.96', b'"grand_total": 1.29', 1)
    assert tampered != body
    assert client.post(hook, content=tampered, headers=headers).status_code == 401
    # the right keys over the wrong bytes: the Commerce-webhook reading of the scheme
    headers["x-adobe-digital-signature-1"] = keys.io_1.sign(base64.b64encode(body))
    headers["x-adobe-digital-signature-2"] = keys.io_2.sign(base64.b64encode(body))
    assert client.post(hook, content=body, headers=headers).status_code == 401
    del headers["x-adobe-digital-signature-1"], headers["x-adobe-digital-signature-2"]
    assert client.post(hook, content=body, headers=headers).status_code == 401
    assert nothing_stored(magento)
    assert sent_events(box) == []


def test_magento_io_event_redelivered_with_the_same_event_id_is_a_duplicate(
    magento: ServedService, box: RunningSandbox, client: httpx.Client, keys: AdobeKeys
) -> None:
    body, headers = io_event(keys, "magento/io-quote-save")
    first = client.post(magento.hook("magento"), content=body, headers=headers)
    again = client.post(magento.hook("magento"), content=body, headers=headers)
    assert (first.json()["status"], again.json()["status"]) == ("accepted", "duplicate")
    (event,) = wait_until(lambda: sent_events(box), what="the cartUpdated in the sandbox")
    assert (event["eventTypeKey"], param(event, "recycleStateId")) == ("cartUpdated", "5123")
    wait_until(lambda: settled(magento.store), what="the store to settle")
    assert len(sent_events(box)) == 1


def test_magento_commerce_webhook_signed_over_the_base64_body_is_delivered(
    magento: ServedService, box: RunningSandbox, client: httpx.Client, keys: AdobeKeys
) -> None:
    body, headers = commerce_webhook(keys)
    response = client.post(magento.hook("magento-webhooks"), content=body, headers=headers)
    assert (response.status_code, response.json()["status"]) == (200, "accepted")
    (event,) = wait_until(lambda: sent_events(box), what="the orderCreated in the sandbox")
    assert (event["eventTypeKey"], event["keyValue"]) == ("orderCreated", "liam.carter@example.com")
    assert param(event, "externalOrderId") == "000001193"
    assert contact_emails(box) == ["liam.carter@example.com"]


def test_magento_commerce_webhook_tampered_or_signed_over_the_raw_body_is_401(
    magento: ServedService, box: RunningSandbox, client: httpx.Client, keys: AdobeKeys
) -> None:
    body, headers = commerce_webhook(keys)
    tampered = body.replace(b'"state": "new"', b'"state": "complete"', 1)
    assert tampered != body
    hook = magento.hook("magento-webhooks")
    assert client.post(hook, content=tampered, headers=headers).status_code == 401
    # the I/O Events reading (raw body) is not what Commerce webhooks sign
    headers["x-adobe-commerce-webhook-signature"] = keys.commerce.sign(body)
    assert client.post(hook, content=body, headers=headers).status_code == 401
    # a good I/O Events signature does not open the Commerce webhook source either
    body, io_headers = io_event(keys, "magento/io-order-save-new")
    assert client.post(hook, content=body, headers=io_headers).status_code == 401
    assert nothing_stored(magento)
    assert sent_events(box) == []


# -- PrestaShop ------------------------------------------------------------------------


class Webservice(HttpStub):
    """PrestaShop's webservice on loopback: the fixture files, behind the Basic key.

    ``fail_first`` answers that many requests with 503 first (the shop overloaded).
    """

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self._failing = threading.Lock()
        super().__init__(self._answer)

    @property
    def base_url(self) -> str:
        return self.url

    @property
    def requests(self) -> list[tuple[str, str | None]]:
        """(path?query, Authorization) of every request, in order."""
        return [(c.target, c.header("Authorization")) for c in self.calls]

    def _answer(self, call: Call) -> Reply:
        with self._failing:
            if self.fail_first > 0:
                self.fail_first -= 1
                return Reply(503, {"errors": [{"code": 0, "message": "Service unavailable"}]})
        if call.header("Authorization") != f"Basic {WS_AUTH}":
            return Reply(401, {"errors": [{"code": 17, "message": "Authentication key is empty"}]})
        query = call.query
        if query.get("output_format") != ["JSON"]:
            return Reply(400, {"errors": [{"code": 0, "message": "XML, not asked for"}]})
        parts = call.path.strip("/").split("/")  # api, resource[, id]
        if len(parts) == 3:
            name = f"{parts[1]}-{parts[2]}.json"
        else:  # a list filtered by id: ?filter[id]=[7]
            name = f"{parts[1]}-{query.get('filter[id]', ['[]'])[0].strip('[]')}.json"
        path = FIXTURES / name
        if not path.is_file():
            # PrestaShop answers [] for a list that found nothing, 404 for a missing id
            return Reply(200, []) if len(parts) == 2 else Reply(404, {"errors": [{"code": 0}]})
        return Reply(200, json.loads(path.read_text(encoding="utf-8")))


def prestashop_env(webservice: Webservice) -> dict[str, str]:
    return {
        "PRESTASHOP_WEBHOOK_TOKEN": WEBHOOK_CREDENTIALS,
        "PRESTASHOP_HOST": "127.0.0.1",
        "PRESTASHOP_BASE_URL": webservice.base_url,
        "PRESTASHOP_WS_AUTH": WS_AUTH,
        "PRESTASHOP_TIMEZONE": "Europe/Paris",
    }


def module_post(
    client: httpx.Client, served: ServedService, name: str, credentials: str | None
) -> httpx.Response:
    """What ps_webhooks sends when its URL is https://user:password@host/hooks/prestashop:
    cURL turns the URL's credentials into Basic auth."""
    body, headers = example(name)
    if credentials is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    return client.post(served.hook("prestashop"), content=body, headers=headers)


@pytest.fixture
def webservice() -> Iterator[Webservice]:
    with Webservice() as ws:
        yield ws


@pytest.fixture
def prestashop(
    webservice: Webservice, box: RunningSandbox, tmp_path: Path
) -> Iterator[ServedService]:
    env = prestashop_env(webservice)
    with serving(
        box.destination(), tmp_path / "data", rules=(PRESTASHOP_RULES,), env=env
    ) as served:
        yield served


def test_prestashop_order_is_completed_from_the_webservice_and_delivered(
    prestashop: ServedService, webservice: Webservice, box: RunningSandbox, client: httpx.Client
) -> None:
    response = module_post(client, prestashop, "prestashop/order-add", WEBHOOK_CREDENTIALS)
    assert (response.status_code, response.json()["status"]) == (200, "accepted")

    (event,) = wait_until(lambda: sent_events(box), what="the orderCreated in the sandbox")
    assert (event["eventTypeKey"], event["keyValue"]) == (
        "orderCreated",
        "camille.dubois@example.fr",
    )
    # the webhook has ids only: currency, state and lines are the webservice's
    assert param(event, "currency") == "EUR"
    assert param(event, "status") == "INITIALIZED"  # state 10, bank wire awaited
    assert param(event, "date") == "2026-10-14T15:41:27+02:00"
    items = json.loads(param(event, "items"))
    assert [(i["externalItemId"], i["quantity"], i["cost"]) for i in items] == [
        ("1", 1, 23.88),
        ("6", 2, 14.28),
    ]
    assert items[0]["url"] == f"{webservice.base_url}/index.php?controller=product&id_product=1"
    assert contact_emails(box) == ["camille.dubois@example.fr"]
    # every call carried the key, asked for JSON, and stayed on the declared host
    paths = sorted(urllib.parse.urlsplit(target).path for target, _ in webservice.requests)
    assert paths == [
        "/api/addresses",
        "/api/countries/8",
        "/api/currencies/1",
        "/api/customers",
        "/api/orders/24",
    ]
    # the phone is read in the address's country (France), the shop's default unset
    assert param(event, "phone") == "33612345678"
    assert {auth for _, auth in webservice.requests} == {f"Basic {WS_AUTH}"}

    # the same order shipped: an orderDelivered, the known contact not created again
    module_post(client, prestashop, "prestashop/order-update-shipped", WEBHOOK_CREDENTIALS)
    wait_until(lambda: len(sent_events(box)) == 2, what="the orderDelivered in the sandbox")
    delivered = sent_events(box)[1]
    assert (delivered["eventTypeKey"], param(delivered, "status")) == (
        "orderDelivered",
        "DELIVERED",
    )
    assert len(box.sandbox.contacts()) == 1


def test_prestashop_webhook_posted_again_unchanged_is_a_duplicate_and_stored_without_the_password(
    prestashop: ServedService, box: RunningSandbox, client: httpx.Client, tmp_path: Path
) -> None:
    """Basic signs nothing and the module sends no delivery id: a request posted again
    as it was is recognised by its body (issue 14.3); the credential is not stored
    (issue 14.6)."""
    first = module_post(client, prestashop, "prestashop/order-add", WEBHOOK_CREDENTIALS)
    again = module_post(client, prestashop, "prestashop/order-add", WEBHOOK_CREDENTIALS)
    assert (first.json()["status"], again.json()["status"]) == ("accepted", "duplicate")
    wait_until(lambda: settled(prestashop.store), what="the store to settle")
    assert len(sent_events(box)) == 1
    (stored,) = prestashop.store.list_webhooks()
    detail = prestashop.store.get_webhook(stored.id)
    assert detail is not None
    assert detail.webhook.headers["authorization"] == "[removed: a credential]"
    password = WEBHOOK_CREDENTIALS.split(":", 1)[1]
    # the database and its write-ahead log, as a copy of the folder would take them
    raw = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("hookmap.sqlite3*"))
    assert raw
    assert password.encode() not in raw
    assert base64.b64encode(WEBHOOK_CREDENTIALS.encode()) not in raw


def test_prestashop_webhook_without_the_right_basic_credentials_is_401(
    prestashop: ServedService, webservice: Webservice, box: RunningSandbox, client: httpx.Client
) -> None:
    for credentials in (None, "hookmap:wrong-password", "someone:" + WEBHOOK_CREDENTIALS[8:]):
        response = module_post(client, prestashop, "prestashop/order-add", credentials)
        assert response.status_code == 401, credentials
    assert nothing_stored(prestashop)
    assert webservice.requests == []
    assert sent_events(box) == []


def test_prestashop_lookup_failure_keeps_the_webhook_and_retries_it(
    box: RunningSandbox, client: httpx.Client, tmp_path: Path
) -> None:
    """The shop's webservice down: the webhook waits and is processed again, not lost."""
    with Webservice(fail_first=3) as webservice:  # the first attempt and its 2 retries
        env = prestashop_env(webservice)
        with serving(
            box.destination(),
            tmp_path / "data",
            rules=(PRESTASHOP_RULES,),
            env=env,
            lookup_schedule=(0.2, 0.2, 0.2),
        ) as served:
            response = module_post(
                client, served, "prestashop/order-add-guest", WEBHOOK_CREDENTIALS
            )
            assert response.status_code == 200
            (event,) = wait_until(
                lambda: sent_events(box), timeout=15, what="the order after the outage"
            )
            assert (event["eventTypeKey"], param(event, "currency")) == ("orderCreated", "GBP")
            # a guest: no customer id, and the state read from the webservice
            assert param(event, "externalCustomerId") is None
            assert param(event, "status") == "IN_PROGRESS"
            detail = served.store.get_webhook(1)
            assert detail is not None
            assert detail.webhook.state == "processed"
            assert detail.webhook.process_attempts >= 1  # put off once
            # 3 refused calls (the attempt and its retries), then the 5 lookups answered
            assert len(webservice.requests) == 3 + 5


# -- hookmap post with a test key ----------------------------------------------------------


def _post(env: dict[str, str], *args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from engine.cli import main

    result = CliRunner().invoke(main, ["post", *args], env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_hookmap_post_signs_adobe_bodies_with_a_test_private_key(
    magento: ServedService, keys: AdobeKeys
) -> None:
    """`hookmap post --private-key-env` signs as Adobe does, so a local server holding the
    public halves accepts the examples; without the option it says what is missing."""
    private = keys.commerce.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    env = {"MAGENTO_TEST_PRIVATE_KEY": private.replace("\n", "\\n")}
    files = [str(ROOT / "examples" / "magento" / "webhook-order-save-after-new.json")]
    common = ["--rules", MAGENTO_RULES, "--url", magento.url, "--source", "magento-webhooks"]
    code, out = _post(env, *common, *files)
    assert code == 2 and "--private-key-env" in out
    code, out = _post(env, *common, "--private-key-env", "MAGENTO_TEST_PRIVATE_KEY", *files)
    assert code == 0, out
    assert ": 200" in out or ": 202" in out, out
    assert "PRIVATE KEY" not in out
    stored = magento.store.list_webhooks(source="magento-webhooks")
    assert len(stored) == 1
