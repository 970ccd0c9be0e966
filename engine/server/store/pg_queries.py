"""Read side of the PostgreSQL store: the listings the dispatcher and operators use.

The same queries as SQLite's (``engine.server.store.queries``), whose row converters they
share, so both stores hand out identical rows. ``engine.server.store.postgres.Store``
inherits ``Queries`` and owns the pool and the transactions; nothing here writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from engine.server.store.queries import event_from_row, outbox_event, webhook_from_row
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

if TYPE_CHECKING:
    import psycopg

#: every column of an event, named as ``EventRow``'s fields
EVENT_COLUMNS = ", ".join(f.name for f in dataclasses.fields(EventRow))
_ATTEMPT_COLUMNS = ", ".join(f"a.{f.name}" for f in dataclasses.fields(AttemptRow))

#: the outbox order: what fell due first goes first, then arrival order
DUE_SQL = (
    "SELECT id, webhook_id, event_type, api_version, body, attempts, contact, shop FROM events"
    " WHERE state = 'pending' AND next_attempt_at <= %s ORDER BY next_attempt_at, id LIMIT %s"
)

#: the columns of a stored webhook, its body as ``raw_body`` (``queries.webhook_from_row``)
WEBHOOK_COLUMNS = (
    "w.id, w.source, w.shop, w.received_at, w.headers, w.delivery_id, w.topic, w.state,"
    " w.summary, w.error, w.processed_at, w.process_attempts, w.next_process_at"
)
_WEBHOOKS = (
    f"SELECT {WEBHOOK_COLUMNS}, b.body AS raw_body FROM webhooks w"
    " JOIN webhook_bodies b ON b.webhook_id = w.id"
)
#: webhooks due for processing (``%(now)s``: now)
WEBHOOKS_DUE_WHERE = (
    "w.state = 'received' AND (w.next_process_at IS NULL OR w.next_process_at <= %(now)s)"
)


def rows(conn: psycopg.Connection[Any], sql: str, args: Any = ()) -> list[dict[str, Any]]:
    """The rows of a query, each a dict by column name."""
    from psycopg.rows import dict_row  # psycopg is optional: imported where it is used

    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(sql, args).fetchall()


def _where(filters: dict[str, Any], prefix: str = "") -> tuple[str, list[Any]]:
    """``WHERE a = %s AND b = %s`` for the filters that are set."""
    used = {k: v for k, v in filters.items() if v is not None}
    if not used:
        return "", []
    return " WHERE " + " AND ".join(f"{prefix}{k} = %s" for k in used), list(used.values())


def _since(since: float, source: str | None, shop: str | None) -> tuple[str, list[Any]]:
    """The WHERE clause of replay's input: received at or after ``since``, of ``source``."""
    where, args = _where({"source": source, "shop": shop}, "w.")
    return (where + " AND" if where else " WHERE") + " w.received_at >= %s", [*args, since]


