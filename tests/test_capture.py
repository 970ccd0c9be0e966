"""`hookmap capture`: stored webhooks (a real SQLite file) become rule-test fixtures with the
people replaced by fakes of the same shape, and the rule tests written for them pass."""

from __future__ import annotations

import base64
import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.errors import PayloadError
from engine.fakes import Faker
from engine.lookups import MockFetcher
from engine.pipeline import process
from engine.rules import compiler
from engine.rules.model import RuleTest
from engine.ruletests import webhook_for
from engine.scrub import PLACEHOLDER, Scrubber, kind_of
from engine.server.store.sqlite import DB_NAME, Store
from engine.webhook import Webhook, read_webhook_file
from tests.conftest import ROOT

ORDER = ROOT / "examples" / "shopify" / "orders-create.json"
#: every personal value of the bundled Shopify order, as it stands in the body
PEOPLE = (
    "olivia.bennett@example.com",
    "Olivia",
    "Bennett",
    "48 Example Harbor Rd",
    "Portland",
    "04101",
    "2075550123",
    "203.0.113.24",
)
ENV = {"SHOPIFY_PHONE_COUNTRY_CODE": ""}


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=ENV, catch_exceptions=False)
    return result.exit_code, result.output


# -- the fakes --------------------------------------------------------------------------


def test_an_email_stays_an_email_at_a_documentation_domain() -> None:
    faker = Faker()
    fake = faker.email("Olivia.Bennett+shop@gmail.com")
    assert re.fullmatch(r"[a-z]+\.[a-z]+\+[a-z]+@example\.(com|org|net)", fake), fake
    assert faker.email("olivia.bennett+shop@gmail.com") == fake.lower()
    assert faker.email("someone@other.org").split("@")[1] != fake.split("@")[1]


def test_a_phone_keeps_its_format_and_falls_in_a_fictional_range() -> None:
    faker = Faker()
    us = faker.phone("+1 (207) 555-0123")
    assert re.fullmatch(r"\+1 \(207\) 555-01\d\d", us), us
    again = faker.phone("207.555.0123")
    assert re.sub(r"\D", "", again) == re.sub(r"\D", "", us)[1:], "the same number, other format"
    assert re.fullmatch(r"\d{3}\.\d{3}\.\d{4}", again)
    uk = faker.phone("+44 7911 123456")
    assert re.fullmatch(r"\+44 7700 900\d{3}", uk), uk
    ua = faker.phone("+380 50 123 4567")
    assert re.fullmatch(r"\+380 50 555 \d{4}", ua) and ua != "+380 50 123 4567"
    assert len(faker.phone("0501234567")) == 10


def test_names_stay_names_in_their_script_and_agree_with_the_email() -> None:
    faker = Faker()
    first, last = faker.name("Olivia"), faker.name("Bennett", last=True)
    assert first.istitle() and last.istitle() and {first, last}.isdisjoint({"Olivia", "Bennett"})
    assert faker.name("Olivia Bennett") == f"{first} {last}"
    assert faker.email("olivia.bennett@example.com").startswith(f"{first}.{last}@".lower())
    cyrillic = faker.name("Олена Коваленко")
    assert re.fullmatch(r"[А-ЯІЇЄҐ][а-яіїєґ']+ [А-ЯІЇЄҐ][а-яіїєґ']+", cyrillic), cyrillic


def test_addresses_keep_their_shape() -> None:
    faker = Faker()
    line = faker.address("48 Example Harbor Rd, Apt 3")
    assert re.fullmatch(r"\d\d [A-Z][a-z]+ [A-Z][a-z]+ Rd, Apt \d", line), line
    assert re.fullmatch(r"[A-Z]{2}\d[A-Z] \d[A-Z]{2}", faker.postcode("SW1A 1AA"))
    assert faker.postcode("04101").isdigit() and faker.postcode("04101") != "04101"
    assert faker.city("Portland") != "Portland"
    assert faker.ip("198.51.100.7").startswith("203.0.113.")


