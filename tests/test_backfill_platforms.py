"""``hookmap backfill`` for the platforms beyond Shopify, WooCommerce and BigCommerce, end
to end: each API stood in on loopback (tests/support/shop_apis.py), the CDP by the
sandbox, a real SQLite store.

For each: every order of the window is stored and sent once, through a 429 and a 5xx; a
run again sends nothing; an interrupted run resumes; ``--dry-run`` writes nothing; an
API error names the request and shows no credential.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from engine.cli import main
from engine.sandbox.run import RunningSandbox, running
from engine.sandbox.settings import SandboxConfig
from engine.server.store.sqlite import DB_NAME, Store
from tests.support.shop_apis import (
    FIRST,
    EcwidApi,
    MagentoRest,
    PrestaShopWebservice,
    StripeApi,
)

CDP_KEY = "backfill-platforms-cdp-key"
SINCE = FIRST.date().isoformat()


@pytest.fixture
def box() -> Iterator[RunningSandbox]:
    with running(SandboxConfig(api_key=CDP_KEY)) as sandbox:
        yield sandbox


def backfill(rules: str, data: Path, env: Mapping[str, str], *extra: str) -> Result:
    args = ["backfill", "--rules", rules, "--data", str(data), *extra]
    if "--since" not in extra:
        args += ["--since", SINCE]
    args += ["--api-rate", "100"]  # the stand-ins have no plan to keep to
    env = {"HOOKMAP_API_KEY": CDP_KEY, **env}
    return CliRunner().invoke(main, args, env=dict(env))


def cdp(box: RunningSandbox) -> dict[str, str]:
    return {"HOOKMAP_API_URL": box.url}


def sent(box: RunningSandbox, param: str = "externalOrderId") -> list[str]:
    """``param`` of every event the CDP accepted, in order."""
    return [
        next(p["value"] for p in e["body"]["params"] if p["name"] == param)
        for e in box.sandbox.events()
    ]


def stored(data: Path) -> list[tuple[str, str | None, str]]:
    with Store(data / DB_NAME) as store:
        return sorted(
            (w.delivery_id or "", w.topic, w.state) for w in store.list_webhooks(limit=100)
        )


# -- Ecwid -------------------------------------------------------------------------------


@pytest.fixture
def ecwid() -> Iterator[EcwidApi]:
    with EcwidApi(7) as api:
        yield api


def ecwid_env(api: EcwidApi, box: RunningSandbox) -> dict[str, str]:
    return {
        "ECWID_STORE_ID": str(api.store),
        "ECWID_ACCESS_TOKEN": api.token,
        "ECWID_API_BASE": api.url,
        "ECWID_API_HOST": "127.0.0.1",
        **cdp(box),
    }


def ecwid_ids(*indexes: int) -> list[str]:
    return [f"BF{i:03d}" for i in indexes]


def test_ecwid_orders_come_in_once_through_the_rule_sets_lookups(
    ecwid: EcwidApi, box: RunningSandbox, tmp_path: Path
) -> None:
    listing = f"/api/v3/{ecwid.store}/orders"
    ecwid.once[2] = (429, {"Retry-After": "0.2"})
    ecwid.once[3] = (503, {})
    env = ecwid_env(ecwid, box)
    result = backfill("rules/ecwid", tmp_path, env, "--page-size", "3")
    assert result.exit_code == 0, result.output
    assert "3 page(s), 7 order(s): 7 stored, 0 stored before; 7 new event(s)" in result.stdout
    assert "waiting 0.2 s: HTTP 429" in result.stderr
    assert sorted(sent(box)) == ecwid_ids(*range(7))
    assert {e["body"]["eventTypeKey"] for e in box.sandbox.events()} == {"orderUpdated"}
    assert set(sent(box, "status")) == {"IN_PROGRESS", "DELIVERED"}  # the current statuses
    pages = [(q["offset"], status) for q, status in ecwid.requests(listing)]
    assert pages == [("0", 200), ("3", 429), ("3", 200), ("6", 503), ("6", 200)]
    (query, _), *_ = ecwid.requests(listing)
    since = datetime.datetime.fromisoformat(SINCE).astimezone()  # midnight here
    assert query["createdFrom"] == str(int(since.timestamp()))
    looked_up = {c.path for c in ecwid.calls} - {listing}
    assert {f"{listing}/{i}" for i in ecwid_ids(*range(7))} <= looked_up
    assert stored(tmp_path) == [
        (f"backfill:ecwid:{i}:order.updated", "order.updated", "processed")
        for i in ecwid_ids(*range(7))
    ]
    assert ecwid.token not in result.output
    again = backfill("rules/ecwid", tmp_path, env, "--page-size", "3", "--restart", "--json")
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert (summary["orders"], summary["stored"], summary["events"]) == (7, 0, 0)
    assert len(box.sandbox.events()) == 7


def test_an_interrupted_ecwid_run_resumes_one_page_back(
    ecwid: EcwidApi, box: RunningSandbox, tmp_path: Path
) -> None:
    listing = f"/api/v3/{ecwid.store}/orders"
    env = ecwid_env(ecwid, box)
    args = ("--page-size", "2", "--retries", "1")
    ecwid.broken_from = 3
    stopped = backfill("rules/ecwid", tmp_path, env, *args)
    assert stopped.exit_code == 1
    assert "stopped: the cursor is at offset 4" in stopped.stdout
    assert f"ecwid API: GET {listing}?" in stopped.output and "offset=4" in stopped.output
    assert "HTTP 500" in stopped.output and "(after 2 tries)" in stopped.output
    assert sorted(sent(box)) == ecwid_ids(0, 1, 2, 3)
    ecwid.broken_from = None
    before = len(ecwid.requests(listing))
    resumed = backfill("rules/ecwid", tmp_path, env, *args)
    assert resumed.exit_code == 0, resumed.output
    assert [q["offset"] for q, _ in ecwid.requests(listing)[before:]] == ["2", "4", "6"]
    assert "3 page(s), 5 order(s): 3 stored, 2 stored before" in resumed.stdout
    assert sorted(sent(box)) == ecwid_ids(*range(7))


def test_an_ecwid_dry_run_writes_nothing_and_a_refused_token_is_located(
    ecwid: EcwidApi, box: RunningSandbox, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = ecwid_env(ecwid, box)
    dry = backfill("rules/ecwid", data, env, "--dry-run", "--json", "--show", "1")
    assert dry.exit_code == 0, dry.output
    found = json.loads(dry.stdout)
    assert (found["orders"], found["events"], found["total"], found["invalid"]) == (7, 7, 7, 0)
    (event,) = found["first_events"]
    assert (event["order_id"], event["event_type"]) == ("BF000", "orderUpdated")
    assert not data.exists() and box.sandbox.events() == []
    wrong = backfill("rules/ecwid", data, {**env, "ECWID_ACCESS_TOKEN": "secret_wrong_77"})
    assert wrong.exit_code == 1
    assert f"ecwid API: GET /api/v3/{ecwid.store}/orders?" in wrong.output
    assert "HTTP 403, the credentials lack a permission" in wrong.output
    assert "secret_wrong_77" not in wrong.output
    unset = backfill("rules/ecwid", data, {**env, "ECWID_STORE_ID": ""})
    assert unset.exit_code == 2 and "ecwid: not set: ECWID_STORE_ID" in unset.output


# -- PrestaShop --------------------------------------------------------------------------


@pytest.fixture
def prestashop() -> Iterator[PrestaShopWebservice]:
    with PrestaShopWebservice(7) as api:
        yield api


def prestashop_env(api: PrestaShopWebservice, box: RunningSandbox) -> dict[str, str]:
    return {
        "PRESTASHOP_BASE_URL": api.url,
        "PRESTASHOP_HOST": "127.0.0.1",
        "PRESTASHOP_WS_AUTH": api.auth,
        "PRESTASHOP_TIMEZONE": "Europe/Paris",
        **cdp(box),
    }


def prestashop_ids(*indexes: int) -> list[str]:
    return [str(100 + i) for i in indexes]


def test_prestashop_orders_come_in_once_as_order_add_through_the_lookups(
    prestashop: PrestaShopWebservice, box: RunningSandbox, tmp_path: Path
) -> None:
    prestashop.once[2] = (429, {"Retry-After": "0.2"})
    prestashop.once[3] = (503, {})
    env = prestashop_env(prestashop, box)
    since, until = "2026-10-01T00:00:00+02:00", "2026-10-10T00:00:00+02:00"
    args = ("--since", since, "--until", until, "--page-size", "3")
    result = backfill("rules/prestashop", tmp_path, env, *args)
    assert result.exit_code == 0, result.output
    assert "3 page(s), 7 order(s): 7 stored, 0 stored before; 7 new event(s)" in result.stdout
    assert "waiting 0.2 s: HTTP 429" in result.stderr
    assert sorted(sent(box)) == prestashop_ids(*range(7))
    assert {e["body"]["eventTypeKey"] for e in box.sandbox.events()} == {"orderCreated"}
    assert set(sent(box, "status")) == {"IN_PROGRESS", "DELIVERED", "CANCELLED"}
    assert set(sent(box, "currency")) == {"EUR"}  # the currency lookup
    listing = prestashop.requests("/api/orders")
    assert [(q["filter[id]"], status) for q, status in listing] == [
        ("[1,4294967295]", 200),
        ("[103,4294967295]", 429),
        ("[103,4294967295]", 200),
        ("[106,4294967295]", 503),
        ("[106,4294967295]", 200),
    ]
    # the shop's local time, both ends inclusive
    assert listing[0][0]["filter[date_add]"] == "[2026-10-01 00:00:00,2026-10-09 23:59:59]"
    assert {f"/api/orders/{i}" for i in prestashop_ids(*range(7))} <= {
        c.path for c in prestashop.calls
    }
    assert stored(tmp_path) == [
        (f"backfill:prestashop:{i}:Order.add", "Order.add", "processed")
        for i in prestashop_ids(*range(7))
    ]
    with Store(tmp_path / DB_NAME) as store:
        detail = store.get_webhook(store.list_webhooks(limit=1)[0].id)
    assert detail is not None
    body = json.loads(detail.webhook.body)
    assert (body["action"], body["entity"]) == ("add", "Order")
    assert "associations" not in body["data"]  # the lines come from the lookup, as live
    again = backfill("rules/prestashop", tmp_path, env, *args)
    assert again.exit_code == 0, again.output
    assert "resumed at min_id 107" in again.stdout
    assert prestashop.requests("/api/orders")[-1][0]["filter[id]"] == "[107,4294967295]"
    assert len(box.sandbox.events()) == 7


def test_an_interrupted_prestashop_run_resumes_after_the_last_stored_id(
    prestashop: PrestaShopWebservice, box: RunningSandbox, tmp_path: Path
) -> None:
    env = prestashop_env(prestashop, box)
    args = ("--page-size", "3", "--retries", "1")
    prestashop.broken_from = 2
    stopped = backfill("rules/prestashop", tmp_path, env, *args)
    assert stopped.exit_code == 1
    assert "stopped: the cursor is at min_id 103" in stopped.stdout
    assert "prestashop API: GET /api/orders?" in stopped.output and "HTTP 500" in stopped.output
    assert sorted(sent(box)) == prestashop_ids(0, 1, 2)
    prestashop.broken_from = None
    before = len(prestashop.requests("/api/orders"))
    resumed = backfill("rules/prestashop", tmp_path, env, *args)
    assert resumed.exit_code == 0, resumed.output
    assert [q["filter[id]"] for q, _ in prestashop.requests("/api/orders")[before:]] == [
        "[103,4294967295]",
        "[106,4294967295]",
    ]
    assert sorted(sent(box)) == prestashop_ids(*range(7))


def test_a_prestashop_dry_run_writes_nothing_and_a_refused_key_is_located(
    prestashop: PrestaShopWebservice, box: RunningSandbox, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = prestashop_env(prestashop, box)
    dry = backfill("rules/prestashop", data, env, "--dry-run", "--json", "--show", "1")
    assert dry.exit_code == 0, dry.output
    found = json.loads(dry.stdout)
    assert (found["orders"], found["events"], found["invalid"], found["failed"]) == (7, 7, 0, 0)
    (event,) = found["first_events"]
    assert (event["order_id"], event["event_type"]) == ("100", "orderCreated")
    assert not data.exists() and box.sandbox.events() == []
    wrong = backfill("rules/prestashop", data, {**env, "PRESTASHOP_WS_AUTH": "d3Jvbmcta2V5Og=="})
    assert wrong.exit_code == 1
    assert "prestashop API: GET /api/orders?display=full" in wrong.output
    assert "HTTP 401, the credentials were refused" in wrong.output
    assert "d3Jvbmcta2V5Og==" not in wrong.output
    zone = backfill("rules/prestashop", data, {**env, "PRESTASHOP_TIMEZONE": "Mars/Olympus"})
    assert (
        zone.exit_code == 2 and "PRESTASHOP_TIMEZONE: 'Mars/Olympus' is no time zone" in zone.output
    )


# -- Magento -----------------------------------------------------------------------------

MAGENTO_PATH = "/rest/V1/orders"
TOPIC = "com.adobe.commerce.observer.sales_order_save_commit_after"


@pytest.fixture
def magento() -> Iterator[MagentoRest]:
    with MagentoRest(7) as api:
        yield api


def magento_env(api: MagentoRest, box: RunningSandbox) -> dict[str, str]:
    return {"MAGENTO_BASE_URL": api.url, "MAGENTO_ACCESS_TOKEN": api.token, **cdp(box)}


def magento_ids(*indexes: int) -> list[str]:
    return [f"{100001500 + i:09d}" for i in indexes]


def criteria(query: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """The (field, condition, value) of each filter group of a searchCriteria query."""
    out, n = [], 0
    while (at := f"searchCriteria[filter_groups][{n}][filters][0]") + "[field]" in query:
        out.append((query[at + "[field]"], query[at + "[condition_type]"], query[at + "[value]"]))
        n += 1
    return out


def test_magento_orders_come_in_once_as_order_saves_that_change_nothing(
    magento: MagentoRest, box: RunningSandbox, tmp_path: Path
) -> None:
    magento.once[2] = (429, {"Retry-After": "0.2"})
    magento.once[3] = (503, {})
    env = magento_env(magento, box)
    args = ("--since", "2026-10-01T00:00:00+00:00", "--until", "2026-11-01T00:00:00+01:00")
    result = backfill("rules/magento/io-events", tmp_path, env, *args, "--page-size", "3")
    assert result.exit_code == 0, result.output
    assert "3 page(s), 7 order(s): 7 stored, 0 stored before; 7 new event(s)" in result.stdout
    assert "waiting 0.2 s: HTTP 429" in result.stderr
    assert sorted(sent(box)) == magento_ids(*range(7))
    # orderUpdated with the state's status, whatever the state: the CDP creates the order
    assert {e["body"]["eventTypeKey"] for e in box.sandbox.events()} == {"orderUpdated"}
    assert set(sent(box, "status")) == {"IN_PROGRESS", "DELIVERED", "CANCELLED"}
    assert "Portland" in sent(box, "deliveryAddress")[0]  # from the shipping assignment
    listing = magento.requests(MAGENTO_PATH)
    count, first, *_ = listing
    assert criteria(count[0]) == [
        ("created_at", "gteq", "2026-10-01 00:00:00"),
        ("created_at", "lt", "2026-10-31 23:00:00"),  # UTC
    ]
    assert criteria(first[0])[2] == ("entity_id", "gteq", "1")
    assert [(criteria(q)[2][2], q["searchCriteria[currentPage]"], s) for q, s in listing[1:]] == [
        ("1", "1", 200),
        ("1503", "1", 429),
        ("1503", "1", 200),
        ("1506", "1", 503),
        ("1506", "1", 200),
    ]
    assert "magento-integration-token" not in result.output
    assert stored(tmp_path) == [
        (f"backfill:magento:{1500 + i}:{TOPIC}", TOPIC, "processed") for i in range(7)
    ]
    again = backfill("rules/magento/io-events", tmp_path, env, *args, "--page-size", "3")
    assert again.exit_code == 0, again.output
    assert "resumed at min_id 1507" in again.stdout
    assert len(box.sandbox.events()) == 7


def test_an_interrupted_magento_run_resumes_after_the_last_stored_id(
    magento: MagentoRest, box: RunningSandbox, tmp_path: Path
) -> None:
    env = magento_env(magento, box)
    args = ("--page-size", "3", "--retries", "1")
    magento.broken_from = 2
    stopped = backfill("rules/magento/io-events", tmp_path, env, *args)
    assert stopped.exit_code == 1
    assert "stopped: the cursor is at min_id 1503" in stopped.stdout
    assert f"magento API: GET {MAGENTO_PATH}?searchCriteria" in stopped.output
    assert "HTTP 500" in stopped.output
    assert sorted(sent(box)) == magento_ids(0, 1, 2)
    magento.broken_from = None
    before = len(magento.requests(MAGENTO_PATH))
    resumed = backfill("rules/magento/io-events", tmp_path, env, *args)
    assert resumed.exit_code == 0, resumed.output
    later = [criteria(q) for q, _ in magento.requests(MAGENTO_PATH)[before:]]
    assert [c[-1][2] for c in later[1:]] == ["1503", "1506"]  # after the count
    assert sorted(sent(box)) == magento_ids(*range(7))


def test_magento_commerce_webhooks_rule_set_reads_the_same_orders(
    magento: MagentoRest, box: RunningSandbox, tmp_path: Path
) -> None:
    """The rule set magento-webhooks is Magento's too, and its topic is the Commerce
    Webhooks event name: the same orders become the same events."""
    env = magento_env(magento, box)
    data = tmp_path / "data"
    dry = backfill("rules/magento/webhooks", data, env, "--dry-run", "--json", "--show", "1")
    assert dry.exit_code == 0, dry.output
    found = json.loads(dry.stdout)
    assert (found["platform"], found["topic"]) == ("magento", "sales_order_save_commit_after")
    assert (found["orders"], found["events"], found["invalid"], found["total"]) == (7, 7, 0, 7)
    (event,) = found["first_events"]
    assert event["event_type"] == "orderUpdated"
    assert not data.exists() and box.sandbox.events() == []
    result = backfill("rules/magento/webhooks", data, env)
    assert result.exit_code == 0, result.output
    assert sorted(sent(box)) == magento_ids(*range(7))
    wrong = backfill(
        "rules/magento/io-events", data, {**env, "MAGENTO_ACCESS_TOKEN": "wrong-tok-3"}
    )
    assert wrong.exit_code == 1 and "HTTP 401, the credentials were refused" in wrong.output
    assert "wrong-tok-3" not in wrong.output


# -- Stripe ------------------------------------------------------------------------------

SESSIONS = "/v1/checkout/sessions"


@pytest.fixture
def stripe() -> Iterator[StripeApi]:
    with StripeApi(7) as api:
        yield api


def stripe_env(api: StripeApi, box: RunningSandbox) -> dict[str, str]:
    return {
        "STRIPE_SECRET_KEY": api.key,
        "STRIPE_API_BASE": api.url,
        "STRIPE_API_HOST": "127.0.0.1",
        **cdp(box),
    }


def session_ids(*indexes: int) -> list[str]:
    return [f"cs_test_bf{i:03d}" for i in indexes]


def test_stripe_sessions_come_in_once_and_a_run_again_reads_only_newer_ones(
    stripe: StripeApi, box: RunningSandbox, tmp_path: Path
) -> None:
    stripe.once[2] = (429, {})
    stripe.once[3] = (503, {})
    env = stripe_env(stripe, box)
    result = backfill("rules/stripe", tmp_path, env, "--page-size", "3")
    assert result.exit_code == 0, result.output
    assert "3 page(s), 7 order(s): 7 stored, 0 stored before; 7 new event(s)" in result.stdout
    assert sorted(sent(box)) == session_ids(*range(7))
    assert {e["body"]["eventTypeKey"] for e in box.sandbox.events()} == {"orderCreated"}
    assert set(sent(box, "status")) == {"IN_PROGRESS", "INITIALIZED"}  # paid, unpaid
    listing = stripe.requests(SESSIONS)
    assert [(q.get("starting_after"), s) for q, s in listing] == [
        (None, 200),
        ("cs_test_bf004", 429),
        ("cs_test_bf004", 200),
        ("cs_test_bf001", 503),
        ("cs_test_bf001", 200),
    ]
    assert listing[0][0]["status"] == "complete"
    assert {f"{SESSIONS}/{i}/line_items" for i in session_ids(*range(7))} <= {
        c.path for c in stripe.calls
    }
    assert stored(tmp_path) == [
        (
            f"backfill:stripe:{i}:checkout.session.completed",
            "checkout.session.completed",
            "processed",
        )
        for i in session_ids(*range(7))
    ]
    assert stripe.key not in result.output
    stripe.add(2)
    again = backfill("rules/stripe", tmp_path, env, "--page-size", "3")
    assert again.exit_code == 0, again.output
    assert "resumed at ending_before cs_test_bf006" in again.stdout
    assert "1 page(s), 2 order(s): 2 stored, 0 stored before" in again.stdout
    assert stripe.requests(SESSIONS)[-1][0]["ending_before"] == "cs_test_bf006"
    assert sorted(sent(box)) == session_ids(*range(9))
    last = backfill("rules/stripe", tmp_path, env, "--page-size", "3")
    assert "resumed at ending_before cs_test_bf008" in last.stdout
    assert len(box.sandbox.events()) == 9


def test_an_interrupted_stripe_run_resumes_after_the_last_stored_session(
    stripe: StripeApi, box: RunningSandbox, tmp_path: Path
) -> None:
    env = stripe_env(stripe, box)
    args = ("--page-size", "3", "--retries", "1")
    stripe.broken_from = 2
    stopped = backfill("rules/stripe", tmp_path, env, *args)
    assert stopped.exit_code == 1
    assert (
        "stopped: the cursor is at newest cs_test_bf006, starting_after cs_test_bf004"
        in stopped.stdout
    )
    assert f"stripe API: GET {SESSIONS}?" in stopped.output and "HTTP 500" in stopped.output
    assert sorted(sent(box)) == session_ids(4, 5, 6)
    stripe.broken_from = None
    before = len(stripe.requests(SESSIONS))
    resumed = backfill("rules/stripe", tmp_path, env, *args)
    assert resumed.exit_code == 0, resumed.output
    assert [q.get("starting_after") for q, _ in stripe.requests(SESSIONS)[before:]] == [
        "cs_test_bf004",
        "cs_test_bf001",
    ]
    assert sorted(sent(box)) == session_ids(*range(7))
    stripe.add(1)
    again = backfill("rules/stripe", tmp_path, env, *args)
    assert "resumed at ending_before cs_test_bf006" in again.stdout  # the newest of run 1
    assert sorted(sent(box)) == session_ids(*range(8))


def test_a_stripe_dry_run_writes_nothing_and_keys_are_checked(
    stripe: StripeApi, box: RunningSandbox, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = stripe_env(stripe, box)
    dry = backfill("rules/stripe", data, env, "--dry-run", "--json", "--show", "1")
    assert dry.exit_code == 0, dry.output
    found = json.loads(dry.stdout)
    assert (found["orders"], found["events"], found["invalid"], found["failed"]) == (7, 7, 0, 0)
    (event,) = found["first_events"]
    assert (event["order_id"], event["event_type"]) == ("cs_test_bf006", "orderCreated")
    assert not data.exists() and box.sandbox.events() == []
    wrong = backfill("rules/stripe", data, {**env, "STRIPE_SECRET_KEY": "rk_test_wrong_5"})
    assert wrong.exit_code == 1 and "HTTP 401, the credentials were refused" in wrong.output
    assert "rk_test_wrong_5" not in wrong.output
    publishable = backfill("rules/stripe", data, {**env, "STRIPE_SECRET_KEY": "pk_test_1"})
    assert (
        publishable.exit_code == 2 and "a secret (sk_…) or restricted (rk_…)" in publishable.output
    )