class Queries:
    """The read-only half of ``Store`` (see engine/server/store/postgres.py for the pool)."""

    _clock: Callable[[], float]
    #: one connection to read from; ``snapshot``: several queries see one snapshot
    _read: Callable[..., AbstractContextManager[psycopg.Connection[Any]]]

    def webhooks_to_process(
        self, limit: int = 100, now: float | None = None
    ) -> list[StoredWebhook]:
        """Webhooks stored but not processed yet and due by ``now``, oldest first."""
        now = self._clock() if now is None else now
        with self._read() as db:
            found = rows(
                db,
                f"{_WEBHOOKS} WHERE {WEBHOOKS_DUE_WHERE} ORDER BY w.id LIMIT %(limit)s",
                {"now": now, "limit": limit},
            )
        return [webhook_from_row(r) for r in found]

    def iter_webhooks_since(
        self,
        since: float,
        *,
        source: str | None = None,
        shop: str | None = None,
        page: int = 200,
    ) -> Iterator[list[StoredWebhook]]:
        """Webhooks received at or after ``since`` (unix time), oldest first, a page at a
        time (each page its own read): replay's input."""
        where, args = _since(since, source, shop)
        last = 0
        while True:
            with self._read() as db:
                found = rows(
                    db,
                    f"{_WEBHOOKS}{where} AND w.id > %s ORDER BY w.id LIMIT %s",
                    [*args, last, page],
                )
            if not found:
                return
            webhooks = [webhook_from_row(r) for r in found]
            last = webhooks[-1].id
            yield webhooks

    def count_webhooks_since(
        self, since: float, *, source: str | None = None, shop: str | None = None
    ) -> int:
        """How many webhooks ``iter_webhooks_since`` gives (a replay's progress bar)."""
        where, args = _since(since, source, shop)
        with self._read() as db:
            row = db.execute(f"SELECT count(*) FROM webhooks w{where}", args).fetchone()
        return 0 if row is None else int(row[0])

    def list_webhooks(
        self,
        state: str | None = None,
        source: str | None = None,
        limit: int = 50,
        *,
        shop: str | None = None,
    ) -> list[StoredWebhook]:
        """The latest webhooks, newest first, optionally of one state, source and shop."""
        where, args = _where({"state": state, "source": source, "shop": shop}, "w.")
        with self._read() as db:
            found = rows(db, f"{_WEBHOOKS}{where} ORDER BY w.id DESC LIMIT %s", [*args, limit])
        return [webhook_from_row(r) for r in found]

    def list_events(
        self, state: str | None = None, limit: int = 50, *, shop: str | None = None
    ) -> list[EventRow]:
        """The latest events, newest first, optionally of one state and shop."""
        where, args = _where({"state": state, "shop": shop})
        with self._read() as db:
            found = rows(
                db,
                f"SELECT {EVENT_COLUMNS} FROM events{where} ORDER BY id DESC LIMIT %s",
                [*args, limit],
            )
        return [event_from_row(r) for r in found]

    def get_webhook(self, webhook_id: int) -> WebhookDetail | None:
        """One webhook, its events and all their attempts; None when there is no such id."""
        with self._read(snapshot=True) as db:
            found = rows(db, f"{_WEBHOOKS} WHERE w.id = %s", (webhook_id,))
            if not found:
                return None
            events = rows(
                db,
                f"SELECT {EVENT_COLUMNS} FROM events WHERE webhook_id = %s ORDER BY id",
                (webhook_id,),
            )
            attempts = rows(
                db,
                f"SELECT {_ATTEMPT_COLUMNS} FROM attempts a JOIN events e ON e.id = a.event_id"
                " WHERE e.webhook_id = %s ORDER BY a.id",
                (webhook_id,),
            )
        return WebhookDetail(
            webhook_from_row(found[0]),
            [event_from_row(e) for e in events],
            [AttemptRow(**a) for a in attempts],
        )

    def due_events(self, now: float, limit: int) -> list[OutboxEvent]:
        """Pending events whose next attempt is due at ``now``, in outbox order.

        Read only: the dispatcher uses ``Store.claim_due``, which also leases them.
        """
        with self._read() as db:
            found = rows(db, DUE_SQL, (now, limit))
        return [outbox_event(r) for r in found]

    def contact_known(self, key: str, *, shop: str = "") -> bool:
        """Whether the contact ``key`` was created at ``shop``'s CDP account."""
        with self._read() as db:
            row = db.execute(
                "SELECT 1 FROM contacts WHERE shop = %s AND key = %s", (shop, key)
            ).fetchone()
        return row is not None

    def last_change(self, entity: str, *, shop: str = "", now: float | None = None) -> str | None:
        """The fingerprint of the values last sent for ``entity`` of ``shop`` (``changes:``),
        None when none is remembered or it expired."""
        now = self._clock() if now is None else now
        with self._read() as db:
            row = db.execute(
                "SELECT fingerprint FROM changes WHERE shop = %s AND entity = %s"
                " AND expires_at > %s",
                (shop, entity, now),
            ).fetchone()
        return None if row is None else str(row[0])

    def next_due_at(self) -> float | None:
        """When the earliest pending event falls due (None when nothing is pending)."""
        with self._read() as db:
            row = db.execute(
                "SELECT min(next_attempt_at) FROM events WHERE state = 'pending'"
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def counts(self, *, shop: str | None = None) -> dict[str, dict[str, int]]:
        """``{"webhooks": {state: n}, "events": {state: n}}``, every state present."""
        out = {
            "webhooks": dict.fromkeys(WEBHOOK_STATES, 0),
            "events": dict.fromkeys(EVENT_STATES, 0),
        }
        where, args = _where({"shop": shop})
        with self._read(snapshot=True) as db:
            for table in out:
                sql = f"SELECT state, count(*) FROM {table}{where} GROUP BY state"
                for state, n in db.execute(sql, args):
                    out[table][state] = n
        return out

    def pending_depth(self) -> int:
        """How many events wait to be sent (due now or later)."""
        with self._read() as db:
            row = db.execute("SELECT count(*) FROM events WHERE state = 'pending'").fetchone()
        return 0 if row is None else int(row[0])

    def oldest_pending(self) -> Oldest:
        """Arrival time (and age) of the oldest unprocessed webhook and unsent event."""
        now = self._clock()
        with self._read() as db:
            row = db.execute(
                "SELECT (SELECT min(received_at) FROM webhooks WHERE state = 'received'),"
                " (SELECT min(created_at) FROM events WHERE state = 'pending')"
            ).fetchone()
        webhook, event = (None, None) if row is None else row
        return Oldest(now, webhook, event)
