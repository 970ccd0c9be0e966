"""A failed lookup puts the stored webhook off, it is not lost: processed again when due,
failed when the schedule is used up, and replayable; plus the store's 1 → 2 migration.

The processor tests run ``process_stored`` on a real store file with a settable clock;
the last test runs the whole service against a loopback stand-in of the platform's API
that is down, then comes back.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.errors import LookupFailed
from engine.lookups import HttpFetcher, MockFetcher
from engine.rules import compiler
from engine.rules.model import LookupSpec, RuleSet
from engine.sandbox.run import running
from engine.sandbox.settings import SandboxConfig
from engine.server.processor import LOOKUP_SCHEDULE, process_stored
from engine.server.store.migrations import MIGRATIONS, SCHEMA_VERSION
from engine.server.store.rows import StoredWebhook
from engine.server.store.sqlite import Store
from tests.helpers_server import serving, wait_until
from tests.support.http_stub import HttpStub, Reply

T0 = 1_700_000_000.0
TOKEN = "shop-api-token-never-stored"
ORDER = {
    "email": "ada@shop.test",
    "total": "10.00",
    "created_at": "2024-05-01T10:00:00+00:00",
    "currency": "EUR",
}
RULES = """\
name: enrich
topic: {header: X-Topic}
verify: {scheme: none}
hosts: ["${SHOP_HOST}"]
lookups:
  order:
    url: http://${SHOP_HOST}:${SHOP_PORT}/orders/{id}
    args: {id: id}
    headers: {Authorization: "Bearer ${SHOP_TOKEN}"}
    retries: 0
    timeout: 2
rules:
  - name: order
    topics: order.created
    events:
      - type: orderCreated
        key: fetched('order').email
        params:
          externalOrderId: to_string(id)
          totalCost: fetched('order').total
          status: {const: INITIALIZED}
          date: fetched('order').created_at
          currency: fetched('order').currency
          email: fetched('order').email
