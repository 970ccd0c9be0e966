"""Intake decisions without a socket (engine.server.intake), the metrics text format
(engine.server.metrics) and the operator helpers mask_headers (engine.cli.ops) and
parse_since (engine.cli.options)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import time
from pathlib import Path

import pytest

from engine.cli.ops import mask_headers
from engine.cli.options import parse_since
from engine.errors import ServeRefused, UsageError
from engine.rules import compiler
from engine.rules.model import RuleSet
from engine.rules.schemes import VerifySpec
from engine.server.intake import (
    DEFAULT_MAX_BODY,
    REMOVED,
    Source,
    build_sources,
    is_woocommerce_ping,
    reason_label,
)
from engine.server.metrics import LATENCY_BUCKETS, Metrics
from engine.server.signatures import Verdict, verify
from engine.server.signing import sign
from tests.conftest import ROOT

SHOPIFY_SECRET = "shopify-unit-secret"
WOO_SECRET = "woo-unit-secret"
ENV = {"SHOPIFY_WEBHOOK_SECRET": SHOPIFY_SECRET, "WOOCOMMERCE_WEBHOOK_SECRET": WOO_SECRET}
ORDER = (ROOT / "examples" / "shopify" / "orders-create.json").read_bytes()
#: the two shipped rule sets signed here (rules/ may hold others needing their own keys)
SHIPPED = [str(ROOT / "rules" / "shopify"), str(ROOT / "rules" / "woocommerce.yaml")]
WOO_ORDER = (ROOT / "examples" / "woocommerce" / "order-created.json").read_bytes()

HEAD = "topic: {header: X-Topic}\n"
TAIL = "rules:\n  - name: r\n    topics: x\n    ignore: nothing to send\n"


def rulesets(tmp_path: Path, **files: str) -> list[RuleSet]:
    """Rule sets from small YAML files ``name → header lines`` (loaded cleanly)."""
    paths = []
    for name, extra in files.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"name: {name}\n{HEAD}{extra}{TAIL}", encoding="utf-8")
        paths.append(str(path))
    result = compiler.load(paths, {})
    assert result.ok, [d.render() for d in result.diagnostics]
    return list(result.rulesets)


@pytest.fixture(scope="module")
def shipped() -> dict[str, Source]:
    result = compiler.load(SHIPPED, ENV)
    assert result.ok
    return build_sources(result.rulesets, ENV)


# -- build_sources ---------------------------------------------------------------------


def test_build_sources_refuses_no_verify_and_unset_secret_listing_every_problem(
    tmp_path: Path,
) -> None:
    loaded = rulesets(
        tmp_path,
        unsigned="",
        nosecret="verify: {scheme: hmac, header: X-Sig, secret_env: HOOKMAP_TEST_UNSET}\n",
        open="verify: {scheme: none}\n",
    )
    with pytest.raises(ServeRefused) as caught:
        build_sources(loaded, {"HOOKMAP_TEST_UNSET": ""})
    problems = caught.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("rule set 'unsigned' (")
    assert "unsigned.yaml) declares no `verify`" in problems[0]
    assert "`verify: {scheme: none}`" in problems[0]
    assert problems[1] == (
        "rule set 'nosecret': verify scheme 'hmac': no secret set in HOOKMAP_TEST_UNSET"
    )
    assert str(caught.value) == "; ".join(problems)
    assert caught.value.exit_code == 1


def test_build_sources_accepts_verify_scheme_none_explicitly(tmp_path: Path) -> None:
    sources = build_sources(rulesets(tmp_path, open="verify: {scheme: none}\n"), {})
    source = sources["open"]
    assert (source.name, source.secrets, source.max_body) == ("open", (), DEFAULT_MAX_BODY)
    verdict = source.verify(b"anything", {})
    assert verdict == Verdict(True, "not verified (scheme none)", "none")


def test_a_rule_set_max_body_wins_over_the_server_default(tmp_path: Path) -> None:
    loaded = rulesets(
        tmp_path, small="verify: {scheme: none}\nmax_body: 100\n", big="verify: {scheme: none}\n"
    )
    sources = build_sources(loaded, {}, max_body=5000)
    assert (sources["small"].max_body, sources["big"].max_body) == (100, 5000)


def test_shipped_rules_become_sources_with_their_secrets(shipped: dict[str, Source]) -> None:
    assert sorted(shipped) == ["shopify", "woocommerce"]
    assert shipped["shopify"].secrets == (SHOPIFY_SECRET.encode(),)
    assert SHOPIFY_SECRET not in repr(shipped["shopify"])


# -- Source.verify -----------------------------------------------------------------------


def shopify_header(body: bytes, secret: str = SHOPIFY_SECRET) -> dict[str, str]:
    """Shopify's header computed by hand: base64 of HMAC-SHA256 over the raw body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {"x-shopify-hmac-sha256": base64.b64encode(digest).decode()}


