"""The real webhook server on loopback: ``Service.run`` in a thread (and a few ``hookmap
serve`` subprocesses), delivering to the sandbox CDP. No mocks: httpx over sockets."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.events.destination import Destination
from engine.pipeline import process
from engine.rules import compiler
from engine.sandbox.run import RunningSandbox, running
from engine.sandbox.settings import SandboxConfig
from engine.server.store.rows import EventRow, WebhookDetail
from tests.conftest import ROOT
from tests.helpers_server import (
    API_KEY,
    HOOKMAP,
    SECRETS,
    SHOPIFY_SECRET,
    ServedService,
    example,
    free_port,
    param,
    serve_env,
    serve_process,
    serving,
    settled,
    shopify_order,
    signed,
    signed_example,
    wait_until,
)

ORDER = "shopify/orders-create"
#: a schedule long enough to heal the sandbox before the event dies (about 4 s in all)
PATIENT_SCHEDULE = (0.1, 0.2, 0.3, 0.5, 1.0, 2.0)
#: the rule tests name their fixtures relative to rules/: a copy elsewhere leaves them out
NO_TESTS = shutil.ignore_patterns("tests.yaml")


@pytest.fixture
def box() -> Iterator[RunningSandbox]:
    with running(SandboxConfig(api_key=API_KEY)) as served:
        yield served


@pytest.fixture
def server(box: RunningSandbox, tmp_path: Path) -> Iterator[ServedService]:
    with serving(box.destination(), tmp_path / "data") as served:
        yield served


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as c:
        yield c


def post(
    client: httpx.Client, server: ServedService, source: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    return client.post(server.hook(source), content=body, headers=headers)


def only_event(detail: WebhookDetail | None) -> EventRow:
    assert detail is not None
    assert len(detail.events) == 1, detail.events
    return detail.events[0]


def webhook(server: ServedService, webhook_id: int) -> WebhookDetail:
    detail = server.store.get_webhook(webhook_id)
    assert detail is not None
    return detail


def event_state(server: ServedService, webhook_id: int) -> str | None:
    detail = server.store.get_webhook(webhook_id)
    return detail.events[0].state if detail and detail.events else None


def cli(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def configure(box: RunningSandbox, **settings: Any) -> None:
    """Change the sandbox live through its control endpoint, as an operator would."""
    with httpx.Client(trust_env=False, timeout=5) as control:
        response = control.post(f"{box.root}/sandbox/config", json=settings)
    assert response.status_code == 200, response.text


def metrics(client: httpx.Client, server: ServedService) -> dict[str, float]:
    """``/metrics`` as ``{'name{labels}': value}`` (comments skipped)."""
    response = client.get(f"{server.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, float] = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


# -- intake ------------------------------------------------------------------------------


def test_signed_shopify_order_is_accepted_and_reaches_the_sandbox_as_dry_run_shows(
    server: ServedService, box: RunningSandbox, client: httpx.Client
) -> None:
    body, headers = signed_example(ORDER)
    response = post(client, server, "shopify", body, headers)
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "id": 1}

    received = wait_until(box.sandbox.events, what="the event in the sandbox")
    wait_until(lambda: settled(server.store), what="the store to settle")
    assert [e["version"] for e in received] == ["v1"]
    # what dry-run prints, what pipeline.process gives, and what the CDP got: one body
    code, out = cli(
        "dry-run", "--rules", "rules/shopify", "--json", f"examples/{ORDER}.json",
        env={"SHOPIFY_PHONE_COUNTRY_CODE": None},
    )  # fmt: skip
    assert code == 0, out
    dry_run = json.loads(out)["events"]
    loaded = compiler.load(["rules/shopify"], SECRETS)
    shopify = next(r for r in loaded.rulesets if r.name == "shopify")
    processed = process(shopify, example(ORDER)).sent
    assert received[0]["body"]["eventTypeKey"] == "orderCreated"
    assert [e["body"] for e in received] == dry_run == processed
    detail = webhook(server, 1)
    assert detail.webhook.state == "processed"
    # Shopify signs the body, not its X-Shopify-Webhook-Id: the signed body (and topic)
    # is what a repeat is recognised by
    topic = headers["x-shopify-topic"].encode()
    digest = hashlib.sha256(topic + b"\0" + body).hexdigest()
    assert detail.webhook.delivery_id == "sha256:" + digest
    event = only_event(detail)
    assert (event.state, event.attempts, event.last_status) == ("sent", 1, 200)


def test_signed_woocommerce_order_is_accepted_and_sent(
    server: ServedService, box: RunningSandbox, client: httpx.Client
) -> None:
    body, headers = signed_example("woocommerce/order-created")
    response = post(client, server, "woocommerce", body, headers)
    assert (response.status_code, response.json()["status"]) == (200, "accepted")
    received = wait_until(box.sandbox.events, what="the event in the sandbox")
    assert received[0]["body"]["eventTypeKey"] == "orderCreated"


def test_tampered_body_is_401_not_stored_and_logged_without_body_or_secret(
    server: ServedService,
    box: RunningSandbox,
    client: httpx.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hookmap.server")
    body, headers = signed_example(ORDER)
    tampered = body.replace(b'"total_price"', b'"total_price_MARKER"', 1)
    assert tampered != body
    response = post(client, server, "shopify", tampered, headers)
    assert response.status_code == 401
    assert response.json() == {"error": "signature verification failed"}
    assert server.store.counts()["webhooks"] == {"received": 0, "processed": 0, "failed": 0}
    assert server.store.list_webhooks() == []
    messages = [r.getMessage() for r in caplog.records if r.name == "hookmap.server"]
    assert any("rejected webhook for shopify" in m and "signature mismatch" in m for m in messages)
    for text in (caplog.text, *messages):
        assert "MARKER" not in text
        assert SHOPIFY_SECRET not in text
        assert headers["x-shopify-hmac-sha256"] not in text
    assert box.sandbox.events() == []


def test_signature_made_with_another_secret_is_401(
    server: ServedService, client: httpx.Client
) -> None:
    webhook_ = example(ORDER)
    headers = signed(webhook_.body, webhook_.headers, secret="not-the-shop-secret")
    assert post(client, server, "shopify", webhook_.body, headers).status_code == 401
    assert server.store.list_webhooks() == []


def test_missing_signature_header_is_401(server: ServedService, client: httpx.Client) -> None:
    body, headers = signed_example(ORDER)
    del headers["x-shopify-hmac-sha256"]
    response = post(client, server, "shopify", body, headers)
    assert response.status_code == 401
    assert server.store.list_webhooks() == []


def test_unknown_source_is_404(server: ServedService, client: httpx.Client) -> None:
    body, headers = signed_example(ORDER)
    response = post(client, server, "magento", body, headers)
    assert response.status_code == 404
    assert "unknown source 'magento'" in response.json()["error"]
    assert server.store.list_webhooks() == []


def test_get_on_a_hook_is_405_and_unknown_paths_404(
    server: ServedService, client: httpx.Client
) -> None:
    assert client.get(server.hook("shopify")).status_code == 405
    assert client.get(f"{server.url}/nowhere").status_code == 404


def test_get_with_a_challenge_is_echoed_for_registration(
    server: ServedService, client: httpx.Client
) -> None:
    """Adobe I/O Events checks a webhook URL with GET ?challenge=...: it gets the value."""
    response = client.get(server.hook("shopify"), params={"challenge": "abc-123_X.y~"})
    assert (response.status_code, response.text) == (200, "abc-123_X.y~")
    assert response.headers["content-type"].startswith("text/plain")
    markup = client.get(server.hook("shopify"), params={"challenge": "<script>"})
    assert markup.status_code == 405
    assert client.get(f"{server.url}/hooks/nowhere", params={"challenge": "a"}).status_code == 405


def test_body_over_max_body_is_413_by_content_length(
    box: RunningSandbox, tmp_path: Path, client: httpx.Client
) -> None:
    """A declared Content-Length over the limit is refused before the body is read."""
    with serving(box.destination(), tmp_path / "data", max_body=4096) as small:
        body, headers = signed_example(ORDER)
        assert len(body) > 4096
        response = post(client, small, "shopify", body, headers)
        assert response.status_code == 413
        assert response.json() == {"error": "body over 4096 bytes"}
        assert small.store.list_webhooks() == []
        # the unread body does not poison the client's next request
        ok = post(client, small, "shopify", b"{}", signed(b"{}", headers))
        assert (ok.status_code, ok.json()["status"]) == (200, "accepted")
        # the limit itself is allowed, one byte more is not
        at_limit, over = b" " * 4094 + b"{}", b" " * 4095 + b"{}"
        response = post(client, small, "shopify", at_limit, signed(at_limit, headers))
        assert response.status_code == 200
        assert post(client, small, "shopify", over, signed(over, headers)).status_code == 413


def test_chunked_body_over_max_body_is_413_while_reading(
    box: RunningSandbox, tmp_path: Path, client: httpx.Client
) -> None:
    """Without Content-Length (chunked), the limit is enforced as the body streams in."""
    with serving(box.destination(), tmp_path / "data", max_body=4096) as small:
        body, headers = signed_example(ORDER)
        chunks = [body[i : i + 3000] for i in range(0, 9000, 3000)]

        def stream() -> Iterator[bytes]:
            yield from chunks

        request = client.build_request(
            "POST", small.hook("shopify"), content=stream(), headers=headers
        )
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        response = client.send(request)
        assert response.status_code == 413
        assert small.store.list_webhooks() == []
        # a small chunked body still goes through
        ok = client.post(
            small.hook("shopify"), content=iter([b"{}"]), headers=signed(b"{}", headers)
        )
        assert (ok.status_code, ok.json()["status"]) == (200, "accepted")


def test_woocommerce_ping_is_acknowledged_and_not_stored(
    server: ServedService, client: httpx.Client
) -> None:
    ping = example("woocommerce/ping")
    assert ping.body.strip() == b"webhook_id=42"
    response = post(client, server, "woocommerce", ping.body, dict(ping.headers))
    assert response.status_code == 200
    assert response.json() == {"status": "ping"}
    # only a WooCommerce source knows the ping: Shopify wants its signature
    assert post(client, server, "shopify", ping.body, dict(ping.headers)).status_code == 401
    assert server.store.list_webhooks() == []


def test_repeated_delivery_id_is_acknowledged_as_duplicate_and_sent_once(
    server: ServedService, box: RunningSandbox, client: httpx.Client
) -> None:
    body, headers = signed_example(ORDER)
    first = post(client, server, "shopify", body, headers)
    second = post(client, server, "shopify", body, headers)
    assert first.json() == {"status": "accepted", "id": 1}
    assert (second.status_code, second.json()) == (200, {"status": "duplicate", "id": 1})
    wait_until(box.sandbox.events, what="the event in the sandbox")
    wait_until(lambda: settled(server.store), what="the store to settle")
    time.sleep(0.2)  # room for a second send, were there one
    assert len(box.sandbox.events()) == 1
    counts = server.store.counts()
    assert counts["webhooks"]["processed"] == 1
    assert counts["events"]["sent"] == 1


def test_a_captured_order_posted_with_a_fresh_delivery_id_is_a_duplicate_not_a_new_order(
    server: ServedService, box: RunningSandbox, client: httpx.Client
) -> None:
    """Shopify signs the body, not X-Shopify-Webhook-Id: a replay with a fresh id still
    verifies, and is answered 'duplicate' (issue 14.3). The same body under another
    topic (orders/paid) is a delivery of its own."""
    body, headers = signed_example(ORDER)
    first = post(client, server, "shopify", body, headers)
    replayed = post(client, server, "shopify", body, headers | {"x-shopify-webhook-id": "new"})
    paid = post(client, server, "shopify", body, headers | {"x-shopify-topic": "orders/paid"})
    assert first.json() == {"status": "accepted", "id": 1}
    assert replayed.json() == {"status": "duplicate", "id": 1}
    assert paid.json() == {"status": "accepted", "id": 2}
    wait_until(lambda: settled(server.store), what="the store to settle")
    assert server.store.counts()["webhooks"]["processed"] == 2


def test_concurrent_repeats_of_one_delivery_are_stored_and_sent_once(
    server: ServedService, box: RunningSandbox
) -> None:
    """Eight senders racing with the same delivery id: one 'accepted', the rest 'duplicate'."""
    body, headers = signed_example(ORDER)
    go = threading.Barrier(8)
    answers: list[str] = []

    def sender() -> None:
        with httpx.Client(trust_env=False, timeout=10) as mine:
            go.wait(5)
            answers.append(
                mine.post(server.hook("shopify"), content=body, headers=headers).json()["status"]
            )

    threads = [threading.Thread(target=sender) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert sorted(answers) == ["accepted"] + ["duplicate"] * 7
    wait_until(box.sandbox.events, what="the event in the sandbox")
    wait_until(lambda: settled(server.store), what="the store to settle")
    assert server.store.counts()["webhooks"]["processed"] == 1
    assert len(box.sandbox.events()) == 1


def test_signed_bad_json_is_accepted_and_recorded_as_failed_with_the_json_error(
    server: ServedService, box: RunningSandbox, client: httpx.Client
) -> None:
    _, headers = signed_example(ORDER)
    body = b'{"id": 1, "email": '
    response = post(client, server, "shopify", body, signed(body, headers))
    assert (response.status_code, response.json()["status"]) == (200, "accepted")
    wait_until(lambda: webhook(server, 1).webhook.state == "failed", what="failed")
    detail = webhook(server, 1)
    assert detail.webhook.error is not None
    assert "invalid JSON" in detail.webhook.error
    assert detail.events == []
    code, out = cli("show", "1", "--data", str(server.service.config.data_dir))
    assert code == 0, out
    assert "state failed" in out
    assert "error: webhook #1 (shopify):1:20: invalid JSON" in out
    assert "x-shopify-hmac-sha256: ****" in out
    assert box.sandbox.events() == []


def test_unmatched_topic_is_processed_with_no_rule_matched_and_nothing_sent(
    server: ServedService, box: RunningSandbox, client: httpx.Client
) -> None:
    body, headers = signed_example(ORDER, x_shopify_topic="products/create")
    response = post(client, server, "shopify", body, headers)
    assert response.json()["status"] == "accepted"
    wait_until(lambda: settled(server.store), what="the store to settle")
    detail = webhook(server, 1)
    assert detail.webhook.state == "processed"
    assert detail.webhook.topic == "products/create"
    assert detail.webhook.summary == "no rule matches topic 'products/create': nothing to send"
    assert detail.events == []
    assert box.sandbox.events() == []


def test_event_dropped_by_checks_is_stored_invalid_with_problems_and_not_sent(
    server: ServedService, box: RunningSandbox, client: httpx.Client
) -> None:
    body, headers = signed_example("shopify/orders-create-pos")
    assert post(client, server, "shopify", body, headers).json()["status"] == "accepted"
    wait_until(lambda: settled(server.store), what="the store to settle")
    detail = webhook(server, 1)
    assert detail.webhook.summary == "0 event(s) to send, 1 dropped"
    event = only_event(detail)
    assert (event.state, event.event_type, event.attempts) == ("invalid", "orderCreated", 0)
    errors = {p["code"] for p in event.problems if p["severity"] == "error"}
    assert errors == {"V101", "V106"}
    assert server.store.list_events("invalid")[0].id == event.id
    assert box.sandbox.events() == []


# -- delivery failures -----------------------------------------------------------------


def test_cdp_500s_are_retried_until_healed_then_sent_once(
    box: RunningSandbox, tmp_path: Path, client: httpx.Client
) -> None:
    configure(box, fail_rate=1)
    with serving(box.destination(), tmp_path / "data", schedule=PATIENT_SCHEDULE) as srv:
        body, headers = signed_example(ORDER)
        assert post(client, srv, "shopify", body, headers).status_code == 200
        wait_until(lambda: len(webhook(srv, 1).attempts) >= 2, what="two failed attempts")
        assert event_state(srv, 1) == "pending"
        configure(box, fail_rate=0)
        wait_until(lambda: event_state(srv, 1) == "sent", what="sent after healing")
        detail = webhook(srv, 1)
    outcomes = [a.outcome for a in detail.attempts]
    assert outcomes[-1] == "sent" and set(outcomes[:-1]) == {"retry"}
    assert {a.status for a in detail.attempts[:-1]} == {500}
    assert detail.events[0].attempts == len(outcomes)
    assert len(box.sandbox.events()) == 1
    refused = [r for r in box.sandbox.requests() if r["status"] == 500]
    assert len(refused) == len(outcomes) - 1


def test_cdp_429s_are_retried_until_healed_then_sent(
    box: RunningSandbox, tmp_path: Path, client: httpx.Client
) -> None:
    configure(box, throttle_rate=1)
    with serving(box.destination(), tmp_path / "data", schedule=PATIENT_SCHEDULE) as srv:
        body, headers = signed_example(ORDER)
        assert post(client, srv, "shopify", body, headers).status_code == 200
        wait_until(lambda: len(webhook(srv, 1).attempts) >= 2, what="two throttled attempts")
        configure(box, throttle_rate=0)
        wait_until(lambda: event_state(srv, 1) == "sent", what="sent after healing")
        detail = webhook(srv, 1)
    assert {a.status for a in detail.attempts[:-1]} == {429}
    assert detail.attempts[-1].status == 200
    assert len(box.sandbox.events()) == 1


def test_cdp_slower_than_timeout_is_recorded_as_timeout_then_sent_after_healing(
    box: RunningSandbox, tmp_path: Path, client: httpx.Client
) -> None:
    """A timed-out send is retried; the CDP may have taken it anyway (at least once)."""
    configure(box, delay_seconds=1.0)
    data = tmp_path / "data"
    with serving(box.destination(), data, schedule=PATIENT_SCHEDULE, timeout=0.3) as srv:
        body, headers = signed_example(ORDER)
        assert post(client, srv, "shopify", body, headers).status_code == 200
        wait_until(lambda: webhook(srv, 1).attempts, what="a timed-out attempt")
        configure(box, delay_seconds=0)
        wait_until(lambda: event_state(srv, 1) == "sent", timeout=15, what="sent after healing")
        detail = webhook(srv, 1)
    first = detail.attempts[0]
    assert (first.outcome, first.status) == ("retry", None)
    assert first.error is not None and "Timeout" in first.error
    assert [a.outcome for a in detail.attempts].count("sent") == 1
    # the sandbox finishes a request whose client gave up: each attempt may have landed
    assert 1 <= len(box.sandbox.events()) <= len(detail.attempts)


def test_cdp_down_records_retries_with_connection_errors_then_dead(
    tmp_path: Path, client: httpx.Client
) -> None:
    closed = free_port()
    env = {"HOOKMAP_API_URL": f"http://127.0.0.1:{closed}/api", "HOOKMAP_API_KEY": API_KEY}
    with serving(Destination.from_env(env), tmp_path / "data") as srv:
        body, headers = signed_example(ORDER)
        assert post(client, srv, "shopify", body, headers).status_code == 200
        wait_until(lambda: event_state(srv, 1) == "dead", what="dead after the schedule")
        detail = webhook(srv, 1)
    assert [a.outcome for a in detail.attempts] == ["retry", "retry", "retry", "dead"]
    assert all(a.status is None for a in detail.attempts)
    assert all(a.error and a.error.startswith("ConnectError") for a in detail.attempts)
    assert detail.events[0].last_error is not None
    assert detail.events[0].last_error.startswith("ConnectError")


def test_cdp_400_is_dead_at_once_and_retry_dead_sends_it_after_the_fix(
    tmp_path: Path, client: httpx.Client
) -> None:
    with (
        running(SandboxConfig(api_key=API_KEY, strict_contacts=True)) as strict,
        serving(strict.destination(), tmp_path / "data") as srv,
    ):
        body, headers = signed_example(ORDER)
        assert post(client, srv, "shopify", body, headers).status_code == 200
        wait_until(lambda: event_state(srv, 1) == "dead", what="dead at once")
        detail = webhook(srv, 1)
        event = detail.events[0]
        assert [a.outcome for a in detail.attempts] == ["dead"]
        assert (event.attempts, event.last_status) == (1, 400)
        assert event.last_error == (
            "HTTP 400: Contact not found: events are accepted for existing contacts"
        )
        assert strict.sandbox.events() == []
        # the fix: the contact exists now; `hookmap retry --dead` puts it back in the queue
        contact = {"channels": [{"type": "email", "value": "olivia.bennett@example.com"}]}
        created = client.post(f"{strict.url}/v1/contact", json=contact, auth=("u", API_KEY))
        assert created.status_code == 200, created.text
        code, out = cli("retry", "--dead", "--data", str(srv.service.config.data_dir))
        assert (code, out.strip()) == (0, "1 event(s) re-queued; a running server sends them")
        # the running server's dispatcher picks it up on its next poll (at most 5 s)
        wait_until(lambda: event_state(srv, 1) == "sent", timeout=10, what="sent after retry")
        assert srv.store.retry_dead() == 0
    assert len(strict.sandbox.events()) == 1


# -- operating it ------------------------------------------------------------------------


def broken_copy(tmp_path: Path) -> tuple[Path, Path]:
    """The shipped Shopify rules in tmp_path, with totalCost read from a field that does not
    exist (so every order event is invalid); returns (folder, the edited file)."""
    folder = tmp_path / "rules" / "shopify"
    shutil.copytree(ROOT / "rules" / "shopify", folder, ignore=NO_TESTS)
    ruleset = folder / "ruleset.yaml"
    text = ruleset.read_text(encoding="utf-8")
    assert text.count("totalCost: total_price\n") == 1
    ruleset.write_text(text.replace("totalCost: total_price\n", "totalCost: total_prize\n"))
    return folder, ruleset


def test_replay_after_rule_fix_sends_once_and_force_sends_again(
    box: RunningSandbox, tmp_path: Path, client: httpx.Client
) -> None:
    folder, ruleset = broken_copy(tmp_path)
    data = tmp_path / "data"
    with serving(box.destination(), data, rules=(str(folder),)) as srv:
        body, headers = signed_example(ORDER)
        assert post(client, srv, "shopify", body, headers).status_code == 200
        wait_until(lambda: event_state(srv, 1) == "invalid", what="the invalid event")
        problems = webhook(srv, 1).events[0].problems
        assert any(p.get("param") == "totalCost" for p in problems), problems

        fixed = (ROOT / "rules" / "shopify" / "ruleset.yaml").read_text(encoding="utf-8")
        ruleset.write_text(fixed, encoding="utf-8")
        env: dict[str, str | None] = {
            "HOOKMAP_API_URL": box.url,
            "HOOKMAP_API_KEY": API_KEY,
            "SHOPIFY_PHONE_COUNTRY_CODE": None,
        }
        replay = ("replay", "--webhook", "1", "--rules", str(folder), "--data", str(data))
        code, out = cli(*replay, env=env)
        assert code == 0, out
        assert "1 webhook(s) replayed: 0 new event(s), 1 re-queued" in out
        wait_until(lambda: event_state(srv, 1) == "sent", what="sent after replay")
        sent = wait_until(box.sandbox.events, what="the event in the sandbox")
        assert param(sent[0]["body"], "totalCost") is not None

        code, out = cli(*replay, env=env)
        assert code == 0, out
        assert "0 new event(s), 0 re-queued" in out
        time.sleep(0.2)
        assert len(box.sandbox.events()) == 1, "a replay without --force sent again"

        code, out = cli(*replay, "--force", env=env)
        assert code == 0, out
        assert "0 new event(s), 1 re-queued" in out
        wait_until(lambda: len(box.sandbox.events()) == 2, what="the forced second send")
        assert event_state(srv, 1) == "sent"
    first, second = box.sandbox.events()
    assert first["body"] == second["body"]


def test_reload_with_broken_rules_is_refused_and_old_rules_keep_serving(
    box: RunningSandbox, tmp_path: Path, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "rules" / "shopify"
    shutil.copytree(ROOT / "rules" / "shopify", folder, ignore=NO_TESTS)
    orders = folder / "orders.yaml"
    good = orders.read_text(encoding="utf-8")
    with serving(box.destination(), tmp_path / "data", rules=(str(folder),)) as srv:
        assert srv.service.reload() is True  # unchanged rules reload fine
        orders.write_text(good.replace("type: orderCreated", "type: orderCreated\n   bad: ["))
        caplog.set_level(logging.ERROR, logger="hookmap.service")
        assert srv.service.reload() is False
        assert any("reload refused" in r.getMessage() for r in caplog.records)
        body, headers = signed_example(ORDER)
        response = post(client, srv, "shopify", body, headers)
        assert (response.status_code, response.json()["status"]) == (200, "accepted")
        wait_until(lambda: event_state(srv, 1) == "sent", what="sent with the old rules")
    assert [e["body"]["eventTypeKey"] for e in box.sandbox.events()] == ["orderCreated"]


def test_healthz_and_readyz_answer_ok(server: ServedService, client: httpx.Client) -> None:
    assert client.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = client.get(f"{server.url}/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "problems": []})


def test_metrics_count_received_rejected_sent_latency_and_queue_depth(
    box: RunningSandbox, tmp_path: Path, client: httpx.Client
) -> None:
    with serving(box.destination(), tmp_path / "data", schedule=(0.05, 60.0)) as srv:
        before = metrics(client, srv)
        assert before["hookmap_queue_depth"] == 0
        for name in (
            "hookmap_webhooks_received_total",
            "hookmap_webhooks_rejected_total",
            "hookmap_events_total",
            "hookmap_dispatch_seconds",
            "hookmap_oldest_pending_seconds",
        ):
            assert f"# TYPE {name} " in client.get(f"{srv.url}/metrics").text
        body, headers = signed_example(ORDER)
        assert post(client, srv, "shopify", body, headers).status_code == 200
        assert post(client, srv, "shopify", body, headers).json()["status"] == "duplicate"
        assert post(client, srv, "shopify", body + b" ", headers).status_code == 401
        no_signature = {k: v for k, v in headers.items() if k != "x-shopify-hmac-sha256"}
        assert post(client, srv, "shopify", body, no_signature).status_code == 401
        assert post(client, srv, "nowhere", body, headers).status_code == 404
        wait_until(lambda: event_state(srv, 1) == "sent", what="sent")
        after = metrics(client, srv)
        assert after['hookmap_webhooks_received_total{source="shopify"}'] == 1
        assert after['hookmap_webhooks_duplicate_total{source="shopify"}'] == 1
        rejected = "hookmap_webhooks_rejected_total{reason=%s,source=%s}"
        assert after[rejected % ('"signature_mismatch"', '"shopify"')] == 1
        assert after[rejected % ('"signature_missing"', '"shopify"')] == 1
        # whatever source label an unknown source gets, it counts once
        unknown = [v for k, v in after.items() if 'reason="unknown_source"' in k]
        assert unknown == [1]
        processed = 'hookmap_webhooks_processed_total{outcome="processed",source="shopify"}'
        assert after[processed] == 1
        assert after['hookmap_events_total{event_type="orderCreated",outcome="sent"}'] == 1
        assert after['hookmap_dispatch_seconds_count{outcome="sent"}'] == 1
        assert after['hookmap_dispatch_seconds_bucket{outcome="sent",le="+Inf"}'] == 1
        assert after["hookmap_queue_depth"] == 0

        # a failing CDP: the event waits for its (60 s) retry, so the queue holds it
        configure(box, fail_rate=1)
        body2, headers2 = shopify_order(2, "delivery-2")
        assert post(client, srv, "shopify", body2, headers2).status_code == 200
        wait_until(lambda: webhook(srv, 2).attempts, what="the failed attempt")
        failing = metrics(client, srv)
        assert failing['hookmap_events_total{event_type="orderCreated",outcome="retry"}'] == 1
        assert failing['hookmap_dispatch_seconds_count{outcome="retry"}'] == 1
        assert failing["hookmap_queue_depth"] == 1
        assert failing["hookmap_oldest_pending_seconds"] >= 0
        assert failing['hookmap_webhooks_received_total{source="shopify"}'] == 2


def test_unknown_sources_do_not_grow_the_metrics_without_bound(
    server: ServedService, client: httpx.Client
) -> None:
    """Anyone can POST /hooks/<anything>: the rejected counter's series must stay bounded."""
    for i in range(50):
        assert post(client, server, f"probe-{i}", b"{}", {}).status_code == 404
    series = [
        k for k in metrics(client, server) if k.startswith("hookmap_webhooks_rejected_total{")
    ]
    assert len(series) <= 1, f"{len(series)} series, e.g. {series[:2]}"


