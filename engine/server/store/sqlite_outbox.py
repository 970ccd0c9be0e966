"""The SQLite store's delivery side: claiming due events, recording attempts, re-queuing
dead ones, and the contacts known per shop (mixed into ``engine.server.store.sqlite.Store``,
which owns the connection and its transactions)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from engine.server.store.queries import DUE_SQL, outbox_event
from engine.server.store.rows import OutboxEvent, Outcome, attempt_changes


class OutboxWrites:
    """Writes of the outbox; ``_write`` is one transaction of the store's connection."""

    _clock: Callable[[], float]
    _write: Callable[[], AbstractContextManager[sqlite3.Connection]]

    def remember_contact(self, key: str, contact_id: int | None, *, shop: str = "") -> None:
        """Note that ``shop``'s CDP account knows the contact ``key`` (its id when the answer
        gave one). Remembering a key again keeps the first time and fills in an id learnt
        later."""
        with self._write() as db:
            db.execute(
                "INSERT INTO contacts (shop, key, contact_id, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (shop, key) DO UPDATE SET"
                " contact_id = COALESCE(excluded.contact_id, contact_id)",
                (shop, key, contact_id, self._clock()),
            )

    def claim_due(
        self, now: float, limit: int, lease: float, owner: str | None = None
    ) -> list[OutboxEvent]:
        """Take up to ``limit`` due events to send, pushing their next attempt ``lease`` ahead.

        The lease keeps a second dispatcher (another process, a CLI drain) from sending
        the same event while this one is in flight; if this process dies mid-send, the
        event falls due again when the lease ends, or at once when the next server
        start finds ``owner`` (its instance id, engine.server.leases) gone.
        """
        with self._write() as db:
            rows = db.execute(DUE_SQL, (now, limit)).fetchall()
            db.executemany(
                "UPDATE events SET next_attempt_at = ?, leased_by = ? WHERE id = ?",
                [(now + lease, owner, r["id"]) for r in rows],
            )
        return [outbox_event(r) for r in rows]

    def release_leases(self, owner: str, now: float | None = None) -> int:
        """Make the pending events ``owner`` had claimed due now (it is gone, or stopped
        with sends cut short); how many."""
        now = self._clock() if now is None else now
        with self._write() as db:
            cursor = db.execute(
                "UPDATE events SET next_attempt_at = min(next_attempt_at, ?), leased_by = NULL"
                " WHERE state = 'pending' AND leased_by = ?",
                (now, owner),
            )
        return cursor.rowcount

    def release_webhooks(
        self, owner: str, now: float | None = None, *, lane: tuple[str, str] | None = None
    ) -> int:
        """Make the webhooks ``owner`` was processing (in one ``lane`` when given) due
        now; how many."""
        now = self._clock() if now is None else now
        where, args = ("", ()) if lane is None else (" AND source = ? AND shop = ?", lane)
        with self._write() as db:
            cursor = db.execute(
                "UPDATE webhooks SET next_process_at = min(next_process_at, ?), leased_by = NULL"
                " WHERE state = 'received' AND leased_by = ?" + where,
                (now, owner, *args),
            )
        return cursor.rowcount

    def record_attempt(
        self,
        event_id: int,
        outcome: Outcome,
        status: int | None,
        error: str | None,
        response: str | None,
        started_at: float,
        duration_ms: float,
        next_attempt_at: float | None = None,
    ) -> bool:
        """Record one attempt and move the event on (``rows.attempt_changes``), in one
        transaction; False when the event was no longer pending (the attempt is still kept)."""
        text, changes = attempt_changes(
            outcome, status, error, response, started_at + duration_ms / 1000, next_attempt_at
        )
        sql = ", ".join(f"{column} = ?" for column in changes)
        with self._write() as db:
            db.execute(
                "INSERT INTO attempts (event_id, started_at, duration_ms, status, error,"
                " response, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (event_id, started_at, duration_ms, status, error, text, outcome),
            )
            cursor = db.execute(
                f"UPDATE events SET {sql}, attempts = attempts + 1, last_status = ?,"
                " leased_by = NULL WHERE id = ? AND state = 'pending'",
                (*changes.values(), status, event_id),
            )
        return cursor.rowcount == 1

    def retry(self, event_id: int) -> int:
        """Put one dead event back in the queue, due now, with a fresh retry schedule."""
        return self._requeue_dead("AND id = ?", (event_id,))

    def retry_dead(self, *, shop: str | None = None) -> int:
        """Put every dead event (of ``shop``) back in the queue; return how many."""
        if shop is None:
            return self._requeue_dead("", ())
        return self._requeue_dead("AND shop = ?", (shop,))

    def _requeue_dead(self, extra: str, args: tuple[Any, ...]) -> int:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE events SET state = 'pending', attempts = 0, next_attempt_at = ?"
                f" WHERE state = 'dead' {extra}",
                (self._clock(), *args),
            )
        return cursor.rowcount

    def forget_expired_changes(self, now: float | None = None) -> int:
        """Drop the remembered values (``changes:``) that expired; how many."""
        now = self._clock() if now is None else now
        with self._write() as db:
            cursor = db.execute("DELETE FROM changes WHERE expires_at <= ?", (now,))
        return cursor.rowcount
