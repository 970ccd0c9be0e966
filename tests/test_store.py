"""The stores: durability, the event identity, the outbox and its listings.

Every test that takes ``store`` runs against both stores (``tests/support/stores.py``):
SQLite on a real file in ``tmp_path`` and PostgreSQL on a fresh database of a real server
(skipped, with the reason, when none can be started). The tests about SQLite's file
itself (its journal, its upgrades from older versions) take ``sqlite_store`` or a path and
are marked SQLite only; what only PostgreSQL has is in ``test_store_postgres.py``. Time
comes from a settable clock.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.errors import Problem, StoreError
from engine.results import EventResult, Result
from engine.server.processor import as_webhook, new_events
from engine.server.store.base import Store
from engine.server.store.migrations import MIGRATIONS, SCHEMA_VERSION
from engine.server.store.rows import RESPONSE_LIMIT, NewEvent, Outcome
from engine.server.store.sqlite import DB_NAME
from engine.server.store.sqlite import Store as SqliteStore
from tests.conftest import ROOT
from tests.support.stores import Backend

T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(backend: Backend, clock: Clock) -> Iterator[Store]:
    """A store of each kind, empty."""
    with backend.open(clock) as s:
        yield s


@pytest.fixture
def sqlite_store(tmp_path: Path, clock: Clock) -> Iterator[SqliteStore]:
    """The SQLite store alone, for the tests about its file."""
    with SqliteStore(tmp_path / "data" / "hookmap.sqlite3", clock=clock) as s:
        yield s


def event(idx: int = 0, rule: str = "orders", **body: Any) -> NewEvent:
    payload = {"eventTypeKey": "orderCreated", "keyValue": "a@b.c", "params": [], **body}
    return NewEvent(rule, idx, "orderCreated", "v2", payload)


def webhook(store: Store, delivery_id: str | None = None, **kw: Any) -> int:
    return store.add_webhook(
        "shopify", {"X-Topic": "orders/create"}, b'{"id": 1}', delivery_id, **kw
    ).id


def state_of(store: Store, event_id: int) -> str:
    return next(e.state for e in store.list_events(limit=1000) if e.id == event_id)


# -- webhooks ---------------------------------------------------------------------------


def test_add_webhook_keeps_raw_body_and_lowercases_header_names(store: Store) -> None:
    raw = b'{"b": 1,  "a": "\xc3\xa9"}\r\n'
    added = store.add_webhook("shop", {"X-Shopify-Topic": "orders/create"}, raw, "d-1")
    assert not added.duplicate
    stored = store.webhooks_to_process(10)[0]
    assert (stored.id, stored.body, stored.headers) == (
        added.id,
        raw,
        {"x-shopify-topic": "orders/create"},
    )
    assert (stored.state, stored.received_at, stored.delivery_id) == ("received", T0, "d-1")
    assert as_webhook(stored).headers == {"x-shopify-topic": "orders/create"}


def test_duplicate_delivery_id_returns_the_existing_id_and_stores_nothing(store: Store) -> None:
    first = store.add_webhook("shop", {}, b"1", "d-1")
    again = store.add_webhook("shop", {}, b"2", "d-1")
    assert (again.id, again.duplicate) == (first.id, True)
    assert [w.body for w in store.list_webhooks()] == [b"1"]


def test_delivery_id_is_unique_per_source_and_null_never_duplicates(store: Store) -> None:
    assert not store.add_webhook("shop-a", {}, b"", "d-1").duplicate
    assert not store.add_webhook("shop-b", {}, b"", "d-1").duplicate
    assert not store.add_webhook("shop-a", {}, b"", None).duplicate
    assert not store.add_webhook("shop-a", {}, b"", None).duplicate
    assert store.counts()["webhooks"]["received"] == 4


def test_webhook_survives_reopening_the_store(backend: Backend) -> None:
    with backend.open() as first:
        wid = first.add_webhook("shop", {"A": "1"}, b"body", "d-1").id
    with backend.open() as second:
        found = second.get_webhook(wid)
        assert found is not None and found.webhook.body == b"body"
        assert second.add_webhook("shop", {}, b"x", "d-1").duplicate


def test_webhook_survives_kill_9_right_after_add_webhook(backend: Backend) -> None:
    """Once add_webhook returns, the row is committed: the process is killed before close."""
    code = (
        "import os, signal, sys\n"
        "from engine.server.store.location import open_store\n"
        "s = open_store(sys.argv[1])\n"
        "print(s.add_webhook('shop', {}, b'kept', 'd-9').id, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, backend.where], capture_output=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    with backend.open() as store:
        found = store.get_webhook(int(done.stdout))
        assert found is not None and found.webhook.body == b"kept"


# -- the SQLite file (SQLite only) ----------------------------------------------------------


def test_opening_sets_wal_full_sync_foreign_keys_and_schema_version(
    sqlite_store: SqliteStore,
) -> None:
    """SQLite only: the journal and sync settings of its file."""
    store = sqlite_store
    assert store.path.parent.name == "data"  # parent directory created
    db = store._conn
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_file_with_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """SQLite only (PostgreSQL's: test_store_postgres.py)."""
    path = tmp_path / "hookmap.sqlite3"
    SqliteStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="schema version"):
        SqliteStore(path)