def test_dropped_event_counts_in_the_invalid_metric(
    server: ServedService, client: httpx.Client
) -> None:
    body, headers = signed_example("shopify/orders-create-pos")
    assert post(client, server, "shopify", body, headers).status_code == 200
    wait_until(lambda: settled(server.store), what="processed")
    assert metrics(client, server)['hookmap_events_invalid_total{event_type="orderCreated"}'] == 1


# -- hookmap serve as a process --------------------------------------------------------


def test_serve_process_stops_on_sigterm_with_exit_0_and_logs_stopping(
    box: RunningSandbox, tmp_path: Path, client: httpx.Client
) -> None:
    log = tmp_path / "serve.log"
    with serve_process(tmp_path / "data", serve_env(box.url), log, "--grace", "3") as proc:
        proc.wait_ready()
        body, headers = signed_example(ORDER)
        assert client.post(proc.hook("shopify"), content=body, headers=headers).status_code == 200
        wait_until(box.sandbox.events, what="the event in the sandbox")
        started = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(10) == 0
        assert time.monotonic() - started < 3 + 2
    output = log.read_text(encoding="utf-8")
    assert "stopping: finishing sends in flight (grace 3s)" in output
    assert "stopped in" in output
    assert API_KEY not in output and SHOPIFY_SECRET not in output