def test_shopify_signature_computed_by_hand_verifies(shipped: dict[str, Source]) -> None:
    verdict = shipped["shopify"].verify(ORDER, shopify_header(ORDER))
    assert verdict.ok, verdict.reason
    assert shopify_header(ORDER) == {
        k.lower(): v for k, v in sign(VerifySpec("shopify"), SHOPIFY_SECRET.encode(), ORDER).items()
    }


def test_shopify_tampered_body_is_a_mismatch(shipped: dict[str, Source]) -> None:
    tampered = ORDER.replace(b"161.78", b"1.78", 1)
    assert tampered != ORDER
    verdict = shipped["shopify"].verify(tampered, shopify_header(ORDER))
    assert (verdict.ok, verdict.reason) == (False, "signature mismatch")
    assert reason_label(verdict) == "signature_mismatch"


def test_shopify_signature_with_another_secret_is_a_mismatch(shipped: dict[str, Source]) -> None:
    verdict = shipped["shopify"].verify(ORDER, shopify_header(ORDER, "someone-else"))
    assert not verdict.ok
    assert "someone-else" not in verdict.reason


def test_shopify_previous_secret_still_verifies_during_rotation() -> None:
    env = {**ENV, "SHOPIFY_WEBHOOK_SECRET_PREVIOUS": "the-old-secret"}
    result = compiler.load(SHIPPED, env)
    source = build_sources(result.rulesets, env)["shopify"]
    verdict = source.verify(ORDER, shopify_header(ORDER, "the-old-secret"))
    assert verdict.ok and verdict.reason == "valid signature (secret 2 of 2)"


def test_shopify_missing_header_is_refused(shipped: dict[str, Source]) -> None:
    verdict = shipped["shopify"].verify(ORDER, {})
    assert (verdict.ok, verdict.reason) == (False, "missing header X-Shopify-Hmac-Sha256")
    assert reason_label(verdict) == "signature_missing"


def test_woocommerce_signature_verifies_and_tampered_does_not(shipped: dict[str, Source]) -> None:
    spec = shipped["woocommerce"].ruleset.verify
    assert spec is not None
    headers = {k.lower(): v for k, v in sign(spec, WOO_SECRET.encode(), WOO_ORDER).items()}
    assert list(headers) == ["x-wc-webhook-signature"]
    by_hand = hmac.new(WOO_SECRET.encode(), WOO_ORDER, hashlib.sha256).digest()
    assert headers["x-wc-webhook-signature"] == base64.b64encode(by_hand).decode()
    assert shipped["woocommerce"].verify(WOO_ORDER, headers).ok
    tampered = shipped["woocommerce"].verify(WOO_ORDER + b" ", headers)
    assert (tampered.ok, tampered.reason) == (False, "signature mismatch")


def test_header_names_are_matched_case_insensitively(shipped: dict[str, Source]) -> None:
    header = shopify_header(ORDER)["x-shopify-hmac-sha256"]
    assert shipped["shopify"].verify(ORDER, {"X-Shopify-Hmac-SHA256": header}).ok


def test_a_signature_that_is_not_base64_is_malformed(shipped: dict[str, Source]) -> None:
    verdict = shipped["shopify"].verify(ORDER, {"x-shopify-hmac-sha256": "not base64 !"})
    assert not verdict.ok
    assert reason_label(verdict) == "signature_malformed"


# -- delivery_id: what a repeat is recognised by --------------------------------------------


def digest(body: bytes, topic: str | None = None) -> str:
    """The digest by hand: sha256 over the topic header, a NUL, and the body, or over the
    body alone when the request names no topic."""
    prefix = b"" if topic is None else topic.encode() + b"\0"
    return "sha256:" + hashlib.sha256(prefix + body).hexdigest()


