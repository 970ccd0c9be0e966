"""Many shops on one deployment: a shops file, each shop's secret, CDP account and rule set.

The served tests run the real service on loopback with two sandboxes standing for two
CDP accounts (each checks its own API key), and sign with each shop's own secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.errors import RuleLoadError, ServeRefused
from engine.events.destination import Destination
from engine.rules import compiler
from engine.rules.shops import load_shops
from engine.sandbox.run import RunningSandbox, running
from engine.sandbox.settings import SandboxConfig
from engine.server import tenants
from engine.server.intake import DEFAULT_MAX_BODY
from tests.conftest import ROOT
from tests.helpers_server import SHOPIFY, example, serving, settled, signed, wait_until
from tests.support.http_stub import Call, HttpStub, Reply

SHOPIFY_RULES = str(ROOT / "rules" / "shopify")
ENV = {
    "A_KEY": "key-of-shop-a",
    "B_KEY": "key-of-shop-b",
    "A_SECRET": "secret-of-shop-a",
    "B_SECRET": "secret-of-shop-b",
    "SHOPIFY_WEBHOOK_SECRET": "the-default-secret",
}


def write_shops(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shops.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def two_shops(tmp_path: Path, a_url: str = "", b_url: str = "") -> Path:
    return write_shops(
        tmp_path,
        "shops:\n"
        "  a:\n"
        "    ruleset: shopify\n"
        "    api_key_env: A_KEY\n"
        f"    api_url: {a_url or 'https://a.cdp.example/api'}\n"
        "    secret_env: A_SECRET\n"
        "  b:\n"
        "    ruleset: shopify\n"
        "    api_key_env: B_KEY\n"
        f"    api_url: {b_url or 'https://b.cdp.example/api'}\n"
        "    secret_env: B_SECRET\n"
        "    vars: {phone_country: '44'}\n",
    )


# -- the shops file ----------------------------------------------------------------------


def test_a_shops_file_with_mistakes_gets_every_problem_located(tmp_path: Path) -> None:
    path = write_shops(
        tmp_path,
        "shops:\n"
        "  acme:\n"
        "    ruleset: shopfy\n"
        "    api_key_env: ACME_KEY\n"
        "  Bad_Id:\n"
        "    ruleset: shopify\n"
        "    api_key_env: K\n"
        "  nokey:\n"
        "    ruleset: shopify\n"
        "    secrets_env: X\n",
    )
    result = load_shops(path, ["shopify", "woocommerce"])
    found = {(d.code, d.location.line if d.location else 0) for d in result.diagnostics}
    assert found == {("E308", 3), ("E106", 5), ("E102", 10), ("E104", 9)}
    (unknown,) = [d for d in result.diagnostics if d.code == "E308"]
    assert unknown.render().startswith(
        f"{path}:3:14: error[E308]: shop 'acme': undefined rule set 'shopfy'"
    )
    assert "did you mean 'shopify'?" in unknown.render()
    assert not result.ok and result.shops == ()


def test_each_shop_gets_its_secret_key_vars_and_account(tmp_path: Path) -> None:
    rulesets = compiler.load_or_raise([SHOPIFY_RULES], ENV).rulesets
    shops = load_shops(two_shops(tmp_path), ["shopify"]).shops
    tenancy = tenants.for_shops(
        rulesets, shops, ENV, Destination("https://default/api"), DEFAULT_MAX_BODY, _load
    )
    a, b = tenancy.sources[("shopify", "a")], tenancy.sources[("shopify", "b")]
    assert (a.secrets, b.secrets) == ((b"secret-of-shop-a",), (b"secret-of-shop-b",))
    assert a.ruleset.vars["phone_country"] == "" and b.ruleset.vars["phone_country"] == "44"
    assert tenancy.destinations["a"] == Destination("https://a.cdp.example/api", "key-of-shop-a")
    assert tenancy.destinations["b"].api_key == "key-of-shop-b"
    assert ("shopify", "") not in tenancy.sources  # only the shops listed are served


def test_a_shop_whose_variables_are_unset_is_refused_with_every_reason(tmp_path: Path) -> None:
    rulesets = compiler.load_or_raise([SHOPIFY_RULES], ENV).rulesets
    shops = load_shops(two_shops(tmp_path), ["shopify"]).shops
    env = {k: v for k, v in ENV.items() if k not in ("A_KEY", "B_SECRET")}
    with pytest.raises(ServeRefused) as refused:
        tenants.for_shops(rulesets, shops, env, Destination("u"), DEFAULT_MAX_BODY, _load)
    problems = refused.value.problems
    assert "shop 'a': A_KEY is not set (its CDP API key)" in problems
    assert any(p.startswith("rule set 'shopify' for shop 'b': verify scheme") for p in problems)
    assert not any("key-of" in p or "secret-of" in p for p in problems)


def _load(paths: Any, env: Any) -> Any:
    return compiler.load_or_raise(paths, env).rulesets


# -- served ------------------------------------------------------------------------------


@pytest.fixture
def accounts() -> Iterator[tuple[RunningSandbox, RunningSandbox]]:
    """Two CDP accounts: each sandbox accepts only its own shop's key."""
    with (
        running(SandboxConfig(api_key=ENV["A_KEY"])) as a,
        running(SandboxConfig(api_key=ENV["B_KEY"])) as b,
    ):
        yield a, b