def test_a_version_3_file_keeps_its_bodies_where_they_are_byte_for_byte(tmp_path: Path) -> None:
    """SQLite only: upgrading moves no data: old rows are read from their own body column."""
    path = tmp_path / "hookmap.sqlite3"
    db = sqlite3.connect(path)
    for statements in MIGRATIONS[:3]:
        for statement in statements:
            db.execute(statement)
    db.execute("PRAGMA user_version = 3")
    bodies = [b"\xff\x00not utf-8", b"", json.dumps({"big": "x" * 70_000}).encode()]
    for n, body in enumerate(bodies, start=1):
        db.execute(
            "INSERT INTO webhooks (id, source, received_at, headers, body, delivery_id, state,"
            " topic) VALUES (?, 'shopify', ?, '{\"x-a\": \"1\"}', ?, ?, 'processed', 't')",
            (n, T0 + n, body, f"d{n}"),
        )
    db.execute(
        "INSERT INTO events (webhook_id, rule, idx, event_type, api_version, body, state,"
        " next_attempt_at, created_at) VALUES (3, 'r', 0, 'orderCreated', 'v1', '{}',"
        " 'pending', ?, ?)",
        (T0, T0),
    )
    db.commit()
    db.close()
    size = path.stat().st_size
    with SqliteStore(path) as store:
        assert store._conn.execute("SELECT count(*) FROM webhook_bodies").fetchone()[0] == 0
        for n, body in enumerate(bodies, start=1):
            found = store.get_webhook(n)
            assert found is not None
            stored = found.webhook
            assert (stored.body, stored.headers, stored.delivery_id) == (
                body,
                {"x-a": "1"},
                f"d{n}",
            )
            assert (stored.state, stored.topic, stored.received_at) == ("processed", "t", T0 + n)
        assert [e.rule for e in store.get_webhook(3).events] == ["r"]  # type: ignore[union-attr]
        # the delivery id still keeps a retried delivery out
        assert store.add_webhook("shopify", {}, b"again", "d2").duplicate
        # a new webhook beside them keeps its body in the new table
        added = store.add_webhook("shopify", {}, b"\x00new", "d4").id
        found = store.get_webhook(added)
        assert found is not None and found.webhook.body == b"\x00new"
        listed = store.list_webhooks(limit=10)
        assert [w.body for w in listed] == [b"\x00new", *reversed(bodies)]
        assert [len(page) for page in store.iter_webhooks_since(0.0, page=2)] == [2, 2]
    assert path.stat().st_size < size + 64_000  # nothing was copied


def test_processing_a_webhook_does_not_write_its_body_again(sqlite_store: SqliteStore) -> None:
    """SQLite only: the state change after processing writes a few pages, not the body's:
    measured on the write-ahead log, which holds every page a commit wrote."""
    store = sqlite_store
    body = json.dumps({"note": "y" * 256_000}).encode()
    wid = store.add_webhook("shopify", {}, body, "big").id
    wal = Path(f"{store.path}-wal")
    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert wal.stat().st_size == 0
    store.record_result(wid, "orders/create", "1 event(s) to send", [event()])
    assert 0 < wal.stat().st_size < 64_000
    found = store.get_webhook(wid)
    assert found is not None and found.webhook.body == body and found.webhook.state == "processed"


# -- record_result ------------------------------------------------------------------------


