"""Read side of the SQLite store: the listings the dispatcher and operators use.

Nothing here writes. ``engine.server.store.sqlite.Store`` inherits ``Queries`` and owns
the connection, the schema and every write; this module only needs the connection and
the lock that guards it. The rows it returns are ``engine.server.store.rows``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from engine.server.store.rows import (
    EVENT_STATES,
    WEBHOOK_STATES,
    AttemptRow,
    EventRow,
    Oldest,
    OutboxEvent,
    StoredWebhook,
    WebhookDetail,
)

#: the outbox order: what fell due first goes first, then arrival order
DUE_SQL = (
    "SELECT id, webhook_id, event_type, api_version, body, attempts, contact, shop FROM events"
    " WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?"
)


#: Stored webhooks with their raw bodies: from webhook_bodies, or for a row stored before
#: that table existed, from its own body column (see the store's migrations). The
#: columns are named so that the old column is not read for every row as well.
_WEBHOOKS = (
    "SELECT webhooks.id, source, shop, received_at, headers, delivery_id, topic, state,"
    " summary, error, processed_at, process_attempts, next_process_at,"
    " coalesce(webhook_bodies.body, webhooks.body) AS raw_body FROM webhooks"
    " LEFT JOIN webhook_bodies ON webhook_bodies.webhook_id = webhooks.id"
)
_DUE = "state = 'received' AND (next_process_at IS NULL OR next_process_at <= ?)"
#: webhooks due for processing, oldest first (``?``: now; a LIMIT follows)
WEBHOOKS_DUE = f"{_WEBHOOKS} WHERE {_DUE} ORDER BY webhooks.id"
#: the same, of one lane (``?``: now, source, shop; a LIMIT follows)
LANE_DUE = f"{_WEBHOOKS} WHERE {_DUE} AND source = ? AND shop = ? ORDER BY webhooks.id"
#: the lanes (source, shop) with webhooks due, the one whose oldest waited longest first
LANES_DUE = f"SELECT source, shop FROM webhooks WHERE {_DUE} GROUP BY source, shop ORDER BY min(id)"


#: a row of either store's queries, by column name (PostgreSQL's come as dicts)
Row = sqlite3.Row | Mapping[str, Any]


def webhook_from_row(row: Row) -> StoredWebhook:
    """A ``StoredWebhook`` from a row of the webhook queries (``raw_body``: its body)."""
    return StoredWebhook(
        id=row["id"],
        source=row["source"],
        received_at=row["received_at"],
        headers=json.loads(row["headers"]),
        body=bytes(row["raw_body"]),
        delivery_id=row["delivery_id"],
        topic=row["topic"],
        state=row["state"],
        summary=row["summary"],
        error=row["error"],
        processed_at=row["processed_at"],
        process_attempts=row["process_attempts"],
        next_process_at=row["next_process_at"],
        shop=row["shop"],
    )


def event_from_row(row: Row) -> EventRow:
    """An ``EventRow`` from every column of ``events``."""
    values = dict(row)
    values["problems"] = json.loads(values["problems"])
    values["contact"] = _contact(values["contact"])
    return EventRow(**values)


def outbox_event(row: Row) -> OutboxEvent:
    """An ``OutboxEvent`` from a ``DUE_SQL`` row."""
    values = dict(row)
    values["contact"] = _contact(values["contact"])
    return OutboxEvent(**values)


def _contact(text: str | None) -> dict[str, Any] | None:
    value = None if text is None else json.loads(text)
    return value if isinstance(value, dict) else None


def _where(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    """``WHERE a = ? AND b = ?`` for the filters that are set."""
    used = {k: v for k, v in filters.items() if v is not None}
    if not used:
        return "", []
    return " WHERE " + " AND ".join(f"{k} = ?" for k in used), list(used.values())


def _since(since: float, source: str | None, shop: str | None) -> tuple[str, list[Any]]:
    """The WHERE clause of replay's input: received at or after ``since``, of ``source``."""
    where, args = _where({"source": source, "shop": shop})
    return (where + " AND" if where else " WHERE") + " received_at >= ?", [*args, since]