def order(order_id: int, delivery: str, secret: str) -> tuple[bytes, dict[str, str]]:
    webhook = example("shopify/orders-create")
    data = json.loads(webhook.body)
    data["id"] = order_id
    body = json.dumps(data).encode()
    headers = {**webhook.headers, "x-shopify-webhook-id": delivery}
    return body, signed(body, headers, SHOPIFY, secret)


def test_each_shop_is_received_with_its_secret_and_sent_with_its_key_only(
    tmp_path: Path, accounts: tuple[RunningSandbox, RunningSandbox]
) -> None:
    a, b = accounts
    shops = two_shops(tmp_path, a.url, b.url)
    with (
        serving(
            Destination("http://127.0.0.1:9/unused", None),
            tmp_path / "data",
            rules=(SHOPIFY_RULES,),
            env=ENV,
            shops=str(shops),
        ) as served,
        httpx.Client(trust_env=False, timeout=5) as client,
    ):
        body, headers = order(101, "d-a-1", ENV["A_SECRET"])
        assert client.post(served.hook("shopify/a"), content=body, headers=headers).is_success
        # shop a's signature on shop b's URL, and the shared default secret: refused
        refused = client.post(served.hook("shopify/b"), content=body, headers=headers)
        assert refused.status_code == 401
        body_b, headers_b = order(202, "d-b-1", ENV["B_SECRET"])
        assert client.post(served.hook("shopify/b"), content=body_b, headers=headers_b).is_success
        default = order(303, "d-d-1", ENV["SHOPIFY_WEBHOOK_SECRET"])
        assert (
            client.post(
                served.hook("shopify/a"), content=default[0], headers=default[1]
            ).status_code
            == 401
        )
        # with a shops file, the URL without a shop names no source
        assert client.post(served.hook("shopify"), content=body, headers=headers).status_code == 404
        wait_until(lambda: settled(served.store), what="both shops' events sent")
        assert [w.shop for w in served.store.list_webhooks()] == ["b", "a"]
        metrics = client.get(f"{served.url}/metrics").text
    ids = [_param(e, "externalOrderId") for e in a.sandbox.events()]
    assert ids == ["101"], "shop a's account got only shop a's order"
    assert [_param(e, "externalOrderId") for e in b.sandbox.events()] == ["202"]
    # each sandbox checks Basic auth against its own key: nothing was refused for a key
    assert all(r["status"] == 200 for r in a.sandbox.requests() + b.sandbox.requests())
    assert 'hookmap_webhooks_received_total{shop="a",source="shopify"} 1' in metrics
    assert 'shop="b",source="shopify"} 1' in metrics


def _param(event: dict[str, Any], name: str) -> Any:
    body = event.get("body", event)
    return next(p["value"] for p in body["params"] if p["name"] == name)


def test_a_shop_reads_its_own_variables_for_what_the_rule_set_reads(tmp_path: Path) -> None:
    """``env:`` in the shops file: each shop's lookups go to its own store on the API."""
    answers: dict[str, Any] = {
        "/stores/A-1/orders/7": {"id": 7, "total": "10.00", "email": "a@example.com"},
        "/stores/B-2/orders/7": {"id": 7, "total": "20.00", "email": "b@example.com"},
    }
    with (
        HttpStub(lambda call: _store_api(call, answers)) as api,
        running(SandboxConfig(api_key=ENV["A_KEY"])) as box_a,
        running(SandboxConfig(api_key=ENV["B_KEY"])) as box_b,
    ):
        rules = tmp_path / "enrich.yaml"
        rules.write_text(
            "name: enrich\n"
            "topic: {header: X-Topic}\n"
            "verify: {scheme: none}\n"
            "hosts: [127.0.0.1]\n"
            "lookups:\n"
            "  order:\n"
            "    url: 'http://127.0.0.1:${API_PORT}/stores/${STORE}/orders/{id}'\n"
            "    args: {id: id}\n"
            "    headers: {Authorization: 'Bearer ${TOKEN}'}\n"
            "rules:\n"
            "  - name: paid\n"
            "    topics: order\n"
            "    events:\n"
            "      - type: orderPaid\n"
            "        key: fetched('order').email\n"
            "        params: {total: fetched('order').total}\n",
            encoding="utf-8",
        )
        shops = write_shops(
            tmp_path,
            "shops:\n"
            f"  a: {{ruleset: enrich, api_key_env: A_KEY, api_url: '{box_a.url}',\n"
            "      env: {STORE: A_STORE, TOKEN: A_TOKEN}}\n"
            f"  b: {{ruleset: enrich, api_key_env: B_KEY, api_url: '{box_b.url}',\n"
            "      env: {STORE: B_STORE, TOKEN: B_TOKEN}}\n",
        )
        env = {
            **ENV,
            "API_PORT": str(api.port),
            "STORE": "unused",
            "TOKEN": "unused",
            "A_STORE": "A-1",
            "A_TOKEN": "tok-a",
            "B_STORE": "B-2",
            "B_TOKEN": "tok-b",
        }
        with (
            serving(
                Destination("http://127.0.0.1:9/unused", None),
                tmp_path / "data",
                rules=(str(rules),),
                env=env,
                shops=str(shops),
            ) as served,
            httpx.Client(trust_env=False, timeout=5) as client,
        ):
            for shop in ("a", "b"):
                posted = client.post(
                    served.hook(f"enrich/{shop}"),
                    content=b'{"id": 7}',
                    headers={"X-Topic": "order"},
                )
                assert posted.is_success, posted.text
            wait_until(lambda: settled(served.store), what="both sent")
        assert sorted((c.path, c.header("Authorization")) for c in api.calls) == [
            ("/stores/A-1/orders/7", "Bearer tok-a"),
            ("/stores/B-2/orders/7", "Bearer tok-b"),
        ]
        assert [_param(e, "total") for e in box_a.sandbox.events()] == ["10.00"]
        assert [_param(e, "total") for e in box_b.sandbox.events()] == ["20.00"]