def test_fakes_are_deterministic_and_distinct() -> None:
    a, b = Faker(), Faker()
    values = [a.email(f"user{n}@shop.test") for n in range(30)]
    assert values == [b.email(f"user{n}@shop.test") for n in range(30)]
    assert len(set(values)) == 30
    assert len({a.name(n) for n in ("Ann", "Bob", "Cid", "Dan", "Eve")}) == 5


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        (("customer", "email"), "email"),
        (("billing_address", "first_name"), "first"),
        (("customer", "lastName"), "last"),
        (("shipping_address", "name"), "name"),
        (("line_items", "0", "name"), None),
        (("shipping_lines", "0", "name"), None),
        (("shippingInfo", "shippingMethodName"), None),
        (("billing_address", "address1"), "address"),
        (("billing", "postcode"), "postcode"),
        (("browser_ip",), "ip"),
        (("sms_marketing_phone",), "phone"),
        (("shipping_address", "latitude"), "coordinate"),
        (("total_price",), None),
    ],
)
def test_which_keys_hold_personal_values(path: tuple[str, ...], kind: str | None) -> None:
    assert kind_of(path) == kind


# -- scrubbing a body ---------------------------------------------------------------------


def test_the_body_is_kept_byte_for_byte_but_for_the_people() -> None:
    original = ORDER.read_text(encoding="utf-8")
    scrubbed = Scrubber().body(ORDER.read_bytes(), "application/json").decode("utf-8")
    assert not [p for p in PEOPLE if p in scrubbed]
    before, after = original.splitlines(), scrubbed.splitlines()
    assert len(before) == len(after)
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed, "something was replaced"
    for a, b in changed:  # only values changed: the key and the indentation are the same
        assert a.split(":", 1)[0] == b.split(":", 1)[0]
    assert json.loads(scrubbed).keys() == json.loads(original).keys()


def test_json_inside_strings_and_base64_is_scrubbed_in_place() -> None:
    inner = json.dumps({"customer": {"email": "jo@real.example", "name": "Jo Real"}})
    body = json.dumps(
        {"claims": inner, "message": {"data": base64.b64encode(inner.encode()).decode()}}
    ).encode()
    out = json.loads(Scrubber().body(body, "application/json"))
    assert "jo@real" not in out["claims"] and "Jo Real" not in out["claims"]
    decoded = json.loads(base64.b64decode(out["message"]["data"]))
    assert decoded["customer"]["email"] == json.loads(out["claims"])["customer"]["email"]


def test_coordinates_go_to_sea_keeping_their_decimals() -> None:
    body = b'{"shipping_address": {"latitude": 43.659, "longitude": "-70.25", "lat": 7}}'
    out = Scrubber().body(body, "application/json")
    assert out == b'{"shipping_address": {"latitude": 0.000, "longitude": "0.00", "lat": 0}}'


def test_a_jwt_body_gets_its_claims_scrubbed_and_a_placeholder_signature() -> None:
    body = (ROOT / "examples" / "wix" / "order-created.txt").read_bytes()
    out = Scrubber().body(body, "text/plain").decode()
    header, _, signature = out.split(".")
    assert header == body.decode().split(".")[0] and signature == PLACEHOLDER


def test_headers_lose_signatures_and_framing_and_people_get_the_same_fakes() -> None:
    scrubber = Scrubber()
    body = scrubber.body(b'{"email": "ann@shop.test"}', "application/json")
    headers, hidden = scrubber.headers(
        {
            "x-shopify-hmac-sha256": "c2lnbmF0dXJl",
            "authorization": "Bearer secret-token",
            "x-customer-email": "ann@shop.test",
            "x-forwarded-for": "198.51.100.7, 192.0.2.1",
            "content-length": "26",
            "x-shopify-topic": "orders/create",
        }
    )
    assert hidden == ["x-shopify-hmac-sha256", "authorization"]
    assert headers["x-shopify-hmac-sha256"] == headers["authorization"] == PLACEHOLDER
    assert headers["x-customer-email"] == json.loads(body)["email"] != "ann@shop.test"
    assert "198.51.100.7" not in headers["x-forwarded-for"]
    assert "content-length" not in headers and headers["x-shopify-topic"] == "orders/create"


def test_a_body_of_no_known_form_is_refused() -> None:
    with pytest.raises(PayloadError, match="neither JSON, a form nor a JWT"):
        Scrubber().body(b"<order><email>a@b.test</email></order>", "application/xml")


@functools.cache
def _shipped() -> compiler.LoadResult:
    return compiler.load_or_raise([ROOT / "rules"], env=ENV)


def _file_cases() -> list[tuple[str, RuleTest]]:
    loaded = _shipped()
    return [(r.name, t) for r in loaded.rulesets for t in r.tests if t.body_file is not None]