def test_record_result_inserts_events_and_marks_the_webhook_processed(store: Store) -> None:
    wid = webhook(store)
    problem = {"code": "V101", "param": "totalCost", "message": "missing"}
    dropped = NewEvent("orders", 1, "orderCreated", "v2", None, [problem], valid=False)
    stats = store.record_result(wid, "orders/create", "1 sent, 1 dropped", [event(0), dropped])
    assert (stats.inserted, stats.requeued) == (2, 0)
    detail = store.get_webhook(wid)
    assert detail is not None
    assert (detail.webhook.state, detail.webhook.topic, detail.webhook.processed_at) == (
        "processed",
        "orders/create",
        T0,
    )
    sent, invalid = detail.events
    assert (sent.state, sent.next_attempt_at, sent.attempts) == ("pending", T0, 0)
    assert sent.body == '{"eventTypeKey":"orderCreated","keyValue":"a@b.c","params":[]}'
    assert (invalid.state, invalid.body, invalid.problems) == ("invalid", None, [problem])
    assert store.webhooks_to_process(10) == []


def test_record_result_with_an_error_marks_the_webhook_failed(store: Store) -> None:
    wid = webhook(store)
    store.record_result(wid, None, None, [], error="body is not JSON")
    found = store.get_webhook(wid)
    assert found is not None
    assert (found.webhook.state, found.webhook.error) == ("failed", "body is not JSON")


def test_record_result_is_one_transaction(store: Store) -> None:
    """A failure on the second event leaves neither event nor the 'processed' mark."""
    wid = webhook(store)
    bad = NewEvent("orders", 1, "orderCreated", "v2", {"x": {1, 2}})  # a set: not JSON
    with pytest.raises(TypeError):
        store.record_result(wid, "t", "s", [event(0), bad])
    assert store.counts()["events"]["pending"] == 0
    assert [w.id for w in store.webhooks_to_process(10)] == [wid]


def test_record_result_for_an_unknown_webhook_raises(store: Store) -> None:
    with pytest.raises(StoreError, match="no webhook #42"):
        store.record_result(42, None, None, [event()])


def test_recording_the_same_result_twice_does_not_duplicate_events(store: Store) -> None:
    wid = webhook(store)
    store.record_result(wid, "t", "s", [event(0), event(1)])
    stats = store.record_result(wid, "t", "s", [event(0), event(1)])
    assert (stats.inserted, stats.requeued) == (0, 0)
    assert store.counts()["events"]["pending"] == 2


def _send_all(store: Store, outcome: Outcome = "sent") -> None:
    """Record one attempt with ``outcome`` for every due event."""
    status = 200 if outcome == "sent" else 400
    for e in store.claim_due(store._clock(), 100, 60):
        store.record_attempt(e.id, outcome, status, None, "", T0, 5.0)


def test_replay_inserts_only_missing_events_and_leaves_sent_ones(store: Store) -> None:
    wid = webhook(store)
    store.record_result(wid, "t", "s", [event(0)])
    _send_all(store)
    stats = store.record_result(wid, "t", "s", [event(0, v=2), event(1)], replay=True)
    assert (stats.inserted, stats.requeued) == (1, 0)
    first, second = store.list_events(limit=10)[::-1]
    assert (first.state, '"v":2' in (first.body or "")) == ("sent", False)
    assert (second.idx, second.state) == (1, "pending")


def test_replay_refreshes_invalid_and_dead_events_with_the_new_outcome(store: Store) -> None:
    wid = webhook(store)
    invalid = NewEvent("orders", 1, "orderCreated", "v2", None, [{"code": "V101"}], valid=False)
    store.record_result(wid, "t", "s", [event(0), invalid])
    _send_all(store, "dead")
    stats = store.record_result(wid, "t", "s", [event(0, fixed=1), event(1)], replay=True)
    assert (stats.inserted, stats.requeued) == (0, 2)
    for e in store.list_events(limit=10):
        assert (e.state, e.attempts, e.next_attempt_at, e.problems) == ("pending", 0, T0, [])
    assert '"fixed":1' in (store.list_events(limit=10)[-1].body or "")


def test_force_requeues_events_already_sent(store: Store, clock: Clock) -> None:
    wid = webhook(store)
    store.record_result(wid, "t", "s", [event(0)])
    _send_all(store)
    clock.now = T0 + 100
    assert store.record_result(wid, "t", "s", [event(0)], replay=True).requeued == 0
    stats = store.record_result(wid, "t", "s", [event(0)], force=True)
    assert (stats.inserted, stats.requeued) == (0, 1)
    (again,) = store.list_events()
    assert (again.state, again.sent_at, again.next_attempt_at) == ("pending", None, T0 + 100)