def test_serve_process_reloads_on_sighup_and_keeps_its_rules_when_the_new_ones_are_broken(
    box: RunningSandbox, tmp_path: Path, client: httpx.Client
) -> None:
    folder = tmp_path / "rules" / "shopify"
    shutil.copytree(ROOT / "rules" / "shopify", folder, ignore=NO_TESTS)
    ruleset = folder / "ruleset.yaml"
    good = ruleset.read_text(encoding="utf-8")
    log = tmp_path / "serve.log"
    with serve_process(tmp_path / "data", serve_env(box.url), log, rules=(str(folder),)) as proc:
        proc.wait_ready()
        ruleset.write_text(good.replace("to_string(id)", "to_strin(id)"), encoding="utf-8")
        proc.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload refused: the running rules keep serving" in proc.output())
        assert "unknown function 'to_strin'" in proc.output()
        body, headers = signed_example(ORDER)
        assert client.post(proc.hook("shopify"), content=body, headers=headers).status_code == 200
        wait_until(box.sandbox.events, what="sent with the running rules")
        ruleset.write_text(good, encoding="utf-8")
        proc.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "rules reloaded: shopify" in proc.output(), what="the reload")
        assert proc.terminate() == 0


def test_serve_refuses_a_rule_set_without_verify_with_exit_1_naming_it(tmp_path: Path) -> None:
    rules = tmp_path / "unsigned.yaml"
    rules.write_text(
        "name: unsigned-shop\ntopic: {header: X-Topic}\n"
        "rules:\n  - name: r\n    topics: x\n    ignore: nothing to send\n",
        encoding="utf-8",
    )
    command = [HOOKMAP, "serve", "--rules", str(rules), "--port", str(free_port())]
    run = subprocess.run(
        [*command, "--data", str(tmp_path / "data")],
        env=serve_env(None),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 1, run.stderr
    assert "refused: rule set 'unsigned-shop'" in run.stderr
    assert "declares no `verify`" in run.stderr


def test_serve_without_api_key_exits_2(tmp_path: Path) -> None:
    env = serve_env(None)
    del env["HOOKMAP_API_KEY"]
    run = subprocess.run(
        [HOOKMAP, "serve", "--rules", "rules/shopify", "--port", str(free_port()), "--data",
         str(tmp_path / "data")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "HOOKMAP_API_KEY is not set" in run.stderr


def test_deeply_nested_body_on_a_body_dedupe_source_is_stored_not_a_500(
    box: RunningSandbox, tmp_path: Path, client: httpx.Client
) -> None:
    """A body that is not usable JSON is stored and recorded as failed, never a 5xx."""
    rules = tmp_path / "byid.yaml"
    rules.write_text(
        "name: byid\ntopic: {header: X-Topic}\nverify: {scheme: none}\n"
        "dedupe: {expression: eventId}\n"
        "rules:\n  - name: r\n    topics: x\n    ignore: nothing to send\n",
        encoding="utf-8",
    )
    with serving(box.destination(), tmp_path / "data", rules=(str(rules),)) as srv:
        response = client.post(srv.hook("byid"), content=b"[" * 100_000, headers={"x-topic": "x"})
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "accepted", "id": 1}
        wait_until(lambda: webhook(srv, 1).webhook.state == "failed", what="recorded as failed")
        assert webhook(srv, 1).webhook.error == "webhook #1 (byid): JSON nested too deeply to read"


def test_hookmap_post_signs_with_the_shared_secret_and_the_server_accepts(
    server: ServedService,
) -> None:
    """`hookmap post` signs each file as Shopify would, from the secret in the
    environment; the secret is never printed; a wrong secret is the server's 401."""
    from click.testing import CliRunner

    from engine.cli import main

    files = [str(ROOT / "examples" / "shopify" / "orders-create.json")]
    files.append(str(ROOT / "examples" / "shopify" / "orders-cancelled.json"))
    args = ["post", "--rules", str(ROOT / "rules"), "--source", "shopify", "--url", server.url]
    env = {**SECRETS, "SHOPIFY_PHONE_COUNTRY_CODE": ""}
    result = CliRunner().invoke(main, [*args, *files], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.count(": 200 ") == 2, result.output
    assert SECRETS["SHOPIFY_WEBHOOK_SECRET"] not in result.output
    wrong = {**env, "SHOPIFY_WEBHOOK_SECRET": "not-the-secret"}
    result = CliRunner().invoke(main, [*args, files[0]], env=wrong)
    assert result.exit_code == 1 and ": 401 " in result.output, result.output