def test_an_unsigned_delivery_id_header_is_not_trusted_the_signed_body_is(
    shipped: dict[str, Source],
) -> None:
    """Shopify and WooCommerce sign the body only: a captured order posted again with a
    fresh delivery-id header is still the same signed body, so still a repeat."""
    topic = {"x-shopify-topic": "orders/create"}
    for ids in ({"x-shopify-webhook-id": "d3fee87b"}, {"x-shopify-webhook-id": "fresh"}, {}):
        assert shipped["shopify"].delivery_id(ORDER, topic | ids) == digest(ORDER, "orders/create")
    woo = shipped["woocommerce"]
    woo_headers = {"x-wc-webhook-delivery-id": "bb5e", "x-wc-webhook-topic": "order.created"}
    assert woo.delivery_id(b"{}", woo_headers) == digest(b"{}", "order.created")


def test_one_body_under_two_topics_is_two_deliveries(shipped: dict[str, Source]) -> None:
    """Shopify sends an order paid at checkout as orders/create and orders/paid with one
    body: neither is a repeat of the other (the topic header is in the digest)."""
    shopify = shipped["shopify"]
    created = shopify.delivery_id(ORDER, {"X-Shopify-Topic": "orders/create"})
    paid = shopify.delivery_id(ORDER, {"x-shopify-topic": "orders/paid"})
    assert created != paid
    assert created == shopify.delivery_id(ORDER, {"x-shopify-topic": "orders/create"})


def test_a_signed_delivery_id_header_is_used(tmp_path: Path) -> None:
    """Standard Webhooks signs webhook-id with the body (BigCommerce): the id is the key."""
    sw = "verify: {scheme: standard-webhooks, secret_env: SW}\ndedupe: {header: webhook-id}\n"
    source = build_sources(rulesets(tmp_path, sw=sw), {"SW": "whsec_c2VjcmV0"})["sw"]
    assert source.delivery_id(b"{}", {"webhook-id": "msg_1"}) == "msg_1"
    assert source.delivery_id(b"{}", {}) == digest(b"{}")


def test_an_unsigned_dedupe_header_is_a_located_warning(tmp_path: Path) -> None:
    text = "verify: {scheme: hmac, secret_env: S, header: X-Sig}\ndedupe: {header: X-Id}\n"
    path = tmp_path / "unsigned.yaml"
    path.write_text(f"name: unsigned\n{HEAD}{text}{TAIL}", encoding="utf-8")
    result = compiler.load([str(path)], {})
    assert result.ok
    (warning,) = [d for d in result.diagnostics if d.code == "W501"]
    assert warning.severity == "warning"
    assert warning.location is not None
    assert (warning.location.file, warning.location.line) == (str(path), 1 + HEAD.count("\n") + 2)
    assert "does not cover the header X-Id" in warning.message


@pytest.fixture
def by_body(tmp_path: Path) -> Source:
    extra = "verify: {scheme: hmac, secret_env: S, header: X-Sig}\ndedupe: {expression: eventId}\n"
    return build_sources(rulesets(tmp_path, byid=extra), {"S": "s"})["byid"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"eventId": "evt_1"}', "evt_1"),
        (b'{"eventId": 42}', "42"),
        (b'{"other": 1}', None),
        (b'{"eventId": ""}', None),
        (b'{"eventId": null}', None),
        (b"webhook_id=42", None),
        (b'{"eventId": ', None),
        (b"\xff\xfe", None),
        (b"[1, 2]", None),
    ],
)
def test_delivery_id_from_a_body_expression(
    by_body: Source, body: bytes, expected: str | None
) -> None:
    """Found by the expression over a signed body; the body's digest when absent, empty,
    or the body is not JSON."""
    assert by_body.delivery_id(body, {}) == (expected or digest(body))


@pytest.mark.parametrize("scheme", ["none", "basic", "bearer"])
def test_a_scheme_that_signs_nothing_keeps_the_declared_id_else_the_body(
    tmp_path: Path, scheme: str
) -> None:
    """commercetools (Bearer): the id Pub/Sub keeps across redeliveries; PrestaShop
    (Basic), no id at all: a request posted again unchanged is recognised by its body."""
    verify = f"verify: {{scheme: {scheme}, secret_env: C}}" if scheme != "none" else ""
    with_id = (verify or "verify: {scheme: none}") + "\ndedupe: {expression: eventId}\n"
    without = verify or "verify: {scheme: none}\n"
    loaded = rulesets(tmp_path, declared=with_id, plain=without + "\n")
    sources = build_sources(loaded, {"C": "user:pass"})
    body = b'{"eventId": "x"}'
    assert sources["declared"].delivery_id(body, {}) == "x"
    assert sources["declared"].delivery_id(b"{}", {}) == digest(b"{}")
    assert sources["plain"].delivery_id(body, {"x-shopify-webhook-id": "y"}) == digest(body)