def test_replay_never_touches_a_pending_event(store: Store) -> None:
    """It may be in flight: changing it could send a body the store does not show."""
    wid = webhook(store)
    store.record_result(wid, "t", "s", [event(0)])
    assert store.record_result(wid, "t", "s", [event(0, v=2)], force=True).requeued == 0
    assert '"v":2' not in (store.list_events()[0].body or "")


def test_new_events_converts_a_pipeline_result() -> None:
    problem = Problem("V101", "required param is missing", "totalCost")
    ok = EventResult("r", 0, "orderCreated", {"eventTypeKey": "orderCreated"}, (), None, (), None)
    bad = EventResult("r", 1, "orderCreated", {"eventTypeKey": "x"}, (problem,), None, (), None)
    result = Result("shop", "v1", "orders/create", (ok, bad), ())
    first, second = new_events(result)
    assert (first.api_version, first.valid, first.body) == ("v1", True, ok.body)
    assert (second.valid, second.problems) == (False, [problem.as_dict()])


# -- the outbox ---------------------------------------------------------------------------


def test_due_events_are_pending_ones_due_by_now_in_due_order(store: Store, clock: Clock) -> None:
    first = webhook(store)
    store.record_result(first, "t", "s", [event(0), event(1)])
    clock.now = T0 + 5
    second = webhook(store)
    store.record_result(second, "t", "s", [event(0)])
    ids = [e.id for e in store.due_events(T0 + 5, 10)]
    assert len(ids) == 3 and ids == sorted(ids)
    assert len(store.due_events(T0, 10)) == 2
    assert len(store.due_events(T0 + 5, 1)) == 1
    # a retry scheduled later moves behind events due earlier
    store.record_attempt(ids[0], "retry", 500, None, "", T0, 1.0, next_attempt_at=T0 + 3)
    assert [e.id for e in store.due_events(T0 + 5, 10)] == [ids[1], ids[0], ids[2]]
    assert [e.id for e in store.due_events(T0 + 1, 10)] == [ids[1]]
    assert store.next_due_at() == T0


def test_claim_due_leases_events_so_they_are_not_claimed_twice(store: Store) -> None:
    store.record_result(webhook(store), "t", "s", [event(0)])
    (claimed,) = store.claim_due(T0, 10, lease=60)
    assert json.loads(claimed.body)["eventTypeKey"] == "orderCreated"
    assert store.claim_due(T0 + 59, 10, lease=60) == []
    assert [e.id for e in store.claim_due(T0 + 60, 10, lease=60)] == [claimed.id]


def test_record_attempt_moves_events_and_keeps_every_attempt(store: Store) -> None:
    wid = webhook(store)
    store.record_result(wid, "t", "s", [event(0), event(1)])
    a, b = (e.id for e in store.due_events(T0, 10))
    assert store.record_attempt(a, "retry", None, "ConnectError: refused", None, T0, 3.0, T0 + 10)
    assert store.record_attempt(a, "sent", 200, None, "", T0 + 10, 40.0)
    assert store.record_attempt(b, "dead", 400, None, "x" * 5000, T0, 7.0)
    detail = store.get_webhook(wid)
    assert detail is not None
    sent, dead = detail.events
    assert (sent.state, sent.attempts, sent.last_status) == ("sent", 2, 200)
    assert sent.sent_at == pytest.approx(T0 + 10.04)
    assert (dead.state, dead.attempts, dead.last_status) == ("dead", 1, 400)
    assert dead.last_error is not None and dead.last_error.startswith("HTTP 400: xxx")
    assert [(t.event_id, t.outcome, t.status, t.error) for t in detail.attempts] == [
        (a, "retry", None, "ConnectError: refused"),
        (a, "sent", 200, None),
        (b, "dead", 400, None),
    ]
    assert len(detail.attempts[2].response or "") == RESPONSE_LIMIT


def test_record_attempt_on_an_event_no_longer_pending_changes_nothing(store: Store) -> None:
    store.record_result(webhook(store), "t", "s", [event(0)])
    (e,) = store.due_events(T0, 10)
    store.record_attempt(e.id, "sent", 200, None, "", T0, 1.0)
    assert not store.record_attempt(e.id, "dead", 500, None, "", T0, 1.0)
    assert state_of(store, e.id) == "sent"