def _outline(ruleset: Any, webhook: Webhook, mocks: dict[str, Any]) -> Any:
    result = process(ruleset, webhook, fetcher=MockFetcher(mocks))
    return [
        (
            e.event_type,
            e.ok,
            sorted({p.code for p in e.problems}),
            [n for n, _ in e.produced.params],
        )
        for e in result.events
    ]


@pytest.mark.parametrize(("ruleset", "case"), _file_cases(), ids=lambda v: getattr(v, "name", v))
def test_every_shipped_example_reads_the_same_once_scrubbed(ruleset: str, case: RuleTest) -> None:
    """Shape-keeping, held to the shipped rules: each rule test's webhook (and its mocked
    API answers), scrubbed, gives the same events, kept or dropped for the same reasons,
    with the same params."""
    rules = _shipped().get(ruleset)
    original = webhook_for(case)
    scrubber = Scrubber()
    body = scrubber.body(original.body, original.headers.get("content-type", ""))
    headers, _ = scrubber.headers(original.headers)
    mocks = {
        k: json.loads(scrubber.json_text(json.dumps(v, ensure_ascii=False)))
        for k, v in case.mocks.items()
    }
    fixture = Webhook(body, headers, case.topic, original.origin)
    assert _outline(rules, fixture, mocks) == _outline(rules, original, case.mocks)


# -- the command ---------------------------------------------------------------------------


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    example = read_webhook_file(ORDER)
    with Store(folder / DB_NAME) as store:
        store.add_webhook("shopify", dict(example.headers), example.body, "one")
        store.add_webhook("shopify", {"content-type": "application/xml"}, b"<x/>", "two")
    return folder


def test_capture_writes_the_fixture_and_a_rule_test_that_passes(tmp_path: Path, data: Path) -> None:
    rules = tmp_path / "rules" / "shopify"
    rules.mkdir(parents=True)
    for name in ("ruleset.yaml", "orders.yaml", "checkouts.yaml"):
        (rules / name).write_text((ROOT / "rules" / "shopify" / name).read_text("utf-8"), "utf-8")
    tests = rules / "tests.yaml"
    target = tmp_path / "examples" / "myshop"
    args = ["capture", "1", "--data", str(data), "--to", str(target), "--rules", str(rules)]
    code, out = run(*args, "--tests", str(tests), "--json")
    assert code == 0, out
    (done,) = json.loads(out)["captured"]
    assert done["body"] == str(target / "orders-create-1.json")
    assert done["placeholders"] == ["x-shopify-hmac-sha256"]
    assert done["replaced"]["email"] == 3 and done["test"]["webhook"].endswith(
        "examples/myshop/orders-create-1.json"
    )
    body = (target / "orders-create-1.json").read_text("utf-8")
    assert not [p for p in PEOPLE if p in body]
    headers = (target / "orders-create-1.headers").read_text("utf-8")
    assert "X-Shopify-Hmac-Sha256: PLACEHOLDER\n" in headers
    assert "X-Shopify-Topic: orders/create\n" in headers
    code, out = run("test", str(rules), "-v")
    assert code == 0 and "PASS shopify::captured webhook #1: orders/create" in out, out
    # again: the files exist and are kept unless --force; the test is added once more
    code, out = run(*args)
    assert code == 2 and "would overwrite" in out
    code, out = run(*args, "--force", "--tests", str(tests))
    assert code == 0 and "captured webhook #1: orders/create (2)" in tests.read_text("utf-8")


def test_capture_prints_the_test_to_paste_without_tests_file(tmp_path: Path, data: Path) -> None:
    code, out = run(
        "capture", "1", "--data", str(data), "--to", str(tmp_path / "x"), "--rules", "rules/"
    )
    assert code == 0, out
    assert "  - name: 'captured webhook #1: orders/create'" in out
    assert "- {name: totalCost, value: '161.78'}" in out


def test_capture_failures_are_clear(tmp_path: Path, data: Path) -> None:
    target = str(tmp_path / "x")
    code, out = run("capture", "2", "--data", str(data), "--to", target)
    assert code == 1 and "webhook #2: not captured: the body is neither JSON" in out
    code, out = run("capture", "9", "--data", str(data), "--to", target)
    assert code == 2 and "no webhook #9" in out
    code, out = run("capture", "1", "2", "--name", "a", "--data", str(data), "--to", target)
    assert code == 2 and "--name names one webhook" in out
    code, out = run("capture", "1", "--data", str(tmp_path / "none"), "--to", target)
    assert code == 2 and "no hookmap data" in out