def test_stored_headers_keep_no_credential(tmp_path: Path) -> None:
    basic = "verify: {scheme: basic, secret_env: C, header: X-Auth}\n"
    source = build_sources(rulesets(tmp_path, ps=basic), {"C": "user:pass"})["ps"]
    stored = source.storable(
        {"x-auth": "Basic dXNlcjpwYXNz", "authorization": "Bearer t", "cookie": "s=1", "a": "b"}
    )
    assert stored == {
        "x-auth": REMOVED,
        "authorization": REMOVED,
        "cookie": REMOVED,
        "a": "b",
    }


def test_delivery_id_of_a_deeply_nested_body_is_its_digest(by_body: Source) -> None:
    """A body too deep for json.loads is 'not JSON' like any other undecodable body."""
    body = b"[" * 100_000
    assert by_body.delivery_id(body, {}) == digest(body)


# -- is_woocommerce_ping ----------------------------------------------------------------

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        (FORM, b"webhook_id=42", True),
        (FORM, b"webhook_id=42\n", True),
        (
            {"content-type": "application/x-www-form-urlencoded; charset=UTF-8"},
            b"webhook_id=7",
            True,
        ),
        (FORM, b"webhook_id=abc", False),
        (FORM, b"webhook_id=42&x=1", False),
        ({"content-type": "application/json"}, b"webhook_id=42", False),
        ({"content-type": "application/json"}, b'{"webhook_id": 42}', False),
        ({**FORM, "x-wc-webhook-topic": "order.created"}, b"webhook_id=42", False),
        ({}, b"webhook_id=42", False),
    ],
)
def test_is_woocommerce_ping(headers: dict[str, str], body: bytes, expected: bool) -> None:
    """Only the unsigned form post ``webhook_id=N`` without a topic header is the ping."""
    assert is_woocommerce_ping(headers, body) is expected


def test_the_bundled_ping_example_is_a_ping() -> None:
    body = (ROOT / "examples" / "woocommerce" / "ping.txt").read_bytes()
    assert is_woocommerce_ping(FORM, body)


# -- reason_label ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "body", "reason", "label"),
    [
        ({}, ORDER, "missing header X-Shopify-Hmac-Sha256", "signature_missing"),
        (
            {"x-shopify-hmac-sha256": "not base64 !"},
            ORDER,
            "malformed signature header (not base64)",
            "signature_malformed",
        ),
        (shopify_header(ORDER), ORDER + b" ", "signature mismatch", "signature_mismatch"),
        (
            {"x-shopify-hmac-sha256": base64.b64encode(b"x" * 20).decode()},
            ORDER,
            "signature is 20 bytes, sha256 gives 32",
            "signature_invalid",
        ),
    ],
)
def test_reason_label_is_a_short_bounded_label(
    headers: dict[str, str], body: bytes, reason: str, label: str
) -> None:
    """Each refusal's metrics label is one of a few words, whatever its full reason."""
    verdict = verify(VerifySpec("shopify"), [SHOPIFY_SECRET.encode()], body, headers)
    assert (verdict.reason, reason_label(verdict)) == (reason, label)


def test_reason_label_of_a_stale_timestamp_and_of_no_secret() -> None:
    stripe = VerifySpec("timestamped", ("S",))
    stale = sign(stripe, b"k", b"{}", now=time.time() - 400)
    verdict = verify(stripe, [b"k"], b"{}", stale)
    assert verdict.reason.startswith("timestamp outside tolerance (")
    assert reason_label(verdict) == "signature_timestamp"
    unconfigured = verify(VerifySpec("shopify"), [], ORDER, shopify_header(ORDER))
    assert (unconfigured.reason, reason_label(unconfigured)) == (
        "no secret configured",
        "signature_invalid",
    )


# -- Metrics.render -----------------------------------------------------------------------


def test_metrics_render_counters_with_sorted_labels_and_escaping() -> None:
    m = Metrics()
    m.count(m.received, source="shopify")
    m.count(m.received, source="shopify")
    m.count(m.rejected, source='we"ird\\', reason="signature_mismatch")
    lines = m.render().splitlines()
    assert (
        "# HELP hookmap_webhooks_received_total Webhooks accepted and stored, by source." in lines
    )
    assert "# TYPE hookmap_webhooks_received_total counter" in lines
    assert 'hookmap_webhooks_received_total{source="shopify"} 2' in lines
    assert (
        'hookmap_webhooks_rejected_total{reason="signature_mismatch",source="we\\"ird\\\\"} 1'
        in lines
    )
    # a counter never incremented shows only its HELP and TYPE lines
    assert "# TYPE hookmap_webhooks_duplicate_total counter" in lines
    assert not any(line.startswith("hookmap_webhooks_duplicate_total") for line in lines)