class Queries:
    """The read-only half of ``Store`` (see engine/server/store/sqlite.py for the connection)."""

    _conn: sqlite3.Connection
    _lock: threading.RLock
    _clock: Callable[[], float]
    #: open batches (Store.batch): a read inside one reads in the batch's transaction
    _batch_depth: int

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction under the connection lock: several queries, one snapshot."""
        with self._lock:
            if self._batch_depth:
                yield self._conn
                return
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("ROLLBACK")

    def webhooks_to_process(
        self, limit: int = 100, now: float | None = None
    ) -> list[StoredWebhook]:
        """Webhooks stored but not processed yet and due by ``now``, oldest first.

        A webhook put off by ``defer_webhook`` is left out until its ``next_process_at``.
        """
        now = self._clock() if now is None else now
        with self._read() as db:
            rows = db.execute(f"{WEBHOOKS_DUE} LIMIT ?", (now, limit)).fetchall()
        return [webhook_from_row(r) for r in rows]

    def iter_webhooks_since(
        self,
        since: float,
        *,
        source: str | None = None,
        shop: str | None = None,
        page: int = 200,
    ) -> Iterator[list[StoredWebhook]]:
        """Webhooks received at or after ``since`` (unix time), oldest first, a page at a
        time (each page its own read): replay's input. A replay of millions of webhooks
        holds one page of bodies in memory, not all of them."""
        where, args = _since(since, source, shop)
        last = 0
        while True:
            with self._read() as db:
                rows = db.execute(
                    f"{_WEBHOOKS}{where} AND id > ? ORDER BY id LIMIT ?",
                    [*args, last, page],
                ).fetchall()
            if not rows:
                return
            found = [webhook_from_row(r) for r in rows]
            last = found[-1].id
            yield found

    def count_webhooks_since(
        self, since: float, *, source: str | None = None, shop: str | None = None
    ) -> int:
        """How many webhooks ``iter_webhooks_since`` gives (a replay's progress bar)."""
        where, args = _since(since, source, shop)
        with self._read() as db:
            row = db.execute(f"SELECT count(*) FROM webhooks{where}", args).fetchone()
        return int(row[0])

    def list_webhooks(
        self,
        state: str | None = None,
        source: str | None = None,
        limit: int = 50,
        *,
        shop: str | None = None,
    ) -> list[StoredWebhook]:
        """The latest webhooks, newest first, optionally of one state, source and shop."""
        where, args = _where({"state": state, "source": source, "shop": shop})
        with self._read() as db:
            rows = db.execute(
                f"{_WEBHOOKS}{where} ORDER BY id DESC LIMIT ?", [*args, limit]
            ).fetchall()
        return [webhook_from_row(r) for r in rows]

    def list_events(
        self, state: str | None = None, limit: int = 50, *, shop: str | None = None
    ) -> list[EventRow]:
        """The latest events, newest first, optionally of one state and shop."""
        where, args = _where({"state": state, "shop": shop})
        with self._read() as db:
            rows = db.execute(
                f"SELECT * FROM events{where} ORDER BY id DESC LIMIT ?", [*args, limit]
            ).fetchall()
        return [event_from_row(r) for r in rows]

    def get_webhook(self, webhook_id: int) -> WebhookDetail | None:
        """One webhook, its events and all their attempts; None when there is no such id."""
        with self._read() as db:
            row = db.execute(f"{_WEBHOOKS} WHERE id = ?", (webhook_id,)).fetchone()
            if row is None:
                return None
            events = db.execute(
                "SELECT * FROM events WHERE webhook_id = ? ORDER BY id", (webhook_id,)
            ).fetchall()
            attempts = db.execute(
                "SELECT a.* FROM attempts a JOIN events e ON e.id = a.event_id"
                " WHERE e.webhook_id = ? ORDER BY a.id",
                (webhook_id,),
            ).fetchall()
        return WebhookDetail(
            webhook_from_row(row),
            [event_from_row(e) for e in events],
            [AttemptRow(**dict(a)) for a in attempts],
        )

    def due_events(self, now: float, limit: int) -> list[OutboxEvent]:
        """Pending events whose next attempt is due at ``now``, in outbox order.

        Read only: the dispatcher uses ``Store.claim_due``, which also leases them.
        """
        with self._read() as db:
            rows = db.execute(DUE_SQL, (now, limit)).fetchall()
        return [outbox_event(r) for r in rows]

    def contact_known(self, key: str, *, shop: str = "") -> bool:
        """Whether the contact ``key`` was created at ``shop``'s CDP account."""
        with self._read() as db:
            row = db.execute(
                "SELECT 1 FROM contacts WHERE shop = ? AND key = ?", (shop, key)
            ).fetchone()
        return row is not None

    def last_change(self, entity: str, *, shop: str = "", now: float | None = None) -> str | None:
        """The fingerprint of the values last sent for ``entity`` of ``shop`` (``changes:``),
        None when none is remembered or it expired."""
        now = self._clock() if now is None else now
        with self._read() as db:
            row = db.execute(
                "SELECT fingerprint FROM changes WHERE shop = ? AND entity = ? AND expires_at > ?",
                (shop, entity, now),
            ).fetchone()
        return None if row is None else str(row[0])

    def next_due_at(self) -> float | None:
        """When the earliest pending event falls due (None when nothing is pending)."""
        with self._read() as db:
            row = db.execute(
                "SELECT MIN(next_attempt_at) FROM events WHERE state = 'pending'"
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def counts(self, *, shop: str | None = None) -> dict[str, dict[str, int]]:
        """``{"webhooks": {state: n}, "events": {state: n}}``, every state present."""
        out = {
            "webhooks": dict.fromkeys(WEBHOOK_STATES, 0),
            "events": dict.fromkeys(EVENT_STATES, 0),
        }
        where, args = _where({"shop": shop})
        with self._read() as db:
            for table in out:
                sql = f"SELECT state, COUNT(*) FROM {table}{where} GROUP BY state"
                for state, n in db.execute(sql, args):
                    out[table][state] = n
        return out

    def pending_depth(self) -> int:
        """How many events wait to be sent (due now or later)."""
        with self._read() as db:
            row = db.execute("SELECT COUNT(*) FROM events WHERE state = 'pending'").fetchone()
        return int(row[0])

    def oldest_pending(self) -> Oldest:
        """Arrival time (and age) of the oldest unprocessed webhook and unsent event."""
        now = self._clock()
        with self._read() as db:
            webhook = db.execute(
                "SELECT MIN(received_at) FROM webhooks WHERE state = 'received'"
            ).fetchone()[0]
            event = db.execute(
                "SELECT MIN(created_at) FROM events WHERE state = 'pending'"
            ).fetchone()[0]
        return Oldest(now, webhook, event)