"""


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def env(port: int = 80) -> dict[str, str]:
    return {"SHOP_HOST": "127.0.0.1", "SHOP_PORT": str(port), "SHOP_TOKEN": TOKEN}


def write_rules(folder: Path) -> Path:
    path = folder / "enrich.yaml"
    path.write_text(RULES, encoding="utf-8")
    return path


@pytest.fixture
def rulesets(tmp_path: Path) -> dict[tuple[str, str], RuleSet]:
    """By (rule set name, shop id), as the processor takes them ("" is the one shop)."""
    loaded = compiler.load([str(write_rules(tmp_path))], env())
    assert loaded.ok, [d.render() for d in loaded.diagnostics]
    return {(r.name, ""): r for r in loaded.rulesets}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    with Store(tmp_path / "hookmap.sqlite3", clock=clock) as s:
        yield s


def stored(store: Store, order_id: int = 5) -> StoredWebhook:
    """A received webhook of the enrich source, as the processor gets it."""
    body = json.dumps({"id": order_id}).encode()
    wid = store.add_webhook("enrich", {"X-Topic": "order.created"}, body, None).id
    return current(store, wid)


def current(store: Store, webhook_id: int) -> StoredWebhook:
    detail = store.get_webhook(webhook_id)
    assert detail is not None
    return detail.webhook


BROKEN = MockFetcher({})  # no mock for 'order': every lookup fails
HEALED = MockFetcher({"order": ORDER})


# -- the processor ----------------------------------------------------------------------


def test_a_failed_lookup_defers_the_webhook_with_its_error_and_stores_nothing(
    store: Store, rulesets: dict[tuple[str, str], RuleSet], clock: Clock
) -> None:
    webhook = stored(store)
    outcome = process_stored(store, rulesets, webhook, fetcher=BROKEN, clock=clock)
    assert (outcome.state, outcome.deferred_until) == ("deferred", T0 + LOOKUP_SCHEDULE[0])
    w = current(store, webhook.id)
    assert (w.state, w.process_attempts, w.next_process_at) == ("received", 1, T0 + 30)
    assert w.error is not None
    assert "lookup 'order' (http://127.0.0.1:80/orders/5) failed: no mock given" in w.error
    assert "attempt 1 of 9" in w.error
    assert store.counts()["events"] == {"pending": 0, "sent": 0, "dead": 0, "invalid": 0}
    # not due yet: the server's processor loop passes it by until then
    assert store.webhooks_to_process(10) == []
    clock.now = T0 + 30
    assert [x.id for x in store.webhooks_to_process(10)] == [webhook.id]


def test_without_any_fetcher_a_lookup_rule_set_defers_too(
    store: Store, rulesets: dict[tuple[str, str], RuleSet], clock: Clock
) -> None:
    webhook = stored(store)
    assert process_stored(store, rulesets, webhook, clock=clock).state == "deferred"
    assert "no way to fetch here" in (current(store, webhook.id).error or "")


def test_once_the_fetcher_heals_the_webhook_is_processed_and_its_events_stored(
    store: Store, rulesets: dict[tuple[str, str], RuleSet], clock: Clock
) -> None:
    webhook = stored(store)
    process_stored(store, rulesets, webhook, fetcher=BROKEN, clock=clock)
    clock.now = T0 + 30
    (due,) = store.webhooks_to_process(10)
    outcome = process_stored(store, rulesets, due, fetcher=HEALED, clock=clock)
    assert (outcome.state, outcome.error, outcome.stats.inserted) == ("processed", None, 1)
    w = current(store, webhook.id)
    assert (w.state, w.error, w.next_process_at) == ("processed", None, None)
    (event,) = store.due_events(clock.now, 10)
    assert json.loads(event.body)["keyValue"] == "ada@shop.test"


def test_a_null_lookup_argument_is_processed_at_once_never_deferred(
    store: Store, rulesets: dict[str, RuleSet], clock: Clock
) -> None:
    """A webhook whose lookup argument is null cannot be enriched now or later: the lookup
    is not made, the webhook is processed (no retry), and its record says why."""
    body = json.dumps({"id": None}).encode()
    wid = store.add_webhook("enrich", {"X-Topic": "order.created"}, body, None).id
    fetcher = MockFetcher({})
    outcome = process_stored(store, rulesets, current(store, wid), fetcher=fetcher, clock=clock)
    assert (outcome.state, outcome.deferred_until, fetcher.calls) == ("processed", None, [])
    assert outcome.result is not None
    (skipped,) = outcome.result.lookups
    assert (skipped.name, skipped.skipped) == ("order", "argument 'id' is null")
    w = current(store, wid)
    assert (w.state, w.process_attempts) == ("processed", 0)
    assert w.summary is not None
    assert w.summary.endswith("(lookup 'order' not made: argument 'id' is null)")
    # what the rule makes of it: events without the order's fields, kept as invalid
    assert store.counts()["events"]["invalid"] == 1


def test_each_failure_waits_the_next_delay_then_the_webhook_fails_keeping_the_error(
    store: Store, rulesets: dict[tuple[str, str], RuleSet], clock: Clock
) -> None:
    webhook = stored(store)
    schedule = (10.0, 100.0)
    waits = []
    for _ in schedule:
        outcome = process_stored(
            store,
            rulesets,
            current(store, webhook.id),
            fetcher=BROKEN,
            schedule=schedule,
            clock=clock,
        )
        assert outcome.deferred_until is not None
        waits.append(outcome.deferred_until - clock.now)
        clock.now = outcome.deferred_until
    assert waits == [10.0, 100.0]
    outcome = process_stored(
        store, rulesets, current(store, webhook.id), fetcher=BROKEN, schedule=schedule, clock=clock
    )
    assert outcome.state == "failed"
    w = current(store, webhook.id)
    assert (w.state, w.process_attempts, w.next_process_at) == ("failed", 3, None)
    assert w.error is not None and w.error.startswith("lookup 'order' (")
    assert w.error.endswith("(gave up after 3 attempts)")
    assert store.webhooks_to_process(10, now=clock.now + 10**6) == []


def test_replaying_a_failed_webhook_starts_the_schedule_afresh(
    store: Store, rulesets: dict[tuple[str, str], RuleSet], clock: Clock
) -> None:
    """The operator's replay is a new try: a lookup still failing puts it off for the
    server (first delay again), one that works processes it at once."""
    webhook = stored(store)
    process_stored(store, rulesets, webhook, fetcher=BROKEN, schedule=(), clock=clock)
    assert current(store, webhook.id).state == "failed"
    outcome = process_stored(
        store, rulesets, current(store, webhook.id), fetcher=BROKEN, replay=True, clock=clock
    )
    assert outcome.deferred_until == T0 + LOOKUP_SCHEDULE[0]
    w = current(store, webhook.id)
    assert (w.state, w.process_attempts) == ("received", 1)
    outcome = process_stored(store, rulesets, w, fetcher=HEALED, replay=True, clock=clock)
    assert outcome.state == "processed"
    assert store.counts()["events"]["pending"] == 1


def test_an_http_lookup_error_names_the_lookup_and_reason_but_never_the_token(
    store: Store, rulesets: dict[tuple[str, str], RuleSet], clock: Clock
) -> None:
    seen: list[httpx.Request] = []

    def down(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(503, text="maintenance")

    fetcher = HttpFetcher(httpx.MockTransport(down), sleep=lambda _: None)
    try:
        webhook = stored(store)
        process_stored(store, rulesets, webhook, fetcher=fetcher, clock=clock)
    finally:
        fetcher.close()
    assert seen[0].headers["authorization"] == f"Bearer {TOKEN}"  # the token went in a header
    error = current(store, webhook.id).error or ""
    assert "lookup 'order'" in error and "HTTP 503 after 1 attempt(s)" in error
    assert TOKEN not in error


def test_a_fetcher_raising_lookup_failed_itself_is_handled_the_same(
    store: Store, rulesets: dict[tuple[str, str], RuleSet], clock: Clock
) -> None:
    class Refusing:
        def fetch(self, spec: LookupSpec, url: str) -> Any:
            raise LookupFailed(spec.name, url, "HTTP 404: order not found yet")

    webhook = stored(store)
    outcome = process_stored(store, rulesets, webhook, fetcher=Refusing(), clock=clock)
    assert outcome.state == "deferred"
    assert "HTTP 404: order not found yet" in (current(store, webhook.id).error or "")


# -- the migration ------------------------------------------------------------------------


def test_a_version_1_database_upgrades_in_place_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "hookmap.sqlite3"
    db = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO webhooks (id, source, received_at, headers, body) VALUES"
        " (1, 'enrich', ?, '{}', x'7b7d')",
        (T0,),
    )
    db.execute(
        "INSERT INTO events (webhook_id, rule, idx, event_type, api_version, body, state,"
        " next_attempt_at, created_at) VALUES (1, 'r', 0, 'orderCreated', 'v1', '{}',"
        " 'pending', ?, ?)",
        (T0, T0),
    )
    db.commit()
    db.close()
    assert SCHEMA_VERSION == 6
    with Store(path, clock=Clock()) as store:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == 6
        (webhook,) = store.webhooks_to_process(10)
        assert (webhook.id, webhook.process_attempts, webhook.next_process_at) == (1, 0, None)
        assert webhook.body == b"{}"
        (event,) = store.due_events(T0, 10)
        assert (event.body, event.contact) == ("{}", None)
        # version 3: who claimed it (nobody yet); a claim says who
        assert [e.leased_by for e in store.list_events()] == [None]
        assert len(store.claim_due(T0, 10, 60.0, owner="server-a")) == 1
        assert [e.leased_by for e in store.list_events()] == ["server-a"]
        assert store.release_leases("server-a", now=T0) == 1
        store.defer_webhook(1, "lookup failed", T0 + 30)
        store.remember_contact("email:a@b.c", 1)
        assert store.contact_known("email:a@b.c")
        # version 5: rows stored before belong to the one shop, ""
        assert (webhook.shop, event.shop) == ("", "")
        assert not store.contact_known("email:a@b.c", shop="acme")
        # version 6: the values last sent per entity (changes:), none yet
        assert store.last_change("checkout-cart/cartUpdated/t") is None
    # opening the upgraded file again migrates nothing and keeps what was written
    with Store(path, clock=Clock(T0 + 30)) as store:
        assert [w.process_attempts for w in store.webhooks_to_process(10)] == [1]
        assert store.contact_known("email:a@b.c")


# -- through the server -----------------------------------------------------------------


class ShopApi(HttpStub):
    """A loopback stand-in of the platform's API: 503 while ``down``, else the order."""

    def __init__(self) -> None:
        self.down = True
        super().__init__(lambda _call: Reply(503, b"down") if self.down else Reply(200, ORDER))