def test_metrics_render_histogram_with_cumulative_buckets_sum_and_count() -> None:
    m = Metrics()
    for value in (0.003, 0.02, 0.02, 0.3, 20.0):
        m.observe(value, outcome="sent")
    lines = [line for line in m.render().splitlines() if "hookmap_dispatch_seconds" in line]
    assert lines[:2] == [
        "# HELP hookmap_dispatch_seconds Time for one send to the CDP, by outcome.",
        "# TYPE hookmap_dispatch_seconds histogram",
    ]
    buckets = {
        line.split('le="')[1].split('"')[0]: int(line.rsplit(" ", 1)[1])
        for line in lines
        if "_bucket" in line
    }
    assert list(buckets) == [f"{b:g}" for b in LATENCY_BUCKETS] + ["+Inf"]
    assert buckets["0.005"] == 1
    assert buckets["0.01"] == 1
    assert buckets["0.025"] == 3
    assert buckets["0.25"] == 3
    assert buckets["0.5"] == 4
    assert buckets["10"] == 4
    assert buckets["+Inf"] == 5
    assert list(buckets.values()) == sorted(buckets.values())
    assert 'hookmap_dispatch_seconds_bucket{outcome="sent",le="0.025"} 3' in lines
    assert 'hookmap_dispatch_seconds_count{outcome="sent"} 5' in lines
    total = float(next(x for x in lines if x.startswith("hookmap_dispatch_seconds_sum")).split()[1])
    assert total == pytest.approx(20.343)


def test_metrics_render_a_value_on_a_bucket_bound_falls_in_that_bucket() -> None:
    """Prometheus buckets are ``le``: 0.05 counts in the 0.05 bucket."""
    m = Metrics()
    m.observe(0.05, outcome="sent")
    assert 'hookmap_dispatch_seconds_bucket{outcome="sent",le="0.05"} 1' in m.render()


def test_metrics_render_gauges_read_at_scrape_time_none_as_zero() -> None:
    m = Metrics()
    depth = [3]
    m.gauge("hookmap_queue_depth", "Events waiting to be sent.", lambda: depth[0])
    m.gauge("hookmap_oldest_pending_seconds", "Age.", lambda: None)
    text = m.render()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert lines[-6:] == [
        "# HELP hookmap_oldest_pending_seconds Age.",
        "# TYPE hookmap_oldest_pending_seconds gauge",
        "hookmap_oldest_pending_seconds 0",
        "# HELP hookmap_queue_depth Events waiting to be sent.",
        "# TYPE hookmap_queue_depth gauge",
        "hookmap_queue_depth 3",
    ]
    depth[0] = 0
    assert "hookmap_queue_depth 0\n" in m.render()


# -- cli_ops helpers ---------------------------------------------------------------------


def test_mask_headers_hides_credentials_and_signatures_only() -> None:
    headers = {
        "x-shopify-hmac-sha256": "c2lnbmF0dXJl",
        "x-wc-webhook-signature": "sig",
        "authorization": "Basic abc",
        "x-api-key": "k",
        "cookie": "session=1",
        "x-auth-token": "t",
        "x-webhook-secret": "s",
        "x-shopify-topic": "orders/create",
        "content-type": "application/json",
    }
    masked = mask_headers(headers)
    assert masked == {
        **dict.fromkeys(list(headers)[:7], "****"),
        "x-shopify-topic": "orders/create",
        "content-type": "application/json",
    }
    assert headers["authorization"] == "Basic abc"  # the input is left alone


@pytest.mark.parametrize(
    ("text", "seconds"), [("45s", 45), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1.5h", 5400)]
)
def test_parse_since_relative_durations(text: str, seconds: float) -> None:
    before = time.time()
    value = parse_since(text)
    assert before - seconds - 1 <= value <= time.time() - seconds


def test_parse_since_iso_date_time_with_and_without_offset() -> None:
    assert (
        parse_since("2026-01-02T03:04:05+00:00")
        == datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC).timestamp()
    )
    local = datetime.datetime(2026, 1, 2).astimezone().timestamp()
    assert parse_since("2026-01-02") == local


@pytest.mark.parametrize("text", ["yesterday", "2 h", "-1h", "5w", ""])
def test_parse_since_refuses_anything_else_with_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--since"):
        parse_since(text)
