"""``changes:``: an event is sent only when its values changed for its entity.

Shopify sends ``checkouts/update`` for every touch of the checkout page; the shipped
rule sends one cartUpdated per real change of the cart. The server remembers the values
last sent per shop and entity in the store, with an expiry.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.errors import Diagnostic
from engine.pipeline import process
from engine.rules import compiler
from engine.sandbox.run import running
from engine.sandbox.settings import SandboxConfig
from engine.server.processor import as_webhook, new_events
from engine.server.store.sqlite import Store
from tests.conftest import ROOT
from tests.helpers_server import API_KEY, serving, settled, signed, wait_until
from tests.helpers_server import example as load_example

T0 = 1_700_000_000.0
SHOPIFY = str(ROOT / "rules" / "shopify")


def checkout(name: str, delivery: str, second: int) -> tuple[bytes, dict[str, str]]:
    """The example as Shopify sends it again: one more touch of the checkout page, a
    later updated_at (a byte-identical body would be a repeat of a delivery)."""
    webhook = load_example(f"shopify/{name}")
    data = json.loads(webhook.body)
    data["updated_at"] = f"2026-10-14T17:05:{second:02d}-04:00"
    body = json.dumps(data).encode()
    headers = {**webhook.headers, "x-shopify-webhook-id": delivery}
    return body, signed(body, headers)


def test_a_storm_of_checkout_updates_sends_one_cart_per_real_change(tmp_path: Path) -> None:
    with (
        running(SandboxConfig(api_key=API_KEY)) as box,
        serving(box.destination(), tmp_path / "data") as served,
        httpx.Client(trust_env=False, timeout=5) as client,
    ):
        storm = [("checkouts-create", "c-0")]
        storm += [("checkouts-update-unchanged", f"u-{n}") for n in range(5)]
        storm += [("checkouts-update-quantity", "q-0"), ("checkouts-update-quantity", "q-1")]
        for second, (name, delivery) in enumerate(storm):
            body, headers = checkout(name, delivery, second)
            posted = client.post(served.hook("shopify"), content=body, headers=headers)
            assert posted.status_code == 200, posted.text
            # one at a time, as Shopify sends them: each compares with the one before
            wait_until(lambda: settled(served.store), what=f"{delivery} processed")
        summaries = [w.summary for w in reversed(served.store.list_webhooks())]
    carts = [e["body"] for e in box.sandbox.events()]
    assert len(carts) == 2
    quantities = [[p["quantity"] for p in _products(c)] for c in carts]
    assert quantities == [[1, 3], [1, 2]]
    assert summaries.count("0 event(s) to send, 0 dropped, 1 held back (unchanged)") == 6
    assert summaries.count("1 event(s) to send, 0 dropped") == 2


def _products(event: dict[str, object]) -> list[dict[str, object]]:
    params = event["params"]
    assert isinstance(params, list)
    value = next(p["value"] for p in params if p["name"] == "products")
    return list(json.loads(value))


def test_the_store_remembers_the_last_values_per_shop_and_entity_until_they_expire(
    tmp_path: Path,
) -> None:
    now = [T0]
    with Store(tmp_path / "hookmap.sqlite3", clock=lambda: now[0]) as store:
        ruleset = compiler.load_or_raise([SHOPIFY]).get("shopify")
        assert ruleset is not None
        body, headers = checkout("checkouts-create", "c-1", 0)
        webhook_id = store.add_webhook("shopify", headers, body, "c-1", shop="acme").id
        (stored,) = store.webhooks_to_process(1, now=T0)
        result = process(ruleset, as_webhook(stored))
        (event,) = result.events
        change = event.change
        assert change is not None and change.expire == 30 * 86400
        store.record_result(webhook_id, result.topic, result.summary(), new_events(result))
        assert store.last_change(change.entity, shop="acme") == change.fingerprint
        assert store.last_change(change.entity, shop="other") is None
        now[0] = T0 + 30 * 86400 + 1
        assert store.last_change(change.entity, shop="acme") is None
        assert store.forget_expired_changes() == 1
        assert store.forget_expired_changes() == 0


def test_changes_needs_values_and_says_where(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "name: r\n"
        "topic: {header: X-Topic}\n"
        "rules:\n"
        "  - name: cart\n"
        "    topics: t\n"
        "    events:\n"
        "      - type: custom\n"
        "        key: email\n"
        "        changes: {key: token, values: [], expire: 3w}\n",
        encoding="utf-8",
    )
    found = compiler.load([rules]).diagnostics
    assert sorted((d.code, d.location.line if d.location else 0) for d in found) == [
        ("E104", 9),
        ("E106", 9),
    ]
    assert any("expire '3w' must match" in _text(d) for d in found)


def _text(d: Diagnostic) -> str:
    return d.render()


@pytest.mark.parametrize("as_json", [False, True])
def test_dry_run_says_when_and_why_an_event_is_held_back(as_json: bool) -> None:
    args = ["dry-run", "--rules", SHOPIFY, "--explain"] + (["--json"] if as_json else [])
    args += [
        "examples/shopify/checkouts-create.json",
        "examples/shopify/checkouts-update-unchanged.json",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    if not as_json:
        assert "HOLD cartUpdated #0 (rule checkout-cart" in result.output
        assert "held back: unchanged: the same values as the last cartUpdated sent" in (
            result.output
        )
        return
    first, second = json.loads(result.output)["results"]
    assert first["held"] == [] and len(first["events"]) == 1
    assert second["events"] == []
    (held,) = second["held"]
    assert (held["eventTypeKey"], held["rule"]) == ("cartUpdated", "checkout-cart")
    assert second["details"][0]["changes"]["entity"].startswith("checkout-cart/cartUpdated/")