def test_the_server_defers_a_webhook_while_the_platform_api_is_down_then_sends_it(
    tmp_path: Path,
) -> None:
    """End to end: accepted at once, put off while the lookup fails, processed and sent
    once the API answers again, with no help from an operator."""
    with (
        ShopApi() as api,
        running(SandboxConfig(api_key="k")) as box,
        serving(
            box.destination(),
            tmp_path / "data",
            rules=(str(write_rules(tmp_path)),),
            env=env(api.port),
            lookup_schedule=(0.2,) * 20,
        ) as served,
        httpx.Client(trust_env=False, timeout=5) as client,
    ):
        posted = client.post(
            served.hook("enrich"), content=b'{"id": 5}', headers={"X-Topic": "order.created"}
        )
        assert posted.status_code == 200, posted.text
        wid = served.store.list_webhooks()[0].id
        wait_until(lambda: current(served.store, wid).process_attempts >= 2, what="two deferrals")
        deferred = current(served.store, wid)
        assert deferred.state == "received" and "HTTP 503" in (deferred.error or "")
        assert box.sandbox.events() == []
        api.down = False
        wait_until(lambda: box.sandbox.events(), what="the event at the sandbox")
        w = current(served.store, wid)
        assert (w.state, w.error) == ("processed", None)
    assert all(call.header("Authorization") == f"Bearer {TOKEN}" for call in api.calls)
    assert {call.target for call in api.calls} == {"/orders/5"}
