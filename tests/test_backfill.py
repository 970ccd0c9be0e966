"""``hookmap backfill`` end to end: each platform's API stood in on loopback
(tests/support/shop_apis.py), the CDP by the sandbox, a real SQLite store.

What is held: every order in the window is stored and sent once, through throttling and
server errors; a run again sends nothing; an interrupted run resumes where it stopped;
``--dry-run`` writes nothing; a shop of a shops file reads with its own credentials and
sends to its own CDP account; every usage and API error is clear and shows no secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from engine.cli import main
from engine.sandbox.run import RunningSandbox, running
from engine.sandbox.settings import SandboxConfig
from engine.server.store.sqlite import DB_NAME, Store
from tests.support.shop_apis import FIRST, BigCommerceApi, ShopifyAdmin, WooCommerceRest

CDP_KEY = "backfill-test-cdp-key"
SINCE = (FIRST.date()).isoformat()  # the first order is created at 09:00 that day
ORDERS_PATH = f"/admin/api/{ShopifyAdmin.VERSION}/orders.json"
WOO_PATH = "/wp-json/wc/v3/orders"


@pytest.fixture
def box() -> Iterator[RunningSandbox]:
    with running(SandboxConfig(api_key=CDP_KEY)) as sandbox:
        yield sandbox


@pytest.fixture
def shopify() -> Iterator[ShopifyAdmin]:
    with ShopifyAdmin(7) as api:
        yield api


@pytest.fixture
def woocommerce() -> Iterator[WooCommerceRest]:
    with WooCommerceRest(7) as api:
        yield api


def cdp_env(box: RunningSandbox) -> dict[str, str]:
    return {"HOOKMAP_API_KEY": CDP_KEY, "HOOKMAP_API_URL": box.url}


def shopify_env(api: ShopifyAdmin, box: RunningSandbox) -> dict[str, str]:
    return {"SHOPIFY_SHOP": api.url, "SHOPIFY_ADMIN_TOKEN": api.token, **cdp_env(box)}


def woo_env(api: WooCommerceRest, box: RunningSandbox) -> dict[str, str]:
    return {
        "WOOCOMMERCE_URL": api.url,
        "WOOCOMMERCE_CONSUMER_KEY": "ck_test",
        "WOOCOMMERCE_CONSUMER_SECRET": "cs_test",
        **cdp_env(box),
    }


def backfill(rules: str, data: Path, env: Mapping[str, str], *extra: str) -> Result:
    args = ["backfill", "--rules", rules, "--data", str(data), *extra]
    if "--since" not in extra:
        args += ["--since", SINCE]
    args += ["--api-rate", "100"]  # the stand-ins have no plan to keep to (unit tests pace)
    return CliRunner().invoke(main, args, env=dict(env))


def sent_orders(box: RunningSandbox) -> list[str]:
    """The externalOrderId of every event the CDP accepted, in order."""
    return [
        next(p["value"] for p in e["body"]["params"] if p["name"] == "externalOrderId")
        for e in box.sandbox.events()
    ]


def shopify_ids(*indexes: int) -> list[str]:
    return [str(ShopifyAdmin.order(i)["id"]) for i in indexes]


# -- Shopify -----------------------------------------------------------------------------


def test_shopify_orders_are_stored_and_sent_once_through_a_429_and_a_5xx(
    shopify: ShopifyAdmin, box: RunningSandbox, tmp_path: Path
) -> None:
    since = FIRST.replace(hour=12).isoformat()  # the first order (09:00) is before it
    shopify.once[2] = (429, {"Retry-After": "0.2"})
    shopify.once[3] = (502, {})
    env = shopify_env(shopify, box)
    result = backfill("rules/shopify", tmp_path, env, "--since", since, "--page-size", "2")
    assert result.exit_code == 0, result.output
    assert sorted(sent_orders(box)) == shopify_ids(1, 2, 3, 4, 5, 6)
    assert {e["body"]["eventTypeKey"] for e in box.sandbox.events()} == {"orderUpdated"}
    listing = shopify.requests(ORDERS_PATH)
    assert [status for _, status in listing] == [200, 429, 200, 502, 200]
    first, then = listing[0][0], listing[2][0]
    assert (first["since_id"], first["status"], first["created_at_min"]) == ("0", "any", since)
    assert set(then) == {"limit", "page_info"}  # the Link URL, as Shopify gives it
    assert "3 page(s), 6 order(s): 6 stored, 0 stored before; 6 new event(s)" in result.stdout
    assert "waiting 0.2 s: HTTP 429" in result.stderr
    assert shopify.token not in result.output
    with Store(tmp_path / DB_NAME) as store:
        rows = store.list_webhooks(limit=10)
    assert {(w.state, w.topic, w.shop) for w in rows} == {("processed", "orders/updated", "")}
    assert sorted(w.delivery_id or "" for w in rows) == sorted(
        f"backfill:shopify:{i}:orders/updated" for i in shopify_ids(1, 2, 3, 4, 5, 6)
    )


def test_a_second_run_sends_nothing_and_restart_stores_nothing_again(
    shopify: ShopifyAdmin, box: RunningSandbox, tmp_path: Path
) -> None:
    env = shopify_env(shopify, box)
    assert backfill("rules/shopify", tmp_path, env, "--page-size", "3").exit_code == 0
    assert len(box.sandbox.events()) == 7
    again = backfill("rules/shopify", tmp_path, env, "--page-size", "3")
    assert again.exit_code == 0, again.output
    assert "resumed at since_id " + shopify_ids(6)[0] in again.stdout
    assert shopify.requests(ORDERS_PATH)[-1][0]["since_id"] == shopify_ids(6)[0]
    restart = backfill("rules/shopify", tmp_path, env, "--page-size", "3", "--restart", "--json")
    assert restart.exit_code == 0, restart.output
    summary = json.loads(restart.stdout)
    assert (summary["orders"], summary["stored"], summary["duplicates"]) == (7, 0, 7)
    assert (summary["events"], summary["sent"], summary["finished"]) == (0, {}, True)
    assert len(box.sandbox.events()) == 7


def test_an_interrupted_shopify_run_resumes_after_the_last_stored_id(
    shopify: ShopifyAdmin, box: RunningSandbox, tmp_path: Path
) -> None:
    env = shopify_env(shopify, box)
    shopify.broken_from = 2
    stopped = backfill("rules/shopify", tmp_path, env, "--page-size", "3", "--retries", "1")
    assert stopped.exit_code == 1
    assert "stopped: the cursor is at since_id " + shopify_ids(2)[0] in stopped.stdout
    assert "HTTP 500" in stopped.output and "(after 2 tries)" in stopped.output
    assert sorted(sent_orders(box)) == shopify_ids(0, 1, 2)
    shopify.broken_from = None
    done = len(shopify.requests(ORDERS_PATH))
    resumed = backfill("rules/shopify", tmp_path, env, "--page-size", "3")
    assert resumed.exit_code == 0, resumed.output
    first, *_ = shopify.requests(ORDERS_PATH)[done:]
    assert first[0]["since_id"] == shopify_ids(2)[0]  # after the last id stored: no page_info
    assert sorted(sent_orders(box)) == shopify_ids(*range(7))


def test_limit_stores_that_many_new_orders_and_the_next_run_goes_on(
    shopify: ShopifyAdmin, box: RunningSandbox, tmp_path: Path
) -> None:
    env = shopify_env(shopify, box)
    for expected in (2, 4):
        result = backfill("rules/shopify", tmp_path, env, "--page-size", "3", "--limit", "2")
        assert result.exit_code == 0, result.output
        assert "stopped at --limit" in result.stdout
        assert len(sent_orders(box)) == expected
    assert backfill("rules/shopify", tmp_path, env, "--page-size", "3").exit_code == 0
    assert sorted(sent_orders(box)) == shopify_ids(*range(7))


def test_no_send_queues_the_events_for_the_server(
    shopify: ShopifyAdmin, box: RunningSandbox, tmp_path: Path
) -> None:
    env = {k: v for k, v in shopify_env(shopify, box).items() if k != "HOOKMAP_API_KEY"}
    result = backfill("rules/shopify", tmp_path, env, "--no-send")
    assert result.exit_code == 0, result.output
    assert "not sent (--no-send)" in result.stdout
    assert box.sandbox.events() == []
    with Store(tmp_path / DB_NAME) as store:
        assert store.counts()["events"]["pending"] == 7
    refused = backfill("rules/shopify", tmp_path, env, "--restart")
    assert refused.exit_code == 2 and "HOOKMAP_API_KEY" in refused.output


# -- WooCommerce -------------------------------------------------------------------------


def test_an_interrupted_woocommerce_run_resumes_one_page_back_and_sends_each_once(
    woocommerce: WooCommerceRest, box: RunningSandbox, tmp_path: Path
) -> None:
    env = woo_env(woocommerce, box)
    args = ("--page-size", "2", "--retries", "1")
    woocommerce.broken_from = 3
    stopped = backfill("rules/woocommerce.yaml", tmp_path, env, *args)
    assert stopped.exit_code == 1
    assert "stopped: the cursor is at page 3" in stopped.stdout
    assert f"GET {WOO_PATH}?" in stopped.output and "page=3: HTTP 500" in stopped.output
    assert sorted(sent_orders(box)) == ["5000", "5001", "5002", "5003"]
    woocommerce.broken_from = None
    before = len(woocommerce.calls)
    resumed = backfill("rules/woocommerce.yaml", tmp_path, env, *args)
    assert resumed.exit_code == 0, resumed.output
    pages = [q["page"] for q, _ in woocommerce.requests(WOO_PATH)[before:]]
    assert pages == ["2", "3", "4"]  # page 2 again: an order deleted meanwhile moves the rest
    assert "3 page(s), 5 order(s): 3 stored, 2 stored before" in resumed.stdout
    assert sorted(sent_orders(box)) == [str(5000 + i) for i in range(7)]
    statuses = {
        next(p["value"] for p in e["body"]["params"] if p["name"] == "status")
        for e in box.sandbox.events()
    }
    assert statuses == {"IN_PROGRESS", "DELIVERED"}  # orderCreated with the current status
    assert all(e["body"]["eventTypeKey"] == "orderCreated" for e in box.sandbox.events())


def test_woocommerce_asks_in_utc_by_id_with_basic_auth(
    woocommerce: WooCommerceRest, box: RunningSandbox, tmp_path: Path
) -> None:
    since = "2026-10-03T09:00:00+02:00"  # 07:00 UTC: the order of 09:00 UTC that day is in
    result = backfill(
        "rules/woocommerce.yaml", tmp_path, woo_env(woocommerce, box), "--since", since
    )
    assert result.exit_code == 0, result.output
    (query, _), *_ = woocommerce.requests(WOO_PATH)
    assert (query["after"], query["dates_are_gmt"], query["orderby"], query["order"]) == (
        "2026-10-03T07:00:00",
        "true",
        "id",
        "asc",
    )
    assert sorted(sent_orders(box)) == [str(5000 + i) for i in range(2, 7)]
    assert "X-WP-Total" not in result.output and "cs_test" not in result.output


# -- BigCommerce -------------------------------------------------------------------------


def test_bigcommerce_orders_come_in_through_the_rule_sets_lookups(
    box: RunningSandbox, tmp_path: Path
) -> None:
    with BigCommerceApi() as api:
        env = {
            "BIGCOMMERCE_STORE_HASH": api.store,
            "BIGCOMMERCE_ACCESS_TOKEN": api.token,
            "BIGCOMMERCE_API_BASE": api.url,
            "BIGCOMMERCE_API_HOST": "127.0.0.1",
            **cdp_env(box),
        }
        result = backfill("rules/bigcommerce", tmp_path, env, "--since", "2026-01-01")
        assert result.exit_code == 0, result.output
        paths = [c.path for c in api.calls]
    prefix = f"/stores/{api.store}/v2/orders"
    assert paths[:2] == [f"{prefix}/count", prefix]
    assert {f"{prefix}/{n}" for n in (250, 251, 252)} <= set(paths)  # the lookups
    assert sorted(sent_orders(box)) == ["250", "251", "252"]
    assert {e["body"]["eventTypeKey"] for e in box.sandbox.events()} == {"orderUpdated"}
    assert len(box.sandbox.contacts()) >= 1  # the rule set's contact: made them first


# -- dry run -----------------------------------------------------------------------------


def test_dry_run_fetches_and_shows_what_would_be_sent_but_writes_nothing(
    shopify: ShopifyAdmin, box: RunningSandbox, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = shopify_env(shopify, box)
    result = backfill("rules/shopify", data, env, "--dry-run", "--page-size", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("dry run (nothing stored, sent or saved): backfill shopify")
    assert "3 page(s), 7 order(s) fetched: 7 event(s) to store, 7 to send" in result.stdout
    assert result.stdout.count("  SEND order ") == 3
    assert not data.exists() and box.sandbox.events() == []
    doc = backfill("rules/shopify", data, env, "--dry-run", "--json", "--show", "1").stdout
    found = json.loads(doc)
    assert (found["dry_run"], found["orders"], found["events"], found["total"]) == (True, 7, 7, 7)
    (event,) = found["first_events"]
    assert event["order_id"] == shopify_ids(0)[0] and event["valid"] is True
    assert event["body"]["eventTypeKey"] == "orderUpdated"
    assert not data.exists()


def test_dry_run_after_a_run_starts_where_the_run_would(
    shopify: ShopifyAdmin, box: RunningSandbox, tmp_path: Path
) -> None:
    env = shopify_env(shopify, box)
    assert (
        backfill("rules/shopify", tmp_path, env, "--limit", "3", "--page-size", "3").exit_code == 0
    )
    cursors = sorted((tmp_path / "backfill").glob("*.json"))
    before = [p.read_bytes() for p in cursors]
    result = backfill("rules/shopify", tmp_path, env, "--dry-run", "--page-size", "3")
    assert "a run would resume at since_id " + shopify_ids(2)[0] in result.stdout
    assert "2 page(s), 4 order(s) fetched" in result.stdout
    assert [p.read_bytes() for p in cursors] == before


# -- shops -------------------------------------------------------------------------------


def test_a_shop_reads_with_its_own_credentials_and_sends_to_its_own_account(
    shopify: ShopifyAdmin, tmp_path: Path
) -> None:
    shops = tmp_path / "shops.yaml"
    with (
        running(SandboxConfig(api_key="acme-cdp-key")) as acme_cdp,
        running(SandboxConfig(api_key="globex-cdp-key")) as globex_cdp,
    ):
        shops.write_text(
            "shops:\n"
            "  acme:\n"
            "    ruleset: shopify\n"
            "    api_key_env: ACME_CDP_KEY\n"
            f"    api_url: {acme_cdp.url}\n"
            "    env: {SHOPIFY_SHOP: ACME_SHOPIFY_SHOP, SHOPIFY_ADMIN_TOKEN: ACME_SHOPIFY_TOKEN}\n"
            "  globex:\n"
            "    ruleset: shopify\n"
            "    api_key_env: GLOBEX_CDP_KEY\n"
            f"    api_url: {globex_cdp.url}\n",
            encoding="utf-8",
        )
        env = {
            "ACME_CDP_KEY": "acme-cdp-key",
            "ACME_SHOPIFY_SHOP": shopify.url,
            "ACME_SHOPIFY_TOKEN": shopify.token,
            # the shared variables hold another shop's: a shop's own must win
            "SHOPIFY_SHOP": "https://other.myshopify.com",
            "SHOPIFY_ADMIN_TOKEN": "shpat_another_shops_token",
        }
        args = ("--shops", str(shops), "--shop", "acme")
        result = backfill("rules/shopify", tmp_path, env, *args)
        assert result.exit_code == 0, result.output
        assert {c.header("X-Shopify-Access-Token") for c in shopify.calls} == {shopify.token}
        assert len(acme_cdp.sandbox.events()) == 7 and globex_cdp.sandbox.events() == []
        with Store(tmp_path / DB_NAME) as store:
            assert {w.shop for w in store.list_webhooks(limit=10)} == {"acme"}
        refused = backfill(
            "rules/shopify",
            tmp_path,
            {**env, "GLOBEX_CDP_KEY": "k"},
            "--shops",
            str(shops),
            "--shop",
            "globex",
        )
    assert refused.exit_code == 2
    assert "shop 'globex': its env: in" in refused.output
    assert "SHOPIFY_SHOP, SHOPIFY_ADMIN_TOKEN" in refused.output
    assert "shpat_another_shops_token" not in refused.output


# -- errors ------------------------------------------------------------------------------


def test_missing_or_refused_credentials_are_named_and_never_printed(
    shopify: ShopifyAdmin, box: RunningSandbox, tmp_path: Path
) -> None:
    env = shopify_env(shopify, box)
    unset = backfill("rules/shopify", tmp_path, {**env, "SHOPIFY_ADMIN_TOKEN": ""})
    assert unset.exit_code == 2
    assert "shopify: not set: SHOPIFY_ADMIN_TOKEN (an Admin API access token" in unset.output
    wrong = backfill("rules/shopify", tmp_path, {**env, "SHOPIFY_ADMIN_TOKEN": "shpat_wrong_9"})
    assert wrong.exit_code == 1
    assert "HTTP 401, the credentials were refused" in wrong.output
    assert "shpat_wrong_9" not in wrong.output and box.sandbox.events() == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--since", "30d"), "the cursor is kept per window, so not a duration"),
        (("--since", "2026-10-05", "--until", "2026-10-01"), "--until must be later than --since"),
        (("--topic", "orders/delete"), "topic 'orders/delete': its rules ignore it"),
        (("--topic", "refunds/create"), "topic 'refunds/create': no rule matches it"),
        (("--source", "shopfy"), "did you mean 'shopify'?"),
        (("--shop", "acme"), "--shop needs the shops file"),
    ],
)
def test_usage_errors_say_what_to_do(
    extra: tuple[str, ...], message: str, box: RunningSandbox, tmp_path: Path
) -> None:
    env = {"SHOPIFY_SHOP": "acme.myshopify.com", "SHOPIFY_ADMIN_TOKEN": "t", **cdp_env(box)}
    args = extra if "--since" in extra else ("--since", SINCE, *extra)
    result = backfill("rules/shopify", tmp_path, env, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_plain_http_is_refused_but_for_loopback(box: RunningSandbox, tmp_path: Path) -> None:
    env = {"SHOPIFY_SHOP": "http://acme.example", "SHOPIFY_ADMIN_TOKEN": "t", **cdp_env(box)}
    result = backfill("rules/shopify", tmp_path, env)
    assert result.exit_code == 2
    assert "the API is read over HTTPS only" in result.output


def test_a_rule_set_not_named_after_a_platform_needs_platform(
    shopify: ShopifyAdmin, box: RunningSandbox, tmp_path: Path
) -> None:
    rules = tmp_path / "myshop"
    rules.mkdir()
    for name in ("ruleset.yaml", "orders.yaml"):
        text = (Path("rules/shopify") / name).read_text(encoding="utf-8")
        (rules / name).write_text(text.replace("name: shopify", "name: myshop"), encoding="utf-8")
    env = shopify_env(shopify, box)
    refused = backfill(str(rules), tmp_path / "data", env)
    assert refused.exit_code == 2 and "say which API to read with --platform" in refused.output
    result = backfill(str(rules), tmp_path / "data", env, "--platform", "shopify")
    assert result.exit_code == 0, result.output
    assert len(box.sandbox.events()) == 7