def test_record_attempt_retry_needs_a_time(store: Store) -> None:
    with pytest.raises(ValueError, match="next_attempt_at"):
        store.record_attempt(1, "retry", 500, None, "", T0, 1.0)


def test_retry_and_retry_dead_requeue_dead_events_only(store: Store, clock: Clock) -> None:
    store.record_result(webhook(store), "t", "s", [event(0), event(1), event(2)])
    a, b, c = (e.id for e in store.due_events(T0, 10))
    for dead in (a, b):
        store.record_attempt(dead, "dead", 400, None, "bad", T0, 1.0)
    clock.now = T0 + 50
    assert store.retry(c) == 0  # pending, not dead
    assert store.retry(a) == 1
    assert store.retry(a) == 0
    assert store.retry_dead() == 1
    assert [(e.id, e.attempts) for e in store.due_events(T0 + 50, 10)] == [(c, 0), (a, 0), (b, 0)]


def test_counts_depth_and_oldest_pending(store: Store, clock: Clock) -> None:
    assert store.counts() == {
        "webhooks": {"received": 0, "processed": 0, "failed": 0},
        "events": {"pending": 0, "sent": 0, "dead": 0, "invalid": 0},
    }
    empty = store.oldest_pending()
    assert (empty.webhook_age, empty.event_age) == (None, None)
    first = webhook(store, received_at=T0 - 30)
    webhook(store)
    clock.now = T0 + 10
    store.record_result(first, "t", "s", [event(0), event(1)])
    clock.now = T0 + 40
    oldest = store.oldest_pending()
    assert (oldest.webhook_age, oldest.event_age) == (40.0, 30.0)
    assert store.pending_depth() == 2
    counts = store.counts()
    assert counts["webhooks"] == {"received": 1, "processed": 1, "failed": 0}
    assert counts["events"]["pending"] == 2


def test_listings_filter_by_state_and_source_newest_first(store: Store) -> None:
    a = store.add_webhook("shop-a", {}, b"", None, received_at=T0 - 100).id
    b = store.add_webhook("shop-b", {}, b"", None).id
    c = store.add_webhook("shop-a", {}, b"", None).id
    store.record_result(c, "t", "s", [event(0)])
    assert [w.id for w in store.list_webhooks()] == [c, b, a]
    assert [w.id for w in store.list_webhooks(source="shop-a")] == [c, a]
    assert [w.id for w in store.list_webhooks(state="received", source="shop-a")] == [a]
    assert [w.id for w in store.list_webhooks(limit=1)] == [c]
    assert [w.id for page in store.iter_webhooks_since(T0 - 1) for w in page] == [b, c]
    assert [w.id for page in store.iter_webhooks_since(0, source="shop-a") for w in page] == [
        a,
        c,
    ]
    assert [e.state for e in store.list_events(state="pending")] == ["pending"]
    assert store.list_events(state="sent") == []
    assert store.get_webhook(999) is None


# -- new customers and put-off webhooks (schema version 2) --------------------------------

CONTACT = {"channels": [{"type": "email", "value": "New@Shop.test"}], "firstName": "Ada"}


def test_an_events_contact_request_travels_to_the_outbox_and_listings(store: Store) -> None:
    wid = webhook(store)
    with_contact = NewEvent("orders", 0, "orderCreated", "v1", {"a": 1}, contact=CONTACT)
    store.record_result(wid, "t", "s", [with_contact, event(1)])
    first, second = store.claim_due(T0, 10, lease=60)
    assert (first.contact, second.contact) == (CONTACT, None)
    assert [e.contact for e in sorted(store.list_events(), key=lambda e: e.id)] == [CONTACT, None]


def test_replay_refreshes_the_contact_request_of_an_event_not_sent(store: Store) -> None:
    wid = webhook(store)
    store.record_result(wid, "t", "s", [event(0)])
    _send_all(store, "dead")
    fixed = NewEvent("orders", 0, "orderCreated", "v2", {"a": 1}, contact=CONTACT)
    assert store.record_result(wid, "t", "s", [fixed], replay=True).requeued == 1
    assert [e.contact for e in store.due_events(T0, 10)] == [CONTACT]


def test_new_events_carries_the_contact_request() -> None:
    body = {"eventTypeKey": "orderCreated"}
    ok = EventResult("r", 0, "orderCreated", body, (), None, (), None, CONTACT)
    (stored,) = new_events(Result("shop", "v1", "t", (ok,), ()))
    assert stored.contact == CONTACT