def _store_api(call: Call, answers: dict[str, Any]) -> Reply:
    found = answers.get(call.path)
    return Reply(200, found) if found is not None else Reply(404, {"error": "no such order"})


# -- the command line ----------------------------------------------------------------------


def test_listings_and_status_filter_by_shop(
    tmp_path: Path, accounts: tuple[RunningSandbox, RunningSandbox]
) -> None:
    a, b = accounts
    shops = two_shops(tmp_path, a.url, b.url)
    data = tmp_path / "data"
    with (
        serving(
            Destination("http://127.0.0.1:9/unused", None),
            data,
            rules=(SHOPIFY_RULES,),
            env=ENV,
            shops=str(shops),
        ) as served,
        httpx.Client(trust_env=False, timeout=5) as client,
    ):
        for n, shop in enumerate(("a", "b", "b")):
            body, headers = order(500 + n, f"d-{n}", ENV[f"{shop.upper()}_SECRET"])
            assert client.post(served.hook(f"shopify/{shop}"), content=body, headers=headers)
        wait_until(lambda: settled(served.store), what="all sent")
    runner = CliRunner()
    listed = runner.invoke(main, ["webhooks", "--data", str(data), "--shop", "b"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.count("shopify/b") == 2 and "shopify/a" not in listed.output
    events = runner.invoke(main, ["events", "--data", str(data), "--shop", "a"])
    assert events.output.count("shop a orderCreated") == 1, events.output
    status = runner.invoke(main, ["status", "--data", str(data), "--shop", "b", "--json"])
    assert json.loads(status.output)["webhooks"]["processed"] == 2


def test_replay_with_the_shops_file_processes_each_shop_with_its_own_rule_set(
    tmp_path: Path, accounts: tuple[RunningSandbox, RunningSandbox]
) -> None:
    a, b = accounts
    shops = two_shops(tmp_path, a.url, b.url)
    data = tmp_path / "data"
    with (
        serving(
            Destination("http://127.0.0.1:9/unused", None),
            data,
            rules=(SHOPIFY_RULES,),
            env=ENV,
            shops=str(shops),
        ) as served,
        httpx.Client(trust_env=False, timeout=5) as client,
    ):
        for n, shop in enumerate(("a", "b")):
            body, headers = order(700 + n, f"r-{n}", ENV[f"{shop.upper()}_SECRET"])
            assert client.post(served.hook(f"shopify/{shop}"), content=body, headers=headers)
        wait_until(lambda: settled(served.store), what="sent")
    runner = CliRunner()
    args = ["replay", "--data", str(data), "--rules", SHOPIFY_RULES, "--since", "1d"]
    without = runner.invoke(main, [*args, "--dry-run"], env=ENV)
    assert "no rule set 'shopify' for shop 'a'" in without.output, without.output
    replayed = runner.invoke(main, [*args, "--shops", str(shops), "--no-send"], env=ENV)
    assert replayed.exit_code == 0, replayed.output
    assert "2 webhook(s) replayed: 0 new event(s), 0 re-queued" in replayed.output


def test_the_shops_file_with_an_unknown_rule_set_refuses_to_serve(tmp_path: Path) -> None:
    shops = write_shops(tmp_path, "shops:\n  a: {ruleset: shopfy, api_key_env: A_KEY}\n")
    result = CliRunner().invoke(
        main,
        ["serve", "--rules", SHOPIFY_RULES, "--shops", str(shops), "--data", str(tmp_path)],
        env=ENV,
    )
    assert result.exit_code == 1
    assert "error[E308]: shop 'a': undefined rule set 'shopfy'" in result.output
    assert isinstance(result.exception, SystemExit | RuleLoadError)