def test_contacts_are_remembered_once_and_an_id_learnt_later_is_kept(
    store: Store, clock: Clock, backend: Backend
) -> None:
    assert not store.contact_known("email:new@shop.test")
    store.remember_contact("email:new@shop.test", None)  # a 409: created, id unknown
    clock.now = T0 + 5
    store.remember_contact("email:new@shop.test", 17)
    store.remember_contact("email:new@shop.test", None)
    assert store.contact_known("email:new@shop.test")
    assert not store.contact_known("email:other@shop.test")
    rows = backend.query("SELECT key, contact_id, created_at FROM contacts")
    assert rows == [("email:new@shop.test", 17, T0)]


def test_a_deferred_webhook_waits_until_due_and_still_counts_as_received(
    store: Store, clock: Clock
) -> None:
    wid = webhook(store, received_at=T0 - 20)
    store.defer_webhook(wid, "lookup 'order' failed: HTTP 503", T0 + 30)
    assert store.webhooks_to_process(10) == []
    assert store.webhooks_to_process(10, now=T0 + 29.9) == []
    (due,) = store.webhooks_to_process(10, now=T0 + 30)
    assert (due.id, due.state, due.process_attempts, due.next_process_at) == (
        wid,
        "received",
        1,
        T0 + 30,
    )
    assert due.error == "lookup 'order' failed: HTTP 503"
    # health and status still see it as work not done
    assert store.counts()["webhooks"]["received"] == 1
    assert store.oldest_pending().webhook_age == 20.0
    clock.now = T0 + 30
    assert [w.id for w in store.webhooks_to_process(10)] == [wid]


def test_processing_a_deferred_webhook_clears_its_error_and_due_time(store: Store) -> None:
    wid = webhook(store)
    store.defer_webhook(wid, "lookup failed", T0 + 30)
    store.record_result(wid, "t", "s", [event(0)])
    detail = store.get_webhook(wid)
    assert detail is not None
    w = detail.webhook
    assert (w.state, w.error, w.next_process_at, w.process_attempts) == ("processed", None, None, 1)


def test_fail_webhook_keeps_the_error_and_counts_the_attempt(store: Store) -> None:
    wid = webhook(store)
    store.defer_webhook(wid, "first", T0 + 30)
    store.fail_webhook(wid, "lookup 'order' failed: HTTP 404 (gave up)")
    detail = store.get_webhook(wid)
    assert detail is not None
    w = detail.webhook
    assert (w.state, w.error, w.process_attempts, w.next_process_at, w.processed_at) == (
        "failed",
        "lookup 'order' failed: HTTP 404 (gave up)",
        2,
        None,
        T0,
    )
    assert store.webhooks_to_process(10, now=T0 + 10**6) == []


def test_defer_with_restart_puts_a_finished_webhook_back_with_a_fresh_count(store: Store) -> None:
    wid = webhook(store)
    store.fail_webhook(wid, "gave up")
    store.defer_webhook(wid, "replayed, still failing", T0 + 30, restart=True)
    (due,) = store.webhooks_to_process(10, now=T0 + 30)
    assert (due.id, due.state, due.process_attempts) == (wid, "received", 1)


def test_defer_and_fail_an_unknown_webhook_raise(store: Store) -> None:
    with pytest.raises(StoreError, match="no webhook #42"):
        store.defer_webhook(42, "x", T0)
    with pytest.raises(StoreError, match="no webhook #42"):
        store.fail_webhook(42, "x")


# -- replays: pages and batches ------------------------------------------------------------


def test_webhooks_since_come_a_page_at_a_time_in_id_order(store: Store) -> None:
    ids = [store.add_webhook("shop-a" if i % 3 else "shop-b", {}, b"{}", None).id for i in range(7)]
    pages = [[w.id for w in page] for page in store.iter_webhooks_since(0, page=2)]
    assert pages == [ids[0:2], ids[2:4], ids[4:6], ids[6:7]]
    assert store.count_webhooks_since(0) == 7
    only_a = [w.id for page in store.iter_webhooks_since(0, source="shop-a", page=2) for w in page]
    assert only_a == [i for n, i in enumerate(ids) if n % 3]
    assert store.count_webhooks_since(0, source="shop-a") == len(only_a)
    assert list(store.iter_webhooks_since(T0 + 1)) == []


def _processed_elsewhere(backend: Backend) -> int:
    """What another connection (another process) sees committed."""
    ((count,),) = backend.query("SELECT count(*) FROM webhooks WHERE state = 'processed'")
    return int(count)


def test_a_batch_is_one_transaction_of_atomic_writes(store: Store, backend: Backend) -> None:
    """Inside batch(), results are committed together at its end; a write that fails
    is undone alone and the batch goes on; reads inside see the batch's writes."""
    first, second = webhook(store), webhook(store)
    with store.batch():
        store.record_result(first, "t", "s", [event(0)])
        with pytest.raises(StoreError):
            store.record_result(999, "t", "s", [event(0)])
        # a write failing after its first insert (api_version NOT NULL): its savepoint
        # undoes that insert too
        broken = NewEvent("r", 1, "x", None, {})  # type: ignore[arg-type]
        with pytest.raises(store.errors):
            store.record_result(second, "t", "s", [event(5), broken])
        store.record_result(second, "t", "s", [event(0)])
        assert _processed_elsewhere(backend) == 0, "another process saw the batch before its end"
        assert store.counts()["webhooks"]["processed"] == 2
    assert _processed_elsewhere(backend) == 2
    # event 5 of the failed write is gone with it
    assert [e.webhook_id for e in store.list_events()] == [second, first]


def test_an_interrupted_batch_keeps_what_it_finished(store: Store, backend: Backend) -> None:
    first, second = webhook(store), webhook(store)
    with pytest.raises(KeyboardInterrupt), store.batch():
        store.record_result(first, "t", "s", [event(0)])
        raise KeyboardInterrupt
    assert _processed_elsewhere(backend) == 1
    store.record_result(second, "t", "s", [event(0)])  # the store is usable after it
    assert _processed_elsewhere(backend) == 2


def test_a_claim_names_its_server_and_release_makes_only_its_events_due(
    store: Store, clock: Clock
) -> None:
    ids = [webhook(store) for _ in range(3)]
    for wid in ids:
        store.record_result(wid, "t", "s", [event(0)])
    first = store.claim_due(T0, 1, 60.0, owner="server-a")
    second = store.claim_due(T0, 1, 60.0, owner="server-b")
    third = store.claim_due(T0, 1, 60.0)  # a one-off drain names nobody
    owners = {e.id: e.leased_by for e in store.list_events()}
    assert [owners[e.id] for e in (*first, *second, *third)] == ["server-a", "server-b", None]
    assert store.due_events(T0 + 1, 10) == []
    assert store.release_leases("server-a", now=T0 + 1) == 1
    assert [e.id for e in store.due_events(T0 + 1, 10)] == [first[0].id]
    assert store.release_leases("server-a", now=T0 + 1) == 0  # released once
    # an attempt ends the claim: nothing left for a release to move
    store.record_attempt(second[0].id, "retry", 503, None, "busy", T0, 5.0, T0 + 600)
    assert store.release_leases("server-b", now=T0 + 1) == 0
    assert {e.id: e.leased_by for e in store.list_events()}[second[0].id] is None


def test_claim_webhooks_leases_them_to_one_server_until_released(
    store: Store, clock: Clock
) -> None:
    """A claimed webhook is not due for anyone else until its lease ends, its result is
    recorded, or its server is found gone; the rows come back as they were claimed."""
    first, second, third = (webhook(store) for _ in range(3))
    store.defer_webhook(third, "lookup failed", T0 + 5)
    claimed = store.claim_webhooks(T0, 10, 60.0, owner="server-a")
    assert [(w.id, w.next_process_at, w.body) for w in claimed] == [
        (first, None, b'{"id": 1}'),
        (second, None, b'{"id": 1}'),
    ]
    assert store.claim_webhooks(T0, 10, 60.0, owner="server-b") == []
    assert [w.id for w in store.claim_webhooks(T0 + 5, 10, 60.0, owner="server-b")] == [third]
    store.record_result(first, "t", "s", [event(0)])
    assert store.release_webhooks("server-a", now=T0 + 1) == 1  # first is processed
    assert store.release_webhooks("server-a", now=T0 + 1) == 0
    assert [w.id for w in store.webhooks_to_process(10, now=T0 + 1)] == [second]
    # a lease that ends by itself: due again for anyone
    assert [w.id for w in store.claim_webhooks(T0 + 65, 10, 60.0)] == [second, third]


def test_lanes_are_claimed_apart_and_listed_longest_waiting_first(store: Store) -> None:
    """A lane (source, shop) claims only its own webhooks; the due lanes come back with
    the one whose oldest webhook waited longest first, and a leased lane is not due."""
    a1 = store.add_webhook("prestashop", {}, b"1", None, shop="eu").id
    b1 = store.add_webhook("shopify", {}, b"2", None).id
    a2 = store.add_webhook("prestashop", {}, b"3", None, shop="eu").id
    c1 = store.add_webhook("prestashop", {}, b"4", None, shop="us").id
    assert store.due_lanes(T0) == [("prestashop", "eu"), ("shopify", ""), ("prestashop", "us")]
    claimed = store.claim_webhooks(T0, 10, 60.0, owner="x", lane=("prestashop", "eu"))
    assert [w.id for w in claimed] == [a1, a2]
    assert store.due_lanes(T0) == [("shopify", ""), ("prestashop", "us")]
    assert [w.id for w in store.claim_webhooks(T0, 1, 60.0, lane=("shopify", ""))] == [b1]
    assert store.claim_webhooks(T0, 10, 60.0, lane=("shopify", "")) == []
    assert [w.id for w in store.claim_webhooks(T0, 10, 60.0)] == [c1]
    assert store.due_lanes(T0) == []


def test_a_release_of_one_lane_leaves_the_servers_other_lanes_claimed(store: Store) -> None:
    """A lane whose write failed gives back only its own webhooks: another lane of the
    same server may be processing its own at that moment."""
    eu = store.add_webhook("prestashop", {}, b"1", None, shop="eu").id
    store.add_webhook("shopify", {}, b"2", None)
    store.claim_webhooks(T0, 10, 60.0, owner="x", lane=("prestashop", "eu"))
    store.claim_webhooks(T0, 10, 60.0, owner="x", lane=("shopify", ""))
    assert store.release_webhooks("x", now=T0 + 1, lane=("prestashop", "eu")) == 1
    assert store.due_lanes(T0 + 1) == [("prestashop", "eu")]
    assert [w.id for w in store.webhooks_to_process(10, now=T0 + 1)] == [eu]


# -- damaged files (SQLite only) -----------------------------------------------------------


def _truncated(path: Path) -> None:
    with SqliteStore(path) as store:
        for n in range(50):
            store.add_webhook("shop", {}, b"x" * 2000, f"d-{n}")
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 3)


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda p: p.write_bytes(bytes(range(256)) * 20), "it is not a SQLite database"),
        (_truncated, "it is damaged (truncated or corrupt)"),
    ],
    ids=["garbage", "truncated"],
)
def test_a_damaged_store_file_is_a_located_error_not_a_traceback(
    tmp_path: Path, damage: Any, why: str
) -> None:
    path = tmp_path / DB_NAME
    damage(path)
    with pytest.raises(StoreError) as caught:
        SqliteStore(path).close()
    assert str(caught.value).startswith(f"{path}: cannot use this file as hookmap's store: {why}")
    result = CliRunner().invoke(main, ["status", "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {path}: cannot use this file as hookmap's store")
    assert "Traceback" not in result.output


def test_the_values_sent_are_remembered_per_shop_and_entity_until_they_expire(
    store: Store, clock: Clock
) -> None:
    """``changes:``: recording an event remembers its fingerprint with it (a replay that
    re-queues the event too); an event already stored remembers nothing new."""
    wid = webhook(store, shop="acme")
    cart = NewEvent("cart", 0, "cartUpdated", "v2", {"a": 1}, change=("cart-1", "f1", 100.0))
    store.record_result(wid, "t", "s", [cart])
    assert store.last_change("cart-1", shop="acme") == "f1"
    assert store.last_change("cart-1", shop="other") is None
    assert store.last_change("cart-1", shop="acme", now=T0 + 100) is None
    again = dataclasses.replace(cart, change=("cart-1", "f2", 100.0))
    store.record_result(wid, "t", "s", [again])  # the same event: stored already
    assert store.last_change("cart-1", shop="acme") == "f1"
    _send_all(store, "dead")
    store.record_result(wid, "t", "s", [again], replay=True)  # re-queued: its values go
    assert store.last_change("cart-1", shop="acme") == "f2"
    clock.now = T0 + 99
    assert store.forget_expired_changes() == 0
    clock.now = T0 + 100
    assert store.forget_expired_changes() == 1
    assert store.forget_expired_changes() == 0
